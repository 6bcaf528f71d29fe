//! Sparse per-segment indexes: offset → position, and timestamp → offset.
//!
//! A segment is a file of whole record batches, named by its base offset. To
//! read from an offset without scanning the segment from its start, each
//! segment carries two small sparse indexes, in Kafka's on-disk formats so
//! that Kafka's tools can read them:
//!
//! - the offset index maps a batch's first offset (relative to the segment's
//!   base offset, as `u32`) to the batch's byte position (`u32`). An entry is
//!   added once at least `interval_bytes` of log have been written since the
//!   last one (Kafka's `index.interval.bytes`), so a lookup lands at most
//!   about one interval before the batch it wants.
//! - the time index maps a timestamp to an offset, so that ListOffsets by
//!   timestamp and time-based retention do not read every batch.
//!
//! Both are one generic `SparseIndex` (a bounded, ordered run of entries
//! with Kafka's encoding and a validating decoder) plus their own append
//! policy. Both are pure in-memory structures with a byte encoding. The log writes
//! and reads the files; this module never does I/O. Anything decoded is
//! validated against what the log knows (the segment's base offset and size),
//! and any inconsistency is an `IndexError`: the index is stale or corrupt and
//! the log rebuilds it by scanning the segment, which is always possible
//! because the indexes are redundant.
//!
//! # The time index guarantee
//!
//! Batch timestamps are not monotonic: with CreateTime a producer may send a
//! batch older than the one before it. A time index that simply mapped each
//! batch's timestamp to its offset would send a lookup past an earlier batch
//! with a larger timestamp. Instead, entries follow the running maximum:
//!
//! > For every entry `(timestamp_ms, offset)`, the batch whose last offset is
//! > `offset` is the first batch of the segment whose max timestamp equals
//! > `timestamp_ms`, and every batch before it has a max timestamp strictly
//! > smaller than `timestamp_ms`.
//!
//! `lookup(T)` returns the offset of the entry with the largest timestamp
//! `<= T`, or the base offset when there is none. Every batch before that
//! entry's batch has a max timestamp `< timestamp_ms <= T`, so the first batch
//! with a max timestamp `>= T` is never before it: a forward scan that starts
//! at the batch containing the returned offset (the first batch whose last
//! offset is `>=` it) finds it.
//!
//! An entry is created when the running maximum grows, at most one per
//! `interval_bytes` of log (the first entry immediately). Between creations a
//! growing maximum overwrites the newest entry instead, which keeps the
//! guarantee (an entry may be dropped, never made wrong; fewer entries only
//! make a lookup start earlier) and keeps the newest entry equal to the
//! segment's max timestamp, so `max_timestamp()` survives an encode/decode.

use thiserror::Error;
use zerocopy::byteorder::big_endian::{I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use ringstream_core::limits;
use ringstream_core::types::Offset;

/// Why a decoded index cannot be used. Each one means "stale or corrupt:
/// rebuild the index from the segment".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IndexError {
    #[error("index is {len} bytes, not a multiple of the {entry_bytes}-byte entry")]
    Length { len: usize, entry_bytes: usize },
    #[error("index has {count} entries, more than the {max} a segment can need")]
    TooManyEntries { count: usize, max: usize },
    #[error("index entry {entry} does not increase on the entry before it")]
    NotIncreasing { entry: usize },
    #[error("index entry {entry} points at position {position}, beyond the segment's {segment_bytes} bytes")]
    PositionBeyondSegment { entry: usize, position: u32, segment_bytes: u64 },
    #[error("index entry {entry} overflows the offset range when added to the base offset")]
    OffsetOverflow { entry: usize },
    #[error("time index entry {entry} has negative timestamp {timestamp_ms}")]
    TimestampNegative { entry: usize, timestamp_ms: i64 },
    #[error("segment base offset {base_offset} is negative")]
    BaseOffsetNegative { base_offset: i64 },
}

/// `offset - base_offset` when it fits the indexes' `u32` relative offsets.
/// The log rolls a segment before an offset stops fitting.
pub fn relative_offset(base_offset: Offset, offset: Offset) -> Option<u32> {
    let delta = offset.0.checked_sub(base_offset.0)?;
    u32::try_from(delta).ok()
}

/// `base_offset + relative_offset`, for entries whose sum is known to fit
/// (checked when they were added or decoded).
fn absolute_offset(base_offset: Offset, relative_offset: u32) -> Offset {
    match base_offset.0.checked_add(i64::from(relative_offset)) {
        Some(offset) => Offset(offset),
        None => panic!("index entry {relative_offset} overflows base offset {base_offset}"),
    }
}

/// The offset after `offset`, or `None` at the end of the offset range.
fn offset_after(offset: Offset) -> Option<Offset> {
    offset.0.checked_add(1).map(Offset)
}

// ---------------------------------------------------------------------------
// The sparse index both kinds share
// ---------------------------------------------------------------------------

/// One entry kind of a sparse per-segment index: where it points in the
/// segment's offsets, its on-disk form, and what a decoded entry must
/// satisfy after the one before it.
pub trait IndexEntry: Copy + std::fmt::Debug + PartialEq {
    type Disk: FromBytes + IntoBytes + KnownLayout + Immutable + Unaligned;
    /// Bytes of one entry on disk.
    const BYTES: usize;
    fn relative_offset(&self) -> u32;
    fn to_disk(&self) -> Self::Disk;
    fn from_disk(disk: &Self::Disk) -> Self;
    /// Checks a decoded entry (`index`-th) against the one before it and the
    /// segment's size.
    fn check_decoded(&self, index: usize, before: Option<&Self>, segment_bytes: u64) -> Result<(), IndexError>;
}

/// A bounded, ordered run of entries for one segment, with Kafka's byte
/// encoding and a decoder that validates every entry. The offset and time
/// indexes are this plus their own append policy.
#[derive(Clone, Debug)]
pub struct SparseIndex<E> {
    base_offset: Offset,
    entries: Vec<E>,
    entries_max: usize,
}

impl<E: IndexEntry> SparseIndex<E> {
    fn new(base_offset: Offset, entries_max: usize) -> SparseIndex<E> {
        assert!(base_offset.0 >= 0, "negative segment base offset {base_offset}");
        assert!(entries_max >= 1);
        assert!(entries_max <= limits::index_entries_max);
        SparseIndex { base_offset, entries: Vec::new(), entries_max }
    }

