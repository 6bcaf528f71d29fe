//! Fuzzes the topic table file decoder: `TopicTable::decode` must never
//! panic on any UTF-8 input, and whatever it accepts must satisfy the
//! table's invariants and round-trip: `encode` (which asserts what it
//! relies on) yields text that decodes to an equal table and encodes to the
//! same text again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_broker::broker::topics::{TopicTable, TOPIC_CONFIGS};
use ringstream_core::limits::{topic_partitions_max, topics_max};
use ringstream_core::types::is_valid_topic_name;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(table) = TopicTable::decode(text) else {
        return;
    };

    assert!(table.len() <= topics_max);
    for topic in table.iter() {
        assert!(is_valid_topic_name(&topic.name), "{:?}", topic.name);
        assert!((1..=topic_partitions_max).contains(&topic.partitions));
        assert_eq!(table.get(&topic.name), Some(topic));
        for (key, value) in &topic.configs {
            assert!(TOPIC_CONFIGS.contains(&key.as_str()), "{key:?}");
            assert!(!value.contains('\n'), "{value:?}");
        }
    }

    let encoded = table.encode();
    let again = TopicTable::decode(&encoded).unwrap_or_else(|e| panic!("re-decode of {encoded:?}: {e}"));
    assert_eq!(again, table);
    assert_eq!(again.encode(), encoded);
});
