//! Property tests for the protocol layer, with a seeded RNG (deterministic,
//! no timing): for every API in `handlers::REGISTRY` and every version it
//! serves, random-but-valid request values (only fields that exist in that
//! version set) are encoded behind a request header as a client would, run
//! through `protocol::decode_request` + `protocol::decode_body`, and must
//! come back equal, header fields included. Frame sizes outside
//! [`request_header_bytes_min`, cap] must be rejected by `frame_size`.
//!
//! The generators follow the field version ranges documented on the
//! `kafka-protocol` 0.18 message types (the encoder rejects a non-default
//! value in a field the version lacks, and a wrong guess here fails loudly).
#![allow(non_upper_case_globals)] // as in the crate: constants are named like values.

use std::fmt::Debug;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ringstream_broker::broker::topics::TOPIC_CONFIGS;
use ringstream_broker::handlers::{self, REGISTRY};
use ringstream_core::batch::build_test_batch;
use ringstream_core::limits::frame_bytes_max;
use ringstream_protocol::{decode_body, decode_request, frame_size, request_header_bytes_min};
use uuid::Uuid;

/// Random values per API and version.
const cases_per_version: usize = 40;

/// APIs with a generator here. A served API missing from this list is only
/// reported (see `every_served_api_and_version_round_trips`).
const generated: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeCluster,
    ApiKey::InitProducerId,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::ListGroups,
    ApiKey::DescribeGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::OffsetDelete,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::DeleteRecords,
    ApiKey::DescribeLogDirs,
    ApiKey::DescribeProducers,
    ApiKey::DescribeTopicPartitions,
    ApiKey::ElectLeaders,
    ApiKey::AlterPartitionReassignments,
    ApiKey::ListPartitionReassignments,
];

#[test]
fn every_served_api_and_version_round_trips() {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0001);
    let mut checked = 0usize;
    let mut missing = Vec::new();
    for spec in REGISTRY {
        if !generated.contains(&spec.key) {
            missing.push(spec.key);
            continue;
        }
        for version in spec.min_version..=spec.max_version {
            for _ in 0..cases_per_version {
                assert!(round_trip(&mut rng, spec.key, version, Served::Yes));
                checked += 1;
            }
        }
    }
    if !missing.is_empty() {
        eprintln!("served APIs with no generator in tests/protocol_roundtrip.rs (not checked): {missing:?}");
    }
    assert!(checked > 0);
    eprintln!("{checked} request round trips checked");
}

/// The same property over every version the codec knows, served or not, so
/// the generators are ready for the registry's next versions (and prove they
/// set only fields the version has).
#[test]
fn every_codec_version_of_the_generated_apis_round_trips() {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0002);
    for &api in generated {
        let known = api.valid_versions();
        for version in known.min..=known.max {
            for _ in 0..cases_per_version / 4 {
                assert!(round_trip(&mut rng, api, version, Served::No));
            }
        }
    }
}

#[test]
fn frame_sizes_outside_the_bounds_are_rejected() {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0004);
    let min = request_header_bytes_min;
    let mut caps = vec![min, min + 1, 1024, frame_bytes_max, i32::MAX as usize - 1];
    caps.extend((0..50).map(|_| rng.gen_range(min..=frame_bytes_max)));
    for cap in caps {
        let mut sizes: Vec<i32> = vec![i32::MIN, -1, 0, 1, min as i32 - 1, min as i32, cap as i32];
        if cap < i32::MAX as usize {
            sizes.extend([cap as i32 + 1, i32::MAX]);
        }
        for _ in 0..200 {
            sizes.push(match rng.gen_range(0..4) {
                0 => rng.gen_range(i32::MIN..min as i32),
                1 => rng.gen_range(min as i32..=cap as i32),
                2 if cap < i32::MAX as usize => rng.gen_range(cap as i32 + 1..=i32::MAX),
                _ => rng.gen(),
            });
        }
        for size in sizes {
            let mut buffer = size.to_be_bytes().to_vec();
            // What follows the prefix never matters.
            buffer.extend((0..rng.gen_range(0..8)).map(|_| rng.gen::<u8>()));
            let result = frame_size(&buffer, cap);
            let in_bounds = size >= min as i32 && size as i64 <= cap as i64;
            match result {
                Ok(Some(got)) => {
                    assert!(in_bounds, "size {size} accepted with cap {cap}");
                    assert_eq!(got as i64, size as i64);
                }
                Ok(None) => panic!("a full prefix read as incomplete"),
                Err(_) => assert!(!in_bounds, "size {size} rejected with cap {cap}"),
            }
            // Fewer than four bytes: not yet a prefix, whatever they are.
            for cut in 0..4 {
                assert!(matches!(frame_size(&buffer[..cut], cap), Ok(None)));
            }
        }
    }
}

#[test]
fn api_versions_newer_than_served_still_decode_a_header() {
    // KIP-511: the header of an ApiVersions request newer than we serve is
    // read as v1 whatever its version says, so the client can be told our
    // versions; the body is not ours to decode.
    let mut rng = SmallRng::seed_from_u64(0x5eed_0005);
    let served = handlers::max_version(ApiKey::ApiVersions).expect("ApiVersions is served");
    for version in served + 1..=served + 5 {
        for _ in 0..cases_per_version {
            let header = random_header(&mut rng, ApiKey::ApiVersions, version);
            let mut frame = BytesMut::new();
            header.encode(&mut frame, 1).unwrap();
            frame.put_slice(&(0..rng.gen_range(0..16)).map(|_| rng.gen::<u8>()).collect::<Vec<_>>());
            let request = decode_request(frame.freeze(), handlers::max_version).expect("a v1 header decodes");
            assert_eq!(request.api_version, version);
            assert_eq!(request.header, header);
        }
    }
}