    pub fn base_offset(&self) -> Offset {
        self.base_offset
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    fn is_full(&self) -> bool {
        self.entries.len() >= self.entries_max
    }

    fn push(&mut self, entry: E) {
        assert!(!self.is_full(), "sparse index over its {} entries", self.entries_max);
        if let Some(last) = self.entries.last() {
            assert!(entry.relative_offset() >= last.relative_offset());
        }
        self.entries.push(entry);
    }

    /// The newest entry of those for which `before` holds; `before` must
    /// hold for a prefix of the entries (they are ordered by it).
    fn newest_where(&self, before: impl Fn(&E) -> bool) -> Option<&E> {
        let count = self.entries.partition_point(before);
        count.checked_sub(1).map(|index| &self.entries[index])
    }

    /// Keeps the prefix of entries for which `keep` holds; whether any went.
    fn keep_where(&mut self, keep: impl Fn(&E) -> bool) -> bool {
        let kept = self.entries.partition_point(keep);
        let dropped = kept < self.entries.len();
        self.entries.truncate(kept);
        dropped
    }

    fn absolute(&self, entry: &E) -> Offset {
        absolute_offset(self.base_offset, entry.relative_offset())
    }

    /// The offset after the newest entry's, or the base offset when empty.
    fn after_newest(&self) -> Offset {
        match self.entries.last() {
            None => self.base_offset,
            Some(last) => match offset_after(self.absolute(last)) {
                Some(offset) => offset,
                None => panic!("index entry at the end of the offset range"),
            },
        }
    }

    /// Kafka's on-disk format: the entries' disk forms back to back.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.entries.len() * E::BYTES);
        for entry in &self.entries {
            bytes.extend_from_slice(entry.to_disk().as_bytes());
        }
        assert_eq!(bytes.len(), self.entries.len() * E::BYTES);
        bytes
    }

    /// Decodes and validates an index of a segment `segment_bytes` long: a
    /// non-negative base offset, a whole number of at most
    /// `index_entries_max` entries, each within the offset range and valid
    /// after the one before it.
    fn decode(base_offset: Offset, bytes: &[u8], segment_bytes: u64) -> Result<SparseIndex<E>, IndexError> {
        if base_offset.0 < 0 {
            return Err(IndexError::BaseOffsetNegative { base_offset: base_offset.0 });
        }
        let Ok(disk_entries) = <[E::Disk]>::ref_from_bytes(bytes) else {
            return Err(IndexError::Length { len: bytes.len(), entry_bytes: E::BYTES });
        };
        if disk_entries.len() > limits::index_entries_max {
            return Err(IndexError::TooManyEntries { count: disk_entries.len(), max: limits::index_entries_max });
        }
        let mut entries: Vec<E> = Vec::with_capacity(disk_entries.len());
        for (index, disk) in disk_entries.iter().enumerate() {
            let entry = E::from_disk(disk);
            let fits = base_offset
                .0
                .checked_add(i64::from(entry.relative_offset()))
                .and_then(|offset| offset.checked_add(1))
                .is_some();
            if !fits {
                return Err(IndexError::OffsetOverflow { entry: index });
            }
            entry.check_decoded(index, entries.last(), segment_bytes)?;
            entries.push(entry);
        }
        Ok(SparseIndex { base_offset, entries, entries_max: limits::index_entries_max })
    }
}

// ---------------------------------------------------------------------------
// Offset index
// ---------------------------------------------------------------------------

/// One offset index entry: the batch whose first offset is
/// `base_offset + relative_offset` starts at byte `position` of the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetIndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Kafka's on-disk offset index entry.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct OffsetIndexEntryDisk {
    relative_offset: U32,
    position: U32,
}

/// Bytes of one offset index entry on disk.
pub const offset_index_entry_bytes: usize = 8;
const _: () = assert!(std::mem::size_of::<OffsetIndexEntryDisk>() == offset_index_entry_bytes);

impl IndexEntry for OffsetIndexEntry {
    type Disk = OffsetIndexEntryDisk;
    const BYTES: usize = offset_index_entry_bytes;

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }

    fn to_disk(&self) -> OffsetIndexEntryDisk {
        OffsetIndexEntryDisk { relative_offset: U32::new(self.relative_offset), position: U32::new(self.position) }
    }

    fn from_disk(disk: &OffsetIndexEntryDisk) -> OffsetIndexEntry {
        OffsetIndexEntry { relative_offset: disk.relative_offset.get(), position: disk.position.get() }
    }

    fn check_decoded(&self, index: usize, before: Option<&Self>, segment_bytes: u64) -> Result<(), IndexError> {
        if let Some(last) = before {
            if self.relative_offset <= last.relative_offset || self.position <= last.position {
                return Err(IndexError::NotIncreasing { entry: index });
            }
        }
        if u64::from(self.position) >= segment_bytes {
            return Err(IndexError::PositionBeyondSegment { entry: index, position: self.position, segment_bytes });
        }
        Ok(())
    }
}

/// Sparse offset index of one segment. Entries are strictly increasing in
/// both relative offset and position. Position 0 (the segment's first batch)
/// is implied and never needs an entry.
#[derive(Clone, Debug)]
pub struct OffsetIndex {
    /// Once full, the index stops growing: lookups stay correct, they only
    /// land further before their target. Only a configured interval below
    /// `limits::index_interval_bytes` can fill it.
    index: SparseIndex<OffsetIndexEntry>,
    /// The next appended batch must start at or after this offset ...
    append_offset_min: Offset,
    /// ... and at or after this position (batches never overlap).
    append_position_min: u64,
}

impl std::ops::Deref for OffsetIndex {
    type Target = SparseIndex<OffsetIndexEntry>;
    fn deref(&self) -> &SparseIndex<OffsetIndexEntry> {
        &self.index
    }
}

impl OffsetIndex {
    pub fn new(base_offset: Offset) -> OffsetIndex {
        OffsetIndex::with_entries_max(base_offset, limits::index_entries_max)
    }

    fn with_entries_max(base_offset: Offset, entries_max: usize) -> OffsetIndex {
        OffsetIndex {
            index: SparseIndex::new(base_offset, entries_max),
            append_offset_min: base_offset,
            append_position_min: 0,
        }
    }

