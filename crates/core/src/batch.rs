//! Kafka RecordBatch v2 ("magic 2"): validation, boundaries, and a builder.
//!
//! Why this module exists: a batch is the unit storage writes, indexes, caches
//! and serves, and it is stored exactly as the producer sent it. Whatever is
//! checked here, on append, is what every later reader may rely on without
//! checking again, and recovery runs the same checks to find where a segment's
//! valid prefix ends after a crash. So the checks are complete rather than
//! fast-and-partial: length, magic, CRC, codec, count, and (for uncompressed
//! batches) the structure of every record, including sequential offset deltas,
//! because offsets handed to consumers are `baseOffset + offsetDelta`.
//!
//! Why a zerocopy view: the header sits in the same bytes that go to disk. We
//! read fields in place (`BatchHeader`, big-endian, unaligned) and overwrite
//! `baseOffset` and `partitionLeaderEpoch` in place when the broker assigns
//! them. Both lie before `CRC_START`, so stamping them keeps the CRC valid and
//! the payload is never re-encoded.
//!
//! Why decoders never panic: every byte here comes from a network peer or a
//! disk that may have torn a write. All lengths are checked before they are
//! used, all arithmetic on them is checked, and an allocation is never larger
//! than what the input bytes could actually hold.
//!
//! Layout (big-endian; offsets in bytes from the start of the batch):
//!
//! ```text
//!   0 baseOffset i64          21 attributes i16        43 producerId i64
//!   8 batchLength i32         23 lastOffsetDelta i32   51 producerEpoch i16
//!  12 partitionLeaderEpoch i32 27 baseTimestamp i64    53 baseSequence i32
//!  16 magic i8                35 maxTimestamp i64      57 recordsCount i32
//!  17 crc u32 (CRC-32C of [21..total])                 61 records...
//! ```
//!
//! `total = LOG_OVERHEAD_BYTES + batchLength`. Each record is a zigzag varint
//! length followed by: attributes i8, timestampDelta varlong, offsetDelta
//! varint, key (varint length, -1 = null), value (likewise), header count
//! varint, and per header a non-null key and a nullable value.

use zerocopy::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::limits::{batch_bytes_max, batch_bytes_min};
use crate::types::{LeaderEpoch, Offset};

/// Size of the fixed RecordBatch v2 header, records excluded.
pub const BATCH_HEADER_BYTES: usize = 61;
/// `baseOffset` and `batchLength`: the bytes that `batchLength` does not count.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The CRC covers `[CRC_START..total]`: from `attributes` to the batch end.
pub const CRC_START: usize = 21;

/// The only batch format this broker stores.
pub const MAGIC_V2: i8 = 2;

const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTE_TIMESTAMP_LOG_APPEND: i16 = 0x08;
const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
const ATTRIBUTE_CONTROL: i16 = 0x20;

/// Smallest encoding of one record after its length varint: attributes (1),
/// timestampDelta (1), offsetDelta (1), keyLength (1), valueLength (1),
/// header count (1).
const RECORD_BODY_BYTES_MIN: usize = 6;
/// Smallest encoding of one header: keyLength (1) and valueLength (1).
const HEADER_BYTES_MIN: usize = 2;

const VARINT_BYTES_MAX: usize = 5;
const VARLONG_BYTES_MAX: usize = 10;

const _: () = assert!(BATCH_HEADER_BYTES == batch_bytes_min);
const _: () = assert!(LOG_OVERHEAD_BYTES < CRC_START);
const _: () = assert!(CRC_START < BATCH_HEADER_BYTES);
// Every accepted total fits `batchLength` (i32) and `BatchInfo::total_bytes` (u32).
const _: () = assert!(batch_bytes_max - LOG_OVERHEAD_BYTES <= i32::MAX as usize);

/// Big-endian, unaligned, zero-copy view of the 61-byte batch header.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BatchHeader {
    base_offset: I64,
    batch_length: I32,
    partition_leader_epoch: I32,
    magic: u8,
    crc: U32,
    attributes: I16,
    last_offset_delta: I32,
    base_timestamp: I64,
    max_timestamp: I64,
    producer_id: I64,
    producer_epoch: I16,
    base_sequence: I32,
    records_count: I32,
}

const _: () = assert!(core::mem::size_of::<BatchHeader>() == BATCH_HEADER_BYTES);
const _: () = assert!(core::mem::align_of::<BatchHeader>() == 1);
const _: () = assert!(core::mem::offset_of!(BatchHeader, batch_length) == 8);
const _: () = assert!(core::mem::offset_of!(BatchHeader, partition_leader_epoch) == 12);
const _: () = assert!(core::mem::offset_of!(BatchHeader, magic) == 16);
const _: () = assert!(core::mem::offset_of!(BatchHeader, crc) == 17);
const _: () = assert!(core::mem::offset_of!(BatchHeader, attributes) == CRC_START);
const _: () = assert!(core::mem::offset_of!(BatchHeader, last_offset_delta) == 23);
const _: () = assert!(core::mem::offset_of!(BatchHeader, base_timestamp) == 27);
const _: () = assert!(core::mem::offset_of!(BatchHeader, max_timestamp) == 35);
const _: () = assert!(core::mem::offset_of!(BatchHeader, producer_id) == 43);
const _: () = assert!(core::mem::offset_of!(BatchHeader, producer_epoch) == 51);
const _: () = assert!(core::mem::offset_of!(BatchHeader, base_sequence) == 53);
const _: () = assert!(core::mem::offset_of!(BatchHeader, records_count) == 57);

/// The codec named by attribute bits 0-2 (defined beside the codecs).
pub use crate::codec::Compression;

impl BatchHeader {
    /// The header at the start of `bytes`; `None` if fewer than 61 bytes.
    /// Checks nothing else: every field may still be garbage.
    pub fn ref_from_prefix(bytes: &[u8]) -> Option<&BatchHeader> {
        <BatchHeader as FromBytes>::ref_from_prefix(bytes).ok().map(|(header, _rest)| header)
    }

    pub fn base_offset(&self) -> Offset {
        Offset(self.base_offset.get())
    }
    pub fn batch_length(&self) -> i32 {
        self.batch_length.get()
    }
    pub fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(self.partition_leader_epoch.get())
    }
    pub fn magic(&self) -> i8 {
        self.magic as i8
    }
    pub fn crc(&self) -> u32 {
        self.crc.get()
    }
    pub fn attributes(&self) -> i16 {
        self.attributes.get()
    }
    pub fn last_offset_delta(&self) -> i32 {
        self.last_offset_delta.get()
    }
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp.get()
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.get()
    }
    pub fn producer_id(&self) -> i64 {
        self.producer_id.get()
    }
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch.get()
    }
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence.get()
    }
    pub fn records_count(&self) -> i32 {
        self.records_count.get()
    }

    /// The codec in attribute bits 0-2. Codes 5-7 name no codec and return
    /// `Err(BatchError::Compression { codec })`, the same error `validate`
    /// reports, so callers can use `?` and never see an "invalid" codec value.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        let codec = (self.attributes() & ATTRIBUTE_COMPRESSION_MASK) as u8;
        match codec {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            _ => Err(BatchError::Compression { codec }),
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTRIBUTE_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTRIBUTE_CONTROL != 0
    }
    /// Attribute bit 3: timestamps are LogAppendTime (set by the broker)
    /// rather than CreateTime (set by the producer).
    pub fn timestamp_type_log_append(&self) -> bool {
        self.attributes() & ATTRIBUTE_TIMESTAMP_LOG_APPEND != 0
    }
}

