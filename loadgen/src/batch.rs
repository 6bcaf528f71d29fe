//! RecordBatch v2 encoding straight into one pre-sized buffer per batch.
//!
//! The project's `ringstream_core::batch::BatchBuilder` produces the
//! same bytes (a test checks that byte for byte) but is made for tests and
//! tools: it stages each record in a scratch buffer, grows its record buffer
//! by doubling and copies everything once more in `build`. At hundreds of MB/s
//! on one core those copies and the page faults of fresh large allocations
//! were most of the producer's time, so the load generator writes each
//! record once, into a buffer sized for the whole batch. The CRC is the
//! project's (`batch::write_crc`).
//!
//! Compression (`--compression`) compresses the records section with the
//! kafka-protocol codecs at `finish` and sets attributes bits 0-2. The
//! consumer side (`uncompressed`) turns a fetched compressed batch back into
//! the equivalent uncompressed one, so one record parser reads both.

use bytes::BytesMut;
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use ringstream_core::batch::{validate, write_crc, BatchHeader};

use crate::args::Compression;
use crate::limits::{batch_bytes_max, decompressed_batch_bytes_max, decompressed_batch_records_max};

/// RecordBatch v2 header bytes.
pub const header_bytes: usize = 61;
const magic_v2: u8 = 2;

/// An idempotent producer's identity and the batch's first sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequenced {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// Records with an optional key and no headers, timestamp delta 0;
/// idempotent or not (producer id, epoch and base sequence -1), compressed
/// or not, as `finish` is told.
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

    pub fn records_count(&self) -> i32 {
        self.records_count
    }

    pub fn push(&mut self, key: Option<&[u8]>, value: &[u8]) {
        assert!(self.records_count < i32::MAX);
        let value_length = i32::try_from(value.len()).expect("record value below 2 GiB");
        let key_length = key.map_or(-1, |k| i32::try_from(k.len()).expect("key below 2 GiB"));
        let key_bytes = key.map_or(0, <[u8]>::len);
        // attributes, timestamp delta (0), offset delta, key length (-1: null),
        // key, value length, value, header count (0).
        let body_length = 1
            + 1
            + varint_bytes(self.records_count)
            + varint_bytes(key_length)
            + key_bytes
            + varint_bytes(value_length)
            + value.len()
            + 1;
        let body_length = i32::try_from(body_length).expect("record below 2 GiB");
        put_varint(&mut self.bytes, body_length);
        let body_start = self.bytes.len();
        self.bytes.push(0);
        put_varint(&mut self.bytes, 0);
        put_varint(&mut self.bytes, self.records_count);
        put_varint(&mut self.bytes, key_length);
        if let Some(key) = key {
            self.bytes.extend_from_slice(key);
        }
        put_varint(&mut self.bytes, value_length);
        self.bytes.extend_from_slice(value);
        put_varint(&mut self.bytes, 0);
        assert_eq!(self.bytes.len() - body_start, body_length as usize);
        self.records_count += 1;
    }

    /// The finished batch: records compressed with `compression`, header
    /// filled in, CRC32C signed. Fails only if a codec does.
    pub fn finish(mut self, sequenced: Option<Sequenced>, compression: Compression) -> Result<Vec<u8>, String> {
        assert!(self.records_count > 0, "a batch needs at least one record");
        if compression != Compression::None {
            let mut compressed = BytesMut::with_capacity(self.bytes.len() / 2 + header_bytes + 64);
            compressed.extend_from_slice(&self.bytes[..header_bytes]);
            let section = &self.bytes[header_bytes..];
            // The codecs take the records from a closure that writes them.
            macro_rules! compress_with {
                ($codec:ty) => {
                    <$codec>::compress(&mut compressed, |tmp: &mut BytesMut| {
                        tmp.extend_from_slice(section);
                        Ok(())
                    })
                };
            }
            match compression {
                Compression::None => unreachable!(),
                Compression::Gzip => compress_with!(Gzip),
                Compression::Snappy => compress_with!(Snappy),
                Compression::Lz4 => compress_with!(Lz4),
                Compression::Zstd => compress_with!(Zstd),
            }
            .map_err(|e| format!("{} compression: {e}", compression.label()))?;
            self.bytes = compressed.to_vec();
        }
        let batch_length = i32::try_from(self.bytes.len() - 12).expect("batch below 2 GiB");
        let sequenced = sequenced.unwrap_or(Sequenced { producer_id: -1, producer_epoch: -1, base_sequence: -1 });
        let header = &mut self.bytes[..header_bytes];
        header[0..8].copy_from_slice(&0i64.to_be_bytes()); // base offset
        header[8..12].copy_from_slice(&batch_length.to_be_bytes());
        header[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        header[16] = magic_v2;
        header[17..21].copy_from_slice(&0u32.to_be_bytes()); // crc, below
        header[21..23].copy_from_slice(&(compression as i16).to_be_bytes()); // attributes: the codec
        header[23..27].copy_from_slice(&(self.records_count - 1).to_be_bytes()); // last offset delta
        header[27..35].copy_from_slice(&self.base_timestamp_ms.to_be_bytes());
        header[35..43].copy_from_slice(&self.base_timestamp_ms.to_be_bytes()); // max timestamp
        header[43..51].copy_from_slice(&sequenced.producer_id.to_be_bytes());
        header[51..53].copy_from_slice(&sequenced.producer_epoch.to_be_bytes());
        header[53..57].copy_from_slice(&sequenced.base_sequence.to_be_bytes());
        header[57..61].copy_from_slice(&self.records_count.to_be_bytes());
        write_crc(&mut self.bytes);
        Ok(self.bytes)
    }
}