    /// Called for every batch appended to the segment, in order:
    /// `first_offset` is the batch's base offset, `position` its byte position
    /// in the segment, `batch_bytes` its size. Adds an entry for this batch
    /// when at least `interval_bytes` bytes of log lie between the last entry
    /// (or the segment's start) and this batch. Measuring by position rather
    /// than by a running byte count means the policy needs no state that a
    /// decode or a truncation would have to reconstruct.
    pub fn on_append(&mut self, first_offset: Offset, position: u32, batch_bytes: u32, interval_bytes: u32) {
        assert!(
            first_offset >= self.append_offset_min,
            "batch offset {first_offset} goes back before {}",
            self.append_offset_min
        );
        assert!(
            u64::from(position) >= self.append_position_min,
            "batch position {position} overlaps the batch before it (ends at {})",
            self.append_position_min
        );
        assert!(batch_bytes > 0);
        let end_position = u64::from(position) + u64::from(batch_bytes);
        assert!(end_position <= limits::segment_bytes_max, "batch ends at {end_position}, beyond segment_bytes_max");
        let Some(relative_offset) = relative_offset(self.base_offset(), first_offset) else {
            panic!("offset {first_offset} does not fit a u32 relative to base offset {}", self.base_offset());
        };
        let Some(next_offset_min) = offset_after(first_offset) else {
            panic!("offset {first_offset} is the last in the offset range");
        };

        let last_position = self.entries().last().map_or(0, |entry| entry.position);
        assert!(self.is_empty() || position > last_position);
        assert!(position >= last_position);
        let since_last_entry_bytes = position - last_position;
        if position > 0 && since_last_entry_bytes >= interval_bytes && !self.index.is_full() {
            if let Some(last) = self.entries().last() {
                assert!(relative_offset > last.relative_offset);
            }
            self.index.push(OffsetIndexEntry { relative_offset, position });
        }

        self.append_offset_min = next_offset_min;
        self.append_position_min = end_position;
    }

    /// The largest entry with offset `<= target`, as (absolute offset,
    /// position); `(base_offset, 0)` when there is none. The batch containing
    /// `target`, if the segment has it, starts at or after that position.
    pub fn lookup(&self, target: Offset) -> (Offset, u32) {
        let base = self.base_offset();
        let Some(target_relative) = target.0.checked_sub(base.0) else {
            return (base, 0);
        };
        if target_relative < 0 {
            return (base, 0);
        }
        // Targets beyond the u32 range are beyond every entry.
        let target_relative = u32::try_from(target_relative).unwrap_or(u32::MAX);
        match self.index.newest_where(|entry| entry.relative_offset <= target_relative) {
            None => (base, 0),
            Some(entry) => (self.index.absolute(entry), entry.position),
        }
    }

    /// Drops the entries at or beyond `position`: the log truncated the
    /// segment to `position` bytes. The next append starts at `position`.
    pub fn truncate_to_position(&mut self, position: u32) {
        self.index.keep_where(|entry| entry.position < position);
        let offset_min = self.index.after_newest();
        self.append_offset_min = self.append_offset_min.min(offset_min);
        self.append_position_min = self.append_position_min.min(u64::from(position));
        assert!(self.entries().iter().all(|entry| entry.position < position));
    }

    /// Decodes an index written by `encode` (or by Kafka) and validates it
    /// against its segment, `segment_bytes` long.
    pub fn decode(base_offset: Offset, bytes: &[u8], segment_bytes: u64) -> Result<OffsetIndex, IndexError> {
        let index = SparseIndex::<OffsetIndexEntry>::decode(base_offset, bytes, segment_bytes)?;
        let append_offset_min = index.after_newest();
        let append_position_min = index.entries().last().map_or(0, |last| u64::from(last.position) + 1);
        Ok(OffsetIndex { index, append_offset_min, append_position_min })
    }
}

// ---------------------------------------------------------------------------
// Time index
// ---------------------------------------------------------------------------

/// One time index entry: the batch whose last offset is
/// `base_offset + relative_offset` is the first in the segment with max
/// timestamp `timestamp_ms`, and every batch before it has a smaller one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeIndexEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

/// Kafka's on-disk time index entry.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct TimeIndexEntryDisk {
    timestamp_ms: I64,
    relative_offset: U32,
}

/// Bytes of one time index entry on disk.
pub const time_index_entry_bytes: usize = 12;
const _: () = assert!(std::mem::size_of::<TimeIndexEntryDisk>() == time_index_entry_bytes);

/// Kafka's "no timestamp" (record batches of old formats).
pub const timestamp_none_ms: i64 = -1;

impl IndexEntry for TimeIndexEntry {
    type Disk = TimeIndexEntryDisk;
    const BYTES: usize = time_index_entry_bytes;

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }

    fn to_disk(&self) -> TimeIndexEntryDisk {
        TimeIndexEntryDisk {
            timestamp_ms: I64::new(self.timestamp_ms),
            relative_offset: U32::new(self.relative_offset),
        }
    }

    fn from_disk(disk: &TimeIndexEntryDisk) -> TimeIndexEntry {
        TimeIndexEntry { timestamp_ms: disk.timestamp_ms.get(), relative_offset: disk.relative_offset.get() }
    }

    fn check_decoded(&self, index: usize, before: Option<&Self>, _segment_bytes: u64) -> Result<(), IndexError> {
        if self.timestamp_ms < 0 {
            return Err(IndexError::TimestampNegative { entry: index, timestamp_ms: self.timestamp_ms });
        }
        if let Some(last) = before {
            if self.timestamp_ms <= last.timestamp_ms || self.relative_offset < last.relative_offset {
                return Err(IndexError::NotIncreasing { entry: index });
            }
        }
        Ok(())
    }
}

/// Sparse time index of one segment; see the module docs for its guarantee.
/// Timestamps strictly increase, offsets do not decrease, and the newest
/// entry is the segment's max timestamp.
#[derive(Clone, Debug)]
pub struct TimeIndex {
    /// Once full, a growing max overwrites the newest entry (always safe).
    index: SparseIndex<TimeIndexEntry>,
    /// Bytes appended since the newest entry was created (overwriting it does
    /// not count as creating it).
    since_entry_created_bytes: u64,
    /// The next appended batch must end at or after this offset.
    append_last_offset_min: Offset,
}