// ---------------------------------------------------------------------------
// The round trip.

#[derive(Clone, Copy, PartialEq)]
enum Served {
    /// Decode the header as the broker does (`handlers::max_version`).
    Yes,
    /// The version may be beyond what is served; decode the header at the
    /// version's own header version.
    No,
}

/// Builds a random request for `api` at `version` and checks it; false when
/// there is no generator for `api`.
fn round_trip(rng: &mut SmallRng, api: ApiKey, version: i16, served: Served) -> bool {
    match api {
        ApiKey::ApiVersions => check(rng, api, version, served, api_versions),
        ApiKey::Metadata => check(rng, api, version, served, metadata),
        ApiKey::Produce => check(rng, api, version, served, produce),
        ApiKey::Fetch => check(rng, api, version, served, fetch),
        ApiKey::ListOffsets => check(rng, api, version, served, list_offsets),
        ApiKey::CreateTopics => check(rng, api, version, served, create_topics),
        ApiKey::DeleteTopics => check(rng, api, version, served, delete_topics),
        ApiKey::CreatePartitions => check(rng, api, version, served, create_partitions),
        ApiKey::DescribeConfigs => check(rng, api, version, served, describe_configs),
        ApiKey::AlterConfigs => check(rng, api, version, served, alter_configs),
        ApiKey::IncrementalAlterConfigs => check(rng, api, version, served, incremental_alter_configs),
        ApiKey::DescribeCluster => check(rng, api, version, served, describe_cluster),
        ApiKey::InitProducerId => check(rng, api, version, served, init_producer_id),
        ApiKey::OffsetForLeaderEpoch => check(rng, api, version, served, offset_for_leader_epoch),
        ApiKey::FindCoordinator => check(rng, api, version, served, find_coordinator),
        ApiKey::JoinGroup => check(rng, api, version, served, join_group),
        ApiKey::SyncGroup => check(rng, api, version, served, sync_group),
        ApiKey::Heartbeat => check(rng, api, version, served, heartbeat),
        ApiKey::LeaveGroup => check(rng, api, version, served, leave_group),
        ApiKey::ListGroups => check(rng, api, version, served, list_groups),
        ApiKey::DescribeGroups => check(rng, api, version, served, describe_groups),
        ApiKey::DeleteGroups => check(rng, api, version, served, delete_groups),
        ApiKey::OffsetCommit => check(rng, api, version, served, offset_commit),
        ApiKey::OffsetFetch => check(rng, api, version, served, offset_fetch),
        ApiKey::OffsetDelete => check(rng, api, version, served, offset_delete),
        ApiKey::ConsumerGroupHeartbeat => check(rng, api, version, served, consumer_group_heartbeat),
        ApiKey::ConsumerGroupDescribe => check(rng, api, version, served, consumer_group_describe),
        ApiKey::DeleteRecords => check(rng, api, version, served, delete_records),
        ApiKey::DescribeLogDirs => check(rng, api, version, served, describe_log_dirs),
        ApiKey::DescribeProducers => check(rng, api, version, served, describe_producers),
        ApiKey::DescribeTopicPartitions => check(rng, api, version, served, describe_topic_partitions),
        ApiKey::ElectLeaders => check(rng, api, version, served, elect_leaders),
        ApiKey::AlterPartitionReassignments => check(rng, api, version, served, alter_partition_reassignments),
        ApiKey::ListPartitionReassignments => check(rng, api, version, served, list_partition_reassignments),
        _ => return false,
    }
    true
}

