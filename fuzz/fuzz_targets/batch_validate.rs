//! Fuzzes RecordBatch v2 decoding: `validate`, `split_batches` and `records`
//! must never panic on any input, and whatever `validate` accepts must be
//! self-consistent.
//!
//! Random bytes almost never carry a matching CRC-32C, which would leave
//! everything after the CRC check unexplored. So the first input byte picks
//! a mode: odd means "re-sign the CRC of the rest before validating", which
//! lets the fuzzer reach the count, codec and record-structure checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream_core::limits::batch_bytes_max;
use ringstream_core::batch::{
    records, set_base_offset, split_batches, validate, write_crc, BatchHeader, BatchInfo, Compression,
    BATCH_HEADER_BYTES, CRC_START,
};
use ringstream_core::types::Offset;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= BATCH_HEADER_BYTES {
        write_crc(&mut bytes);
    }
    // A small maximum now and then, so the length bound is exercised too.
    let max = if mode & 2 == 2 { BATCH_HEADER_BYTES + usize::from(mode >> 2) * 4 } else { batch_bytes_max };

    for slice in split_batches(&bytes, max).flatten() {
        assert!(slice.len() >= BATCH_HEADER_BYTES && slice.len() <= max);
    }

    let result = validate(&bytes, max);
    let decoded = records(&bytes);
    let Ok(info) = result else {
        if max == batch_bytes_max {
            assert!(decoded.is_err(), "records accepted what validate rejected");
        }
        return;
    };

    // Accepted: the stored CRC is the CRC-32C of [21..], computed independently.
    let Some(header) = BatchHeader::ref_from_prefix(&bytes) else {
        panic!("validate accepted fewer than {BATCH_HEADER_BYTES} bytes");
    };
    assert_eq!(crc32c::crc32c(&bytes[CRC_START..]), header.crc());
    assert_eq!(info.total_bytes as usize, bytes.len());
    assert!(info.records_count > 0);
    assert!(info.next_offset() > info.base_offset);
    match header.compression() {
        Ok(Compression::None) => match &decoded {
            Ok(views) => assert_eq!(views.len(), info.records_count as usize),
            Err(error) => panic!("validate accepted but records failed: {error:?}"),
        },
        Ok(_) => assert!(decoded.is_err()),
        Err(error) => panic!("validate accepted an invalid codec: {error:?}"),
    }
    drop(decoded);

    // Round trip: stamping a base offset keeps the batch valid and changes
    // nothing else.
    let mut stamped = bytes.clone();
    set_base_offset(&mut stamped, Offset(1_000));
    let restamped = validate(&stamped, max);
    assert_eq!(restamped, Ok(BatchInfo { base_offset: Offset(1_000), ..info }));
    assert_eq!(stamped[8..], bytes[8..]);
});