/// The uncompressed equivalent of a fetched compressed batch: the same
/// header with the codec bits cleared, the records section decompressed,
/// the length and CRC rewritten. The compressed batch's own CRC is checked
/// first. Bounded: the batch by `batch_bytes_max`, its declared records by
/// `decompressed_batch_records_max` before decompressing and the output by
/// `decompressed_batch_bytes_max` after (the codecs decompress in one go).
pub fn uncompressed(bytes: &[u8]) -> Result<Vec<u8>, String> {
    validate(bytes, batch_bytes_max).map_err(|e| e.to_string())?;
    let header = BatchHeader::ref_from_prefix(bytes).ok_or("batch shorter than its header")?;
    let records_count = header.records_count();
    if !(1..=decompressed_batch_records_max).contains(&records_count) {
        return Err(format!("compressed batch claims {records_count} records (1 to {decompressed_batch_records_max})"));
    }
    let codec = header.attributes() & 0x07;
    let mut section = &bytes[header_bytes..];
    macro_rules! decompress_with {
        ($codec:ty) => {
            <$codec>::decompress(&mut section, |records: &mut bytes::Bytes| Ok(records.clone()))
        };
    }
    let records = match codec {
        1 => decompress_with!(Gzip),
        2 => decompress_with!(Snappy),
        3 => decompress_with!(Lz4),
        4 => decompress_with!(Zstd),
        _ => return Err(format!("unknown compression codec {codec}")),
    }
    .map_err(|e| format!("decompressing codec {codec}: {e}"))?;
    if header_bytes + records.len() > decompressed_batch_bytes_max {
        return Err(format!(
            "decompressed records of {} bytes (at most {decompressed_batch_bytes_max})",
            records.len()
        ));
    }
    let mut out = Vec::with_capacity(header_bytes + records.len());
    out.extend_from_slice(&bytes[..header_bytes]);
    out.extend_from_slice(&records);
    let batch_length = i32::try_from(out.len() - 12).map_err(|_| "decompressed batch above 2 GiB".to_owned())?;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = header.attributes() & !0x07;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    write_crc(&mut out);
    Ok(out)
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
    use ringstream_core::batch::{records, BatchBuilder, Record};

    #[test]
    fn same_bytes_as_the_projects_batch_builder() {
        for (count, size) in [(1usize, 8usize), (3, 100), (200, 1024), (2, 70_000)] {
            let values: Vec<Vec<u8>> = (0..count).map(|i| (0..size).map(|j| (i * 31 + j) as u8).collect()).collect();
            let mut ours = BatchWriter::new(16, 1_700_000_000_123);
            let mut reference = BatchBuilder::new(1_700_000_000_123);
            for (i, value) in values.iter().enumerate() {
                // Every other record keyed, so both encodings are compared.
                let key = format!("key-{i}");
                let key = (i % 2 == 1).then_some(key.as_bytes());
                ours.push(key, value);
                reference.push(&Record { key, value: Some(value), headers: &[], timestamp_delta: 0 });
            }
            let ours = ours.finish(None, Compression::None).unwrap();
            assert_eq!(ours, reference.build(), "{count} records of {size} B");
            let info = validate(&ours, 1 << 26).unwrap();
            assert_eq!(info.records_count as usize, count);
            let views = records(&ours).unwrap();
            assert_eq!(views.last().unwrap().value.unwrap(), values.last().unwrap().as_slice());
        }
    }

    #[test]
    fn idempotent_batches_match_the_builder() {
        let mut ours = BatchWriter::new(16, 1_700_000_000_000);
        let mut reference = BatchBuilder::new(1_700_000_000_000);
        reference.producer(4242, 3, 17);
        for i in 0..5u8 {
            ours.push(Some(&[i]), &[i; 20]);
            reference.push(&Record { key: Some(&[i]), value: Some(&[i; 20]), headers: &[], timestamp_delta: 0 });
        }
        let sequenced = Sequenced { producer_id: 4242, producer_epoch: 3, base_sequence: 17 };
        assert_eq!(ours.finish(Some(sequenced), Compression::None).unwrap(), reference.build());
    }

    /// Each codec: the compressed batch validates, names its codec, and
    /// decompresses back to exactly the uncompressed batch.
    #[test]
    fn compressed_batches_round_trip() {
        let values: Vec<Vec<u8>> = (0..50).map(|i| (0..300).map(|j| ((i + j) % 7) as u8).collect()).collect();
        let build = |compression: Compression| {
            let mut writer = BatchWriter::new(64, 1_700_000_000_000);
            for (i, value) in values.iter().enumerate() {
                writer.push(Some(format!("k{i}").as_bytes()), value);
            }
            let sequenced = Sequenced { producer_id: 9, producer_epoch: 0, base_sequence: 100 };
            writer.finish(Some(sequenced), compression).unwrap()
        };
        let plain = build(Compression::None);
        for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let compressed = build(compression);
            assert!(compressed.len() < plain.len(), "{compression:?} compresses repetitive values");
            validate(&compressed, 1 << 26).unwrap();
            let header = BatchHeader::ref_from_prefix(&compressed).unwrap();
            assert_eq!(header.attributes(), compression as i16);
            assert_eq!(header.records_count(), 50);
            assert_eq!(header.base_sequence(), 100);
            assert_eq!(uncompressed(&compressed).unwrap(), plain, "{compression:?}");
        }
        // A corrupted compressed batch fails its CRC, and is not decompressed.
        let mut bad = build(Compression::Zstd);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(uncompressed(&bad).is_err());
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