/// encode(header + value) → frame_size → decode_request → decode_body gives
/// back the header and the value, and the body re-encodes to the same bytes.
fn check<T: Request + PartialEq + Debug>(
    rng: &mut SmallRng,
    api: ApiKey,
    version: i16,
    served: Served,
    generate: fn(&mut SmallRng, i16) -> T,
) {
    assert_eq!(T::KEY, api as i16);
    // The codec's own range for the request type. kafka-protocol 0.18's
    // `ApiKey::valid_versions` is wider than the request type for a few APIs
    // (InitProducerId: 0-6 vs 0-5; OffsetCommit, OffsetFetch: up to 10 vs 9):
    // a version served outside the type's range could never be decoded.
    let known = T::VERSIONS;
    if !(known.min..=known.max).contains(&version) {
        assert!(
            served == Served::No,
            "{api:?} v{version} is served, but {} only knows v{}..=v{}",
            std::any::type_name::<T>(),
            known.min,
            known.max
        );
        return;
    }
    let value = generate(rng, version);
    let header = random_header(rng, api, version);
    let header_version = api.request_header_version(version);
    let mut frame = BytesMut::new();
    header.encode(&mut frame, header_version).unwrap_or_else(|e| panic!("{api:?} v{version} header: {e}"));
    let header_bytes = frame.len();
    value.encode(&mut frame, version).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}\n{value:?}"));
    let body_bytes = frame.len() - header_bytes;
    assert_eq!(body_bytes, value.compute_size(version).unwrap(), "{api:?} v{version}: compute_size");
    let frame = frame.freeze();

    // The size prefix the client would send is within bounds.
    let mut prefixed = (frame.len() as i32).to_be_bytes().to_vec();
    prefixed.extend_from_slice(&frame);
    assert_eq!(frame_size(&prefixed, frame_bytes_max).unwrap(), Some(frame.len()));

    let request = match served {
        Served::Yes => decode_request(frame, handlers::max_version),
        Served::No => decode_request(frame, |_| None),
    }
    .unwrap_or_else(|e| panic!("{api:?} v{version}: header does not decode: {e}"));
    assert_eq!(request.api_key, api);
    assert_eq!(request.api_version, version);
    assert_eq!(request.header, header, "{api:?} v{version}: header fields changed");
    assert_eq!(request.body.len(), body_bytes);

    let body = request.body.clone();
    let mut rest = request.body;
    let decoded: T = decode_body(&mut rest, version, "request")
        .unwrap_or_else(|e| panic!("{api:?} v{version}: body does not decode: {e}\n{value:?}"));
    assert_eq!(decoded, value, "{api:?} v{version}: decode(encode(x)) != x");
    let mut again = BytesMut::new();
    decoded.encode(&mut again, version).unwrap();
    assert_eq!(again.freeze(), body, "{api:?} v{version}: re-encoding differs");
}

fn random_header(rng: &mut SmallRng, api: ApiKey, version: i16) -> RequestHeader {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = rng.gen();
    header.client_id = match rng.gen_range(0..5) {
        0 => None,
        1 => Some(StrBytes::from_static_str("")),
        _ => Some(text(rng, 1..24)),
    };
    header
}

// ---------------------------------------------------------------------------
// Random values.

/// Random UTF-8 of `len` characters, some of them outside ASCII.
fn text(rng: &mut SmallRng, len: std::ops::Range<usize>) -> StrBytes {
    const chars: &[char] = &['a', 'z', 'K', '0', '9', '.', '-', '_', ' ', 'é', 'ß', 'Ω', '日', '🦀'];
    let n = rng.gen_range(len);
    StrBytes::from_string((0..n).map(|_| chars[rng.gen_range(0..chars.len())]).collect())
}

/// A legal Kafka topic name.
fn topic_name(rng: &mut SmallRng) -> TopicName {
    const chars: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    let n = rng.gen_range(1..40);
    let name: String = (0..n).map(|_| chars[rng.gen_range(0..chars.len())] as char).collect();
    TopicName(StrBytes::from_string(name))
}

fn uuid(rng: &mut SmallRng) -> Uuid {
    Uuid::from_u128(rng.gen::<u128>() | 1)
}

fn some_of<T>(rng: &mut SmallRng, max: usize, mut make: impl FnMut(&mut SmallRng) -> T) -> Vec<T> {
    let n = rng.gen_range(0..=max);
    (0..n).map(|_| make(rng)).collect()
}

fn broker_id(rng: &mut SmallRng) -> BrokerId {
    BrokerId(rng.gen_range(-1..16))
}

fn epoch(rng: &mut SmallRng) -> i32 {
    rng.gen_range(-1..1000)
}

fn offset(rng: &mut SmallRng) -> i64 {
    if rng.gen_bool(0.2) {
        rng.gen()
    } else {
        rng.gen_range(-1..1_000_000)
    }
}

/// A topic config as a client would send it: mostly ones the broker knows.
fn config_name(rng: &mut SmallRng) -> StrBytes {
    if rng.gen_bool(0.8) {
        StrBytes::from_static_str(TOPIC_CONFIGS[rng.gen_range(0..TOPIC_CONFIGS.len())])
    } else {
        text(rng, 1..20)
    }
}

fn config_value(rng: &mut SmallRng) -> Option<StrBytes> {
    match rng.gen_range(0..4) {
        0 => None,
        1 => Some(StrBytes::from_string(rng.gen_range(-1i64..10_000_000_000).to_string())),
        2 => Some(StrBytes::from_static_str("delete")),
        _ => Some(text(rng, 0..16)),
    }
}

/// A group id: any string, the empty one included (valid for OffsetCommit,
/// OffsetFetch and DeleteGroups).
fn group_id(rng: &mut SmallRng) -> GroupId {
    GroupId(text(rng, 0..24))
}

/// A member id: empty (a member's first join) or one the coordinator made.
fn member_id(rng: &mut SmallRng) -> StrBytes {
    if rng.gen_bool(0.2) {
        StrBytes::from_static_str("")
    } else {
        text(rng, 1..40)
    }
}

/// A static member's instance id, or none (a dynamic member).
fn instance_id(rng: &mut SmallRng) -> Option<StrBytes> {
    rng.gen_bool(0.4).then(|| text(rng, 1..20))
}

/// A reason or other free text a client may leave out.
fn optional_text(rng: &mut SmallRng) -> Option<StrBytes> {
    rng.gen_bool(0.5).then(|| text(rng, 0..30))
}