/// Summary of a validated batch: header fields plus its total size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: Offset,
    pub last_offset_delta: i32,
    pub records_count: i32,
    pub total_bytes: u32,
    pub leader_epoch: LeaderEpoch,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub attributes: i16,
}

impl BatchInfo {
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }

    /// `baseOffset + lastOffsetDelta`. `validate` guarantees this and
    /// `next_offset` are representable; panics on an info it did not produce
    /// whose fields overflow.
    pub fn last_offset(&self) -> Offset {
        assert!(self.last_offset_delta >= 0);
        let last = self.base_offset.0.checked_add(i64::from(self.last_offset_delta));
        assert!(last.is_some(), "batch offsets overflow: {:?}", self);
        Offset(last.unwrap_or(i64::MAX))
    }

    /// The offset the batch after this one starts at.
    pub fn next_offset(&self) -> Offset {
        let last = self.last_offset();
        assert!(last.0 < i64::MAX, "batch offsets overflow: {:?}", self);
        Offset(last.0 + 1)
    }
}

/// Why a batch was rejected. `is_corruption` tells the protocol layer which
/// Kafka error to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length needs. `offset` is
    /// where the batch starts within the buffer given (0 except for
    /// `split_batches`).
    #[error("truncated batch at byte {offset}: need {need} bytes, have {have}")]
    Truncated { offset: usize, need: usize, have: usize },
    /// The declared total (`12 + batchLength`, possibly negative) is below
    /// `min` (61) or above the caller's `max`.
    #[error("batch length {length} outside [{min}, {max}]")]
    Length { length: i64, min: usize, max: usize },
    /// The buffer given to `validate` holds more bytes than the one batch its
    /// header declares.
    #[error("batch declares {total} bytes but the buffer holds {have}")]
    Trailing { total: usize, have: usize },
    #[error("batch magic {magic}, only magic 2 is supported")]
    Magic { magic: i8 },
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    /// `baseOffset + lastOffsetDelta + 1` does not fit an i64.
    #[error("batch offsets overflow: baseOffset {base_offset} + lastOffsetDelta {last_offset_delta}")]
    OffsetOverflow { base_offset: i64, last_offset_delta: i32 },
    /// Attribute bits 0-2 hold 5, 6 or 7, which name no codec.
    #[error("invalid compression codec {codec}")]
    Compression { codec: u8 },
    /// `records` was asked to decode a compressed batch; this module does not
    /// decompress (validation of compressed batches stops at the header).
    #[error("cannot decode records of a batch compressed with codec {codec}")]
    Compressed { codec: u8 },
    /// `recordsCount` is not positive or is not `lastOffsetDelta + 1` (then
    /// `found` is `lastOffsetDelta + 1`), or an uncompressed batch's records
    /// end after `found` records, before `declared`.
    #[error("batch declares {declared} records, found {found}")]
    RecordCount { declared: i32, found: i64 },
    /// A record of an uncompressed batch does not parse, does not fill its
    /// declared length exactly, has an out-of-sequence offsetDelta, or bytes
    /// follow the last declared record. `offset` is from the batch start.
    #[error("invalid record at byte {offset} of the batch: {reason}")]
    InvalidRecord { offset: usize, reason: &'static str },
    /// A compressed batch's records do not inflate, or inflate past the
    /// caller's bound (`for_each_record`).
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
}

impl BatchError {
    /// True for CORRUPT_MESSAGE (the bytes are damaged: length, magic, CRC,
    /// truncation, offsets), false for INVALID_RECORD (the bytes are intact
    /// but what they say is not acceptable: count, record structure, codec).
    pub fn is_corruption(&self) -> bool {
        match self {
            BatchError::Truncated { .. }
            | BatchError::Length { .. }
            | BatchError::Trailing { .. }
            | BatchError::Magic { .. }
            | BatchError::Crc { .. }
            | BatchError::OffsetOverflow { .. } => true,
            BatchError::Compression { .. }
            | BatchError::Compressed { .. }
            | BatchError::RecordCount { .. }
            | BatchError::InvalidRecord { .. }
            | BatchError::Codec(_) => false,
        }
    }
}

fn assert_max_total(batch_bytes_max_total: usize) {
    assert!(batch_bytes_max_total >= batch_bytes_min);
    assert!(batch_bytes_max_total <= batch_bytes_max);
}

/// Reads the header of the batch at the start of `bytes` and returns its
/// total length (`12 + batchLength`) if that is within
/// `[61, batch_bytes_max_total]`. Does not check the CRC, the magic, or that
/// `bytes` holds the whole batch: it finds boundaries, nothing more.
pub fn peek_total_bytes(bytes: &[u8], batch_bytes_max_total: usize) -> Result<usize, BatchError> {
    assert_max_total(batch_bytes_max_total);
    let Some(header) = BatchHeader::ref_from_prefix(bytes) else {
        return Err(BatchError::Truncated { offset: 0, need: BATCH_HEADER_BYTES, have: bytes.len() });
    };
    // i32 + 12 cannot overflow an i64.
    let total = i64::from(header.batch_length()) + LOG_OVERHEAD_BYTES as i64;
    if total < BATCH_HEADER_BYTES as i64 || total > batch_bytes_max_total as i64 {
        return Err(BatchError::Length { length: total, min: BATCH_HEADER_BYTES, max: batch_bytes_max_total });
    }
    let total_bytes = total as usize;
    assert!(total_bytes >= BATCH_HEADER_BYTES && total_bytes <= batch_bytes_max_total);
    Ok(total_bytes)
}

/// CRC-32C of `[CRC_START..]`. `bytes` must hold at least `CRC_START` bytes.
fn crc_compute(bytes: &[u8]) -> u32 {
    assert!(bytes.len() >= CRC_START);
    crc32c::crc32c(&bytes[CRC_START..])
}

