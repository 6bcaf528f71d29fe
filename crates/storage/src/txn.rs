//! A partition's view of transactions (pure): which are complete but not
//! yet below the high watermark, the last stable offset, and the aborted
//! transactions that read_committed consumers must skip.
//!
//! A transactional producer's first batch in a partition opens its
//! transaction there (`ProducerState::open_txn`, kept in the producer
//! snapshot); the coordinator's COMMIT or ABORT marker closes it. The
//! transaction stays unstable until the high watermark passes its marker,
//! so the last stable offset (LSO) is the least of the high watermark and
//! the first offset of every transaction still open or unreplicated.
//!
//! Aborted transactions are kept in memory, oldest first, and in one
//! `.txnindex` file per segment in Kafka's format (34-byte entries: version
//! 0, producer id, first offset, last offset, last stable offset), written
//! when a segment is sealed and at a clean close, and rebuilt from the log
//! by recovery for the segments it scans.

use std::collections::VecDeque;

use ringstream_core::limits::partition_aborted_txns_max;
use ringstream_core::types::Offset;

/// One aborted transaction of a partition (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: Offset,
    /// The offset of its ABORT marker.
    pub last_offset: Offset,
    pub last_stable_offset: Offset,
}

/// A transaction closed by a marker the high watermark has not passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Completed {
    producer_id: i64,
    epoch: i16,
    first_offset: Offset,
    marker_offset: Offset,
    opened_ms: i64,
}

/// An open transaction as the partition sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenTxn {
    pub epoch: i16,
    pub first_offset: Offset,
    /// When this replica saw it open (or loaded it), ms: the age the
    /// last-stable-offset lag metric reports. Not persisted.
    pub opened_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transactions {
    unreplicated: VecDeque<Completed>,
    aborted: VecDeque<AbortedTxn>,
}

/// The size of one `.txnindex` entry.
pub const TXN_INDEX_ENTRY_BYTES: usize = 34;

impl Transactions {
    /// A transaction of `producer_id` that opened at `first_offset` was
    /// closed by the marker at `marker_offset`. `first_unstable` is the
    /// partition's first unstable offset before it closed.
    pub fn complete(
        &mut self,
        producer_id: i64,
        open: OpenTxn,
        marker_offset: Offset,
        commit: bool,
        first_unstable: Offset,
    ) {
        if open.first_offset >= marker_offset {
            // Not a transaction this marker can close (state recovered from
            // a damaged snapshot): nothing to track.
            tracing::warn!(producer_id, first = %open.first_offset, marker = %marker_offset, "marker before its transaction's start");
            return;
        }
        self.unreplicated.push_back(Completed {
            producer_id,
            epoch: open.epoch,
            first_offset: open.first_offset,
            marker_offset,
            opened_ms: open.opened_ms,
        });
        if !commit {
            self.push_aborted(AbortedTxn {
                producer_id,
                first_offset: open.first_offset,
                last_offset: marker_offset,
                last_stable_offset: first_unstable,
            });
        }
    }

    /// Adds an aborted transaction found by recovery or in a `.txnindex`.
    pub fn push_aborted(&mut self, aborted: AbortedTxn) {
        if self.aborted.back().is_some_and(|last| last.last_offset >= aborted.last_offset) {
            return; // already known (an index and a scan overlap)
        }
        if self.aborted.len() >= partition_aborted_txns_max {
            let dropped = self.aborted.pop_front();
            tracing::warn!(?dropped, "too many aborted transactions in one partition; forgetting the oldest");
        }
        self.aborted.push_back(aborted);
    }

    /// The high watermark moved: transactions whose markers it passed are stable.
    pub fn on_high_watermark(&mut self, hw: Offset) {
        while self.unreplicated.front().is_some_and(|c| c.marker_offset < hw) {
            self.unreplicated.pop_front();
        }
    }

    /// The least first offset of the completed but unreplicated transactions.
    pub fn first_unreplicated(&self) -> Option<Offset> {
        self.unreplicated.iter().map(|c| c.first_offset).min()
    }

    /// The log was cut back to `offset` (a failed write or a follower's
    /// truncation): markers at or after it never happened, and their
    /// transactions are open again. Returns them, to be reopened.
    pub fn truncate_from(&mut self, offset: Offset) -> Vec<(i64, OpenTxn)> {
        let mut reopened = Vec::new();
        while self.unreplicated.back().is_some_and(|c| c.marker_offset >= offset) {
            let c = self.unreplicated.pop_back().expect("non-empty");
            if c.first_offset < offset {
                reopened.push((
                    c.producer_id,
                    OpenTxn { epoch: c.epoch, first_offset: c.first_offset, opened_ms: c.opened_ms },
                ));
            }
        }
        while self.aborted.back().is_some_and(|a| a.last_offset >= offset) {
            self.aborted.pop_back();
        }
        reopened
    }