/// Opaque bytes (protocol metadata, assignments): empty, random, or a
/// ConsumerProtocolSubscription/Assignment-shaped prefix (version, topics).
fn opaque_bytes(rng: &mut SmallRng) -> Bytes {
    match rng.gen_range(0..3) {
        0 => Bytes::new(),
        1 => Bytes::from((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>()).collect::<Vec<_>>()),
        _ => {
            let mut out = BytesMut::new();
            out.put_i16(rng.gen_range(0..4));
            let topics = some_of(rng, 3, topic_name);
            out.put_i32(topics.len() as i32);
            for topic in topics {
                out.put_i16(topic.0.len() as i16);
                out.put_slice(topic.0.as_bytes());
            }
            out.freeze()
        }
    }
}

fn partition_index(rng: &mut SmallRng) -> i32 {
    rng.gen_range(0..64)
}

// ---------------------------------------------------------------------------
// One generator per API. Each sets a field only in the versions that have it
// and leaves the type's default elsewhere.

fn api_versions(rng: &mut SmallRng, version: i16) -> ApiVersionsRequest {
    let mut request = ApiVersionsRequest::default();
    if version >= 3 {
        request.client_software_name = text(rng, 0..20);
        request.client_software_version = text(rng, 0..12);
    }
    request
}

fn metadata(rng: &mut SmallRng, version: i16) -> MetadataRequest {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let mut request = MetadataRequest::default();
    // Null (all topics) from v1; v0 asks for all with an empty list.
    request.topics = if version >= 1 && rng.gen_bool(0.25) {
        None
    } else {
        Some(some_of(rng, 5, |rng| {
            let mut topic = MetadataRequestTopic::default();
            if version >= 10 && rng.gen_bool(0.3) {
                topic.topic_id = uuid(rng);
                topic.name = None;
            } else {
                topic.name = Some(topic_name(rng));
            }
            topic
        }))
    };
    if version >= 4 {
        request.allow_auto_topic_creation = rng.gen();
    }
    if (8..=10).contains(&version) {
        request.include_cluster_authorized_operations = rng.gen();
    }
    if version >= 8 {
        request.include_topic_authorized_operations = rng.gen();
    }
    request
}

fn produce(rng: &mut SmallRng, version: i16) -> ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let mut request = ProduceRequest::default();
    request.transactional_id = rng.gen_bool(0.3).then(|| TransactionalId(text(rng, 1..20)));
    request.acks = [-1, 0, 1][rng.gen_range(0..3)];
    request.timeout_ms = rng.gen_range(0..120_000);
    request.topic_data = some_of(rng, 3, |rng| {
        let mut topic = TopicProduceData::default();
        if version <= 12 {
            topic.name = topic_name(rng);
        } else {
            topic.topic_id = uuid(rng);
        }
        topic.partition_data = some_of(rng, 3, |rng| {
            let mut partition = PartitionProduceData::default();
            partition.index = rng.gen_range(0..64);
            partition.records = if rng.gen_bool(0.1) {
                None
            } else {
                // One or two real RecordBatch v2 batches back to back.
                let mut records = Vec::new();
                for _ in 0..rng.gen_range(1..=2) {
                    let batch = build_test_batch(
                        rng.gen_range(1..6),
                        rng.gen_range(0..64),
                        rng.gen(),
                        rng.gen_range(0..2_000_000_000_000),
                    );
                    records.extend_from_slice(&batch);
                }
                Some(Bytes::from(records))
            };
            partition
        });
        topic
    });
    request
}

fn fetch(rng: &mut SmallRng, version: i16) -> FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic, ReplicaState};
    let mut request = FetchRequest::default();
    if version <= 14 {
        request.replica_id = broker_id(rng);
    } else if rng.gen_bool(0.5) {
        let mut state = ReplicaState::default();
        state.replica_id = broker_id(rng);
        state.replica_epoch = rng.gen_range(-1..100);
        request.replica_state = state;
    }
    request.max_wait_ms = rng.gen_range(0..30_000);
    request.min_bytes = rng.gen_range(0..1_000_000);
    request.max_bytes = rng.gen_range(0..=i32::MAX);
    request.isolation_level = rng.gen_range(0..2);
    if version >= 7 {
        request.session_id = rng.gen_range(0..1000);
        request.session_epoch = rng.gen_range(-1..1000);
    }
    request.topics = some_of(rng, 3, |rng| {
        let mut topic = FetchTopic::default();
        if version <= 12 {
            topic.topic = topic_name(rng);
        } else {
            topic.topic_id = uuid(rng);
        }
        topic.partitions = some_of(rng, 4, |rng| {
            let mut partition = FetchPartition::default();
            partition.partition = rng.gen_range(0..64);
            partition.fetch_offset = offset(rng);
            partition.partition_max_bytes = rng.gen_range(0..=i32::MAX);
            if version >= 9 {
                partition.current_leader_epoch = epoch(rng);
            }
            if version >= 12 {
                partition.last_fetched_epoch = epoch(rng);
            }
            if version >= 5 {
                partition.log_start_offset = offset(rng);
            }
            if version >= 17 {
                partition.replica_directory_id = uuid(rng);
            }
            if version >= 18 {
                partition.high_watermark = offset(rng);
            }
            partition
        });
        topic
    });
    if version >= 7 {
        request.forgotten_topics_data = some_of(rng, 2, |rng| {
            let mut topic = ForgottenTopic::default();
            if version <= 12 {
                topic.topic = topic_name(rng);
            } else {
                topic.topic_id = uuid(rng);
            }
            topic.partitions = some_of(rng, 4, |rng| rng.gen_range(0..64));
            topic
        });
    }
    if version >= 11 {
        request.rack_id = text(rng, 0..10);
    }
    if version >= 12 && rng.gen_bool(0.5) {
        request.cluster_id = Some(text(rng, 0..22));
    }
    request
}