/// Validates exactly one batch occupying all of `bytes`. Checks, in order:
/// the length is within `[61, batch_bytes_max_total]` and equals
/// `bytes.len()`; magic is 2; the CRC-32C matches; the codec is valid;
/// `recordsCount > 0` and equals `lastOffsetDelta + 1` (Kafka rejects empty
/// batches on produce); `baseOffset + recordsCount` fits an i64; and for an
/// uncompressed batch, every record parses within its declared length with
/// `offsetDelta` equal to its index, there are exactly `recordsCount` of them,
/// and they end exactly at the batch end.
pub fn validate(bytes: &[u8], batch_bytes_max_total: usize) -> Result<BatchInfo, BatchError> {
    let total_bytes = peek_total_bytes(bytes, batch_bytes_max_total)?;
    if total_bytes > bytes.len() {
        return Err(BatchError::Truncated { offset: 0, need: total_bytes, have: bytes.len() });
    }
    if total_bytes < bytes.len() {
        return Err(BatchError::Trailing { total: total_bytes, have: bytes.len() });
    }
    assert!(bytes.len() == total_bytes);
    let Some(header) = BatchHeader::ref_from_prefix(bytes) else {
        return Err(BatchError::Truncated { offset: 0, need: BATCH_HEADER_BYTES, have: bytes.len() });
    };

    if header.magic() != MAGIC_V2 {
        return Err(BatchError::Magic { magic: header.magic() });
    }
    let computed = crc_compute(bytes);
    if computed != header.crc() {
        return Err(BatchError::Crc { stored: header.crc(), computed });
    }
    let compression = header.compression()?;

    let declared = header.records_count();
    let last_offset_delta = header.last_offset_delta();
    let count_from_delta = i64::from(last_offset_delta) + 1;
    if declared <= 0 || i64::from(declared) != count_from_delta {
        return Err(BatchError::RecordCount { declared, found: count_from_delta });
    }
    assert!(last_offset_delta >= 0);
    let base_offset = header.base_offset().0;
    if base_offset.checked_add(i64::from(declared)).is_none() {
        return Err(BatchError::OffsetOverflow { base_offset, last_offset_delta });
    }

    if compression == Compression::None {
        walk_records(bytes, declared, |_record, _headers| {})?;
    }

    Ok(BatchInfo {
        base_offset: header.base_offset(),
        last_offset_delta,
        records_count: declared,
        total_bytes: u32::try_from(total_bytes).unwrap_or(u32::MAX),
        leader_epoch: header.leader_epoch(),
        base_timestamp: header.base_timestamp(),
        max_timestamp: header.max_timestamp(),
        producer_id: header.producer_id(),
        producer_epoch: header.producer_epoch(),
        base_sequence: header.base_sequence(),
        attributes: header.attributes(),
    })
}

/// Splits a record set (concatenated batches, as carried by a produce
/// request) into whole-batch slices, by `peek_total_bytes`. Yields an error
/// and then stops if a batch's length is out of bounds or runs past the end.
/// Slices are not validated; pass each to `validate`.
pub fn split_batches(bytes: &[u8], batch_bytes_max_total: usize) -> SplitBatches<'_> {
    assert_max_total(batch_bytes_max_total);
    SplitBatches { bytes, position: 0, batch_bytes_max_total, failed: false }
}

/// Iterator returned by `split_batches`.
pub struct SplitBatches<'a> {
    bytes: &'a [u8],
    position: usize,
    batch_bytes_max_total: usize,
    failed: bool,
}

impl<'a> Iterator for SplitBatches<'a> {
    type Item = Result<&'a [u8], BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        assert!(self.position <= self.bytes.len());
        if self.failed || self.position == self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.position..];
        let result = match peek_total_bytes(rest, self.batch_bytes_max_total) {
            Err(BatchError::Truncated { need, have, .. }) => {
                Err(BatchError::Truncated { offset: self.position, need, have })
            }
            Err(error) => Err(error),
            Ok(total_bytes) if total_bytes > rest.len() => {
                Err(BatchError::Truncated { offset: self.position, need: total_bytes, have: rest.len() })
            }
            Ok(total_bytes) => {
                self.position += total_bytes;
                Ok(&rest[..total_bytes])
            }
        };
        self.failed = result.is_err();
        Some(result)
    }
}

/// Overwrites `baseOffset` in place. Outside the CRC, so the batch stays valid.
pub fn set_base_offset(bytes: &mut [u8], offset: Offset) {
    assert!(bytes.len() >= BATCH_HEADER_BYTES);
    bytes[0..8].copy_from_slice(&offset.0.to_be_bytes());
}

/// Overwrites `partitionLeaderEpoch` in place. Outside the CRC, so the batch
/// stays valid.
pub fn set_leader_epoch(bytes: &mut [u8], epoch: LeaderEpoch) {
    assert!(bytes.len() >= BATCH_HEADER_BYTES);
    bytes[12..16].copy_from_slice(&epoch.0.to_be_bytes());
}