    /// Transactions closed by markers at or after `offset` (still queued
    /// when a snapshot at `offset` is taken): open as of `offset`.
    pub fn closed_from(&self, offset: Offset) -> Vec<(i64, OpenTxn)> {
        self.unreplicated
            .iter()
            .filter(|c| c.marker_offset >= offset)
            .map(|c| (c.producer_id, OpenTxn { epoch: c.epoch, first_offset: c.first_offset, opened_ms: c.opened_ms }))
            .collect()
    }

    /// Forgets aborted transactions wholly before the log start.
    pub fn trim_before(&mut self, log_start: Offset) {
        while self.aborted.front().is_some_and(|a| a.last_offset < log_start) {
            self.aborted.pop_front();
        }
    }

    /// The aborted transactions a read_committed fetch of [from, to) must
    /// be told about: those ending at or after `from` that began before `to`.
    pub fn aborted_between(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted.iter().skip(start).filter(|a| a.first_offset < to).copied().collect()
    }

    /// Every aborted transaction whose marker lies in [from, to).
    pub fn aborted_in_range(&self, from: Offset, to: Offset) -> Vec<AbortedTxn> {
        self.aborted.iter().filter(|a| a.last_offset >= from && a.last_offset < to).copied().collect()
    }

    pub fn aborted_count(&self) -> usize {
        self.aborted.len()
    }
}

/// Encodes entries in Kafka's `.txnindex` format.
pub fn encode_index(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * TXN_INDEX_ENTRY_BYTES);
    for e in entries {
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&e.producer_id.to_be_bytes());
        out.extend_from_slice(&e.first_offset.0.to_be_bytes());
        out.extend_from_slice(&e.last_offset.0.to_be_bytes());
        out.extend_from_slice(&e.last_stable_offset.0.to_be_bytes());
    }
    out
}

/// Decodes a `.txnindex`; a torn last entry or an entry that makes no sense
/// ends it (recovery scans what the index cannot vouch for).
pub fn decode_index(bytes: &[u8]) -> Vec<AbortedTxn> {
    let mut out = Vec::with_capacity(bytes.len() / TXN_INDEX_ENTRY_BYTES);
    for chunk in bytes.chunks_exact(TXN_INDEX_ENTRY_BYTES) {
        let i64_at = |at: usize| i64::from_be_bytes(chunk[at..at + 8].try_into().expect("8 bytes"));
        let version = i16::from_be_bytes([chunk[0], chunk[1]]);
        let entry = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: Offset(i64_at(10)),
            last_offset: Offset(i64_at(18)),
            last_stable_offset: Offset(i64_at(26)),
        };
        let sane = version == 0
            && entry.producer_id >= 0
            && entry.first_offset.0 >= 0
            && entry.first_offset < entry.last_offset
            && out.last().map_or(true, |last: &AbortedTxn| last.last_offset < entry.last_offset);
        if !sane {
            break;
        }
        out.push(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(epoch: i16, first: i64) -> OpenTxn {
        OpenTxn { epoch, first_offset: Offset(first), opened_ms: 0 }
    }

    #[test]
    fn completion_replication_and_aborted_ranges() {
        let mut t = Transactions::default();
        t.complete(1, open(0, 10), Offset(20), false, Offset(10));
        t.complete(2, open(0, 12), Offset(21), true, Offset(12));
        assert_eq!(t.first_unreplicated(), Some(Offset(10)));
        t.on_high_watermark(Offset(21));
        assert_eq!(t.first_unreplicated(), Some(Offset(12)));
        t.on_high_watermark(Offset(22));
        assert_eq!(t.first_unreplicated(), None);
        assert_eq!(t.aborted_between(Offset(0), Offset(10)), vec![]);
        assert_eq!(t.aborted_between(Offset(0), Offset(11)).len(), 1);
        assert_eq!(t.aborted_between(Offset(21), Offset(30)), vec![]);
        t.trim_before(Offset(21));
        assert_eq!(t.aborted_count(), 0);
    }

    #[test]
    fn truncation_reopens_and_the_index_round_trips() {
        let mut t = Transactions::default();
        t.complete(1, open(3, 10), Offset(20), false, Offset(10));
        assert_eq!(t.truncate_from(Offset(20)), vec![(1, open(3, 10))]);
        assert_eq!(t.aborted_count(), 0);
        let entries = vec![
            AbortedTxn {
                producer_id: 1,
                first_offset: Offset(1),
                last_offset: Offset(5),
                last_stable_offset: Offset(1),
            },
            AbortedTxn {
                producer_id: 2,
                first_offset: Offset(3),
                last_offset: Offset(9),
                last_stable_offset: Offset(3),
            },
        ];
        let bytes = encode_index(&entries);
        assert_eq!(bytes.len(), 68);
        assert_eq!(decode_index(&bytes), entries);
        assert_eq!(decode_index(&bytes[..50]), entries[..1].to_vec(), "a torn entry ends the index");
    }
}
