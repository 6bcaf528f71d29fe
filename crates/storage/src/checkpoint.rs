//! Small text files that describe a log or a shard: the leader-epoch
//! checkpoint, the partition placement table and the clean-shutdown marker.
//!
//! They are text, not binary, because they are tiny, rarely written, and an
//! operator reading them during an incident should not need a tool; the
//! leader-epoch checkpoint is byte-for-byte Kafka's `leader-epoch-checkpoint`
//! so Kafka's tools and habits carry over.
//!
//! This module is pure: the log and the shard runtime write the files
//! (atomically, by rename) and hand the text here. Everything decoded is
//! untrusted: parsers accept exactly what the encoders write (ASCII digits,
//! single spaces, every line ending in '\n'), never panic, never allocate more
//! than the text's length justifies, and report the first bad line. A missing
//! final newline is treated as a torn write.

use std::collections::HashSet;

use thiserror::Error;

use ringstream_core::limits;
use ringstream_core::limits::placement_entries_max;
use ringstream_core::types::{is_valid_topic_name, LeaderEpoch, Offset, PartitionId, ShardId, TopicPartition};

/// Why a checkpoint's text cannot be used. Lines count from 1.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
    #[error("{count} entries, more than the {max} allowed")]
    TooManyEntries { count: u64, max: u64 },
    #[error("{declared} entries declared, the text ends after {found}")]
    CountMismatch { declared: u64, found: u64 },
    #[error("line {line}: does not increase on the entry before it")]
    NotIncreasing { line: usize },
    #[error("line {line}: partition listed twice")]
    Duplicate { line: usize },
}

fn malformed(line: usize, reason: &'static str) -> CheckpointError {
    CheckpointError::Malformed { line, reason }
}

/// The text's lines, numbered from 1, without their '\n'. Every line,
/// including the last, must end in '\n'.
fn lines(text: &str) -> Result<impl Iterator<Item = (usize, &str)>, CheckpointError> {
    let Some(body) = text.strip_suffix('\n') else {
        let line = text.split('\n').count();
        return Err(malformed(line, "no newline at the end of the text (torn write?)"));
    };
    Ok(body.split('\n').enumerate().map(|(index, line)| (index + 1, line)))
}

/// A non-negative decimal number of ASCII digits only: no sign, no spaces.
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    let mut value: u64 = 0;
    for byte in text.bytes() {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
    }
    Some(value)
}

fn parse_i64(text: &str) -> Option<i64> {
    parse_digits(text).and_then(|value| i64::try_from(value).ok())
}

fn parse_i32(text: &str) -> Option<i32> {
    parse_digits(text).and_then(|value| i32::try_from(value).ok())
}

/// The next line, or `Malformed` naming the line that is missing.
fn line_next<'a>(
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    line_missing: usize,
    reason: &'static str,
) -> Result<(usize, &'a str), CheckpointError> {
    lines.next().ok_or(malformed(line_missing, reason))
}

/// A line that must be `<key> <value>`; returns the value.
fn line_value<'a>(
    line_number: usize,
    line: &'a str,
    key: &str,
    reason: &'static str,
) -> Result<&'a str, CheckpointError> {
    line.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')).ok_or(malformed(line_number, reason))
}

// ---------------------------------------------------------------------------
// Leader-epoch checkpoint
// ---------------------------------------------------------------------------

/// Epoch `epoch` wrote the log from `start_offset` up to the next entry's
/// start offset (or the log end, for the latest epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

/// The leader epochs of a partition's log and where each started, as Kafka's
/// `LeaderEpochFileCache`: epochs and start offsets both strictly increase,
/// and every number is non-negative. Followers use it (through
/// OffsetForLeaderEpoch) to find where their log diverged from the leader's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochCheckpoint {
    entries: Vec<EpochEntry>,
}

/// The file format version Kafka writes.
const epoch_checkpoint_version: &str = "0";