/// Recomputes and stores the CRC of the batch in `bytes` (all of it). For
/// tests and tools that edit batches on purpose; the broker never re-signs.
pub fn write_crc(bytes: &mut [u8]) {
    assert!(bytes.len() >= BATCH_HEADER_BYTES);
    let crc = crc_compute(bytes);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Stamps a batch with the broker's append time (a topic with
/// `message.timestamp.type=LogAppendTime`): sets the timestamp-type bit and
/// the max timestamp, then re-signs the CRC, which covers both.
pub fn set_log_append_time(bytes: &mut [u8], timestamp_ms: i64) {
    assert!(bytes.len() >= BATCH_HEADER_BYTES);
    let attributes = i16::from_be_bytes([bytes[21], bytes[22]]) | ATTRIBUTE_TIMESTAMP_LOG_APPEND;
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    bytes[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
    write_crc(bytes);
}

/// One record of an uncompressed batch, borrowed from the batch bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// Validates the batch in `bytes` (as `validate` with the storage maximum)
/// and returns its records. For tools and tests; compressed batches return
/// `BatchError::Compressed`.
pub fn records(bytes: &[u8]) -> Result<Vec<RecordView<'_>>, BatchError> {
    let info = validate(bytes, batch_bytes_max)?;
    let Some(header) = BatchHeader::ref_from_prefix(bytes) else {
        return Err(BatchError::Truncated { offset: 0, need: BATCH_HEADER_BYTES, have: bytes.len() });
    };
    let compression = header.compression()?;
    if compression != Compression::None {
        return Err(BatchError::Compressed { codec: compression as u8 });
    }
    assert!(info.records_count > 0);
    // validate walked exactly this many records out of these bytes, so the
    // capacity is bounded by the input.
    let mut views = Vec::with_capacity(info.records_count as usize);
    let mut headers = Vec::new();
    walk_records(bytes, info.records_count, |record, header| match header {
        Some(header) => headers.push(header),
        None => views.push(RecordView {
            offset_delta: record.offset_delta,
            timestamp_delta: record.timestamp_delta,
            key: record.key,
            value: record.value,
            headers: std::mem::take(&mut headers),
        }),
    })?;
    assert!(views.len() == info.records_count as usize);
    assert!(headers.is_empty());
    Ok(views)
}

/// Validates the batch in `bytes` and calls `visit` with each record, in
/// order, headers left out. A compressed batch is inflated first, at most
/// `decompressed_bytes_max` bytes (`codec::decompress`): the one way the
/// broker looks inside compressed batches, so a small batch that claims to
/// inflate to gigabytes costs at most that bound.
pub fn for_each_record(
    bytes: &[u8],
    decompressed_bytes_max: usize,
    mut visit: impl FnMut(&RecordView<'_>),
) -> Result<(), BatchError> {
    let info = validate(bytes, batch_bytes_max)?;
    let header = BatchHeader::ref_from_prefix(bytes).expect("validated");
    let compression = header.compression()?;
    let inflated;
    let records_of: &[u8] = if compression == Compression::None {
        bytes
    } else {
        // The header, then the inflated records: the layout walk_records reads.
        let mut whole = bytes[..BATCH_HEADER_BYTES].to_vec();
        crate::codec::decompress_into(compression, &bytes[BATCH_HEADER_BYTES..], decompressed_bytes_max, &mut whole)?;
        inflated = whole;
        &inflated
    };
    walk_records(records_of, info.records_count, |record, header| {
        if header.is_none() {
            visit(&RecordView {
                offset_delta: record.offset_delta,
                timestamp_delta: record.timestamp_delta,
                key: record.key,
                value: record.value,
                headers: Vec::new(),
            })
        }
    })
}

/// A record's fields other than its headers.
struct RecordFields<'a> {
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

type Header<'a> = (&'a [u8], Option<&'a [u8]>);

/// Walks the records of an uncompressed batch whose header is already
/// checked. Calls `visit(record, Some(header))` for each header of a record
/// and then `visit(record, None)` once the record is complete, so callers can
/// collect headers without the walk allocating.
fn walk_records<'a>(
    bytes: &'a [u8],
    declared: i32,
    mut visit: impl FnMut(&RecordFields<'a>, Option<Header<'a>>),
) -> Result<(), BatchError> {
    assert!(bytes.len() >= BATCH_HEADER_BYTES);
    assert!(declared > 0);
    let mut cursor = Cursor { bytes, position: BATCH_HEADER_BYTES, end: bytes.len() };
    for index in 0..declared {
        if cursor.remaining() == 0 {
            return Err(BatchError::RecordCount { declared, found: i64::from(index) });
        }
        let record_start = cursor.position;
        let length = cursor.varint("record length")?;
        if length < 0 {
            return Err(cursor.invalid(record_start, "negative record length"));
        }
        let length_bytes = length as usize;
        if length_bytes < RECORD_BODY_BYTES_MIN {
            return Err(cursor.invalid(record_start, "record length below the minimum"));
        }
        if length_bytes > cursor.remaining() {
            return Err(cursor.invalid(record_start, "record length runs past the batch end"));
        }
        let mut body = Cursor { bytes, position: cursor.position, end: cursor.position + length_bytes };
        cursor.position = body.end;

        let _attributes = body.byte("record attributes")?;
        let timestamp_delta = body.varlong("timestampDelta")?;
        let offset_delta_start = body.position;
        let offset_delta = body.varint("offsetDelta")?;
        if offset_delta != index {
            return Err(body.invalid(offset_delta_start, "offsetDelta out of sequence"));
        }
        let key = body.nullable_bytes("key")?;
        let value = body.nullable_bytes("value")?;
        let record = RecordFields { offset_delta, timestamp_delta, key, value };

        let headers_start = body.position;
        let headers_count = body.varint("header count")?;
        if headers_count < 0 {
            return Err(body.invalid(headers_start, "negative header count"));
        }
        // Checked before anything is sized by the count.
        if headers_count as usize > body.remaining() / HEADER_BYTES_MIN {
            return Err(body.invalid(headers_start, "header count exceeds the record length"));
        }
        for _ in 0..headers_count {
            let key_start = body.position;
            let Some(header_key) = body.nullable_bytes("header key")? else {
                return Err(body.invalid(key_start, "null header key"));
            };
            let header_value = body.nullable_bytes("header value")?;
            visit(&record, Some((header_key, header_value)));
        }
        if body.remaining() != 0 {
            return Err(body.invalid(body.position, "record length exceeds its fields"));
        }
        visit(&record, None);
    }
    if cursor.remaining() != 0 {
        return Err(cursor.invalid(cursor.position, "bytes follow the last declared record"));
    }
    Ok(())
}

/// Reads forward through `bytes[position..end]`. Errors carry offsets from
/// the start of `bytes` (the batch start).
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    // The walk runs once per produced record, so these are small and
    // inlined, and the common one-byte varint returns at once. Construction
    // keeps `position <= end <= bytes.len()`; every read checks against `end`.
    #[inline(always)]
    fn remaining(&self) -> usize {
        debug_assert!(self.position <= self.end && self.end <= self.bytes.len());
        self.end - self.position
    }

    #[cold]
    fn invalid(&self, offset: usize, reason: &'static str) -> BatchError {
        BatchError::InvalidRecord { offset, reason }
    }

    #[inline(always)]
    fn byte(&mut self, what: &'static str) -> Result<u8, BatchError> {
        if self.position >= self.end {
            return Err(self.invalid(self.position, truncated_reason(what)));
        }
        let byte = self.bytes[self.position];
        self.position += 1;
        Ok(byte)
    }

    #[inline(always)]
    fn take(&mut self, length_bytes: usize, what: &'static str) -> Result<&'a [u8], BatchError> {
        if length_bytes > self.remaining() {
            return Err(self.invalid(self.position, truncated_reason(what)));
        }
        let slice = &self.bytes[self.position..self.position + length_bytes];
        self.position += length_bytes;
        Ok(slice)
    }

    /// Zigzag varint of at most 5 bytes whose value fits 32 bits.
    #[inline(always)]
    fn varint(&mut self, what: &'static str) -> Result<i32, BatchError> {
        if self.position < self.end {
            let byte = self.bytes[self.position];
            if byte & 0x80 == 0 {
                self.position += 1;
                return Ok(zigzag_decode_32(u32::from(byte)));
            }
        }
        self.varint_long(what)
    }

    fn varint_long(&mut self, what: &'static str) -> Result<i32, BatchError> {
        let start = self.position;
        let mut raw: u32 = 0;
        for index in 0..VARINT_BYTES_MAX {
            let byte = self.byte(what)?;
            if index == VARINT_BYTES_MAX - 1 && byte > 0x0F {
                return Err(self.invalid(start, "varint longer than 32 bits"));
            }
            raw |= u32::from(byte & 0x7F) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(zigzag_decode_32(raw));
            }
        }
        // The fifth byte either ended the varint or was rejected above.
        Err(self.invalid(start, "varint longer than 5 bytes"))
    }

    /// Zigzag varlong of at most 10 bytes whose value fits 64 bits.
    #[inline(always)]
    fn varlong(&mut self, what: &'static str) -> Result<i64, BatchError> {
        if self.position < self.end {
            let byte = self.bytes[self.position];
            if byte & 0x80 == 0 {
                self.position += 1;
                return Ok(zigzag_decode_64(u64::from(byte)));
            }
        }
        self.varlong_long(what)
    }

    fn varlong_long(&mut self, what: &'static str) -> Result<i64, BatchError> {
        let start = self.position;
        let mut raw: u64 = 0;
        for index in 0..VARLONG_BYTES_MAX {
            let byte = self.byte(what)?;
            if index == VARLONG_BYTES_MAX - 1 && byte > 0x01 {
                return Err(self.invalid(start, "varlong longer than 64 bits"));
            }
            raw |= u64::from(byte & 0x7F) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(zigzag_decode_64(raw));
            }
        }
        // The tenth byte either ended the varlong or was rejected above.
        Err(self.invalid(start, "varlong longer than 10 bytes"))
    }

    /// A varint length then that many bytes; length -1 is null.
    #[inline(always)]
    fn nullable_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, BatchError> {
        let start = self.position;
        let length = self.varint(what)?;
        match length {
            -1 => Ok(None),
            length if length < -1 => Err(self.invalid(start, "negative length other than -1")),
            length => self.take(length as usize, what).map(Some),
        }
    }
}

