//! Helpers shared by the benchmarks.

use bytes::Bytes;
use ringstream_core::batch::{BatchBuilder, Record};
use ringstream_core::clock::now_ms;

/// A valid batch of exactly `target` bytes: 16 records (64 from 256 KiB
/// up) of pseudo-random values, the last one sized to hit the target.
pub fn batch_of(target: usize, seed: u64) -> Bytes {
    let records: usize = if target >= 256 * 1024 { 64 } else { 16 };
    let mut value = vec![0u8; target];
    ringstream_core::batch::fill_pseudo_random(&mut value, seed);
    let build = |each: usize, last: usize| {
        let mut builder = BatchBuilder::new(now_ms());
        for index in 0..records {
            let len = if index + 1 == records { last } else { each };
            builder.push(&Record {
                key: None,
                value: Some(&value[..len]),
                headers: &[],
                timestamp_delta: index as i64,
            });
        }
        builder.build()
    };
    let each = (target - 61) / records - 10;
    let mut last = each;
    for _ in 0..8 {
        let batch = build(each, last);
        if batch.len() == target {
            return Bytes::from(batch);
        }
        last = (last as i64 + target as i64 - batch.len() as i64) as usize;
    }
    panic!("no batch of exactly {target} bytes");
}