fn list_offsets(rng: &mut SmallRng, version: i16) -> ListOffsetsRequest {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let mut request = ListOffsetsRequest::default();
    request.replica_id = broker_id(rng);
    if version >= 2 {
        request.isolation_level = rng.gen_range(0..2);
    }
    if version >= 10 {
        request.timeout_ms = rng.gen_range(0..60_000);
    }
    request.topics = some_of(rng, 3, |rng| {
        let mut topic = ListOffsetsTopic::default();
        topic.name = topic_name(rng);
        topic.partitions = some_of(rng, 4, |rng| {
            let mut partition = ListOffsetsPartition::default();
            partition.partition_index = rng.gen_range(0..64);
            // latest, earliest, max timestamp, or a time.
            partition.timestamp = [-1, -2, -3, rng.gen_range(0..2_000_000_000_000)][rng.gen_range(0..4)];
            if version >= 4 {
                partition.current_leader_epoch = epoch(rng);
            }
            partition
        });
        topic
    });
    request
}

fn create_topics(rng: &mut SmallRng, _version: i16) -> CreateTopicsRequest {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
    };
    let mut request = CreateTopicsRequest::default();
    request.timeout_ms = rng.gen_range(0..120_000);
    request.validate_only = rng.gen();
    request.topics = some_of(rng, 3, |rng| {
        let mut topic = CreatableTopic::default();
        topic.name = topic_name(rng);
        if rng.gen_bool(0.2) {
            // Explicit assignments: counts are -1.
            topic.num_partitions = -1;
            topic.replication_factor = -1;
            topic.assignments = (0..rng.gen_range(1..4))
                .map(|index| {
                    let mut assignment = CreatableReplicaAssignment::default();
                    assignment.partition_index = index;
                    assignment.broker_ids = some_of(rng, 3, broker_id);
                    assignment
                })
                .collect();
        } else {
            topic.num_partitions = [-1, rng.gen_range(1..1000)][rng.gen_range(0..2)];
            topic.replication_factor = [-1, 1, 3][rng.gen_range(0..3)];
        }
        topic.configs = some_of(rng, 4, |rng| {
            let mut config = CreatableTopicConfig::default();
            config.name = config_name(rng);
            config.value = config_value(rng);
            config
        });
        topic
    });
    request
}

fn delete_topics(rng: &mut SmallRng, version: i16) -> DeleteTopicsRequest {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    let mut request = DeleteTopicsRequest::default();
    request.timeout_ms = rng.gen_range(0..120_000);
    if version <= 5 {
        request.topic_names = some_of(rng, 4, topic_name);
    } else {
        request.topics = some_of(rng, 4, |rng| {
            let mut topic = DeleteTopicState::default();
            if rng.gen_bool(0.5) {
                topic.name = Some(topic_name(rng));
            } else {
                topic.topic_id = uuid(rng);
            }
            topic
        });
    }
    request
}

fn create_partitions(rng: &mut SmallRng, _version: i16) -> CreatePartitionsRequest {
    use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
    let mut request = CreatePartitionsRequest::default();
    request.timeout_ms = rng.gen_range(0..120_000);
    request.validate_only = rng.gen();
    request.topics = some_of(rng, 3, |rng| {
        let mut topic = CreatePartitionsTopic::default();
        topic.name = topic_name(rng);
        topic.count = rng.gen_range(1..1000);
        topic.assignments = rng.gen_bool(0.3).then(|| {
            some_of(rng, 3, |rng| {
                let mut assignment = CreatePartitionsAssignment::default();
                assignment.broker_ids = some_of(rng, 3, broker_id);
                assignment
            })
        });
        topic
    });
    request
}

fn describe_configs(rng: &mut SmallRng, version: i16) -> DescribeConfigsRequest {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let mut request = DescribeConfigsRequest::default();
    request.include_synonyms = rng.gen();
    if version >= 3 {
        request.include_documentation = rng.gen();
    }
    request.resources = some_of(rng, 3, |rng| {
        let mut resource = DescribeConfigsResource::default();
        // TOPIC (2) or BROKER (4).
        resource.resource_type = [2, 4][rng.gen_range(0..2)];
        resource.resource_name = if resource.resource_type == 2 { topic_name(rng).0 } else { text(rng, 0..3) };
        resource.configuration_keys = rng.gen_bool(0.5).then(|| some_of(rng, 4, config_name));
        resource
    });
    request
}

fn alter_configs(rng: &mut SmallRng, _version: i16) -> AlterConfigsRequest {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut request = AlterConfigsRequest::default();
    request.validate_only = rng.gen();
    request.resources = some_of(rng, 3, |rng| {
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = [2, 4][rng.gen_range(0..2)];
        resource.resource_name = topic_name(rng).0;
        resource.configs = some_of(rng, 4, |rng| {
            let mut config = AlterableConfig::default();
            config.name = config_name(rng);
            config.value = config_value(rng);
            config
        });
        resource
    });
    request
}