impl EpochCheckpoint {
    pub fn new() -> EpochCheckpoint {
        EpochCheckpoint { entries: Vec::new() }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    fn invariants(&self) {
        assert!(self.entries.len() <= limits::epoch_entries_max);
        for pair in self.entries.windows(2) {
            assert!(pair[0].epoch < pair[1].epoch);
            assert!(pair[0].start_offset < pair[1].start_offset);
        }
        if let Some(first) = self.entries.first() {
            assert!(first.epoch.0 >= 0);
            assert!(first.start_offset.0 >= 0);
        }
    }

    /// Records that `epoch` starts at `start_offset`. The log calls this for
    /// every batch it appends, with the batch's epoch and base offset, so the
    /// common case, the latest epoch again, is a no-op. Returns true when the
    /// entries changed (the caller persists them).
    ///
    /// A newer epoch starting where the latest one started replaces it (that
    /// epoch wrote nothing), as in Kafka. An epoch older than the latest, or a
    /// start offset before the latest's, is a caller bug: the log must
    /// truncate first. When full, the oldest entry is forgotten, which makes
    /// `end_offset_for` answer for it as for an epoch below the first.
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> bool {
        assert!(epoch.0 >= 0, "negative leader epoch {epoch}");
        assert!(start_offset.0 >= 0, "negative start offset {start_offset}");
        let entry = EpochEntry { epoch, start_offset };
        let changed = match self.entries.last_mut() {
            None => {
                self.entries.push(entry);
                true
            }
            Some(latest) => {
                assert!(epoch >= latest.epoch, "leader epoch {epoch} goes back before {}", latest.epoch);
                assert!(
                    start_offset >= latest.start_offset,
                    "epoch {epoch} starts at {start_offset}, before epoch {} at {}",
                    latest.epoch,
                    latest.start_offset
                );
                if epoch == latest.epoch {
                    false
                } else if start_offset == latest.start_offset {
                    *latest = entry;
                    true
                } else {
                    if self.entries.len() == limits::epoch_entries_max {
                        self.entries.remove(0);
                    }
                    self.entries.push(entry);
                    true
                }
            }
        };
        self.invariants();
        changed
    }

    /// The log was truncated at `end_offset` (offsets `>= end_offset` are
    /// gone): removes the epochs that started at or after it.
    pub fn truncate_from_end(&mut self, end_offset: Offset) -> bool {
        let keep = self.entries.partition_point(|entry| entry.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        self.invariants();
        changed
    }

    /// The log's start moved up to `log_start` (retention or DeleteRecords):
    /// removes the epochs that ended before it, and moves the start of the
    /// epoch covering it up to `log_start`, as Kafka does.
    pub fn truncate_from_start(&mut self, log_start: Offset) -> bool {
        let removed = self.entries.partition_point(|entry| entry.start_offset <= log_start);
        let Some(covering) = removed.checked_sub(1).map(|index| self.entries[index]) else {
            return false;
        };
        let moved = EpochEntry { epoch: covering.epoch, start_offset: log_start };
        if removed == 1 && self.entries[0] == moved {
            return false;
        }
        self.entries.drain(..removed);
        self.entries.insert(0, moved);
        self.invariants();
        true
    }

    /// Kafka's `endOffsetFor`, the answer to OffsetForLeaderEpoch: the end
    /// offset of `epoch`, which is the start offset of the first epoch above
    /// it, or `log_end` when `epoch` is the latest. Returned with the largest
    /// known epoch `<= epoch`, or with `epoch` itself when it is below every
    /// known epoch (the follower then truncates to the first epoch's start).
    /// `None` (Kafka's `(-1, -1)`) for a negative epoch, an epoch above the
    /// latest, or no epochs at all.
    pub fn end_offset_for(&self, epoch: LeaderEpoch, log_end: Offset) -> Option<(LeaderEpoch, Offset)> {
        if epoch.0 < 0 {
            return None;
        }
        let latest = self.latest()?;
        if epoch == latest.epoch {
            assert!(log_end >= latest.start_offset, "log end {log_end} before the latest epoch's start");
            return Some((epoch, log_end));
        }
        if epoch > latest.epoch {
            return None;
        }
        let higher_index = self.entries.partition_point(|entry| entry.epoch <= epoch);
        let higher = self.entries[higher_index];
        assert!(higher.epoch > epoch);
        match higher_index.checked_sub(1) {
            None => Some((epoch, higher.start_offset)),
            Some(floor_index) => Some((self.entries[floor_index].epoch, higher.start_offset)),
        }
    }

    /// Kafka's text format: "0", the entry count, then "<epoch> <start_offset>"
    /// per entry, each line ending in '\n'.
    pub fn encode(&self) -> String {
        self.invariants();
        let mut text = format!("{epoch_checkpoint_version}\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        text
    }

    pub fn decode(text: &str) -> Result<EpochCheckpoint, CheckpointError> {
        let mut lines = lines(text)?;
        let (_, version) = line_next(&mut lines, 1, "missing version")?;
        if version != epoch_checkpoint_version {
            return Err(malformed(1, "unsupported version (expected 0)"));
        }
        let (_, count) = line_next(&mut lines, 2, "missing entry count")?;
        let Some(count) = parse_digits(count) else {
            return Err(malformed(2, "entry count is not a number"));
        };
        if count > limits::epoch_entries_max as u64 {
            return Err(CheckpointError::TooManyEntries { count, max: limits::epoch_entries_max as u64 });
        }

        // No capacity up front: the count is untrusted, the lines are not.
        let mut entries: Vec<EpochEntry> = Vec::new();
        for found in 0..count {
            let Some((line_number, line)) = lines.next() else {
                return Err(CheckpointError::CountMismatch { declared: count, found });
            };
            let Some((epoch, start_offset)) = line.split_once(' ') else {
                return Err(malformed(line_number, "expected '<epoch> <start_offset>'"));
            };
            let Some(epoch) = parse_i32(epoch) else {
                return Err(malformed(line_number, "epoch is not a non-negative 32-bit number"));
            };
            let Some(start_offset) = parse_i64(start_offset) else {
                return Err(malformed(line_number, "start offset is not a non-negative 64-bit number"));
            };
            let entry = EpochEntry { epoch: LeaderEpoch(epoch), start_offset: Offset(start_offset) };
            if let Some(last) = entries.last() {
                if entry.epoch <= last.epoch || entry.start_offset <= last.start_offset {
                    return Err(CheckpointError::NotIncreasing { line: line_number });
                }
            }
            entries.push(entry);
        }
        if let Some((line_number, _)) = lines.next() {
            return Err(malformed(line_number, "more lines than the entry count"));
        }

        let checkpoint = EpochCheckpoint { entries };
        checkpoint.invariants();
        Ok(checkpoint)
    }
}

// ---------------------------------------------------------------------------
// Placement table
// ---------------------------------------------------------------------------

const placement_header: &str = "ringstream-placement 1";

/// The partition → shard placement table: a header line
/// "ringstream-placement 1", then "<topic> <partition> <shard>" per partition,
/// in the order given. Entries must be valid (the caller built them).
pub fn encode_placement(entries: &[(TopicPartition, ShardId)]) -> String {
    assert!(entries.len() as u64 <= placement_entries_max);
    let mut seen: HashSet<&TopicPartition> = HashSet::with_capacity(entries.len());
    let mut text = format!("{placement_header}\n");
    for (topic_partition, shard) in entries {
        assert!(is_valid_topic_name(&topic_partition.topic), "invalid topic name {:?}", topic_partition.topic);
        assert!(topic_partition.partition.0 >= 0, "negative partition {topic_partition}");
        assert!(shard.index() < limits::shards_max, "shard {shard} beyond shards_max");
        assert!(seen.insert(topic_partition), "partition {topic_partition} placed twice");
        text.push_str(&format!("{} {} {}\n", topic_partition.topic, topic_partition.partition.0, shard));
    }
    text
}

/// Decodes a table written by `encode_placement`. Rejects a bad header,
/// invalid topic names, negative or unparsable partitions and shards, shards
/// beyond `limits::shards_max`, partitions listed twice, and more than
/// `placement_entries_max` entries. Whether each shard exists in this run is
/// for the caller to check.
pub fn decode_placement(text: &str) -> Result<Vec<(TopicPartition, ShardId)>, CheckpointError> {
    let mut lines = lines(text)?;
    let (_, header) = line_next(&mut lines, 1, "missing header")?;
    if header != placement_header {
        return Err(malformed(1, "expected header 'ringstream-placement 1'"));
    }

    let mut entries: Vec<(TopicPartition, ShardId)> = Vec::new();
    // Keys borrow from the text: memory stays proportional to the input.
    let mut seen: HashSet<(&str, i32)> = HashSet::new();
    for (line_number, line) in lines {
        if entries.len() as u64 >= placement_entries_max {
            return Err(CheckpointError::TooManyEntries {
                count: entries.len() as u64 + 1,
                max: placement_entries_max,
            });
        }
        let mut fields = line.split(' ');
        let (Some(topic), Some(partition), Some(shard), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed(line_number, "expected '<topic> <partition> <shard>'"));
        };
        if !is_valid_topic_name(topic) {
            return Err(malformed(line_number, "invalid topic name"));
        }
        let Some(partition) = parse_i32(partition) else {
            return Err(malformed(line_number, "partition is not a non-negative 32-bit number"));
        };
        let Some(shard) = parse_digits(shard).and_then(|shard| u16::try_from(shard).ok()) else {
            return Err(malformed(line_number, "shard is not a 16-bit number"));
        };
        if usize::from(shard) >= limits::shards_max {
            return Err(malformed(line_number, "shard beyond shards_max"));
        }
        if !seen.insert((topic, partition)) {
            return Err(CheckpointError::Duplicate { line: line_number });
        }
        entries.push((TopicPartition { topic: topic.to_owned(), partition: PartitionId(partition) }, ShardId(shard)));
    }
    assert_eq!(seen.len(), entries.len());
    Ok(entries)
}

// ---------------------------------------------------------------------------
// Clean-shutdown marker
// ---------------------------------------------------------------------------

const clean_marker_header: &str = "ringstream-clean 1";

/// Written by a clean close, deleted when the log is opened for writing. Its
/// presence lets open skip recovery; its contents let open check that the
/// files are the ones that were closed (the tail segment has exactly
/// `tail_segment_bytes` bytes and the log ends at `log_end_offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanMarker {
    pub log_end_offset: Offset,
    pub tail_segment_bytes: u64,
}

impl CleanMarker {
    /// "ringstream-clean 1\nlog_end_offset <n>\nsegment_bytes <n>\n".
    pub fn encode(&self) -> String {
        assert!(self.log_end_offset.0 >= 0, "negative log end offset");
        assert!(self.tail_segment_bytes <= limits::segment_bytes_max, "tail segment beyond segment_bytes_max");
        format!(
            "{clean_marker_header}\nlog_end_offset {}\nsegment_bytes {}\n",
            self.log_end_offset, self.tail_segment_bytes
        )
    }