impl std::ops::Deref for TimeIndex {
    type Target = SparseIndex<TimeIndexEntry>;
    fn deref(&self) -> &SparseIndex<TimeIndexEntry> {
        &self.index
    }
}

impl TimeIndex {
    pub fn new(base_offset: Offset) -> TimeIndex {
        TimeIndex::with_entries_max(base_offset, limits::index_entries_max)
    }

    fn with_entries_max(base_offset: Offset, entries_max: usize) -> TimeIndex {
        TimeIndex {
            index: SparseIndex::new(base_offset, entries_max),
            since_entry_created_bytes: 0,
            append_last_offset_min: base_offset,
        }
    }

    /// The largest batch max timestamp in the segment, or -1 when no batch
    /// had one.
    pub fn max_timestamp(&self) -> i64 {
        self.entries().last().map_or(timestamp_none_ms, |entry| entry.timestamp_ms)
    }

    /// The last offset of the first batch that reached `max_timestamp()`, or
    /// `Offset(-1)` when no batch had a timestamp (as in Kafka's ListOffsets).
    pub fn max_timestamp_offset(&self) -> Offset {
        self.entries().last().map_or(Offset(-1), |entry| self.index.absolute(entry))
    }

    /// Called for every batch appended to the segment, in order, with the
    /// batch's max timestamp, its last offset and its size. Batches without a
    /// timestamp (negative) leave the index alone.
    pub fn on_append(&mut self, max_timestamp_ms: i64, last_offset: Offset, batch_bytes: u32, interval_bytes: u32) {
        assert!(
            last_offset >= self.append_last_offset_min,
            "batch last offset {last_offset} goes back before {}",
            self.append_last_offset_min
        );
        assert!(batch_bytes > 0);
        let Some(relative_offset) = relative_offset(self.base_offset(), last_offset) else {
            panic!("offset {last_offset} does not fit a u32 relative to base offset {}", self.base_offset());
        };
        let Some(next_last_offset_min) = offset_after(last_offset) else {
            panic!("offset {last_offset} is the last in the offset range");
        };

        if max_timestamp_ms > self.max_timestamp() {
            assert!(max_timestamp_ms >= 0);
            let entry = TimeIndexEntry { timestamp_ms: max_timestamp_ms, relative_offset };
            let create = self.is_empty()
                || (self.since_entry_created_bytes >= u64::from(interval_bytes) && !self.index.is_full());
            if let Some(last) = self.entries().last() {
                assert!(relative_offset > last.relative_offset);
            }
            if create {
                self.index.push(entry);
                self.since_entry_created_bytes = 0;
            } else if let Some(last) = self.index.entries.last_mut() {
                *last = entry;
            }
        }
        assert!(self.max_timestamp() >= max_timestamp_ms.max(timestamp_none_ms));

        self.since_entry_created_bytes = self.since_entry_created_bytes.saturating_add(u64::from(batch_bytes));
        self.append_last_offset_min = next_last_offset_min;
    }

    /// An offset from which a forward scan over the segment's batches finds
    /// the first batch with max timestamp `>= target_ts_ms`, never skipping
    /// it: start at the first batch whose last offset is `>=` the result.
    /// The offset index then turns it into a position.
    pub fn lookup(&self, target_ts_ms: i64) -> Offset {
        match self.index.newest_where(|entry| entry.timestamp_ms <= target_ts_ms) {
            None => self.base_offset(),
            Some(entry) => self.index.absolute(entry),
        }
    }

    /// The log truncated the segment at batch boundary `offset` (offsets
    /// `>= offset` are gone): drops the entries at or beyond it.
    ///
    /// The batches kept after the newest remaining entry may have raised the
    /// max timestamp, and the index does not remember them. When entries were
    /// dropped this returns `Some(from)`: the log must call `on_append` again
    /// for every kept batch whose last offset is `>= from`, in order, before
    /// appending new batches (or rebuild the index from the segment).
    /// Skipping that replay could let a later entry break the guarantee.
    #[must_use]
    pub fn truncate_to_offset(&mut self, offset: Offset) -> Option<Offset> {
        let Some(keep_below) = relative_offset(self.base_offset(), offset) else {
            if offset < self.base_offset() {
                let dropped = self.index.keep_where(|_| false);
                self.since_entry_created_bytes = 0;
                self.append_last_offset_min = self.base_offset();
                return dropped.then_some(self.base_offset());
            }
            // Beyond every relative offset: nothing to drop.
            return None;
        };
        let dropped = self.index.keep_where(|entry| entry.relative_offset < keep_below);
        self.since_entry_created_bytes = 0;
        if dropped {
            let from = self.index.after_newest();
            self.append_last_offset_min = from;
            Some(from)
        } else {
            self.append_last_offset_min = self.append_last_offset_min.min(offset);
            None
        }
    }

    /// Decodes an index written by `encode` (or by Kafka). The decoded index
    /// keeps the guarantee for the batches it covers; batches appended after
    /// the newest entry but not indexed are not known (see
    /// `truncate_to_offset` for the replay that fixes that, or rebuild).
    pub fn decode(base_offset: Offset, bytes: &[u8]) -> Result<TimeIndex, IndexError> {
        let index = SparseIndex::<TimeIndexEntry>::decode(base_offset, bytes, u64::MAX)?;
        let append_last_offset_min = index.after_newest();
        Ok(TimeIndex { index, since_entry_created_bytes: 0, append_last_offset_min })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic, seeded, no dependencies.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in `0..bound` (bound > 0; the modulo bias does not matter here).
        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
        fn range_i64(&mut self, low: i64, high_inclusive: i64) -> i64 {
            low + self.below((high_inclusive - low + 1) as u64) as i64
        }
        fn chance(&mut self, one_in: u64) -> bool {
            self.below(one_in) == 0
        }
    }

    #[derive(Clone, Copy, Debug)]
    struct Batch {
        first_offset: Offset,
        last_offset: Offset,
        position: u32,
        bytes: u32,
        max_timestamp_ms: i64,
    }