fn incremental_alter_configs(rng: &mut SmallRng, _version: i16) -> IncrementalAlterConfigsRequest {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut request = IncrementalAlterConfigsRequest::default();
    request.validate_only = rng.gen();
    request.resources = some_of(rng, 3, |rng| {
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = [2, 4][rng.gen_range(0..2)];
        resource.resource_name = topic_name(rng).0;
        resource.configs = some_of(rng, 4, |rng| {
            let mut config = AlterableConfig::default();
            config.name = config_name(rng);
            // SET, DELETE, APPEND, SUBTRACT.
            config.config_operation = rng.gen_range(0..4);
            config.value = config_value(rng);
            config
        });
        resource
    });
    request
}

fn describe_cluster(rng: &mut SmallRng, version: i16) -> DescribeClusterRequest {
    let mut request = DescribeClusterRequest::default();
    request.include_cluster_authorized_operations = rng.gen();
    if version >= 1 {
        request.endpoint_type = rng.gen_range(1..3);
    }
    if version >= 2 {
        request.include_fenced_brokers = rng.gen();
    }
    request
}

fn init_producer_id(rng: &mut SmallRng, version: i16) -> InitProducerIdRequest {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = rng.gen_bool(0.5).then(|| TransactionalId(text(rng, 1..20)));
    request.transaction_timeout_ms = rng.gen_range(-1..900_000);
    if version >= 3 && rng.gen_bool(0.5) {
        request.producer_id = ProducerId(rng.gen_range(0..i64::MAX));
        request.producer_epoch = rng.gen_range(0..i16::MAX);
    }
    request
}

fn offset_for_leader_epoch(rng: &mut SmallRng, version: i16) -> OffsetForLeaderEpochRequest {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    let mut request = OffsetForLeaderEpochRequest::default();
    if version >= 3 {
        // -1: a consumer; -2: the default (debug); otherwise a follower.
        request.replica_id = BrokerId(rng.gen_range(-2..16));
    }
    request.topics = some_of(rng, 3, |rng| {
        let mut topic = OffsetForLeaderTopic::default();
        topic.topic = topic_name(rng);
        topic.partitions = some_of(rng, 4, |rng| {
            let mut partition = OffsetForLeaderPartition::default();
            partition.partition = rng.gen_range(0..64);
            partition.current_leader_epoch = epoch(rng);
            partition.leader_epoch = rng.gen_range(0..1000);
            partition
        });
        topic
    });
    request
}

fn find_coordinator(rng: &mut SmallRng, version: i16) -> FindCoordinatorRequest {
    let mut request = FindCoordinatorRequest::default();
    // v0-3 name one key; v4 a batch of them.
    if version <= 3 {
        request.key = text(rng, 0..24);
    } else {
        request.coordinator_keys = some_of(rng, 4, |rng| text(rng, 0..24));
    }
    if version >= 1 {
        // GROUP (0), TRANSACTION (1), SHARE (2).
        request.key_type = rng.gen_range(0..3);
    }
    request
}

fn join_group(rng: &mut SmallRng, version: i16) -> JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    let mut request = JoinGroupRequest::default();
    request.group_id = group_id(rng);
    request.session_timeout_ms = rng.gen_range(0..300_000);
    if version >= 1 {
        request.rebalance_timeout_ms = rng.gen_range(-1..300_000);
    }
    request.member_id = member_id(rng);
    if version >= 5 {
        request.group_instance_id = instance_id(rng);
    }
    request.protocol_type = if rng.gen_bool(0.8) { StrBytes::from_static_str("consumer") } else { text(rng, 0..12) };
    request.protocols = some_of(rng, 3, |rng| {
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = if rng.gen_bool(0.7) {
            StrBytes::from_static_str(["range", "roundrobin", "cooperative-sticky"][rng.gen_range(0..3)])
        } else {
            text(rng, 0..16)
        };
        protocol.metadata = opaque_bytes(rng);
        protocol
    });
    if version >= 8 {
        request.reason = optional_text(rng);
    }
    request
}

fn sync_group(rng: &mut SmallRng, version: i16) -> SyncGroupRequest {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    let mut request = SyncGroupRequest::default();
    request.group_id = group_id(rng);
    request.generation_id = rng.gen_range(-1..1000);
    request.member_id = member_id(rng);
    if version >= 3 {
        request.group_instance_id = instance_id(rng);
    }
    if version >= 5 {
        request.protocol_type = rng.gen_bool(0.7).then(|| StrBytes::from_static_str("consumer"));
        request.protocol_name = optional_text(rng);
    }
    // The leader sends every member's assignment; followers send none.
    request.assignments = some_of(rng, 4, |rng| {
        let mut assignment = SyncGroupRequestAssignment::default();
        assignment.member_id = member_id(rng);
        assignment.assignment = opaque_bytes(rng);
        assignment
    });
    request
}

fn heartbeat(rng: &mut SmallRng, version: i16) -> HeartbeatRequest {
    let mut request = HeartbeatRequest::default();
    request.group_id = group_id(rng);
    request.generation_id = rng.gen_range(-1..1000);
    request.member_id = member_id(rng);
    if version >= 3 {
        request.group_instance_id = instance_id(rng);
    }
    request
}

