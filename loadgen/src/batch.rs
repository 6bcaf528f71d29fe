//! RecordBatch v2 encoding straight into one pre-sized buffer per batch.
//!
//! The project's `ringstream::storage::batch::BatchBuilder` produces the
//! same bytes (a test checks that byte for byte) but is made for tests and
//! tools: it stages each record in a scratch buffer, grows its record buffer
//! by doubling and copies everything once more in `build`. At hundreds of MB/s
//! on one core those copies and the page faults of fresh large allocations
//! were most of the producer's time, so the load generator writes each
//! record once, into a buffer sized for the whole batch. The CRC is the
//! project's (`batch::write_crc`).

use ringstream::storage::batch::write_crc;

/// RecordBatch v2 header bytes.
pub const header_bytes: usize = 61;
const magic_v2: u8 = 2;

/// Records without key or headers, timestamp delta 0, not idempotent
/// (producer id, epoch and base sequence -1), uncompressed.
pub struct BatchWriter {
    bytes: Vec<u8>,
    base_timestamp_ms: i64,
    records_count: i32,
}

impl BatchWriter {
    pub fn new(capacity_bytes: usize, base_timestamp_ms: i64) -> BatchWriter {
        let mut bytes = Vec::with_capacity(capacity_bytes.max(header_bytes));
        bytes.resize(header_bytes, 0);
        BatchWriter { bytes, base_timestamp_ms, records_count: 0 }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn push(&mut self, value: &[u8]) {
        assert!(self.records_count < i32::MAX);
        let value_length = i32::try_from(value.len()).expect("record value below 2 GiB");
        // attributes, timestamp delta (0), offset delta, key length (-1: null),
        // value length, value, header count (0).
        let body_length = 1 + 1 + varint_bytes(self.records_count) + 1 + varint_bytes(value_length) + value.len() + 1;
        let body_length = i32::try_from(body_length).expect("record below 2 GiB");
        put_varint(&mut self.bytes, body_length);
        let body_start = self.bytes.len();
        self.bytes.push(0);
        put_varint(&mut self.bytes, 0);
        put_varint(&mut self.bytes, self.records_count);
        put_varint(&mut self.bytes, -1);
        put_varint(&mut self.bytes, value_length);
        self.bytes.extend_from_slice(value);
        put_varint(&mut self.bytes, 0);
        assert_eq!(self.bytes.len() - body_start, body_length as usize);
        self.records_count += 1;
    }

    /// The finished batch: header filled in, CRC32C signed.
    pub fn finish(mut self) -> Vec<u8> {
        assert!(self.records_count > 0, "a batch needs at least one record");
        let batch_length = i32::try_from(self.bytes.len() - 12).expect("batch below 2 GiB");
        let header = &mut self.bytes[..header_bytes];
        header[0..8].copy_from_slice(&0i64.to_be_bytes()); // base offset
        header[8..12].copy_from_slice(&batch_length.to_be_bytes());
        header[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        header[16] = magic_v2;
        header[17..21].copy_from_slice(&0u32.to_be_bytes()); // crc, below
        header[21..23].copy_from_slice(&0i16.to_be_bytes()); // attributes
        header[23..27].copy_from_slice(&(self.records_count - 1).to_be_bytes()); // last offset delta
        header[27..35].copy_from_slice(&self.base_timestamp_ms.to_be_bytes());
        header[35..43].copy_from_slice(&self.base_timestamp_ms.to_be_bytes()); // max timestamp
        header[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // producer id
        header[51..53].copy_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        header[53..57].copy_from_slice(&(-1i32).to_be_bytes()); // base sequence
        header[57..61].copy_from_slice(&self.records_count.to_be_bytes());
        write_crc(&mut self.bytes);
        self.bytes
    }
}

fn zigzag(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn varint_bytes(value: i32) -> usize {
    let mut v = zigzag(value);
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, value: i32) {
    let mut v = zigzag(value);
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringstream::storage::batch::{records, validate, BatchBuilder, Record};

    #[test]
    fn same_bytes_as_the_projects_batch_builder() {
        for (count, size) in [(1usize, 8usize), (3, 100), (200, 1024), (2, 70_000)] {
            let values: Vec<Vec<u8>> = (0..count).map(|i| (0..size).map(|j| (i * 31 + j) as u8).collect()).collect();
            let mut ours = BatchWriter::new(16, 1_700_000_000_123);
            let mut reference = BatchBuilder::new(1_700_000_000_123);
            for value in &values {
                ours.push(value);
                reference.push(&Record { key: None, value: Some(value), headers: &[], timestamp_delta: 0 });
            }
            let ours = ours.finish();
            assert_eq!(ours, reference.build(), "{count} records of {size} B");
            let info = validate(&ours, 1 << 26).unwrap();
            assert_eq!(info.records_count as usize, count);
            let views = records(&ours).unwrap();
            assert_eq!(views.last().unwrap().value.unwrap(), values.last().unwrap().as_slice());
        }
    }

    #[test]
    fn varints_match_kafka() {
        let mut out = Vec::new();
        for v in [0, -1, 1, 63, -64, 64, 300, i32::MAX, i32::MIN] {
            out.clear();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_bytes(v), "{v}");
        }
        out.clear();
        put_varint(&mut out, -1);
        assert_eq!(out, [1]);
        out.clear();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xd8, 0x04]);
    }
}
