//! Idempotent-producer state of one partition: for each producer id, its
//! epoch and its last `producer_batches_max` batches (sequence range and
//! offsets), as Kafka keeps them.
//!
//! On append, a batch from an idempotent producer (producer id >= 0) is:
//! - a duplicate of one of those batches (same epoch and sequence range): it
//!   is not appended again, and is answered with the original offsets;
//! - the next in sequence (or the first of a new producer, or sequence 0 of
//!   a newer epoch): it is appended and recorded;
//! - otherwise rejected: OUT_OF_ORDER_SEQUENCE_NUMBER, or
//!   INVALID_PRODUCER_EPOCH for an older epoch.
//!
//! State is updated when a batch is queued (offsets assigned), so pipelined
//! batches check against their predecessors; a failed write rolls it back
//! with `truncate_from`. It survives restarts through a snapshot written at
//! every seal and clean close, plus a scan of the tail segment.

use std::collections::{BTreeMap, VecDeque};

use ringstream_core::limits::partition_producers_max;
use ringstream_core::limits::producer_batches_max;
use ringstream_core::types::Offset;

use crate::txn::OpenTxn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchRecord>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Fresh,
    /// Already appended: answer with these offsets.
    Duplicate(BatchRecord),
    OutOfOrder {
        expected: i32,
        found: i32,
    },
    /// An epoch older than the producer's current one (a zombie).
    FencedEpoch {
        current: i16,
        found: i16,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerState {
    producers: BTreeMap<i64, ProducerEntry>,
    /// Each transactional producer's open transaction in this partition.
    open: BTreeMap<i64, OpenTxn>,
}

/// The sequence after `sequence`, wrapping as Kafka does.
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// The last sequence of a batch starting at `first` with `count` records.
pub fn last_sequence(first: i32, last_offset_delta: i32) -> i32 {
    ((i64::from(first) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

impl ProducerState {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn check(&self, producer_id: i64, epoch: i16, first_sequence: i32, last_sequence: i32) -> SequenceCheck {
        assert!(producer_id >= 0);
        let Some(entry) = self.producers.get(&producer_id) else {
            // A producer we have no state for (new, or forgotten): accept,
            // as Kafka does since KIP-360.
            return SequenceCheck::Fresh;
        };
        if epoch < entry.epoch {
            return SequenceCheck::FencedEpoch { current: entry.epoch, found: epoch };
        }
        if epoch > entry.epoch {
            return if first_sequence == 0 {
                SequenceCheck::Fresh
            } else {
                SequenceCheck::OutOfOrder { expected: 0, found: first_sequence }
            };
        }
        if let Some(batch) =
            entry.batches.iter().find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
        {
            return SequenceCheck::Duplicate(*batch);
        }
        match entry.batches.back() {
            Some(last) if first_sequence != next_sequence(last.last_sequence) => {
                SequenceCheck::OutOfOrder { expected: next_sequence(last.last_sequence), found: first_sequence }
            }
            _ => SequenceCheck::Fresh,
        }
    }

    /// Records an appended (or queued) batch.
    pub fn record(&mut self, producer_id: i64, epoch: i16, batch: BatchRecord) {
        assert!(producer_id >= 0 && batch.base_offset <= batch.last_offset);
        if !self.producers.contains_key(&producer_id) && self.producers.len() >= partition_producers_max {
            let idle = self
                .producers
                .iter()
                .min_by_key(|(_, e)| e.batches.back().map_or(Offset(-1), |b| b.last_offset))
                .map(|(id, _)| *id)
                .expect("non-empty");
            self.producers.remove(&idle);
        }
        let entry = self.producers.entry(producer_id).or_insert(ProducerEntry { epoch, batches: VecDeque::new() });
        if epoch != entry.epoch {
            assert!(epoch > entry.epoch, "records only move epochs forward");
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if let Some(last) = entry.batches.back() {
            assert!(batch.base_offset > last.last_offset, "batches are recorded in offset order");
        }
        entry.batches.push_back(batch);
        while entry.batches.len() > producer_batches_max {
            entry.batches.pop_front();
        }
    }

    /// Records a batch found by recovery: like `record`, but a batch that is
    /// out of order for its producer replaces the producer's state instead
    /// of tripping an assertion.
    pub fn record_recovered(&mut self, producer_id: i64, epoch: i16, batch: BatchRecord) {
        let consistent = self.producers.get(&producer_id).map_or(true, |e| {
            epoch > e.epoch
                || (epoch == e.epoch && e.batches.back().map_or(true, |b| b.last_offset < batch.base_offset))
        });
        if !consistent {
            self.producers.remove(&producer_id);
        }
        self.record(producer_id, epoch, batch);
    }

    /// Opens `producer_id`'s transaction at `first_offset` unless one is open.
    /// False when the partition already tracks `partition_open_txns_max`.
    pub fn open_txn(&mut self, producer_id: i64, epoch: i16, first_offset: Offset) -> bool {
        if self.open.contains_key(&producer_id) {
            return true;
        }
        if self.open.len() >= ringstream_core::limits::partition_open_txns_max {
            return false;
        }
        self.open.insert(producer_id, OpenTxn { epoch, first_offset, opened_ms: ringstream_core::clock::now_ms() });
        true
    }

    /// Closes `producer_id`'s open transaction (a marker), if any.
    pub fn close_txn(&mut self, producer_id: i64) -> Option<OpenTxn> {
        self.open.remove(&producer_id)
    }

    /// Reopens a transaction whose marker was cut from the log.
    pub fn reopen_txn(&mut self, producer_id: i64, txn: OpenTxn) {
        self.open.insert(producer_id, txn);
    }

    pub fn open_txn_of(&self, producer_id: i64) -> Option<OpenTxn> {
        self.open.get(&producer_id).copied()
    }

    /// The least first offset of the open transactions.
    pub fn first_open_offset(&self) -> Option<Offset> {
        self.open.values().map(|t| t.first_offset).min()
    }

    pub fn open_txn_count(&self) -> usize {
        self.open.len()
    }

    /// Open transactions: (producer id, epoch, first offset), by id.
    pub fn open_txns(&self) -> Vec<(i64, OpenTxn)> {
        self.open.iter().map(|(id, t)| (*id, *t)).collect()
    }

    /// The epoch recorded for `producer_id`, if remembered.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// A marker written with a newer epoch (the coordinator fenced the
    /// producer): batches of older epochs are refused from now on.
    pub fn fence(&mut self, producer_id: i64, epoch: i16) {
        let full = self.producers.len() >= partition_producers_max;
        match self.producers.get_mut(&producer_id) {
            Some(entry) if entry.epoch < epoch => {
                entry.epoch = epoch;
                entry.batches.clear();
            }
            Some(_) => {}
            None if !full => {
                self.producers.insert(producer_id, ProducerEntry { epoch, batches: VecDeque::new() });
            }
            None => {}
        }
    }

    /// Every producer remembered: (producer id, epoch, its newest batch), by id.
    pub fn active(&self) -> Vec<(i64, i16, BatchRecord)> {
        self.producers
            .iter()
            .filter_map(|(id, entry)| entry.batches.back().map(|last| (*id, entry.epoch, *last)))
            .collect()
    }

    /// Forgets batches at or after `offset` (the log was cut back there).
    pub fn truncate_from(&mut self, offset: Offset) {
        // A producer known only by its epoch (fenced by a marker) stays.
        self.producers.retain(|_, entry| {
            if entry.batches.is_empty() {
                return true;
            }
            while entry.batches.back().is_some_and(|b| b.base_offset >= offset) {
                entry.batches.pop_back();
            }
            !entry.batches.is_empty()
        });
        self.open.retain(|_, t| t.first_offset < offset);
    }

    /// Snapshot text: header, the offset it covers up to, the transactions
    /// open at that offset, then one line per batch: `<producer id> <epoch>
    /// <first seq> <last seq> <base> <last>`. State recorded for appends
    /// still queued (at or past `end_offset`) is left out, and
    /// `closed_later` are transactions whose markers are still queued: open
    /// as of `end_offset`.
    pub fn encode(&self, end_offset: Offset, closed_later: &[(i64, OpenTxn)]) -> String {
        let mut out = format!("ringstream-producers 2\nend_offset {}\n", end_offset.0);
        let open = self.open.iter().map(|(id, t)| (*id, *t)).chain(closed_later.iter().copied());
        for (id, txn) in open.filter(|(_, t)| t.first_offset < end_offset) {
            out.push_str(&format!("txn {id} {} {}\n", txn.epoch, txn.first_offset.0));
        }
        for (id, entry) in self.producers.iter().filter(|(_, e)| e.batches.is_empty()) {
            out.push_str(&format!("fence {id} {}\n", entry.epoch));
        }
        for (id, entry) in &self.producers {
            for b in entry.batches.iter().filter(|b| b.last_offset < end_offset) {
                out.push_str(&format!(
                    "{id} {} {} {} {} {}\n",
                    entry.epoch, b.first_sequence, b.last_sequence, b.base_offset.0, b.last_offset.0
                ));
            }
        }
        out
    }

    /// Decodes a snapshot; returns the state and the offset it covers up to.
    pub fn decode(text: &str) -> Result<(ProducerState, Offset), String> {
        if !text.ends_with('\n') {
            return Err("torn snapshot".into());
        }
        let mut lines = text.lines();
        if !matches!(lines.next(), Some("ringstream-producers 1" | "ringstream-producers 2")) {
            return Err("bad header".into());
        }
        let end: i64 = lines
            .next()
            .and_then(|l| l.strip_prefix("end_offset "))
            .and_then(|v| v.parse().ok())
            .filter(|v| *v >= 0)
            .ok_or("bad end_offset line")?;
        let mut state = ProducerState::default();
        for (i, line) in lines.enumerate() {
            if let Some(fence) = line.strip_prefix("fence ") {
                let parsed = fence
                    .split_once(' ')
                    .and_then(|(id, epoch)| Some((id.parse::<i64>().ok()?, epoch.parse::<i16>().ok()?)));
                match parsed {
                    Some((id, epoch))
                        if id >= 0 && !state.producers.contains_key(&id) && state.len() < partition_producers_max =>
                    {
                        state.producers.insert(id, ProducerEntry { epoch, batches: VecDeque::new() });
                    }
                    _ => return Err(format!("line {}: invalid fenced producer", i + 3)),
                }
                continue;
            }
            if let Some(txn) = line.strip_prefix("txn ") {
                let fields: Vec<&str> = txn.split(' ').collect();
                let parsed = (fields.len() == 3)
                    .then(|| {
                        Some((
                            fields[0].parse::<i64>().ok()?,
                            fields[1].parse::<i16>().ok()?,
                            fields[2].parse::<i64>().ok()?,
                        ))
                    })
                    .flatten();
                match parsed {
                    Some((id, epoch, first))
                        if id >= 0
                            && first >= 0
                            && first < end
                            && state.open.len() < ringstream_core::limits::partition_open_txns_max =>
                    {
                        let opened_ms = ringstream_core::clock::now_ms();
                        state.open.insert(id, OpenTxn { epoch, first_offset: Offset(first), opened_ms });
                    }
                    _ => return Err(format!("line {}: invalid open transaction", i + 3)),
                }
                continue;
            }
            let fields: Vec<&str> = line.split(' ').collect();
            let parsed = (fields.len() == 6)
                .then(|| {
                    Some((
                        fields[0].parse::<i64>().ok()?,
                        fields[1].parse::<i16>().ok()?,
                        fields[2].parse::<i32>().ok()?,
                        fields[3].parse::<i32>().ok()?,
                        fields[4].parse::<i64>().ok()?,
                        fields[5].parse::<i64>().ok()?,
                    ))
                })
                .flatten();
            let Some((id, epoch, first, last, base, last_offset)) = parsed else {
                return Err(format!("line {}: unparsable", i + 3));
            };
            let valid = id >= 0 && first >= 0 && last >= 0 && base >= 0 && base <= last_offset && last_offset < end;
            let ordered = state.producers.get(&id).map_or(true, |e| {
                e.epoch == epoch
                    && e.batches.back().is_some_and(|b| b.last_offset.0 < base)
                    && e.batches.len() < producer_batches_max
            });
            if !valid || !ordered || (state.len() >= partition_producers_max && !state.producers.contains_key(&id)) {
                return Err(format!("line {}: invalid entry", i + 3));
            }
            state.record(
                id,
                epoch,
                BatchRecord {
                    first_sequence: first,
                    last_sequence: last,
                    base_offset: Offset(base),
                    last_offset: Offset(last_offset),
                },
            );
        }
        Ok((state, Offset(end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i32, last: i32, base: i64) -> BatchRecord {
        BatchRecord {
            first_sequence: first,
            last_sequence: last,
            base_offset: Offset(base),
            last_offset: Offset(base + i64::from(last - first)),
        }
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut state = ProducerState::default();
        assert_eq!(state.check(7, 0, 0, 4), SequenceCheck::Fresh);
        state.record(7, 0, batch(0, 4, 100));
        assert_eq!(state.check(7, 0, 5, 9), SequenceCheck::Fresh);
        state.record(7, 0, batch(5, 9, 105));
        assert_eq!(state.check(7, 0, 0, 4), SequenceCheck::Duplicate(batch(0, 4, 100)));
        assert_eq!(state.check(7, 0, 5, 9), SequenceCheck::Duplicate(batch(5, 9, 105)));
        assert_eq!(state.check(7, 0, 11, 12), SequenceCheck::OutOfOrder { expected: 10, found: 11 });
        assert_eq!(state.check(7, 1, 3, 4), SequenceCheck::OutOfOrder { expected: 0, found: 3 });
        assert_eq!(state.check(7, 1, 0, 0), SequenceCheck::Fresh);
        state.record(7, 1, batch(0, 0, 110));
        assert_eq!(state.check(7, 0, 10, 10), SequenceCheck::FencedEpoch { current: 1, found: 0 });
        // Only the last five batches are remembered.
        for i in 1..=6 {
            state.record(7, 1, batch(i, i, 110 + i64::from(i)));
        }
        assert_eq!(state.check(7, 1, 1, 1), SequenceCheck::OutOfOrder { expected: 7, found: 1 });
        assert!(matches!(state.check(7, 1, 6, 6), SequenceCheck::Duplicate(_)));
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(last_sequence(i32::MAX, 2), 1);
        let mut state = ProducerState::default();
        state.record(
            1,
            0,
            BatchRecord {
                first_sequence: i32::MAX - 1,
                last_sequence: i32::MAX,
                base_offset: Offset(0),
                last_offset: Offset(1),
            },
        );
        assert_eq!(state.check(1, 0, 0, 3), SequenceCheck::Fresh);
    }

    #[test]
    fn truncation_rolls_back_and_snapshots_round_trip() {
        let mut state = ProducerState::default();
        state.record(1, 0, batch(0, 1, 0));
        state.record(2, 3, batch(0, 0, 2));
        state.record(1, 0, batch(2, 3, 3));
        assert!(state.open_txn(2, 3, Offset(2)));
        state.fence(9, 4);
        let text = state.encode(Offset(5), &[]);
        let decoded = ProducerState::decode(&text).unwrap();
        assert_eq!(decoded.1, Offset(5));
        assert_eq!(decoded.0.active(), state.active());
        let open = decoded.0.open_txn_of(2).unwrap();
        assert_eq!((open.epoch, open.first_offset), (3, Offset(2)));
        assert_eq!(decoded.0.epoch_of(9), Some(4), "a fenced producer's epoch is kept");
        assert_eq!(decoded.0.check(9, 3, 0, 0), SequenceCheck::FencedEpoch { current: 4, found: 3 });
        assert!(ProducerState::decode(&text[..text.len() - 1]).is_err());
        assert!(ProducerState::decode("ringstream-producers 1\nend_offset 1\n1 0 0 0 5 5\n").is_err());
        state.truncate_from(Offset(2));
        assert_eq!(state.len(), 2, "producer 1, and the fenced producer 9");
        assert_eq!(state.epoch_of(9), Some(4));
        assert_eq!(state.check(1, 0, 2, 3), SequenceCheck::Fresh, "rolled-back batch can be sent again");
    }
}
