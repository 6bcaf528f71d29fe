//! Fuzzes request body decoding for every API the broker serves: the body
//! is decoded with the `kafka-protocol` request type for that API through
//! `ringstream_protocol::decode_body`, exactly as the handlers do. It must
//! never panic (nor abort), and whatever it accepts must round-trip:
//! encode(decoded) succeeds with the length `compute_size` predicted,
//! decodes again to an equal value, and encodes again to the same bytes.
//!
//! Input layout (stable across reorderings of `REGISTRY`, so saved inputs
//! keep meaning the same request):
//! - byte 0: the API key. If it is not served, `REGISTRY[byte0 % len]` is
//!   used instead, so no input is wasted.
//! - byte 1: the version. If it is outside the served range, the version is
//!   `min + byte1 % (max - min + 1)`.
//! - the rest: the request body (no header, no size prefix).
//!
//! So `03 00 ...` is a Metadata v0 body and `00 03 ...` a Produce v3 body.
//!
//! kafka-protocol 0.18 pre-allocates arrays by the count read from the
//! wire (fuzz/README.md). The broker runs with `ringstream_core::alloc::
//! LazyHugeAlloc`, which reserves such allocations lazily; this target uses
//! the same allocator, so it checks what the broker runs.
#![no_main]

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Request;
use libfuzzer_sys::fuzz_target;
use ringstream_broker::handlers::{ApiSpec, REGISTRY};
use ringstream_protocol::decode_body;

fuzz_target!(|data: &[u8]| {
    let [key_byte, version_byte, body @ ..] = data else {
        return;
    };
    let (spec, version) = select(*key_byte, *version_byte);
    match spec.key {
        ApiKey::ApiVersions => round_trip::<ApiVersionsRequest>(spec.key, version, body),
        ApiKey::Metadata => round_trip::<MetadataRequest>(spec.key, version, body),
        ApiKey::Produce => round_trip::<ProduceRequest>(spec.key, version, body),
        ApiKey::Fetch => round_trip::<FetchRequest>(spec.key, version, body),
        ApiKey::ListOffsets => round_trip::<ListOffsetsRequest>(spec.key, version, body),
        ApiKey::CreateTopics => round_trip::<CreateTopicsRequest>(spec.key, version, body),
        ApiKey::DeleteTopics => round_trip::<DeleteTopicsRequest>(spec.key, version, body),
        ApiKey::CreatePartitions => round_trip::<CreatePartitionsRequest>(spec.key, version, body),
        ApiKey::DescribeConfigs => round_trip::<DescribeConfigsRequest>(spec.key, version, body),
        ApiKey::AlterConfigs => round_trip::<AlterConfigsRequest>(spec.key, version, body),
        ApiKey::IncrementalAlterConfigs => round_trip::<IncrementalAlterConfigsRequest>(spec.key, version, body),
        ApiKey::DescribeCluster => round_trip::<DescribeClusterRequest>(spec.key, version, body),
        ApiKey::InitProducerId => round_trip::<InitProducerIdRequest>(spec.key, version, body),
        ApiKey::OffsetForLeaderEpoch => round_trip::<OffsetForLeaderEpochRequest>(spec.key, version, body),
        ApiKey::DeleteRecords => round_trip::<DeleteRecordsRequest>(spec.key, version, body),
        ApiKey::FindCoordinator => round_trip::<FindCoordinatorRequest>(spec.key, version, body),
        ApiKey::OffsetCommit => round_trip::<OffsetCommitRequest>(spec.key, version, body),
        ApiKey::OffsetFetch => round_trip::<OffsetFetchRequest>(spec.key, version, body),
        ApiKey::JoinGroup => round_trip::<JoinGroupRequest>(spec.key, version, body),
        ApiKey::Heartbeat => round_trip::<HeartbeatRequest>(spec.key, version, body),
        ApiKey::LeaveGroup => round_trip::<LeaveGroupRequest>(spec.key, version, body),
        ApiKey::SyncGroup => round_trip::<SyncGroupRequest>(spec.key, version, body),
        ApiKey::DescribeGroups => round_trip::<DescribeGroupsRequest>(spec.key, version, body),
        ApiKey::ListGroups => round_trip::<ListGroupsRequest>(spec.key, version, body),
        ApiKey::DeleteGroups => round_trip::<DeleteGroupsRequest>(spec.key, version, body),
        ApiKey::OffsetDelete => round_trip::<OffsetDeleteRequest>(spec.key, version, body),
        ApiKey::ConsumerGroupHeartbeat => round_trip::<ConsumerGroupHeartbeatRequest>(spec.key, version, body),
        ApiKey::ConsumerGroupDescribe => round_trip::<ConsumerGroupDescribeRequest>(spec.key, version, body),
        ApiKey::DescribeLogDirs => round_trip::<DescribeLogDirsRequest>(spec.key, version, body),
        ApiKey::SaslHandshake => round_trip::<SaslHandshakeRequest>(spec.key, version, body),
        ApiKey::SaslAuthenticate => round_trip::<SaslAuthenticateRequest>(spec.key, version, body),
        // An API added to the registry with no arm here yet: nothing to check.
        _ => {}
    }
});