    /// Batches that continue `after` (or start a segment at `base_offset`),
    /// with timestamps that mostly rise but jump back, repeat and go missing.
    fn batches_after(rng: &mut Rng, base_offset: Offset, after: Option<&Batch>, count: usize) -> Vec<Batch> {
        let mut batches = Vec::with_capacity(count);
        let (mut offset, mut position, mut timestamp_ms) = match after {
            None => (base_offset.0, 0u32, rng.range_i64(0, 1000)),
            Some(batch) => (batch.last_offset.0 + 1, batch.position + batch.bytes, batch.max_timestamp_ms.max(0)),
        };
        for _ in 0..count {
            let records = rng.range_i64(1, 8);
            let bytes = rng.range_i64(61, 3000) as u32;
            // Offsets may skip (compacted or aborted gaps are legal in Kafka).
            let gap = if rng.chance(8) { rng.range_i64(1, 5) } else { 0 };
            let first_offset = offset + gap;
            timestamp_ms = match rng.below(10) {
                0 => timestamp_ms - rng.range_i64(0, 400),
                1 => timestamp_ms,
                _ => timestamp_ms + rng.range_i64(0, 100),
            }
            .max(0);
            let max_timestamp_ms = if rng.chance(12) { timestamp_none_ms } else { timestamp_ms };
            batches.push(Batch {
                first_offset: Offset(first_offset),
                last_offset: Offset(first_offset + records - 1),
                position,
                bytes,
                max_timestamp_ms,
            });
            offset = first_offset + records;
            position += bytes;
        }
        batches
    }

    /// Between `count_min` and `count_max` batches.
    fn batches_random(
        rng: &mut Rng,
        base_offset: Offset,
        after: Option<&Batch>,
        count_min: u64,
        count_max: u64,
    ) -> Vec<Batch> {
        let count = count_min + rng.below(count_max - count_min + 1);
        batches_after(rng, base_offset, after, count as usize)
    }

    fn interval_random(rng: &mut Rng) -> u32 {
        [0, 1, 100, 1000, 4096, 20_000][rng.below(6) as usize]
    }

    fn offset_index_build(base_offset: Offset, batches: &[Batch], interval_bytes: u32) -> OffsetIndex {
        let mut index = OffsetIndex::new(base_offset);
        for batch in batches {
            index.on_append(batch.first_offset, batch.position, batch.bytes, interval_bytes);
        }
        index
    }

    fn time_index_feed(index: &mut TimeIndex, batches: &[Batch], interval_bytes: u32) {
        for batch in batches {
            index.on_append(batch.max_timestamp_ms, batch.last_offset, batch.bytes, interval_bytes);
        }
    }

    /// Every offset index entry names a real batch, entries respect the
    /// interval, and a lookup lands on the last indexed batch at or before
    /// the target, from which a scan reaches the target's batch.
    fn offset_index_check(index: &OffsetIndex, batches: &[Batch], interval_bytes: u32, rng: &mut Rng) {
        let base_offset = index.base_offset();
        let mut last_position = 0u32;
        for entry in index.entries() {
            let batch =
                batches.iter().find(|batch| batch.position == entry.position).expect("entry at a batch position");
            assert_eq!(absolute_offset(base_offset, entry.relative_offset), batch.first_offset);
            assert!(entry.position - last_position >= interval_bytes);
            assert!(entry.position > 0);
            last_position = entry.position;
        }
        let last_offset = batches.last().map_or(base_offset.0, |batch| batch.last_offset.0);
        for _ in 0..200 {
            let target = Offset(rng.range_i64(base_offset.0 - 3, last_offset + 3));
            let (offset, position) = index.lookup(target);
            let brute = index
                .entries()
                .iter()
                .rfind(|entry| absolute_offset(base_offset, entry.relative_offset) <= target)
                .map_or((base_offset, 0), |entry| {
                    (absolute_offset(base_offset, entry.relative_offset), entry.position)
                });
            assert_eq!((offset, position), brute);
            assert!(offset <= target.max(base_offset));
            // The batch holding (or first after) the target is not before `position`.
            if let Some(batch) = batches.iter().find(|batch| batch.last_offset >= target) {
                assert!(batch.position >= position);
            }
        }
    }

    /// The time index guarantee, checked against a full scan.
    fn time_index_check(index: &TimeIndex, batches: &[Batch], rng: &mut Rng) {
        let max = batches.iter().map(|batch| batch.max_timestamp_ms).max().unwrap_or(timestamp_none_ms);
        assert_eq!(index.max_timestamp(), max.max(timestamp_none_ms));
        if max >= 0 {
            let first_max = batches.iter().find(|batch| batch.max_timestamp_ms == max).expect("max batch");
            assert_eq!(index.max_timestamp_offset(), first_max.last_offset);
        } else {
            assert_eq!(index.max_timestamp_offset(), Offset(-1));
        }
        // The entry invariant itself.
        for entry in index.entries() {
            let offset = absolute_offset(index.base_offset(), entry.relative_offset);
            let at = batches.iter().position(|batch| batch.last_offset == offset).expect("entry at a batch");
            assert_eq!(batches[at].max_timestamp_ms, entry.timestamp_ms);
            assert!(batches[..at].iter().all(|batch| batch.max_timestamp_ms < entry.timestamp_ms));
        }

        let mut targets: Vec<i64> = (0..100).map(|_| rng.range_i64(-3, max.max(0) + 3)).collect();
        for batch in batches.iter().take(50) {
            targets.extend([batch.max_timestamp_ms - 1, batch.max_timestamp_ms, batch.max_timestamp_ms + 1]);
        }
        for target_ms in targets {
            let expected = batches.iter().position(|batch| batch.max_timestamp_ms >= target_ms);
            let from = index.lookup(target_ms);
            let start = batches.iter().position(|batch| batch.last_offset >= from).unwrap_or(batches.len());
            let found =
                batches[start..].iter().position(|batch| batch.max_timestamp_ms >= target_ms).map(|at| at + start);
            assert_eq!(found, expected, "target {target_ms} from {from}");
            let brute = index
                .entries()
                .iter()
                .rfind(|entry| entry.timestamp_ms <= target_ms)
                .map_or(index.base_offset(), |entry| absolute_offset(index.base_offset(), entry.relative_offset));
            assert_eq!(from, brute);
        }
    }