fn leave_group(rng: &mut SmallRng, version: i16) -> LeaveGroupRequest {
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    let mut request = LeaveGroupRequest::default();
    request.group_id = group_id(rng);
    // v0-2: one member; v3 on: a batch of them.
    if version <= 2 {
        request.member_id = member_id(rng);
    } else {
        request.members = some_of(rng, 4, |rng| {
            let mut member = MemberIdentity::default();
            member.member_id = member_id(rng);
            member.group_instance_id = instance_id(rng);
            if version >= 5 {
                member.reason = optional_text(rng);
            }
            member
        });
    }
    request
}

fn list_groups(rng: &mut SmallRng, version: i16) -> ListGroupsRequest {
    let mut request = ListGroupsRequest::default();
    const states: &[&str] =
        &["Empty", "Stable", "PreparingRebalance", "CompletingRebalance", "Dead", "Assigning", "Reconciling"];
    if version >= 4 {
        request.states_filter =
            some_of(rng, 3, |rng| StrBytes::from_static_str(states[rng.gen_range(0..states.len())]));
    }
    if version >= 5 {
        request.types_filter =
            some_of(rng, 2, |rng| StrBytes::from_static_str(["classic", "consumer", "share"][rng.gen_range(0..3)]));
    }
    request
}

fn describe_groups(rng: &mut SmallRng, version: i16) -> DescribeGroupsRequest {
    let mut request = DescribeGroupsRequest::default();
    request.groups = some_of(rng, 4, group_id);
    if version >= 3 {
        request.include_authorized_operations = rng.gen();
    }
    request
}

fn delete_groups(rng: &mut SmallRng, _version: i16) -> DeleteGroupsRequest {
    let mut request = DeleteGroupsRequest::default();
    request.groups_names = some_of(rng, 4, group_id);
    request
}

fn offset_commit(rng: &mut SmallRng, version: i16) -> OffsetCommitRequest {
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    let mut request = OffsetCommitRequest::default();
    request.group_id = group_id(rng);
    // -1 with an empty member id: a commit from outside any generation.
    request.generation_id_or_member_epoch = rng.gen_range(-1..1000);
    request.member_id = member_id(rng);
    if version >= 7 {
        request.group_instance_id = instance_id(rng);
    }
    if version <= 4 {
        request.retention_time_ms = [-1, rng.gen_range(0..1_000_000_000)][rng.gen_range(0..2)];
    }
    request.topics = some_of(rng, 3, |rng| {
        let mut topic = OffsetCommitRequestTopic::default();
        topic.name = topic_name(rng);
        topic.partitions = some_of(rng, 4, |rng| {
            let mut partition = OffsetCommitRequestPartition::default();
            partition.partition_index = partition_index(rng);
            partition.committed_offset = offset(rng);
            if version >= 6 {
                partition.committed_leader_epoch = epoch(rng);
            }
            partition.committed_metadata = optional_text(rng);
            partition
        });
        topic
    });
    request
}

fn offset_fetch(rng: &mut SmallRng, version: i16) -> OffsetFetchRequest {
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    let mut request = OffsetFetchRequest::default();
    if version <= 7 {
        // One group; null topics (all of them) from v2.
        request.group_id = group_id(rng);
        request.topics = if version >= 2 && rng.gen_bool(0.3) {
            None
        } else {
            Some(some_of(rng, 3, |rng| {
                let mut topic = OffsetFetchRequestTopic::default();
                topic.name = topic_name(rng);
                topic.partition_indexes = some_of(rng, 4, partition_index);
                topic
            }))
        };
    } else {
        // A batch of groups, each with its own (nullable) topics.
        request.groups = some_of(rng, 3, |rng| {
            let mut group = OffsetFetchRequestGroup::default();
            group.group_id = group_id(rng);
            if version >= 9 {
                group.member_id = rng.gen_bool(0.5).then(|| member_id(rng));
                group.member_epoch = rng.gen_range(-1..1000);
            }
            group.topics = rng.gen_bool(0.7).then(|| {
                some_of(rng, 3, |rng| {
                    let mut topic = OffsetFetchRequestTopics::default();
                    topic.name = topic_name(rng);
                    topic.partition_indexes = some_of(rng, 4, partition_index);
                    topic
                })
            });
            group
        });
    }
    if version >= 7 {
        request.require_stable = rng.gen();
    }
    request
}

fn offset_delete(rng: &mut SmallRng, _version: i16) -> OffsetDeleteRequest {
    use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
    let mut request = OffsetDeleteRequest::default();
    request.group_id = group_id(rng);
    request.topics = some_of(rng, 3, |rng| {
        let mut topic = OffsetDeleteRequestTopic::default();
        topic.name = topic_name(rng);
        topic.partitions = some_of(rng, 4, |rng| {
            let mut partition = OffsetDeleteRequestPartition::default();
            partition.partition_index = partition_index(rng);
            partition
        });
        topic
    });
    request
}