fn truncated_reason(what: &'static str) -> &'static str {
    match what {
        "record length" => "record length varint runs past the batch end",
        "record attributes" => "record attributes run past the record end",
        "timestampDelta" => "timestampDelta runs past the record end",
        "offsetDelta" => "offsetDelta runs past the record end",
        "key" => "key runs past the record end",
        "value" => "value runs past the record end",
        "header count" => "header count runs past the record end",
        "header key" => "header key runs past the record end",
        "header value" => "header value runs past the record end",
        _ => "field runs past the record end",
    }
}

#[inline]
fn zigzag_decode_32(raw: u32) -> i32 {
    ((raw >> 1) ^ (raw & 1).wrapping_neg()) as i32
}

#[inline]
fn zigzag_decode_64(raw: u64) -> i64 {
    ((raw >> 1) ^ (raw & 1).wrapping_neg()) as i64
}

fn zigzag_encode_32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn zigzag_encode_64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned(out, u64::from(zigzag_encode_32(value)));
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, zigzag_encode_64(value));
}

fn put_unsigned(out: &mut Vec<u8>, mut raw: u64) {
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            let length = i32::try_from(bytes.len());
            assert!(length.is_ok(), "field of {} bytes does not fit a varint length", bytes.len());
            put_varint(out, length.unwrap_or(i32::MAX));
            out.extend_from_slice(bytes);
        }
    }
}

/// A record to encode with `BatchBuilder`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
    pub timestamp_delta: i64,
}

/// Builds valid uncompressed batches, for tests, benchmarks and tools (the
/// broker stores what producers send and never builds batches itself).
/// Base offset 0 and leader epoch -1, as producers send; producer id, epoch
/// and base sequence default to -1 (not idempotent). Panics on misuse.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    base_timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: i16,
    records_count: i32,
    timestamp_delta_max: i64,
    records: Vec<u8>,
    scratch: Vec<u8>,
}