    #[test]
    fn offset_index_interval_policy() {
        // 1000-byte batches of 10 records, interval 4096: entries at the first
        // batch at least 4096 bytes past the previous entry.
        let mut index = OffsetIndex::new(Offset(100));
        for batch in 0..12u32 {
            index.on_append(Offset(100 + i64::from(batch) * 10), batch * 1000, 1000, 4096);
        }
        assert_eq!(
            index.entries(),
            &[
                OffsetIndexEntry { relative_offset: 50, position: 5000 },
                OffsetIndexEntry { relative_offset: 100, position: 10_000 },
            ]
        );
        assert_eq!(index.lookup(Offset(0)), (Offset(100), 0));
        assert_eq!(index.lookup(Offset(149)), (Offset(100), 0));
        assert_eq!(index.lookup(Offset(150)), (Offset(150), 5000));
        assert_eq!(index.lookup(Offset(199)), (Offset(150), 5000));
        assert_eq!(index.lookup(Offset(i64::MAX)), (Offset(200), 10_000));

        // Interval 0: every batch but the first (position 0 is implied).
        let mut index = OffsetIndex::new(Offset(0));
        for batch in 0..4u32 {
            index.on_append(Offset(i64::from(batch)), batch * 100, 100, 0);
        }
        assert_eq!(index.len(), 3);
        assert_eq!(index.entries()[0], OffsetIndexEntry { relative_offset: 1, position: 100 });
    }

    #[test]
    fn offset_index_lookup_matches_brute_force() {
        let mut rng = Rng::new(1);
        for round in 0..200 {
            let base_offset = Offset(rng.range_i64(0, 1 << 40));
            let count = rng.below(300) as usize;
            let batches = batches_after(&mut rng, base_offset, None, count);
            let interval_bytes = interval_random(&mut rng);
            let index = offset_index_build(base_offset, &batches, interval_bytes);
            if interval_bytes <= 100 && count > 10 {
                assert!(index.len() > 1, "round {round}");
            }
            offset_index_check(&index, &batches, interval_bytes, &mut rng);

            let decoded = OffsetIndex::decode(base_offset, &index.encode(), u64::from(index_segment_bytes(&batches)))
                .expect("round trip");
            assert_eq!(decoded.entries(), index.entries());
            offset_index_check(&decoded, &batches, interval_bytes, &mut rng);
        }
    }

    fn index_segment_bytes(batches: &[Batch]) -> u32 {
        batches.last().map_or(0, |batch| batch.position + batch.bytes)
    }

    #[test]
    fn offset_index_truncate_then_append_matches_rebuild() {
        let mut rng = Rng::new(2);
        for _ in 0..200 {
            let base_offset = Offset(rng.range_i64(0, 1000));
            let batches = batches_random(&mut rng, base_offset, None, 1, 200);
            let interval_bytes = interval_random(&mut rng);
            let mut index = offset_index_build(base_offset, &batches, interval_bytes);

            let keep = rng.below(batches.len() as u64 + 1) as usize;
            let truncate_position = batches.get(keep).map_or(index_segment_bytes(&batches), |batch| batch.position);
            index.truncate_to_position(truncate_position);
            assert!(index.entries().iter().all(|entry| entry.position < truncate_position));

            // Continue from the kept prefix, maybe after a decode (a restart).
            let mut kept = batches[..keep].to_vec();
            if rng.chance(2) {
                index = OffsetIndex::decode(base_offset, &index.encode(), u64::from(truncate_position))
                    .expect("decode after truncate");
            }
            let more = batches_random(&mut rng, base_offset, kept.last(), 0, 100 - 1);
            for batch in &more {
                index.on_append(batch.first_offset, batch.position, batch.bytes, interval_bytes);
            }
            kept.extend(more);
            let rebuilt = offset_index_build(base_offset, &kept, interval_bytes);
            assert_eq!(index.entries(), rebuilt.entries());
            offset_index_check(&index, &kept, interval_bytes, &mut rng);
        }
    }

    #[test]
    fn offset_index_stops_growing_when_full() {
        let mut rng = Rng::new(3);
        let batches = batches_after(&mut rng, Offset(0), None, 100);
        let mut index = OffsetIndex::with_entries_max(Offset(0), 5);
        for batch in &batches {
            index.on_append(batch.first_offset, batch.position, batch.bytes, 0);
        }
        assert_eq!(index.len(), 5);
        offset_index_check(&index, &batches, 0, &mut rng);
    }

    #[test]
    #[should_panic(expected = "goes back")]
    fn offset_index_asserts_monotonic_offsets() {
        let mut index = OffsetIndex::new(Offset(10));
        index.on_append(Offset(10), 0, 100, 0);
        index.on_append(Offset(10), 100, 100, 0);
    }

    #[test]
    #[should_panic(expected = "overlaps")]
    fn offset_index_asserts_no_overlap() {
        let mut index = OffsetIndex::new(Offset(10));
        index.on_append(Offset(10), 0, 100, 0);
        index.on_append(Offset(11), 99, 100, 0);
    }

    #[test]
    #[should_panic(expected = "does not fit a u32")]
    fn offset_index_asserts_relative_offset_fits() {
        let mut index = OffsetIndex::new(Offset(10));
        index.on_append(Offset(10 + (1 << 32)), 0, 100, 0);
    }

    fn offset_entries_bytes(entries: &[(u32, u32)]) -> Vec<u8> {
        entries.iter().flat_map(|(offset, position)| [offset.to_be_bytes(), position.to_be_bytes()]).flatten().collect()
    }

