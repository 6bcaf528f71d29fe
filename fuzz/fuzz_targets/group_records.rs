//! Fuzzes the decoders of consumer-group state: the records of the internal
//! offsets log (`groups::store::decode_key` / `decode_value`, which replay
//! reads back from disk at startup and after compaction) and the
//! ConsumerProtocolSubscription reader (`groups::coordinator::
//! subscription_topics`, which reads client-supplied JoinGroup metadata).
//! None may panic, and whatever the store decoders accept must round-trip:
//! the format is canonical, so `encode_key` / `encode_value` give back the
//! exact input bytes, which decode again to an equal record.
//!
//! Input layout:
//! - bytes 0-1: the key's length `k`, big-endian (clamped to what follows);
//! - the next `k` bytes: the record key;
//! - the rest: the record value.
//!
//! The value is decoded under the key when the key decodes, and also under
//! a fixed key of each type, so the value decoders are explored whether or
//! not the fuzzer has found a valid key yet. The whole input, and every
//! stored member's subscription bytes, go to `subscription_topics`.
//!
//! Uses the broker's global allocator, as `request_bodies` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_broker::groups::coordinator::subscription_topics;
use ringstream_broker::groups::store::{decode_key, decode_value, encode_key, encode_value, RecordKey, RecordValue};

fuzz_target!(|data: &[u8]| {
    check_subscription(data);
    let Some((length, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let key_bytes = usize::from(u16::from_be_bytes(*length)).min(rest.len());
    let (key_bytes, value_bytes) = rest.split_at(key_bytes);

    if let Ok(key) = decode_key(key_bytes) {
        let encoded = encode_key(&key);
        assert_eq!(encoded, key_bytes, "{key:?} re-encodes differently");
        assert_eq!(decode_key(&encoded).as_ref(), Ok(&key));
        check_value(&key, value_bytes);
    }
    let offset_key = RecordKey::Offset { group: String::new(), topic: String::new(), partition: 0 };
    let group_key = RecordKey::Group { group: String::new() };
    check_value(&offset_key, value_bytes);
    check_value(&group_key, value_bytes);
});

/// Whatever `decode_value` accepts under `key` has the key's type and
/// round-trips to the same bytes and an equal value.
fn check_value(key: &RecordKey, bytes: &[u8]) {
    let Ok(value) = decode_value(key, bytes) else {
        return;
    };
    match (key, &value) {
        (RecordKey::Offset { .. }, RecordValue::Offset(_)) => {}
        (RecordKey::Group { .. }, RecordValue::Group(group)) => {
            for member in &group.members {
                check_subscription(&member.subscription);
            }
        }
        (RecordKey::Group { .. }, RecordValue::ConsumerGroup(_)) => {}
        _ => panic!("{key:?} decoded to a value of the other type: {value:?}"),
    }
    let encoded = encode_value(&value);
    assert_eq!(encoded, bytes, "{value:?} re-encodes differently");
    assert_eq!(decode_value(key, &encoded).as_ref(), Ok(&value));
}

/// `subscription_topics` never panics, and the topics it returns are exactly
/// what the input starts with: a version, an int32 count, then that many
/// int16-length strings.
fn check_subscription(metadata: &[u8]) {
    let Some(topics) = subscription_topics(metadata) else {
        return;
    };
    assert!(topics.len() <= metadata.len() / 2, "{} topics from {} bytes", topics.len(), metadata.len());
    let mut expected = metadata[..2].to_vec();
    expected.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for topic in &topics {
        expected.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        expected.extend_from_slice(topic.as_bytes());
    }
    assert!(metadata.starts_with(&expected), "topics {topics:?} are not what the input holds");
}

#[global_allocator]
static ALLOCATOR: ringstream_core::alloc::LazyHugeAlloc = ringstream_core::alloc::LazyHugeAlloc;