fn consumer_group_heartbeat(rng: &mut SmallRng, version: i16) -> ConsumerGroupHeartbeatRequest {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    let mut request = ConsumerGroupHeartbeatRequest::default();
    request.group_id = group_id(rng);
    request.member_id = member_id(rng);
    // 0: joining; -1: leaving; -2: a static member leaving for now.
    request.member_epoch = [0, -1, -2, rng.gen_range(1..1000)][rng.gen_range(0..4)];
    request.instance_id = instance_id(rng);
    request.rack_id = rng.gen_bool(0.3).then(|| text(rng, 0..10));
    request.rebalance_timeout_ms = rng.gen_range(-1..300_000);
    // Null fields mean "unchanged since the last heartbeat".
    request.subscribed_topic_names = rng.gen_bool(0.6).then(|| some_of(rng, 4, topic_name));
    if version >= 1 {
        request.subscribed_topic_regex = rng.gen_bool(0.3).then(|| text(rng, 0..16));
    }
    request.server_assignor =
        rng.gen_bool(0.3).then(|| StrBytes::from_static_str(["uniform", "range"][rng.gen_range(0..2)]));
    request.topic_partitions = rng.gen_bool(0.6).then(|| {
        some_of(rng, 3, |rng| {
            let mut topic = TopicPartitions::default();
            topic.topic_id = uuid(rng);
            topic.partitions = some_of(rng, 4, partition_index);
            topic
        })
    });
    request
}

fn consumer_group_describe(rng: &mut SmallRng, _version: i16) -> ConsumerGroupDescribeRequest {
    let mut request = ConsumerGroupDescribeRequest::default();
    request.group_ids = some_of(rng, 4, group_id);
    request.include_authorized_operations = rng.gen();
    request
}

fn delete_records(rng: &mut SmallRng, _version: i16) -> DeleteRecordsRequest {
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    let mut request = DeleteRecordsRequest::default();
    request.timeout_ms = rng.gen_range(-1..60_000);
    request.topics = some_of(rng, 4, |rng| {
        let mut topic = DeleteRecordsTopic::default();
        topic.name = topic_name(rng);
        topic.partitions = some_of(rng, 5, |rng| {
            let mut partition = DeleteRecordsPartition::default();
            partition.partition_index = partition_index(rng);
            partition.offset = offset(rng);
            partition
        });
        topic
    });
    request
}

fn describe_log_dirs(rng: &mut SmallRng, _version: i16) -> DescribeLogDirsRequest {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    let mut request = DescribeLogDirsRequest::default();
    request.topics = rng.gen_bool(0.7).then(|| {
        some_of(rng, 4, |rng| {
            let mut topic = DescribableLogDirTopic::default();
            topic.topic = topic_name(rng);
            topic.partitions = some_of(rng, 5, partition_index);
            topic
        })
    });
    request
}

fn describe_producers(rng: &mut SmallRng, _version: i16) -> DescribeProducersRequest {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    let mut request = DescribeProducersRequest::default();
    request.topics = some_of(rng, 4, |rng| {
        let mut topic = TopicRequest::default();
        topic.name = topic_name(rng);
        topic.partition_indexes = some_of(rng, 5, partition_index);
        topic
    });
    request
}

fn describe_topic_partitions(rng: &mut SmallRng, _version: i16) -> DescribeTopicPartitionsRequest {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let mut request = DescribeTopicPartitionsRequest::default();
    request.topics = some_of(rng, 5, |rng| {
        let mut topic = TopicRequest::default();
        topic.name = topic_name(rng);
        topic
    });
    request.response_partition_limit = rng.gen_range(-1..5000);
    request.cursor = rng.gen_bool(0.4).then(|| {
        let mut cursor = Cursor::default();
        cursor.topic_name = topic_name(rng);
        cursor.partition_index = rng.gen_range(-1..64);
        cursor
    });
    request
}

fn elect_leaders(rng: &mut SmallRng, version: i16) -> ElectLeadersRequest {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let mut request = ElectLeadersRequest::default();
    if version >= 1 {
        request.election_type = rng.gen_range(0..3);
    }
    request.topic_partitions = rng.gen_bool(0.8).then(|| {
        some_of(rng, 4, |rng| {
            let mut topic = TopicPartitions::default();
            topic.topic = topic_name(rng);
            topic.partitions = some_of(rng, 5, partition_index);
            topic
        })
    });
    request.timeout_ms = rng.gen_range(-1..60_000);
    request
}

fn alter_partition_reassignments(rng: &mut SmallRng, version: i16) -> AlterPartitionReassignmentsRequest {
    use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.timeout_ms = rng.gen_range(-1..60_000);
    if version >= 1 {
        request.allow_replication_factor_change = rng.gen_bool(0.5);
    }
    request.topics = some_of(rng, 4, |rng| {
        let mut topic = ReassignableTopic::default();
        topic.name = topic_name(rng);
        topic.partitions = some_of(rng, 5, |rng| {
            let mut partition = ReassignablePartition::default();
            partition.partition_index = partition_index(rng);
            partition.replicas = rng.gen_bool(0.8).then(|| some_of(rng, 4, broker_id));
            partition
        });
        topic
    });
    request
}

fn list_partition_reassignments(rng: &mut SmallRng, _version: i16) -> ListPartitionReassignmentsRequest {
    use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
    let mut request = ListPartitionReassignmentsRequest::default();
    request.timeout_ms = rng.gen_range(-1..60_000);
    request.topics = rng.gen_bool(0.7).then(|| {
        some_of(rng, 4, |rng| {
            let mut topic = ListPartitionReassignmentsTopics::default();
            topic.name = topic_name(rng);
            topic.partition_indexes = some_of(rng, 5, partition_index);
            topic
        })
    });
    request
}
