//! Fuzzes the segment index decoders: `OffsetIndex::decode` and
//! `TimeIndex::decode` must never panic on any input, and whatever they
//! accept must encode back to the same bytes and decode again to the same
//! entries.
//!
//! The first 16 input bytes (when present) are the segment's base offset and
//! size, big-endian, so the fuzzer explores the offset-overflow and
//! position-beyond-segment checks too; the rest is the index file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_storage::index::{OffsetIndex, TimeIndex};
use ringstream_core::types::Offset;

fuzz_target!(|data: &[u8]| {
    let (base_offset, segment_bytes, bytes) = match data.split_first_chunk::<16>() {
        Some((header, rest)) => {
            let (base, size) = header.split_at(8);
            let base = i64::from_be_bytes(base.try_into().expect("8 bytes"));
            let size = u64::from_be_bytes(size.try_into().expect("8 bytes"));
            (Offset(base), size, rest)
        }
        None => (Offset(0), u64::MAX, data),
    };

    if let Ok(index) = OffsetIndex::decode(base_offset, bytes, segment_bytes) {
        let encoded = index.encode();
        assert_eq!(encoded, bytes);
        let again = OffsetIndex::decode(base_offset, &encoded, segment_bytes).expect("re-decode");
        assert_eq!(again.entries(), index.entries());
        for entry in index.entries() {
            assert!(u64::from(entry.position) < segment_bytes);
        }
        let (offset, position) = index.lookup(Offset(i64::MAX));
        assert!(offset >= base_offset);
        assert!(position == 0 || u64::from(position) < segment_bytes);
    }

    if let Ok(index) = TimeIndex::decode(base_offset, bytes) {
        let encoded = index.encode();
        assert_eq!(encoded, bytes);
        let again = TimeIndex::decode(base_offset, &encoded).expect("re-decode");
        assert_eq!(again.entries(), index.entries());
        assert_eq!(again.max_timestamp(), index.max_timestamp());
        assert_eq!(again.max_timestamp_offset(), index.max_timestamp_offset());
        assert!(index.lookup(i64::MIN) == base_offset);
        assert!(index.lookup(i64::MAX) >= base_offset);
    }
});