impl BatchBuilder {
    pub fn new(base_timestamp_ms: i64) -> BatchBuilder {
        BatchBuilder {
            base_timestamp_ms,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
            records_count: 0,
            timestamp_delta_max: i64::MIN,
            records: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn producer(&mut self, id: i64, epoch: i16, base_sequence: i32) -> &mut BatchBuilder {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch transactional (its records belong to the producer's
    /// open transaction).
    pub fn transactional(&mut self) -> &mut BatchBuilder {
        self.attributes |= ATTRIBUTE_TRANSACTIONAL;
        self
    }

    pub fn push(&mut self, record: &Record<'_>) -> &mut BatchBuilder {
        assert!(self.records_count < i32::MAX);
        let body = &mut self.scratch;
        body.clear();
        body.push(0); // Record attributes: unused in v2.
        put_varlong(body, record.timestamp_delta);
        put_varint(body, self.records_count);
        put_nullable(body, record.key);
        put_nullable(body, record.value);
        let headers_count = i32::try_from(record.headers.len());
        assert!(headers_count.is_ok());
        put_varint(body, headers_count.unwrap_or(i32::MAX));
        for (key, value) in record.headers {
            put_nullable(body, Some(key));
            put_nullable(body, *value);
        }
        assert!(body.len() >= RECORD_BODY_BYTES_MIN);
        let body_length = i32::try_from(body.len());
        assert!(body_length.is_ok());
        put_varint(&mut self.records, body_length.unwrap_or(i32::MAX));
        self.records.extend_from_slice(body);
        self.records_count += 1;
        self.timestamp_delta_max = self.timestamp_delta_max.max(record.timestamp_delta);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        assert!(self.records_count > 0, "a batch needs at least one record");
        let total_bytes = BATCH_HEADER_BYTES + self.records.len();
        assert!(total_bytes <= batch_bytes_max, "batch of {total_bytes} bytes is too large");
        let max_timestamp = self.base_timestamp_ms.checked_add(self.timestamp_delta_max);
        assert!(max_timestamp.is_some());
        let header = BatchHeader {
            base_offset: I64::new(0),
            batch_length: I32::new((total_bytes - LOG_OVERHEAD_BYTES) as i32),
            partition_leader_epoch: I32::new(-1),
            magic: MAGIC_V2 as u8,
            crc: U32::new(0),
            attributes: I16::new(self.attributes),
            last_offset_delta: I32::new(self.records_count - 1),
            base_timestamp: I64::new(self.base_timestamp_ms),
            max_timestamp: I64::new(max_timestamp.unwrap_or(i64::MAX)),
            producer_id: I64::new(self.producer_id),
            producer_epoch: I16::new(self.producer_epoch),
            base_sequence: I32::new(self.base_sequence),
            records_count: I32::new(self.records_count),
        };
        let mut bytes = Vec::with_capacity(total_bytes);
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&self.records);
        assert!(bytes.len() == total_bytes);
        write_crc(&mut bytes);
        bytes
    }
}

/// Control record types (Kafka's `ControlRecordType`).
pub const CONTROL_ABORT: i16 = 0;
pub const CONTROL_COMMIT: i16 = 1;

/// A transaction marker as Kafka writes it: a transactional control batch
/// of one record, key (version 0, type), value (version 0, coordinator
/// epoch), sequence -1.
pub fn build_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    now_ms: i64,
) -> Vec<u8> {
    let kind = if commit { CONTROL_COMMIT } else { CONTROL_ABORT };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut builder = BatchBuilder::new(now_ms);
    builder.producer(producer_id, producer_epoch, -1);
    builder.attributes = ATTRIBUTE_TRANSACTIONAL | ATTRIBUTE_CONTROL;
    builder.push(&Record { key: Some(&key), value: Some(&value), headers: &[], timestamp_delta: 0 });
    builder.build()
}

/// The control record type of a control batch (COMMIT or ABORT), read from
/// its first record's key; None when the batch is not a readable control
/// batch.
pub fn control_type(bytes: &[u8]) -> Option<i16> {
    let header = BatchHeader::ref_from_prefix(bytes)?;
    if !header.is_control() {
        return None;
    }
    let records = records(bytes).ok()?;
    let key = records.first()?.key?;
    if key.len() < 4 {
        return None;
    }
    Some(i16::from_be_bytes([key[2], key[3]]))
}

/// Fills `out` from a xorshift stream seeded by `seed`: filler that does not
/// compress to nothing, for tests, benchmarks and the load generator.
pub fn fill_pseudo_random(out: &mut [u8], seed: u64) {
    let mut state = seed | 1;
    for byte in out.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
}

/// A batch of `count` records, no key, each value `value_bytes` long and
/// filled from a xorshift stream seeded by `seed` and the record index, with
/// timestampDelta equal to the index. For tests, benchmarks and tools.
pub fn build_test_batch(count: u32, value_bytes: usize, seed: u64, base_timestamp_ms: i64) -> Vec<u8> {
    assert!(count > 0);
    let mut builder = BatchBuilder::new(base_timestamp_ms);
    let mut value = vec![0u8; value_bytes];
    for index in 0..count {
        fill_pseudo_random(&mut value, seed ^ u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        builder.push(&Record { key: None, value: Some(&value), headers: &[], timestamp_delta: i64::from(index) });
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny deterministic RNG so tests need no extra crates.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, bound: usize) -> usize {
            assert!(bound > 0);
            (self.next() % bound as u64) as usize
        }
    }

    const MAX: usize = batch_bytes_max;

    fn sample_batch() -> Vec<u8> {
        let headers_a: &[(&[u8], Option<&[u8]>)] = &[(b"h1", Some(b"v1")), (b"h2", None)];
        let headers_b: &[(&[u8], Option<&[u8]>)] = &[(b"", Some(b""))];
        BatchBuilder::new(1_700_000_000_000)
            .producer(42, 3, 100)
            .push(&Record { key: Some(b"k0"), value: Some(b"value-0"), headers: headers_a, timestamp_delta: 0 })
            .push(&Record { key: None, value: None, headers: &[], timestamp_delta: 7 })
            .push(&Record { key: Some(b""), value: Some(b""), headers: headers_b, timestamp_delta: -3 })
            .build()
    }

    fn set_i32(bytes: &mut [u8], at: usize, value: i32) {
        bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }

    fn set_i16(bytes: &mut [u8], at: usize, value: i16) {
        bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    #[test]
    fn round_trip_header_fields() {
        let bytes = sample_batch();
        let info = validate(&bytes, MAX).unwrap();
        assert_eq!(info.base_offset, Offset(0));
        assert_eq!(info.leader_epoch, LeaderEpoch(-1));
        assert_eq!(info.records_count, 3);
        assert_eq!(info.last_offset_delta, 2);
        assert_eq!(info.total_bytes as usize, bytes.len());
        assert_eq!(info.base_timestamp, 1_700_000_000_000);
        assert_eq!(info.max_timestamp, 1_700_000_000_007);
        assert_eq!((info.producer_id, info.producer_epoch, info.base_sequence), (42, 3, 100));
        assert_eq!(info.attributes, 0);
        assert_eq!(info.last_offset(), Offset(2));
        assert_eq!(info.next_offset(), Offset(3));

        let header = BatchHeader::ref_from_prefix(&bytes).unwrap();
        assert_eq!(header.magic(), 2);
        assert_eq!(header.batch_length() as usize + LOG_OVERHEAD_BYTES, bytes.len());
        assert_eq!(header.compression(), Ok(Compression::None));
        assert!(!header.is_transactional() && !header.is_control() && !header.timestamp_type_log_append());
        assert_eq!(peek_total_bytes(&bytes, MAX), Ok(bytes.len()));
    }

    #[test]
    fn round_trip_records() {
        let bytes = sample_batch();
        let records = records(&bytes).unwrap();
        let h1: (&[u8], Option<&[u8]>) = (b"h1", Some(b"v1"));
        let h2: (&[u8], Option<&[u8]>) = (b"h2", None);
        let h3: (&[u8], Option<&[u8]>) = (b"", Some(b""));
        let expected = vec![
            RecordView {
                offset_delta: 0,
                timestamp_delta: 0,
                key: Some(b"k0"),
                value: Some(b"value-0"),
                headers: vec![h1, h2],
            },
            RecordView { offset_delta: 1, timestamp_delta: 7, key: None, value: None, headers: vec![] },
            RecordView { offset_delta: 2, timestamp_delta: -3, key: Some(b""), value: Some(b""), headers: vec![h3] },
        ];
        assert_eq!(records, expected);
    }

    #[test]
    fn test_batches_validate_across_sizes() {
        // (count, value_bytes): covers 1- and 2-byte length varints and large values.
        for (count, value_bytes) in [(1, 0), (1, 1), (2, 57), (10, 63), (10, 64), (100, 200), (3, 70_000)] {
            let bytes = build_test_batch(count, value_bytes, 7, 1_000);
            let info = validate(&bytes, MAX).unwrap();
            assert_eq!(info.records_count as u32, count);
            assert_eq!(info.max_timestamp, 1_000 + i64::from(count) - 1);
            let views = records(&bytes).unwrap();
            assert_eq!(views.len(), count as usize);
            for (index, view) in views.iter().enumerate() {
                assert_eq!(view.offset_delta as usize, index);
                assert_eq!(view.value.map(<[u8]>::len), Some(value_bytes));
                assert_eq!(view.key, None);
            }
        }
        // Deterministic in the seed, different across seeds.
        assert_eq!(build_test_batch(4, 32, 1, 0), build_test_batch(4, 32, 1, 0));
        assert_ne!(build_test_batch(4, 32, 1, 0), build_test_batch(4, 32, 2, 0));
    }

    #[test]
    fn varints_round_trip_at_edges() {
        for value in [0, 1, -1, 63, -64, 64, -65, 8191, -8192, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert!(out.len() <= VARINT_BYTES_MAX);
            let mut cursor = Cursor { bytes: &out, position: 0, end: out.len() };
            assert_eq!(cursor.varint("test"), Ok(value));
            assert_eq!(cursor.remaining(), 0);
        }
        for value in [0, 1, -1, i64::from(i32::MAX) + 1, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert!(out.len() <= VARLONG_BYTES_MAX);
            let mut cursor = Cursor { bytes: &out, position: 0, end: out.len() };
            assert_eq!(cursor.varlong("test"), Ok(value));
        }
        // Too long or overflowing encodings are rejected, not wrapped.
        for encoded in [&[0xFF, 0xFF, 0xFF, 0xFF, 0x1F][..], &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &[0x80]] {
            let mut cursor = Cursor { bytes: encoded, position: 0, end: encoded.len() };
            assert!(matches!(cursor.varint("test"), Err(BatchError::InvalidRecord { .. })));
        }
        let long = [0xFFu8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02];
        let mut cursor = Cursor { bytes: &long, position: 0, end: long.len() };
        assert!(matches!(cursor.varlong("test"), Err(BatchError::InvalidRecord { .. })));
    }

    /// How a test edits a valid batch, and whether it re-signs the CRC after.
    struct Corruption {
        name: &'static str,
        edit: fn(&mut Vec<u8>),
        fix_crc: bool,
        check: fn(&BatchError) -> bool,
    }

    #[test]
    fn corruptions_are_rejected() {
        let table = [
            Corruption {
                name: "flip a byte in the records",
                edit: |b| b[70] ^= 0x01,
                fix_crc: false,
                check: |e| matches!(e, BatchError::Crc { .. }),
            },
            Corruption {
                name: "flip a byte in attributes",
                edit: |b| b[CRC_START] ^= 0x40,
                fix_crc: false,
                check: |e| matches!(e, BatchError::Crc { .. }),
            },
            Corruption {
                name: "flip the stored CRC",
                edit: |b| b[18] ^= 0xFF,
                fix_crc: false,
                check: |e| matches!(e, BatchError::Crc { .. }),
            },
            Corruption {
                name: "magic 1",
                edit: |b| b[16] = 1,
                fix_crc: false,
                check: |e| *e == BatchError::Magic { magic: 1 },
            },
            Corruption {
                name: "magic -1",
                edit: |b| b[16] = 0xFF,
                fix_crc: false,
                check: |e| *e == BatchError::Magic { magic: -1 },
            },
            Corruption {
                name: "batchLength below the header",
                edit: |b| set_i32(b, 8, 48),
                fix_crc: false,
                check: |e| matches!(e, BatchError::Length { length: 60, min: 61, .. }),
            },
            Corruption {
                name: "batchLength negative",
                edit: |b| set_i32(b, 8, i32::MIN),
                fix_crc: false,
                check: |e| matches!(e, BatchError::Length { .. }),
            },
            Corruption {
                name: "batchLength above the maximum",
                edit: |b| set_i32(b, 8, i32::MAX),
                fix_crc: false,
                check: |e| matches!(e, BatchError::Length { .. }),
            },
            Corruption {
                name: "batchLength past the buffer",
                edit: |b| {
                    let length = b.len() as i32 - 12 + 1;
                    set_i32(b, 8, length)
                },
                fix_crc: false,
                check: |e| matches!(e, BatchError::Truncated { .. }),
            },
            Corruption {
                name: "batchLength short of the buffer",
                edit: |b| {
                    let length = b.len() as i32 - 12 - 1;
                    set_i32(b, 8, length)
                },
                fix_crc: false,
                check: |e| matches!(e, BatchError::Trailing { .. }),
            },
            Corruption {
                name: "buffer cut short",
                edit: |b| b.truncate(b.len() - 1),
                fix_crc: false,
                check: |e| matches!(e, BatchError::Truncated { .. }),
            },
            Corruption {
                name: "buffer shorter than the header",
                edit: |b| b.truncate(60),
                fix_crc: false,
                check: |e| *e == BatchError::Truncated { offset: 0, need: 61, have: 60 },
            },
            Corruption {
                name: "recordsCount above lastOffsetDelta + 1",
                edit: |b| set_i32(b, 57, 4),
                fix_crc: true,
                check: |e| *e == BatchError::RecordCount { declared: 4, found: 3 },
            },
            Corruption {
                name: "recordsCount and lastOffsetDelta both one too many",
                edit: |b| {
                    set_i32(b, 57, 4);
                    set_i32(b, 23, 3)
                },
                fix_crc: true,
                check: |e| *e == BatchError::RecordCount { declared: 4, found: 3 },
            },
            Corruption {
                name: "recordsCount and lastOffsetDelta both one too few",
                edit: |b| {
                    set_i32(b, 57, 2);
                    set_i32(b, 23, 1)
                },
                fix_crc: true,
                check: |e| matches!(e, BatchError::InvalidRecord { .. }),
            },
            Corruption {
                name: "zero records",
                edit: |b| {
                    set_i32(b, 57, 0);
                    set_i32(b, 23, -1)
                },
                fix_crc: true,
                check: |e| matches!(e, BatchError::RecordCount { declared: 0, .. }),
            },
            Corruption {
                name: "negative recordsCount",
                edit: |b| set_i32(b, 57, -5),
                fix_crc: true,
                check: |e| matches!(e, BatchError::RecordCount { declared: -5, .. }),
            },
            Corruption {
                name: "compression codec 5",
                edit: |b| set_i16(b, 21, 5),
                fix_crc: true,
                check: |e| *e == BatchError::Compression { codec: 5 },
            },
            Corruption {
                name: "compression codec 7 with other bits",
                edit: |b| set_i16(b, 21, 0x17),
                fix_crc: true,
                check: |e| *e == BatchError::Compression { codec: 7 },
            },
            Corruption {
                name: "trailing garbage after the last record",
                edit: |b| {
                    b.extend_from_slice(&[0x00, 0x01]);
                    let length = b.len() as i32 - 12;
                    set_i32(b, 8, length)
                },
                fix_crc: true,
                check: |e| matches!(e, BatchError::InvalidRecord { .. }),
            },
            Corruption {
                name: "offset overflow",
                edit: |b| set_base_offset(b, Offset(i64::MAX - 1)),
                fix_crc: false,
                check: |e| matches!(e, BatchError::OffsetOverflow { .. }),
            },
            Corruption {
                name: "first record length too large",
                edit: |b| b[61] = 0x7E, // zigzag 63, longer than the record.
                fix_crc: true,
                check: |e| matches!(e, BatchError::InvalidRecord { offset: 61, .. }),
            },
            Corruption {
                name: "first record length negative",
                edit: |b| b[61] = 0x01, // zigzag -1.
                fix_crc: true,
                check: |e| matches!(e, BatchError::InvalidRecord { offset: 61, .. }),
            },
            Corruption {
                name: "first record offsetDelta 1",
                edit: |b| b[64] = 0x02, // length, attributes, timestampDelta, then offsetDelta.
                fix_crc: true,
                check: |e| matches!(e, BatchError::InvalidRecord { offset: 64, .. }),
            },
        ];
        for corruption in &table {
            let mut bytes = sample_batch();
            (corruption.edit)(&mut bytes);
            if corruption.fix_crc {
                write_crc(&mut bytes);
            }
            let result = validate(&bytes, MAX);
            let Err(error) = &result else {
                panic!("{}: accepted: {:?}", corruption.name, result);
            };
            assert!((corruption.check)(error), "{}: wrong error {:?}", corruption.name, error);
            assert_eq!(records(&bytes).err().as_ref(), Some(error), "{}", corruption.name);
        }
    }

    #[test]
    fn sample_layout_matches_the_offsets_the_table_edits() {
        // The corruption table pokes at bytes 61 and 64; pin the layout it assumes.
        let bytes = sample_batch();
        assert_eq!(bytes[62], 0x00); // Record attributes.
        assert_eq!(bytes[63], 0x00); // timestampDelta 0.
        assert_eq!(bytes[64], 0x00); // offsetDelta 0.
    }

    #[test]
    fn length_above_the_callers_max() {
        let bytes = build_test_batch(2, 100, 1, 0);
        let total = bytes.len();
        assert_eq!(validate(&bytes, total).map(|info| info.total_bytes as usize), Ok(total));
        assert_eq!(
            validate(&bytes, total - 1),
            Err(BatchError::Length { length: total as i64, min: 61, max: total - 1 })
        );
        assert!(validate(&bytes, total - 1).unwrap_err().is_corruption());
    }

    #[test]
    fn compressed_batches_skip_the_record_walk() {
        for codec in 1..=4i16 {
            let mut bytes = sample_batch();
            // Replace the records with opaque bytes, as a compressed payload is.
            bytes.truncate(BATCH_HEADER_BYTES);
            bytes.extend_from_slice(&[0xAB; 17]);
            set_i32(&mut bytes, 8, (BATCH_HEADER_BYTES + 17 - 12) as i32); // 66 total.
            set_i16(&mut bytes, 21, codec);
            write_crc(&mut bytes);
            let info = validate(&bytes, MAX).unwrap();
            assert_eq!(info.attributes, codec);
            let header = BatchHeader::ref_from_prefix(&bytes).unwrap();
            assert_eq!(header.compression().map(|c| c as u8), Ok(codec as u8));
            assert_eq!(records(&bytes), Err(BatchError::Compressed { codec: codec as u8 }));
        }
    }

    #[test]
    fn attribute_flags() {
        let mut bytes = sample_batch();
        for (attributes, transactional, control, log_append) in
            [(0x08, false, false, true), (0x10, true, false, false), (0x30, true, true, false)]
        {
            set_i16(&mut bytes, 21, attributes);
            write_crc(&mut bytes);
            assert!(validate(&bytes, MAX).is_ok());
            let header = BatchHeader::ref_from_prefix(&bytes).unwrap();
            assert_eq!(header.is_transactional(), transactional);
            assert_eq!(header.is_control(), control);
            assert_eq!(header.timestamp_type_log_append(), log_append);
        }
    }

    #[test]
    fn error_classes() {
        let corrupt = [
            BatchError::Truncated { offset: 0, need: 61, have: 0 },
            BatchError::Length { length: 0, min: 61, max: 100 },
            BatchError::Trailing { total: 61, have: 62 },
            BatchError::Magic { magic: 1 },
            BatchError::Crc { stored: 1, computed: 2 },
            BatchError::OffsetOverflow { base_offset: i64::MAX, last_offset_delta: 0 },
        ];
        let invalid = [
            BatchError::Compression { codec: 5 },
            BatchError::Compressed { codec: 1 },
            BatchError::RecordCount { declared: 1, found: 0 },
            BatchError::InvalidRecord { offset: 61, reason: "x" },
        ];
        assert!(corrupt.iter().all(BatchError::is_corruption));
        assert!(!invalid.iter().any(BatchError::is_corruption));
    }

    #[test]
    fn stamping_offset_and_epoch_keeps_the_crc() {
        let mut bytes = sample_batch();
        let crc_before = BatchHeader::ref_from_prefix(&bytes).unwrap().crc();
        for (offset, epoch) in [(0, 0), (1_000_000, 7), (i64::MAX - 3, i32::MAX), (-1, -1)] {
            set_base_offset(&mut bytes, Offset(offset));
            set_leader_epoch(&mut bytes, LeaderEpoch(epoch));
            let info = validate(&bytes, MAX).unwrap();
            assert_eq!(info.base_offset, Offset(offset));
            assert_eq!(info.leader_epoch, LeaderEpoch(epoch));
            assert_eq!(BatchHeader::ref_from_prefix(&bytes).unwrap().crc(), crc_before);
        }
    }

    #[test]
    fn split_three_batches() {
        let batches = [build_test_batch(1, 10, 1, 0), sample_batch(), build_test_batch(5, 300, 2, 0)];
        let set: Vec<u8> = batches.concat();
        let slices: Vec<&[u8]> = split_batches(&set, MAX).collect::<Result<_, _>>().unwrap();
        assert_eq!(slices.len(), 3);
        for (slice, batch) in slices.iter().zip(&batches) {
            assert_eq!(*slice, &batch[..]);
            assert!(validate(slice, MAX).is_ok());
        }
        assert_eq!(split_batches(&[], MAX).count(), 0);
    }

    #[test]
    fn split_truncated_tail() {
        let first = sample_batch();
        let second = build_test_batch(3, 50, 9, 0);
        let mut set = [first.clone(), second.clone()].concat();
        // Tail cut inside the second batch's records, then inside its header.
        for cut in [1, second.len() - 61 + 1] {
            set.truncate(first.len() + second.len() - cut);
            let have = set.len() - first.len();
            let items: Vec<_> = split_batches(&set, MAX).collect();
            assert_eq!(items.len(), 2, "cut {cut}");
            assert_eq!(items[0], Ok(&first[..]));
            let need = if have < 61 { 61 } else { second.len() };
            assert_eq!(items[1], Err(BatchError::Truncated { offset: first.len(), need, have }));
            set = [first.clone(), second.clone()].concat();
        }
        // An error stops the iteration even if valid batches follow.
        let mut bad = sample_batch();
        set_i32(&mut bad, 8, 10);
        let set = [first.clone(), bad, first.clone()].concat();
        let items: Vec<_> = split_batches(&set, MAX).collect();
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1], Err(BatchError::Length { length: 22, .. })));
    }