    pub fn decode(text: &str) -> Result<CleanMarker, CheckpointError> {
        let mut lines = lines(text)?;
        let (_, header) = line_next(&mut lines, 1, "missing header")?;
        if header != clean_marker_header {
            return Err(malformed(1, "expected header 'ringstream-clean 1'"));
        }
        let (line_number, line) = line_next(&mut lines, 2, "missing log_end_offset")?;
        let value = line_value(line_number, line, "log_end_offset", "expected 'log_end_offset <n>'")?;
        let Some(log_end_offset) = parse_i64(value) else {
            return Err(malformed(line_number, "log_end_offset is not a non-negative 64-bit number"));
        };
        let (line_number, line) = line_next(&mut lines, 3, "missing segment_bytes")?;
        let value = line_value(line_number, line, "segment_bytes", "expected 'segment_bytes <n>'")?;
        let Some(tail_segment_bytes) = parse_digits(value) else {
            return Err(malformed(line_number, "segment_bytes is not a non-negative 64-bit number"));
        };
        if tail_segment_bytes > limits::segment_bytes_max {
            return Err(malformed(line_number, "segment_bytes beyond segment_bytes_max"));
        }
        if let Some((line_number, _)) = lines.next() {
            return Err(malformed(line_number, "unexpected line after segment_bytes"));
        }
        Ok(CleanMarker { log_end_offset: Offset(log_end_offset), tail_segment_bytes })
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

    fn checkpoint(entries: &[(i32, i64)]) -> EpochCheckpoint {
        let mut checkpoint = EpochCheckpoint::new();
        for &(epoch, start_offset) in entries {
            assert!(checkpoint.assign(LeaderEpoch(epoch), Offset(start_offset)));
        }
        assert_eq!(checkpoint.entries().len(), entries.len());
        checkpoint
    }

    fn pairs(checkpoint: &EpochCheckpoint) -> Vec<(i32, i64)> {
        checkpoint.entries().iter().map(|entry| (entry.epoch.0, entry.start_offset.0)).collect()
    }

    #[test]
    fn epoch_checkpoint_text_is_kafkas() {
        let checkpoint = checkpoint(&[(0, 0), (3, 100), (7, 250)]);
        assert_eq!(checkpoint.encode(), "0\n3\n0 0\n3 100\n7 250\n");
        assert_eq!(EpochCheckpoint::decode(&checkpoint.encode()), Ok(checkpoint));
        assert_eq!(EpochCheckpoint::new().encode(), "0\n0\n");
        assert_eq!(EpochCheckpoint::decode("0\n0\n"), Ok(EpochCheckpoint::new()));
    }

    #[test]
    fn epoch_assign() {
        let mut checkpoint = EpochCheckpoint::new();
        assert_eq!(checkpoint.latest(), None);
        assert!(checkpoint.assign(LeaderEpoch(1), Offset(0)));
        assert!(!checkpoint.assign(LeaderEpoch(1), Offset(10))); // Every append: no-op.
        assert!(checkpoint.assign(LeaderEpoch(2), Offset(20)));
        assert!(checkpoint.assign(LeaderEpoch(4), Offset(20))); // Epoch 2 wrote nothing.
        assert_eq!(pairs(&checkpoint), [(1, 0), (4, 20)]);
        assert_eq!(checkpoint.latest(), Some(EpochEntry { epoch: LeaderEpoch(4), start_offset: Offset(20) }));
    }

    #[test]
    #[should_panic(expected = "goes back")]
    fn epoch_assign_asserts_epoch_order() {
        let mut checkpoint = checkpoint(&[(3, 0)]);
        checkpoint.assign(LeaderEpoch(2), Offset(10));
    }

    #[test]
    #[should_panic(expected = "before epoch")]
    fn epoch_assign_asserts_offset_order() {
        let mut checkpoint = checkpoint(&[(3, 10)]);
        checkpoint.assign(LeaderEpoch(4), Offset(9));
    }

    #[test]
    fn epoch_truncate_from_end() {
        let mut checkpoint = checkpoint(&[(0, 0), (3, 100), (7, 250)]);
        assert!(!checkpoint.truncate_from_end(Offset(300)));
        assert!(!checkpoint.truncate_from_end(Offset(251)));
        assert!(checkpoint.truncate_from_end(Offset(250)));
        assert_eq!(pairs(&checkpoint), [(0, 0), (3, 100)]);
        assert!(checkpoint.truncate_from_end(Offset(0)));
        assert!(checkpoint.entries().is_empty());
        assert!(!checkpoint.truncate_from_end(Offset(0)));
    }

    #[test]
    fn epoch_truncate_from_start() {
        let mut checkpoint = checkpoint(&[(0, 0), (3, 100), (7, 250)]);
        assert!(!checkpoint.truncate_from_start(Offset(0)));
        assert!(checkpoint.truncate_from_start(Offset(50)));
        assert_eq!(pairs(&checkpoint), [(0, 50), (3, 100), (7, 250)]);
        assert!(checkpoint.truncate_from_start(Offset(100)));
        assert_eq!(pairs(&checkpoint), [(3, 100), (7, 250)]);
        assert!(!checkpoint.truncate_from_start(Offset(100)));
        assert!(checkpoint.truncate_from_start(Offset(1000)));
        assert_eq!(pairs(&checkpoint), [(7, 1000)]);
        let mut empty = EpochCheckpoint::new();
        assert!(!empty.truncate_from_start(Offset(5)));
    }

    #[test]
    fn epoch_end_offset_for_kafka_cases() {
        let checkpoint = checkpoint(&[(2, 10), (3, 100), (7, 250)]);
        let log_end = Offset(300);
        let answer = |epoch: i32| {
            checkpoint.end_offset_for(LeaderEpoch(epoch), log_end).map(|(epoch, offset)| (epoch.0, offset.0))
        };
        assert_eq!(answer(-1), None);
        assert_eq!(answer(0), Some((0, 10))); // Below the first: its own epoch, the first start.
        assert_eq!(answer(2), Some((2, 100)));
        assert_eq!(answer(3), Some((3, 250)));
        assert_eq!(answer(5), Some((3, 250))); // Unknown: the largest lower epoch.
        assert_eq!(answer(7), Some((7, 300))); // Latest: the log end.
        assert_eq!(answer(8), None);
        assert_eq!(EpochCheckpoint::new().end_offset_for(LeaderEpoch(0), log_end), None);
    }

    /// Kafka's `endOffsetFor`, written as plainly as possible.
    fn end_offset_for_brute(entries: &[EpochEntry], epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        if epoch < 0 || entries.is_empty() {
            return None;
        }
        let latest = entries[entries.len() - 1];
        if latest.epoch.0 == epoch {
            return Some((epoch, log_end));
        }
        let higher = entries.iter().find(|entry| entry.epoch.0 > epoch)?;
        match entries.iter().rfind(|entry| entry.epoch.0 <= epoch) {
            None => Some((epoch, higher.start_offset.0)),
            Some(floor) => Some((floor.epoch.0, higher.start_offset.0)),
        }
    }

    #[test]
    fn epoch_random_operations_match_brute_force() {
        let mut rng = Rng::new(11);
        for _ in 0..300 {
            let mut checkpoint = EpochCheckpoint::new();
            let mut epoch = rng.range_i64(0, 3) as i32;
            let mut log_start = 0i64;
            let mut log_end = 0i64;
            for _ in 0..rng.below(60) {
                match rng.below(8) {
                    0 => {
                        // Truncate the tail (follower divergence).
                        log_end = rng.range_i64(log_start, log_end);
                        checkpoint.truncate_from_end(Offset(log_end));
                        assert!(checkpoint.entries().iter().all(|entry| entry.start_offset.0 < log_end));
                    }
                    1 => {
                        // Retention moves the start.
                        log_start = rng.range_i64(log_start, log_end);
                        let before = checkpoint.clone();
                        let changed = checkpoint.truncate_from_start(Offset(log_start));
                        assert_eq!(changed, before != checkpoint);
                        assert!(checkpoint.entries().iter().all(|entry| entry.start_offset.0 >= log_start));
                    }
                    2 => epoch += rng.range_i64(1, 3) as i32,
                    _ => {
                        // Appends in the current epoch.
                        let before = checkpoint.clone();
                        let changed = checkpoint.assign(LeaderEpoch(epoch), Offset(log_end));
                        assert_eq!(changed, before != checkpoint);
                        log_end += rng.range_i64(1, 20);
                    }
                }
                let decoded = EpochCheckpoint::decode(&checkpoint.encode()).expect("round trip");
                assert_eq!(decoded, checkpoint);
                for probe in -1..=epoch + 2 {
                    let got = checkpoint
                        .end_offset_for(LeaderEpoch(probe), Offset(log_end))
                        .map(|(epoch, offset)| (epoch.0, offset.0));
                    assert_eq!(got, end_offset_for_brute(checkpoint.entries(), probe, log_end), "epoch {probe}");
                }
            }
        }
    }

    #[test]
    fn epoch_decode_rejects_corruption() {
        let too_many = format!("0\n{}\n", limits::epoch_entries_max + 1);
        let cases: Vec<(&str, &str, CheckpointError)> = vec![
            ("empty", "", malformed(1, "no newline at the end of the text (torn write?)")),
            ("torn", "0\n2\n0 0\n3 1", malformed(4, "no newline at the end of the text (torn write?)")),
            ("version", "1\n0\n", malformed(1, "unsupported version (expected 0)")),
            ("version spaces", " 0\n0\n", malformed(1, "unsupported version (expected 0)")),
            ("no count", "0\n", malformed(2, "missing entry count")),
            ("count", "0\nx\n", malformed(2, "entry count is not a number")),
            ("negative count", "0\n-1\n", malformed(2, "entry count is not a number")),
            ("count overflow", "0\n99999999999999999999999\n", malformed(2, "entry count is not a number")),
            (
                "too many",
                &too_many,
                CheckpointError::TooManyEntries {
                    count: limits::epoch_entries_max as u64 + 1,
                    max: limits::epoch_entries_max as u64,
                },
            ),
            ("short", "0\n2\n0 0\n", CheckpointError::CountMismatch { declared: 2, found: 1 }),
            ("long", "0\n1\n0 0\n3 1\n", malformed(4, "more lines than the entry count")),
            ("blank line", "0\n1\n0 0\n\n", malformed(4, "more lines than the entry count")),
            ("one field", "0\n1\n0\n", malformed(3, "expected '<epoch> <start_offset>'")),
            ("tab", "0\n1\n0\t0\n", malformed(3, "expected '<epoch> <start_offset>'")),
            ("two spaces", "0\n1\n0  0\n", malformed(3, "start offset is not a non-negative 64-bit number")),
            ("negative epoch", "0\n1\n-1 0\n", malformed(3, "epoch is not a non-negative 32-bit number")),
            ("epoch overflow", "0\n1\n2147483648 0\n", malformed(3, "epoch is not a non-negative 32-bit number")),
            ("plus sign", "0\n1\n+1 0\n", malformed(3, "epoch is not a non-negative 32-bit number")),
            ("negative offset", "0\n1\n1 -5\n", malformed(3, "start offset is not a non-negative 64-bit number")),
            (
                "offset overflow",
                "0\n1\n1 9223372036854775808\n",
                malformed(3, "start offset is not a non-negative 64-bit number"),
            ),
            ("crlf", "0\r\n0\r\n", malformed(1, "unsupported version (expected 0)")),
            ("epoch repeats", "0\n2\n1 0\n1 5\n", CheckpointError::NotIncreasing { line: 4 }),
            ("epoch goes back", "0\n2\n2 0\n1 5\n", CheckpointError::NotIncreasing { line: 4 }),
            ("offset repeats", "0\n2\n1 5\n2 5\n", CheckpointError::NotIncreasing { line: 4 }),
            ("offset goes back", "0\n2\n1 5\n2 4\n", CheckpointError::NotIncreasing { line: 4 }),
        ];
        for (name, text, expected) in cases {
            assert_eq!(EpochCheckpoint::decode(text), Err(expected), "{name}");
        }
        let decoded = EpochCheckpoint::decode("0\n2\n0 0\n2147483647 9223372036854775807\n").expect("extremes");
        assert_eq!(pairs(&decoded), [(0, 0), (i32::MAX, i64::MAX)]);
    }

    fn placement_sample() -> Vec<(TopicPartition, ShardId)> {
        vec![
            (TopicPartition::new("orders", 0), ShardId(0)),
            (TopicPartition::new("orders", 1), ShardId(3)),
            (TopicPartition::new("a-b.c_d", 2147483647), ShardId(1023)),
            (TopicPartition::new("x".repeat(249), 0), ShardId(1)),
        ]
    }

    #[test]
    fn placement_round_trips() {
        let entries = placement_sample();
        let text = encode_placement(&entries);
        assert!(text.starts_with("ringstream-placement 1\norders 0 0\norders 1 3\na-b.c_d 2147483647 1023\n"));
        assert_eq!(decode_placement(&text), Ok(entries));
        assert_eq!(encode_placement(&[]), "ringstream-placement 1\n");
        assert_eq!(decode_placement("ringstream-placement 1\n"), Ok(vec![]));
    }

    #[test]
    #[should_panic(expected = "placed twice")]
    fn placement_encode_asserts_unique() {
        let entries = vec![(TopicPartition::new("t", 0), ShardId(0)), (TopicPartition::new("t", 0), ShardId(1))];
        encode_placement(&entries);
    }

    #[test]
    fn placement_decode_rejects_corruption() {
        let header = "ringstream-placement 1\n";
        let long_topic = format!("{header}{} 0 0\n", "x".repeat(250));
        let cases: Vec<(&str, String, CheckpointError)> = vec![
            ("empty", String::new(), malformed(1, "no newline at the end of the text (torn write?)")),
            ("torn", format!("{header}t 0 0"), malformed(2, "no newline at the end of the text (torn write?)")),
            ("header", "ringstream-placement 2\n".into(), malformed(1, "expected header 'ringstream-placement 1'")),
            ("no header", "t 0 0\n".into(), malformed(1, "expected header 'ringstream-placement 1'")),
            ("two fields", format!("{header}t 0\n"), malformed(2, "expected '<topic> <partition> <shard>'")),
            ("four fields", format!("{header}t 0 0 0\n"), malformed(2, "expected '<topic> <partition> <shard>'")),
            ("blank line", format!("{header}\n"), malformed(2, "expected '<topic> <partition> <shard>'")),
            ("bad topic", format!("{header}a/b 0 0\n"), malformed(2, "invalid topic name")),
            ("dot topic", format!("{header}.. 0 0\n"), malformed(2, "invalid topic name")),
            ("long topic", long_topic, malformed(2, "invalid topic name")),
            (
                "negative partition",
                format!("{header}t -1 0\n"),
                malformed(2, "partition is not a non-negative 32-bit number"),
            ),
            (
                "partition overflow",
                format!("{header}t 2147483648 0\n"),
                malformed(2, "partition is not a non-negative 32-bit number"),
            ),
            ("shard word", format!("{header}t 0 zero\n"), malformed(2, "shard is not a 16-bit number")),
            ("shard overflow", format!("{header}t 0 65536\n"), malformed(2, "shard is not a 16-bit number")),
            ("shard beyond max", format!("{header}t 0 1024\n"), malformed(2, "shard beyond shards_max")),
            ("duplicate", format!("{header}t 0 0\nu 0 1\nt 0 2\n"), CheckpointError::Duplicate { line: 4 }),
        ];
        for (name, text, expected) in cases {
            assert_eq!(decode_placement(&text), Err(expected), "{name}");
        }
    }

    #[test]
    fn clean_marker_round_trips() {
        let marker = CleanMarker { log_end_offset: Offset(12345), tail_segment_bytes: 4096 };
        let text = marker.encode();
        assert_eq!(text, "ringstream-clean 1\nlog_end_offset 12345\nsegment_bytes 4096\n");
        assert_eq!(CleanMarker::decode(&text), Ok(marker));
        let extremes = CleanMarker { log_end_offset: Offset(i64::MAX), tail_segment_bytes: limits::segment_bytes_max };
        assert_eq!(CleanMarker::decode(&extremes.encode()), Ok(extremes));
    }

    #[test]
    fn clean_marker_decode_rejects_corruption() {
        let beyond = format!("ringstream-clean 1\nlog_end_offset 0\nsegment_bytes {}\n", limits::segment_bytes_max + 1);
        let cases: Vec<(&str, &str, CheckpointError)> = vec![
            ("empty", "", malformed(1, "no newline at the end of the text (torn write?)")),
            (
                "torn",
                "ringstream-clean 1\nlog_end_offset 5\nsegment_bytes 1",
                malformed(3, "no newline at the end of the text (torn write?)"),
            ),
            ("header", "ringstream-clean 2\n", malformed(1, "expected header 'ringstream-clean 1'")),
            ("only header", "ringstream-clean 1\n", malformed(2, "missing log_end_offset")),
            ("key", "ringstream-clean 1\nlog_end 5\n", malformed(2, "expected 'log_end_offset <n>'")),
            ("no space", "ringstream-clean 1\nlog_end_offset5\n", malformed(2, "expected 'log_end_offset <n>'")),
            (
                "negative",
                "ringstream-clean 1\nlog_end_offset -5\nsegment_bytes 0\n",
                malformed(2, "log_end_offset is not a non-negative 64-bit number"),
            ),
            ("no segment", "ringstream-clean 1\nlog_end_offset 5\n", malformed(3, "missing segment_bytes")),
            (
                "swapped",
                "ringstream-clean 1\nsegment_bytes 0\nlog_end_offset 5\n",
                malformed(2, "expected 'log_end_offset <n>'"),
            ),
            (
                "segment word",
                "ringstream-clean 1\nlog_end_offset 5\nsegment_bytes x\n",
                malformed(3, "segment_bytes is not a non-negative 64-bit number"),
            ),
            ("segment beyond max", &beyond, malformed(3, "segment_bytes beyond segment_bytes_max")),
            (
                "extra line",
                "ringstream-clean 1\nlog_end_offset 5\nsegment_bytes 0\n\n",
                malformed(4, "unexpected line after segment_bytes"),
            ),
        ];
        for (name, text, expected) in cases {
            assert_eq!(CleanMarker::decode(text), Err(expected), "{name}");
        }
    }

    /// Random text, biased towards the formats' own alphabet and towards
    /// mutations of valid encodings so the parsers get past their headers.
    fn text_random(rng: &mut Rng) -> String {
        let valid = match rng.below(3) {
            0 => {
                let mut checkpoint = EpochCheckpoint::new();
                let mut offset = 0;
                for epoch in 0..rng.below(6) as i32 {
                    offset += rng.range_i64(0, 50);
                    checkpoint.assign(LeaderEpoch(epoch * 2), Offset(offset));
                }
                checkpoint.encode()
            }
            1 => {
                let entries: Vec<(TopicPartition, ShardId)> = (0..rng.below(5) as i32)
                    .map(|partition| (TopicPartition::new("t-1", partition), ShardId(rng.below(1024) as u16)))
                    .collect();
                encode_placement(&entries)
            }
            _ => CleanMarker {
                log_end_offset: Offset(rng.range_i64(0, 1 << 40)),
                tail_segment_bytes: rng.below(1 << 31),
            }
            .encode(),
        };
        let alphabet = b"0123456789 -\n\r\tx.ringstream-placementclean_offsetbytes";
        let mut bytes = valid.into_bytes();
        for _ in 0..rng.below(4) {
            let at = rng.below(bytes.len() as u64 + 1) as usize;
            let byte = alphabet[rng.below(alphabet.len() as u64) as usize];
            match rng.below(3) {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ if at < bytes.len() => bytes[at] = byte,
                _ => {}
            }
        }
        if rng.chance(10) {
            bytes = (0..rng.below(60)).map(|_| alphabet[rng.below(alphabet.len() as u64) as usize]).collect();
        }
        // The alphabet is ASCII, so this never fails; fall back regardless.
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn decode_never_panics_and_round_trips() {
        let mut rng = Rng::new(12);
        let (mut ok_epoch, mut ok_placement, mut ok_marker) = (0, 0, 0);
        for _ in 0..5000 {
            let text = text_random(&mut rng);
            if let Ok(checkpoint) = EpochCheckpoint::decode(&text) {
                ok_epoch += 1;
                assert_eq!(EpochCheckpoint::decode(&checkpoint.encode()), Ok(checkpoint));
            }
            if let Ok(entries) = decode_placement(&text) {
                ok_placement += 1;
                assert_eq!(decode_placement(&encode_placement(&entries)), Ok(entries));
            }
            if let Ok(marker) = CleanMarker::decode(&text) {
                ok_marker += 1;
                assert_eq!(CleanMarker::decode(&marker.encode()), Ok(marker));
            }
        }
        assert!(ok_epoch > 100 && ok_placement > 100 && ok_marker > 100, "{ok_epoch} {ok_placement} {ok_marker}");
    }
}
