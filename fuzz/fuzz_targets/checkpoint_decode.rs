//! Fuzzes the checkpoint text decoders: `EpochCheckpoint::decode`,
//! `decode_placement` and `CleanMarker::decode` must never panic on any
//! UTF-8 input, and whatever they accept must encode to text that decodes to
//! the same value (the encoders assert their invariants, so this also checks
//! that the decoders accept nothing the encoders would refuse).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_storage::checkpoint::{decode_placement, encode_placement, CleanMarker, EpochCheckpoint};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(checkpoint) = EpochCheckpoint::decode(text) {
        let again = EpochCheckpoint::decode(&checkpoint.encode()).expect("re-decode");
        assert_eq!(again, checkpoint);
    }

    if let Ok(entries) = decode_placement(text) {
        let again = decode_placement(&encode_placement(&entries)).expect("re-decode");
        assert_eq!(again, entries);
    }

    if let Ok(marker) = CleanMarker::decode(text) {
        let again = CleanMarker::decode(&marker.encode()).expect("re-decode");
        assert_eq!(again, marker);
    }
});