    fn time_entries_bytes(entries: &[(i64, u32)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (timestamp_ms, offset) in entries {
            bytes.extend_from_slice(&timestamp_ms.to_be_bytes());
            bytes.extend_from_slice(&offset.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn offset_index_decode_rejects_corruption() {
        let too_many = vec![0u8; (limits::index_entries_max + 1) * offset_index_entry_bytes];
        let cases: Vec<(&str, i64, Vec<u8>, u64, IndexError)> = vec![
            ("torn entry", 0, vec![0; 7], 100, IndexError::Length { len: 7, entry_bytes: 8 }),
            ("torn tail", 0, vec![0; 12], 100, IndexError::Length { len: 12, entry_bytes: 8 }),
            (
                "offset repeats",
                0,
                offset_entries_bytes(&[(5, 100), (5, 200)]),
                1000,
                IndexError::NotIncreasing { entry: 1 },
            ),
            (
                "offset goes back",
                0,
                offset_entries_bytes(&[(5, 100), (4, 200)]),
                1000,
                IndexError::NotIncreasing { entry: 1 },
            ),
            (
                "position repeats",
                0,
                offset_entries_bytes(&[(5, 100), (6, 100)]),
                1000,
                IndexError::NotIncreasing { entry: 1 },
            ),
            (
                "preallocated zero tail",
                0,
                offset_entries_bytes(&[(5, 100), (0, 0)]),
                1000,
                IndexError::NotIncreasing { entry: 1 },
            ),
            (
                "position at segment end",
                0,
                offset_entries_bytes(&[(5, 100), (6, 1000)]),
                1000,
                IndexError::PositionBeyondSegment { entry: 1, position: 1000, segment_bytes: 1000 },
            ),
            (
                "segment shorter than index",
                0,
                offset_entries_bytes(&[(5, 100)]),
                0,
                IndexError::PositionBeyondSegment { entry: 0, position: 100, segment_bytes: 0 },
            ),
            (
                "offset overflow",
                i64::MAX - 10,
                offset_entries_bytes(&[(5, 100), (10, 200)]),
                1000,
                IndexError::OffsetOverflow { entry: 1 },
            ),
            ("negative base", -1, vec![], 1000, IndexError::BaseOffsetNegative { base_offset: -1 }),
            (
                "too many",
                0,
                too_many,
                u64::MAX,
                IndexError::TooManyEntries { count: limits::index_entries_max + 1, max: limits::index_entries_max },
            ),
        ];
        for (name, base_offset, bytes, segment_bytes, expected) in cases {
            let result = OffsetIndex::decode(Offset(base_offset), &bytes, segment_bytes);
            assert_eq!(result.err(), Some(expected), "{name}");
        }
        // The valid neighbours of those cases decode.
        let index =
            OffsetIndex::decode(Offset(0), &offset_entries_bytes(&[(0, 0), (5, 100), (6, 999)]), 1000).expect("valid");
        assert_eq!(index.len(), 3);
        assert!(OffsetIndex::decode(Offset(0), &[], 0).expect("empty").is_empty());
    }

    #[test]
    fn time_index_decode_rejects_corruption() {
        let cases: Vec<(&str, i64, Vec<u8>, IndexError)> = vec![
            ("torn entry", 0, vec![0; 11], IndexError::Length { len: 11, entry_bytes: 12 }),
            ("torn tail", 0, vec![0; 16], IndexError::Length { len: 16, entry_bytes: 12 }),
            ("timestamp repeats", 0, time_entries_bytes(&[(5, 1), (5, 2)]), IndexError::NotIncreasing { entry: 1 }),
            ("timestamp goes back", 0, time_entries_bytes(&[(5, 1), (4, 2)]), IndexError::NotIncreasing { entry: 1 }),
            ("offset goes back", 0, time_entries_bytes(&[(5, 3), (6, 2)]), IndexError::NotIncreasing { entry: 1 }),
            (
                "preallocated zero tail",
                0,
                time_entries_bytes(&[(5, 3), (0, 0)]),
                IndexError::NotIncreasing { entry: 1 },
            ),
            (
                "negative timestamp",
                0,
                time_entries_bytes(&[(-1, 3)]),
                IndexError::TimestampNegative { entry: 0, timestamp_ms: -1 },
            ),
            (
                "offset overflow",
                i64::MAX - 10,
                time_entries_bytes(&[(1, 5), (2, 10)]),
                IndexError::OffsetOverflow { entry: 1 },
            ),
            ("negative base", -5, vec![], IndexError::BaseOffsetNegative { base_offset: -5 }),
            (
                "too many",
                0,
                vec![0; (limits::index_entries_max + 1) * time_index_entry_bytes],
                IndexError::TooManyEntries { count: limits::index_entries_max + 1, max: limits::index_entries_max },
            ),
        ];
        for (name, base_offset, bytes, expected) in cases {
            let result = TimeIndex::decode(Offset(base_offset), &bytes);
            assert_eq!(result.err(), Some(expected), "{name}");
        }
        // Equal offsets are legal (Kafka may write them); timestamp 0 is legal.
        let index = TimeIndex::decode(Offset(7), &time_entries_bytes(&[(0, 3), (6, 3), (9, 4)])).expect("valid");
        assert_eq!(index.max_timestamp(), 9);
        assert_eq!(index.max_timestamp_offset(), Offset(11));
    }

    #[test]
    fn time_index_lookup_never_skips_the_first_match() {
        let mut rng = Rng::new(4);
        for round in 0..300 {
            let base_offset = Offset(rng.range_i64(0, 1 << 40));
            let batches = batches_random(&mut rng, base_offset, None, 0, 300 - 1);
            let interval_bytes = interval_random(&mut rng);
            let mut index = TimeIndex::new(base_offset);
            time_index_feed(&mut index, &batches, interval_bytes);
            if interval_bytes <= 100 && batches.len() > 100 {
                assert!(index.len() > 2, "round {round}: {} entries", index.len());
            }
            time_index_check(&index, &batches, &mut rng);

            let decoded = TimeIndex::decode(base_offset, &index.encode()).expect("round trip");
            assert_eq!(decoded.entries(), index.entries());
            time_index_check(&decoded, &batches, &mut rng);

            // A reopened index keeps the guarantee as batches keep coming.
            let mut reopened = decoded;
            let mut all = batches.clone();
            let more = batches_random(&mut rng, base_offset, all.last(), 0, 100 - 1);
            time_index_feed(&mut reopened, &more, interval_bytes);
            all.extend(more);
            time_index_check(&reopened, &all, &mut rng);
        }
    }

    #[test]
    fn time_index_truncate_then_replay_keeps_the_guarantee() {
        let mut rng = Rng::new(5);
        for _ in 0..300 {
            let base_offset = Offset(rng.range_i64(0, 1000));
            let batches = batches_random(&mut rng, base_offset, None, 1, 200);
            let interval_bytes = interval_random(&mut rng);
            let mut index = TimeIndex::new(base_offset);
            time_index_feed(&mut index, &batches, interval_bytes);

            let keep = rng.below(batches.len() as u64 + 1) as usize;
            let truncate_offset = batches
                .get(keep)
                .map_or(Offset(batches.last().expect("one batch").last_offset.0 + 1), |batch| batch.first_offset);
            let mut kept = batches[..keep].to_vec();
            let replay_from = index.truncate_to_offset(truncate_offset);
            assert!(index
                .entries()
                .iter()
                .all(|entry| absolute_offset(base_offset, entry.relative_offset) < truncate_offset));
            if let Some(from) = replay_from {
                for batch in kept.iter().filter(|batch| batch.last_offset >= from) {
                    index.on_append(batch.max_timestamp_ms, batch.last_offset, batch.bytes, interval_bytes);
                }
            }
            time_index_check(&index, &kept, &mut rng);

            // The log continues at the truncation offset (past any gap before it).
            let mut more = batches_random(&mut rng, base_offset, kept.last(), 0, 200 - 1);
            let shift = more.first().map_or(0, |batch| (truncate_offset.0 - batch.first_offset.0).max(0));
            for batch in &mut more {
                batch.first_offset.0 += shift;
                batch.last_offset.0 += shift;
            }
            time_index_feed(&mut index, &more, interval_bytes);
            kept.extend(more);
            time_index_check(&index, &kept, &mut rng);
        }
    }

    #[test]
    fn time_index_tracks_max_and_ignores_missing_timestamps() {
        let mut index = TimeIndex::new(Offset(1000));
        assert_eq!(index.max_timestamp(), -1);
        assert_eq!(index.max_timestamp_offset(), Offset(-1));
        assert_eq!(index.lookup(i64::MAX), Offset(1000));
        index.on_append(timestamp_none_ms, Offset(1004), 100, 0);
        assert!(index.is_empty());
        index.on_append(50, Offset(1009), 100, 4096); // First entry: immediately.
        index.on_append(40, Offset(1010), 100, 4096); // Goes back: no entry.
        index.on_append(60, Offset(1019), 100, 4096); // Within the interval: overwrites.
        assert_eq!(index.entries(), &[TimeIndexEntry { timestamp_ms: 60, relative_offset: 19 }]);
        index.on_append(60, Offset(1020), 5000, 4096); // Equal: the first batch keeps it.
        index.on_append(70, Offset(1030), 100, 4096); // Interval passed: a new entry.
        assert_eq!(index.len(), 2);
        assert_eq!(index.max_timestamp(), 70);
        assert_eq!(index.max_timestamp_offset(), Offset(1030));
        assert_eq!(index.lookup(59), Offset(1000));
        assert_eq!(index.lookup(60), Offset(1019));
        assert_eq!(index.lookup(69), Offset(1019));
        assert_eq!(index.lookup(i64::MAX), Offset(1030));
    }

    #[test]
    fn time_index_overwrites_newest_when_full() {
        let mut rng = Rng::new(6);
        for _ in 0..50 {
            let batches = batches_after(&mut rng, Offset(0), None, 300);
            let mut index = TimeIndex::with_entries_max(Offset(0), 3);
            time_index_feed(&mut index, &batches, 0);
            assert!(index.len() <= 3);
            time_index_check(&index, &batches, &mut rng);
        }
    }

    #[test]
    fn time_index_truncate_without_dropping_needs_no_replay() {
        let mut index = TimeIndex::new(Offset(0));
        index.on_append(10, Offset(4), 100, 0);
        index.on_append(5, Offset(9), 100, 0);
        assert_eq!(index.truncate_to_offset(Offset(5)), None);
        assert_eq!(index.max_timestamp(), 10);
        index.on_append(7, Offset(5), 100, 0); // The log continues at the truncation point.
        assert_eq!(index.truncate_to_offset(Offset(3)), Some(Offset(0)));
        assert!(index.is_empty());
        assert_eq!(index.truncate_to_offset(Offset(-3)), None);
    }

    #[test]
    fn decode_never_panics_and_round_trips() {
        let mut rng = Rng::new(7);
        let mut ok_offset = 0;
        let mut ok_time = 0;
        for _ in 0..5000 {
            let base_offset = Offset(match rng.below(4) {
                0 => rng.next() as i64,
                1 => i64::MAX - rng.range_i64(0, 1 << 33),
                _ => rng.range_i64(0, 1 << 40),
            });
            let segment_bytes = match rng.below(3) {
                0 => rng.next(),
                _ => rng.below(1 << 20),
            };
            // Mostly plausible (increasing) entries with a few flipped bytes,
            // so the decoders get past their first checks.
            let mut bytes = Vec::new();
            let count = rng.below(40);
            let (mut a, mut b) = (0u64, 0u64);
            let time = rng.chance(2);
            for _ in 0..count {
                a += rng.below(5000);
                b += rng.below(5000);
                if time {
                    bytes.extend_from_slice(&(a as i64).to_be_bytes());
                    bytes.extend_from_slice(&(b as u32).to_be_bytes());
                } else {
                    bytes.extend_from_slice(&(a as u32).to_be_bytes());
                    bytes.extend_from_slice(&(b as u32).to_be_bytes());
                }
            }
            for _ in 0..rng.below(3) {
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] = rng.next() as u8;
                }
            }
            if rng.chance(5) {
                bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
            }

            if let Ok(index) = OffsetIndex::decode(base_offset, &bytes, segment_bytes) {
                ok_offset += 1;
                assert_eq!(index.encode(), bytes);
                let again = OffsetIndex::decode(base_offset, &index.encode(), segment_bytes).expect("again");
                assert_eq!(again.entries(), index.entries());
                let _ = index.lookup(Offset(rng.next() as i64));
            }
            if let Ok(index) = TimeIndex::decode(base_offset, &bytes) {
                ok_time += 1;
                assert_eq!(index.encode(), bytes);
                let again = TimeIndex::decode(base_offset, &index.encode()).expect("again");
                assert_eq!(again.entries(), index.entries());
                let _ = index.lookup(rng.next() as i64);
                let _ = index.max_timestamp_offset();
            }
        }
        assert!(ok_offset > 100, "{ok_offset}");
        assert!(ok_time > 100, "{ok_time}");
    }
}