    #[test]
    fn header_count_larger_than_the_record_is_rejected_before_allocating() {
        // One record, no key/value, header count i32::MAX: must fail, not allocate.
        let mut body = vec![0u8]; // attributes
        put_varlong(&mut body, 0);
        put_varint(&mut body, 0);
        put_varint(&mut body, -1);
        put_varint(&mut body, -1);
        put_varint(&mut body, i32::MAX);
        let mut bytes = sample_batch();
        bytes.truncate(BATCH_HEADER_BYTES);
        put_varint(&mut bytes, body.len() as i32);
        bytes.extend_from_slice(&body);
        let length = (bytes.len() - 12) as i32;
        set_i32(&mut bytes, 8, length);
        set_i32(&mut bytes, 23, 0);
        set_i32(&mut bytes, 57, 1);
        write_crc(&mut bytes);
        assert!(matches!(validate(&bytes, MAX), Err(BatchError::InvalidRecord { .. })));
        assert!(matches!(records(&bytes), Err(BatchError::InvalidRecord { .. })));
    }

    /// Random mutations of valid batches never panic, and anything accepted
    /// is self-consistent. Half the cases re-sign the CRC so that mutations
    /// reach the count and record checks instead of stopping at the CRC.
    #[test]
    fn random_mutations_never_panic() {
        let originals = [sample_batch(), build_test_batch(4, 20, 3, 5), build_test_batch(1, 0, 0, 0)];
        let mut rng = XorShift(0x5EED_1234_ABCD_0001);
        let mut accepted = 0;
        for case in 0..2000 {
            let mut bytes = originals[case % originals.len()].clone();
            let mutations = 1 + rng.below(4);
            for _ in 0..mutations {
                if bytes.is_empty() {
                    break;
                }
                match rng.below(6) {
                    0 => {
                        let at = rng.below(bytes.len());
                        bytes[at] ^= 1 << rng.below(8);
                    }
                    1 => {
                        let at = rng.below(bytes.len());
                        bytes[at] = rng.next() as u8;
                    }
                    2 => bytes.truncate(rng.below(bytes.len() + 1)),
                    3 => bytes.push(rng.next() as u8),
                    4 if bytes.len() > BATCH_HEADER_BYTES => {
                        let at = BATCH_HEADER_BYTES + rng.below(bytes.len() - BATCH_HEADER_BYTES);
                        bytes[at] = [0x00, 0x01, 0x7F, 0x80, 0xFF][rng.below(5)];
                    }
                    _ => {
                        if bytes.len() >= 12 {
                            let length = bytes.len() as i32 - 12;
                            set_i32(&mut bytes, 8, length);
                        }
                    }
                }
            }
            if case % 2 == 0 && bytes.len() >= BATCH_HEADER_BYTES {
                write_crc(&mut bytes);
            }
            let max = if rng.below(4) == 0 { batch_bytes_min + rng.below(200) } else { MAX };
            let _ = peek_total_bytes(&bytes, max);
            let _ = split_batches(&bytes, max).count();
            match validate(&bytes, max) {
                Err(_) => assert!(records(&bytes).is_err() || max < MAX),
                Ok(info) => {
                    accepted += 1;
                    let header = BatchHeader::ref_from_prefix(&bytes).unwrap();
                    assert_eq!(crc32c::crc32c(&bytes[CRC_START..]), header.crc());
                    assert_eq!(info.total_bytes as usize, bytes.len());
                    assert!(info.records_count > 0);
                    assert!(info.next_offset() > info.base_offset);
                    match header.compression().unwrap() {
                        Compression::None => {
                            let views = records(&bytes).unwrap();
                            assert_eq!(views.len(), info.records_count as usize);
                        }
                        _ => assert!(records(&bytes).is_err()),
                    }
                }
            }
        }
        // The loop must exercise acceptance too, not only rejection.
        assert!(accepted >= 100, "accepted {accepted}");
    }
}