/// The served API and version an input's first two bytes select.
fn select(key_byte: u8, version_byte: u8) -> (ApiSpec, i16) {
    assert!(!REGISTRY.is_empty());
    let spec = REGISTRY
        .iter()
        .copied()
        .find(|spec| spec.key as i16 == i16::from(key_byte))
        .unwrap_or(REGISTRY[usize::from(key_byte) % REGISTRY.len()]);
    let raw = i16::from(version_byte);
    let version = if (spec.min_version..=spec.max_version).contains(&raw) {
        raw
    } else {
        spec.min_version + raw % (spec.max_version - spec.min_version + 1)
    };
    (spec, version)
}

fn round_trip<T: Request + PartialEq + Debug>(api: ApiKey, version: i16, body: &[u8]) {
    assert_eq!(T::KEY, api as i16, "{api:?} is matched to the wrong request type");
    let mut input = Bytes::copy_from_slice(body);
    let Ok(decoded) = decode_body::<T>(&mut input, version, "fuzzed request") else {
        return;
    };
    if let Err(failure) = check_round_trip(&decoded, version) {
        // Known kafka-protocol 0.18 issue (see fuzz/README.md): a tag above
        // i32::MAX is kept under a negative key, which `encode` then skips
        // while still counting it. Negative keys sort first, so the Debug
        // text shows them right after the brace. The broker never re-encodes
        // a request, so such inputs are let through unless
        // RINGSTREAM_FUZZ_STRICT is set.
        if !strict() && format!("{decoded:?}").contains("unknown_tagged_fields: {-") {
            return;
        }
        panic!("{api:?} v{version}: {failure}\ndecoded: {decoded:?}");
    }
}

/// encode(decoded) works and is as long as `compute_size` says, decodes to
/// an equal value, and that value encodes to the same bytes.
fn check_round_trip<T: Request + PartialEq + Debug>(decoded: &T, version: i16) -> Result<(), String> {
    let first = encode(decoded, version)?;
    let mut again_input = first.clone();
    let again = decode_body::<T>(&mut again_input, version, "re-encoded request")
        .map_err(|e| format!("re-encoded body does not decode: {e}"))?;
    if &again != decoded {
        return Err(format!("round trip changed the value to {again:?}"));
    }
    let second = encode(&again, version)?;
    if second != first {
        return Err("encoding is not deterministic".into());
    }
    Ok(())
}

fn encode<T: Request>(value: &T, version: i16) -> Result<Bytes, String> {
    let size = value.compute_size(version).map_err(|e| format!("decoded value has no size: {e}"))?;
    let mut out = BytesMut::with_capacity(size);
    value.encode(&mut out, version).map_err(|e| format!("decoded value does not encode: {e}"))?;
    if out.len() != size {
        return Err(format!("compute_size said {size} bytes, encode wrote {}", out.len()));
    }
    Ok(out.freeze())
}

fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("RINGSTREAM_FUZZ_STRICT").is_some())
}

#[global_allocator]
static ALLOCATOR: ringstream_core::alloc::LazyHugeAlloc = ringstream_core::alloc::LazyHugeAlloc;
