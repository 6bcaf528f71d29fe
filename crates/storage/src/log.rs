//! A partition log: its segments, offsets, epochs and pending appends.
//!
//! Offsets, kept apart from day one because replication will need them:
//! - `next_offset`: the next offset to assign. Appends get offsets when they
//!   are queued, so their order is the submission order.
//! - `log_end_offset`: the end of what is written to the segment files.
//! - `high_watermark`: the end of what is acknowledged. Readers never see
//!   past it. Under `flush=always` it is also fdatasync'd.
//! - `log_start_offset`: the first readable offset: the base offset of the
//!   oldest segment, or higher where DeleteRecords moved it (`log_start`,
//!   persisted in `log-start-offset`; reads below it are out of range).
//!
//! Invariant: log_start <= high_watermark <= log_end <= next_offset.
//!
//! This type holds state and does the synchronous parts; the async work
//! (writes, syncs, reads) lives in `shard_storage`, which never holds a
//! `RefCell` borrow of a log across an `.await`.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;

use bytes::Bytes;
use futures_channel::oneshot;
use glommio::io::DmaFile;
use glommio::sync::StaticPermit;
use tracing::{info, warn};

use crate::cache::PartitionKey;
use crate::checkpoint::{CleanMarker, EpochCheckpoint};
use crate::dir;
use crate::error::{glommio_io, StorageError, StorageResult};
use crate::index::{OffsetIndex, TimeIndex};
use crate::producer_state::{last_sequence, BatchRecord, ProducerState, SequenceCheck};
use crate::recovery::{self, ScanOutcome, ScanStop};
use crate::replica::{LeaderState, Replication, Role};
use crate::segment::Segment;
use crate::txn::{self, Transactions};
use ringstream_core::batch::{self, BatchInfo};
use ringstream_core::limits;
use ringstream_core::types::{LeaderEpoch, Offset, TopicPartition};

/// When an acknowledged append is durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Acknowledge after the write and its fdatasync (survives power loss).
    #[default]
    Always,
    /// Acknowledge after the write (survives `kill -9`); fdatasync every
    /// `interval_ms`.
    Interval { interval_ms: u64 },
}

impl FromStr for FlushPolicy {
    type Err = String;
    /// `always` or `interval_ms=<n>` (n >= 1).
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "always" {
            return Ok(FlushPolicy::Always);
        }
        if let Some(ms) = s.strip_prefix("interval_ms=") {
            let interval_ms: u64 = ms.parse().map_err(|_| format!("bad interval in flush policy {s:?}"))?;
            if interval_ms == 0 || interval_ms > 3_600_000 {
                return Err(format!("flush interval must be 1..=3600000 ms, got {interval_ms}"));
            }
            return Ok(FlushPolicy::Interval { interval_ms });
        }
        Err(format!("flush policy must be `always` or `interval_ms=<n>`, got {s:?}"))
    }
}

/// Per-partition settings, named and defaulted as Kafka's topic configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: i64,
    /// `retention.ms`; -1 keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`; -1 means no size limit.
    pub retention_bytes: i64,
    /// `index.interval.bytes`
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: the largest batch accepted, log overhead included.
    pub max_message_bytes: usize,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps batches.
    pub log_append_time: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: limits::index_interval_bytes,
            max_message_bytes: 1_048_588,
            log_append_time: false,
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> StorageResult<()> {
        let bad = |what: String| Err(StorageError::Config(what));
        if !(limits::segment_bytes_min..=limits::segment_bytes_max).contains(&self.segment_bytes) {
            return bad(format!(
                "segment.bytes {} not in [{}, {}]",
                self.segment_bytes,
                limits::segment_bytes_min,
                limits::segment_bytes_max
            ));
        }
        if self.segment_ms < 1 {
            return bad(format!("segment.ms {} must be at least 1", self.segment_ms));
        }
        if self.retention_ms < -1 || self.retention_bytes < -1 {
            return bad("retention.ms and retention.bytes must be -1 or non-negative".into());
        }
        if self.index_interval_bytes == 0 {
            return bad("index.interval.bytes must be positive".into());
        }
        if !(limits::batch_bytes_min..=limits::batch_bytes_max).contains(&self.max_message_bytes) {
            return bad(format!(
                "max.message.bytes {} not in [{}, {}]",
                self.max_message_bytes,
                limits::batch_bytes_min,
                limits::batch_bytes_max
            ));
        }
        Ok(())
    }
}

/// What an acknowledged append reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub log_start_offset: Offset,
    /// The broker's append time when the log stamps it, else -1.
    pub log_append_time_ms: i64,
}

/// Offsets of a partition at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: Offset,
    pub high_watermark: Offset,
    pub log_end_offset: Offset,
    pub segments: usize,
    pub size_bytes: u64,
    pub leader_epoch: LeaderEpoch,
    pub last_stable_offset: Offset,
}

/// An append that has its offsets but is not written yet.
pub(crate) struct Pending {
    pub batch: Bytes,
    pub info: BatchInfo,
    pub base_offset: Offset,
    pub reply: oneshot::Sender<StorageResult<AppendInfo>>,
    pub _permit: StaticPermit,
    /// A follower's copy of the leader's batch: written as it is, with its
    /// offsets, leader epoch and timestamps.
    pub replica: bool,
}

pub struct PartitionLog {
    pub tp: TopicPartition,
    pub key: PartitionKey,
    pub dir: PathBuf,
    pub config: LogConfig,
    /// By base offset; the last one is the active segment. Never empty.
    pub segments: BTreeMap<Offset, Segment>,
    pub next_offset: Offset,
    pub log_end_offset: Offset,
    pub high_watermark: Offset,
    pub leader_epoch: LeaderEpoch,
    pub epochs: EpochCheckpoint,
    pub(crate) pending: VecDeque<Pending>,
    pub pending_bytes: usize,
    /// The bytes of the active segment's last, partly filled block: the next
    /// write rewrites that block with them in front.
    pub carry: Vec<u8>,
    /// Written but not yet fdatasync'd (interval policy).
    pub unsynced: bool,
    /// flush=always: segments are opened O_DSYNC, so a completed write is
    /// durable (`segment::open_flags`).
    pub sync_writes: bool,
    /// Idempotent producers' recent batches.
    pub producers: ProducerState,
    /// The log start set by DeleteRecords (Offset::ZERO when never moved);
    /// the effective start is the larger of this and the oldest segment's base.
    pub log_start: Offset,
    /// Sole replica, leader or follower (`replica`). Who moves the high
    /// watermark depends on it.
    pub replication: Replication,
    /// The high watermark changed since `high-watermark` was last written.
    pub high_watermark_dirty: bool,
    /// Completed-but-unreplicated and aborted transactions (`txn`).
    pub txns: Transactions,
}

/// What queuing an append did.
pub(crate) enum Enqueued {
    Queued(oneshot::Receiver<StorageResult<AppendInfo>>),
    /// An idempotent producer resent a batch already in the log (or queued).
    Duplicate(BatchRecord),
}

impl PartitionLog {
    /// Opens a partition directory, creating it if new, and recovers it.
    pub async fn open(
        tp: TopicPartition,
        key: PartitionKey,
        dir: PathBuf,
        config: LogConfig,
        now_ms: i64,
        sync_writes: bool,
    ) -> StorageResult<PartitionLog> {
        config.validate()?;
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io("create partition dir", &dir, e))?;
        let bases = dir::list_segments(&dir).map_err(|e| StorageError::io("list segments", &dir, e))?;
        let marker_path = dir.join(dir::CLEAN_MARKER_FILE_NAME);
        let marker = match std::fs::read_to_string(&marker_path) {
            Ok(text) => match CleanMarker::decode(&text) {
                Ok(marker) => Some(marker),
                Err(e) => {
                    warn!(partition = %tp, "ignoring unreadable clean-shutdown marker: {e}");
                    None
                }
            },
            Err(_) => None,
        };
        let mut epochs = read_epochs(&dir, &tp);

        let mut log = PartitionLog {
            tp,
            key,
            dir,
            config,
            segments: BTreeMap::new(),
            next_offset: Offset::ZERO,
            log_end_offset: Offset::ZERO,
            high_watermark: Offset::ZERO,
            leader_epoch: LeaderEpoch(0),
            epochs: EpochCheckpoint::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            carry: Vec::new(),
            unsynced: false,
            sync_writes,
            producers: ProducerState::default(),
            log_start: Offset::ZERO,
            replication: Replication::Sole,
            high_watermark_dirty: false,
            txns: Transactions::default(),
        };
        let (mut producers, producers_end) = read_producer_snapshot(&log.dir, &log.tp);
        // Aborted transactions before the snapshot's end come from the
        // segments' `.txnindex` files; recovery's scan adds the rest.
        for &base in &bases {
            if let Ok(bytes) = std::fs::read(dir::segment_txn_index_path(&log.dir, base)) {
                for entry in txn::decode_index(&bytes) {
                    if entry.last_offset < producers_end {
                        log.txns.push_aborted(entry);
                    }
                }
            }
        }

        if bases.is_empty() {
            let segment =
                Segment::create(&log.dir, Offset::ZERO, log.config.segment_bytes, now_ms, log.sync_writes).await?;
            log.segments.insert(Offset::ZERO, segment);
            dir::sync_dir(&log.dir).await.map_err(|e| StorageError::io("sync dir", &log.dir, e))?;
        } else {
            log.recover_segments(&bases, marker, &mut epochs, &mut producers, producers_end, now_ms).await?;
        }

        // A marker only describes the close that wrote it: remove it before
        // the first append, durably.
        if marker_path.exists() {
            std::fs::remove_file(&marker_path).map_err(|e| StorageError::io("remove marker", &marker_path, e))?;
            dir::sync_dir(&log.dir).await.map_err(|e| StorageError::io("sync dir", &log.dir, e))?;
        }

        let end = log.active().next_offset;
        log.next_offset = end;
        log.log_end_offset = end;
        // A replicated partition's high watermark comes back from its
        // checkpoint (at most the log end); without one, the log end.
        log.high_watermark = read_high_watermark(&log.dir).map_or(end, |hw| hw.min(end));
        log.log_start = read_log_start(&log.dir, &log.tp, end);
        log.high_watermark = log.high_watermark.max(log.log_start_offset().min(end));
        let start = log.log_start_offset();
        epochs.truncate_from_end(end);
        epochs.truncate_from_start(start);
        log.leader_epoch = epochs.latest().map_or(LeaderEpoch(0), |entry| entry.epoch);
        log.epochs = epochs;
        producers.truncate_from(end);
        for (producer_id, open) in log.txns.truncate_from(end) {
            producers.reopen_txn(producer_id, open);
        }
        log.txns.trim_before(start);
        log.producers = producers;
        log.txns.on_high_watermark(log.high_watermark);
        log.check_invariants();
        Ok(log)
    }

    async fn recover_segments(
        &mut self,
        bases: &[Offset],
        marker: Option<CleanMarker>,
        epochs: &mut EpochCheckpoint,
        producers: &mut ProducerState,
        producers_end: Offset,
        now_ms: i64,
    ) -> StorageResult<()> {
        assert!(!bases.is_empty());
        let tail_base = *bases.last().expect("non-empty");
        let mut expected_base: Option<Offset> = None;
        for (i, &base) in bases.iter().enumerate() {
            let is_tail = base == tail_base;
            let (mut segment, file_bytes) = Segment::open(&self.dir, base, now_ms, self.sync_writes).await?;
            if let Some(expected) = expected_base {
                if expected != base {
                    return Err(StorageError::Corrupt {
                        what: "segment sequence",
                        path: segment.log_path.clone(),
                        reason: format!("previous segment ends at offset {expected}, this one starts at {base}"),
                    });
                }
            }
            let clean_tail = is_tail && marker.is_some_and(|m| m.tail_segment_bytes == file_bytes);
            // Where a trusted segment ends: the next segment's base, or the
            // clean marker's log end for the tail.
            let trusted_end = match (is_tail, clean_tail) {
                (false, _) => Some(bases[i + 1]),
                (true, true) => marker.map(|m| m.log_end_offset),
                (true, false) => None,
            };
            let indexes = trusted_end.and_then(|end| self.load_indexes(base, file_bytes, end));
            match indexes {
                Some((offset_index, time_index)) => {
                    // Trusted: a sealed segment, or the tail after a clean close.
                    segment.size_bytes = file_bytes;
                    segment.offset_index = offset_index;
                    segment.time_index = time_index;
                    segment.next_offset =
                        if is_tail { marker.expect("clean tail has a marker").log_end_offset } else { bases[i + 1] };
                }
                None => {
                    let outcome =
                        self.rebuild_segment(&mut segment, file_bytes, epochs, producers, producers_end).await?;
                    if is_tail && producers_end < segment.base_offset {
                        warn!(
                            partition = %self.tp,
                            snapshot_end = %producers_end,
                            "producer snapshot older than the tail segment: duplicates from before it may go undetected"
                        );
                    }
                    if outcome.valid_bytes < file_bytes {
                        let stop = outcome.stop.as_ref().map(|s| s.to_string()).unwrap_or_default();
                        if is_tail && outcome.stop.as_ref().is_some_and(ScanStop::is_zero_fill) {
                            // The end of the data: block padding, or the
                            // preallocated size past it. Expected after any
                            // unclean stop; nothing was cut but zeros' place.
                            info!(
                                partition = %self.tp,
                                segment = %segment.log_path.display(),
                                kept_bytes = outcome.valid_bytes,
                                zero_bytes = file_bytes - outcome.valid_bytes,
                                next_offset = %outcome.next_offset,
                                "recovery found the tail segment's end (zeros follow)"
                            );
                        } else if is_tail {
                            warn!(
                                partition = %self.tp,
                                segment = %segment.log_path.display(),
                                kept_bytes = outcome.valid_bytes,
                                cut_bytes = file_bytes - outcome.valid_bytes,
                                next_offset = %outcome.next_offset,
                                "recovery truncated the tail segment: {stop}"
                            );
                        } else {
                            // A sealed segment was truncated and fsync'd before
                            // its successor existed, so this is real damage.
                            return Err(StorageError::Corrupt {
                                what: "sealed segment",
                                path: segment.log_path.clone(),
                                reason: format!("invalid data at byte {}: {stop}", outcome.valid_bytes),
                            });
                        }
                        segment
                            .file
                            .truncate(outcome.valid_bytes)
                            .await
                            .map_err(|e| StorageError::io("truncate segment", &segment.log_path, glommio_io(e)))?;
                        segment
                            .file
                            .fdatasync()
                            .await
                            .map_err(|e| StorageError::io("fdatasync segment", &segment.log_path, glommio_io(e)))?;
                    }
                    if !is_tail {
                        segment.write_indexes(&self.dir).await?;
                        if segment.next_offset != bases[i + 1] {
                            return Err(StorageError::Corrupt {
                                what: "segment sequence",
                                path: segment.log_path.clone(),
                                reason: format!(
                                    "segment ends at offset {}, next segment starts at {}",
                                    segment.next_offset,
                                    bases[i + 1]
                                ),
                            });
                        }
                    }
                    info!(
                        partition = %self.tp,
                        segment = %segment.log_path.display(),
                        batches = outcome.batches,
                        bytes = outcome.valid_bytes,
                        "rebuilt segment indexes by scanning"
                    );
                }
            }
            segment.acked_bytes = segment.size_bytes;
            expected_base = Some(segment.next_offset);
            if is_tail {
                segment.preallocate_for(segment.size_bytes, self.config.segment_bytes).await?;
                self.carry = read_carry(&segment).await?;
            }
            self.segments.insert(base, segment);
        }
        Ok(())
    }

    /// Loads a segment's index files if both decode and fit the segment:
    /// positions inside the file, offsets below `next_offset`.
    fn load_indexes(&self, base: Offset, file_bytes: u64, next_offset: Offset) -> Option<(OffsetIndex, TimeIndex)> {
        let index_path = dir::segment_index_path(&self.dir, base);
        let time_path = dir::segment_time_index_path(&self.dir, base);
        let index_bytes = std::fs::read(&index_path).ok()?;
        let time_bytes = std::fs::read(&time_path).ok()?;
        let offset_index = OffsetIndex::decode(base, &index_bytes, file_bytes)
            .map_err(|e| warn!(partition = %self.tp, "stale offset index {}: {e}", index_path.display()))
            .ok()?;
        let time_index = TimeIndex::decode(base, &time_bytes)
            .map_err(|e| warn!(partition = %self.tp, "stale time index {}: {e}", time_path.display()))
            .ok()?;
        // Offsets never decrease in an index, so checking the newest entry suffices.
        let offset_index_end = offset_index.entries().last().map(|e| Offset(base.0 + i64::from(e.relative_offset)));
        let stale = offset_index_end.is_some_and(|o| o >= next_offset)
            || time_index.max_timestamp_offset() >= next_offset
            || next_offset < base;
        if stale {
            warn!(partition = %self.tp, segment_base = %base, "index points past the segment's end; rebuilding");
            return None;
        }
        Some((offset_index, time_index))
    }

    /// Scans a segment, rebuilding its indexes and feeding epochs.
    async fn rebuild_segment(
        &mut self,
        segment: &mut Segment,
        file_bytes: u64,
        epochs: &mut EpochCheckpoint,
        producers: &mut ProducerState,
        producers_end: Offset,
    ) -> StorageResult<ScanOutcome> {
        let interval = self.config.index_interval_bytes;
        let mut offset_index = OffsetIndex::new(segment.base_offset);
        let mut time_index = TimeIndex::new(segment.base_offset);
        let file = segment.file.clone();
        let mut txns = std::mem::take(&mut self.txns);
        let outcome = recovery::scan_segment(
            &file,
            &segment.log_path,
            segment.base_offset,
            file_bytes,
            |info, position, bytes| {
                offset_index.on_append(info.base_offset, position as u32, info.total_bytes, interval);
                time_index.on_append(info.max_timestamp, info.last_offset(), info.total_bytes, interval);
                let newer = epochs.latest().map_or(true, |latest| info.leader_epoch > latest.epoch);
                if newer && info.leader_epoch.0 >= 0 {
                    epochs.assign(info.leader_epoch, info.base_offset);
                }
                if info.producer_id >= 0 && info.base_offset >= producers_end {
                    apply_copied_batch(producers, &mut txns, info, bytes);
                }
            },
        )
        .await;
        self.txns = txns;
        let outcome = outcome?;
        segment.offset_index = offset_index;
        segment.time_index = time_index;
        segment.size_bytes = outcome.valid_bytes;
        segment.next_offset = outcome.next_offset;
        Ok(outcome)
    }

    pub fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    pub fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    pub fn log_start_offset(&self) -> Offset {
        self.first_segment_base().max(self.log_start)
    }

    /// The base offset of the oldest segment (at or below the log start).
    pub fn first_segment_base(&self) -> Offset {
        *self.segments.keys().next().expect("a log always has a segment")
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size_bytes).sum()
    }

    pub fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            log_start_offset: self.log_start_offset(),
            high_watermark: self.high_watermark,
            log_end_offset: self.log_end_offset,
            segments: self.segments.len(),
            size_bytes: self.size_bytes(),
            leader_epoch: self.leader_epoch,
            last_stable_offset: self.last_stable_offset(),
        }
    }

    /// Moves the high watermark as this replica's role allows after the
    /// log end or a follower's position moved: the sole replica's is its
    /// log end; a leader's the least log end over the maximal ISR; a
    /// follower's moves only with the leader's (`set_follower_high_watermark`).
    /// Never backwards. Returns whether it moved.
    pub fn advance_high_watermark(&mut self) -> bool {
        let end = self.log_end_offset;
        let next = match &self.replication {
            Replication::Sole => end,
            Replication::Leader(state) => state.high_watermark(end, self.high_watermark),
            Replication::Follower { .. } => self.high_watermark.min(end),
        };
        self.set_high_watermark(next)
    }

    /// A follower takes the leader's high watermark, up to its own log end.
    pub fn set_follower_high_watermark(&mut self, leader_hw: Offset) -> bool {
        let next = leader_hw.min(self.log_end_offset).max(self.high_watermark.min(self.log_end_offset));
        self.set_high_watermark(next)
    }

    fn set_high_watermark(&mut self, next: Offset) -> bool {
        if next == self.high_watermark {
            return false;
        }
        self.high_watermark = next;
        self.txns.on_high_watermark(next);
        if !matches!(self.replication, Replication::Sole) {
            self.high_watermark_dirty = true;
        }
        true
    }

    /// The last stable offset: below it every transaction is decided and
    /// replicated (read_committed consumers read up to it).
    pub fn last_stable_offset(&self) -> Offset {
        first_unstable(&self.producers, &self.txns).map_or(self.high_watermark, |f| f.min(self.high_watermark))
    }

    /// Applies the metadata's view of this replica. A new leader epoch
    /// starts a fresh follower table; the same epoch keeps positions.
    pub fn set_role(&mut self, role: Role, now_ms: i64) {
        let end = self.log_end_offset;
        match role {
            Role::Sole { epoch } => {
                self.leader_epoch = self.leader_epoch.max(epoch);
                self.replication = Replication::Sole;
            }
            Role::Leader(assignment) => {
                self.leader_epoch = self.leader_epoch.max(assignment.epoch);
                match &mut self.replication {
                    Replication::Leader(state) if state.assignment.epoch == assignment.epoch => {
                        state.update(assignment, now_ms, end)
                    }
                    _ => self.replication = Replication::Leader(LeaderState::new(assignment, now_ms, end)),
                }
            }
            Role::Follower { leader, epoch } => {
                self.leader_epoch = self.leader_epoch.max(epoch);
                self.replication = Replication::Follower { leader, epoch };
            }
        }
        self.advance_high_watermark();
    }

    /// Queues a validated batch, assigning its offsets now. Batches of
    /// idempotent producers are checked against their sequence state first.
    pub(crate) fn enqueue(&mut self, batch: Bytes, info: BatchInfo, permit: StaticPermit) -> StorageResult<Enqueued> {
        assert_eq!(batch.len(), info.total_bytes as usize);
        if matches!(self.replication, Replication::Follower { .. }) {
            // Only the leader assigns offsets; a follower copies them.
            return Err(StorageError::NotLeader(self.tp.clone()));
        }
        let control = info.is_control();
        // A coordinator's transactional append (TxnOffsetCommit in the
        // offsets log): no sequence, as Kafka's coordinators write them.
        // Produce refuses such batches from clients.
        let coordinator_txn = info.producer_id >= 0 && !control && info.is_transactional() && info.base_sequence < 0;
        let idempotent = info.producer_id >= 0 && !control && !coordinator_txn;
        let first = info.base_sequence;
        let last = last_sequence(first.max(0), info.last_offset_delta);
        if control || coordinator_txn {
            // A transaction marker (the coordinator's, never a client's:
            // Produce refuses control batches). An older epoch than the
            // producer's is a zombie coordinator's.
            let current = self.producers.epoch_of(info.producer_id);
            if info.producer_id < 0 || current.is_some_and(|c| c > info.producer_epoch) {
                return Err(StorageError::InvalidProducerEpoch {
                    tp: self.tp.clone(),
                    producer_id: info.producer_id,
                    current: current.unwrap_or(-1),
                    found: info.producer_epoch,
                });
            }
        }
        let opens_txn = (idempotent || coordinator_txn)
            && info.is_transactional()
            && self.producers.open_txn_of(info.producer_id).is_none();
        if opens_txn && self.producers.open_txn_count() >= ringstream_core::limits::partition_open_txns_max {
            return Err(StorageError::TooManyOpenTransactions(self.tp.clone()));
        }
        if idempotent {
            let producer_id = info.producer_id;
            if first < 0 {
                return Err(StorageError::OutOfOrderSequence {
                    tp: self.tp.clone(),
                    producer_id,
                    expected: 0,
                    found: first,
                });
            }
            match self.producers.check(producer_id, info.producer_epoch, first, last) {
                SequenceCheck::Fresh => {}
                SequenceCheck::Duplicate(record) => return Ok(Enqueued::Duplicate(record)),
                SequenceCheck::OutOfOrder { expected, found } => {
                    return Err(StorageError::OutOfOrderSequence { tp: self.tp.clone(), producer_id, expected, found })
                }
                SequenceCheck::FencedEpoch { current, found } => {
                    return Err(StorageError::InvalidProducerEpoch { tp: self.tp.clone(), producer_id, current, found })
                }
            }
        }
        let (reply, receiver) = oneshot::channel();
        let base_offset = self.next_offset;
        self.next_offset = base_offset.next(info.last_offset_delta as u32 + 1);
        if idempotent {
            let record = BatchRecord {
                first_sequence: first,
                last_sequence: last,
                base_offset,
                last_offset: Offset(self.next_offset.0 - 1),
            };
            self.producers.record(info.producer_id, info.producer_epoch, record);
        }
        if opens_txn {
            self.producers.open_txn(info.producer_id, info.producer_epoch, base_offset);
        }
        if control {
            let commit = batch::control_type(&batch) == Some(batch::CONTROL_COMMIT);
            apply_marker(
                &mut self.producers,
                &mut self.txns,
                info.producer_id,
                info.producer_epoch,
                base_offset,
                commit,
            );
        }
        self.pending_bytes += batch.len();
        self.pending.push_back(Pending { batch, info, base_offset, reply, _permit: permit, replica: false });
        Ok(Enqueued::Queued(receiver))
    }

    /// Queues a batch fetched from the leader at the offset it has there,
    /// which must be the next one here. Its producer's sequence is recorded
    /// unchecked: the leader checked it.
    pub(crate) fn enqueue_replica(
        &mut self,
        batch: Bytes,
        info: BatchInfo,
        permit: StaticPermit,
    ) -> StorageResult<oneshot::Receiver<StorageResult<AppendInfo>>> {
        if info.base_offset != self.next_offset {
            return Err(StorageError::ReplicaGap {
                tp: self.tp.clone(),
                expected: self.next_offset,
                found: info.base_offset,
            });
        }
        if info.producer_id >= 0 {
            apply_copied_batch(&mut self.producers, &mut self.txns, &info, &batch);
        }
        let (reply, receiver) = oneshot::channel();
        let base_offset = info.base_offset;
        self.next_offset = info.next_offset();
        self.pending_bytes += batch.len();
        self.pending.push_back(Pending { batch, info, base_offset, reply, _permit: permit, replica: true });
        Ok(receiver)
    }

    /// Fails every queued append and rewinds `next_offset` to the log end,
    /// after a write failed. The failed round's own appends are failed by the
    /// caller with the real error.
    pub(crate) fn abort_pending(&mut self) {
        for pending in self.pending.drain(..) {
            let _ = pending.reply.send(Err(StorageError::AppendAborted(self.tp.clone())));
        }
        self.pending_bytes = 0;
        self.next_offset = self.log_end_offset;
        self.producers.truncate_from(self.log_end_offset);
        for (producer_id, open) in self.txns.truncate_from(self.log_end_offset) {
            self.producers.reopen_txn(producer_id, open);
        }
    }

    /// A COMMIT or ABORT marker of `producer_id` at `offset` closes its
    /// open transaction here, and fences older epochs.
    /// Where a read of `offset` starts on disk: the segment holding it, the
    /// indexed position at or before it, and how far that segment may be read.
    pub fn locate(&self, offset: Offset) -> Option<(Rc<DmaFile>, PathBuf, u64, u64)> {
        let (_, segment) = self.segments.range(..=offset).next_back()?;
        if offset >= segment.next_offset && segment.base_offset != self.active().base_offset {
            return None;
        }
        let (_, position) = segment.offset_index.lookup(offset);
        let position = u64::from(position).min(segment.acked_bytes);
        Some((segment.file.clone(), segment.log_path.clone(), position, segment.acked_bytes))
    }

    /// The segment after the one holding `offset`, for reads that run off
    /// the end of one segment.
    pub fn next_segment_base(&self, offset: Offset) -> Option<Offset> {
        self.segments.range((std::ops::Bound::Excluded(offset), std::ops::Bound::Unbounded)).next().map(|(b, _)| *b)
    }

    /// Segments retention may delete now: never the active one.
    pub fn retention_victims(&self, now_ms: i64) -> Vec<Offset> {
        let mut victims = Vec::new();
        let sealed: Vec<&Segment> = self.segments.values().take(self.segments.len() - 1).collect();
        let mut total = self.size_bytes();
        for segment in sealed {
            let by_time = self.config.retention_ms >= 0 && {
                let newest = segment.time_index.max_timestamp();
                newest >= 0 && now_ms.saturating_sub(newest) > self.config.retention_ms
            };
            let by_size = self.config.retention_bytes >= 0
                && total.saturating_sub(segment.size_bytes) >= self.config.retention_bytes as u64;
            if !(by_time || by_size) {
                break; // delete oldest-first only, keeping the log contiguous
            }
            total -= segment.size_bytes;
            victims.push(segment.base_offset);
        }
        victims
    }

    pub fn check_invariants(&self) {
        assert!(!self.segments.is_empty());
        let start = self.log_start_offset();
        assert!(start <= self.high_watermark, "{}: start {} > hw {}", self.tp, start, self.high_watermark);
        assert!(self.high_watermark <= self.log_end_offset);
        assert!(self.log_end_offset <= self.next_offset);
        assert_eq!(self.active().next_offset, self.log_end_offset);
        assert!(self.carry.len() < limits::io_alignment);
        assert_eq!(self.carry.len() as u64, self.active().size_bytes % limits::io_alignment as u64);
        let mut expected = self.first_segment_base();
        for (base, segment) in &self.segments {
            assert_eq!(*base, segment.base_offset);
            assert_eq!(segment.base_offset, expected, "{}: segments are contiguous", self.tp);
            assert!(segment.acked_bytes <= segment.size_bytes);
            expected = segment.next_offset;
        }
    }
}

fn read_epochs(dir: &Path, tp: &TopicPartition) -> EpochCheckpoint {
    let path = dir.join(dir::EPOCH_CHECKPOINT_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => EpochCheckpoint::decode(&text).unwrap_or_else(|e| {
            warn!(partition = %tp, "rebuilding unreadable epoch checkpoint: {e}");
            EpochCheckpoint::new()
        }),
        Err(_) => EpochCheckpoint::new(),
    }
}

/// The log start DeleteRecords left (`LOG_START_FILE_NAME`), at most `end`;
/// Offset::ZERO when absent or unreadable (logged).
fn read_log_start(dir: &Path, tp: &TopicPartition, end: Offset) -> Offset {
    let path = dir.join(dir::LOG_START_FILE_NAME);
    let Ok(text) = std::fs::read_to_string(&path) else { return Offset::ZERO };
    match text.trim_end().strip_prefix("log_start ").and_then(|v| v.parse::<i64>().ok()).filter(|v| *v >= 0) {
        Some(start) if start > end.0 => {
            warn!(partition = %tp, log_start = start, log_end = %end, "log start past the recovered log end; using the log end");
            end
        }
        Some(start) => Offset(start),
        None => {
            warn!(partition = %tp, "ignoring unreadable log start checkpoint {}", path.display());
            Offset::ZERO
        }
    }
}

/// Records an idempotent producer's batch found in the log (recovery) or
/// copied from the leader (a follower), unchecked: it is in the log already.
fn record_copied_batch(producers: &mut ProducerState, info: &BatchInfo) {
    let first = info.base_sequence;
    let record = BatchRecord {
        first_sequence: first,
        last_sequence: last_sequence(first, info.last_offset_delta),
        base_offset: info.base_offset,
        last_offset: info.last_offset(),
    };
    producers.record_recovered(info.producer_id, info.producer_epoch, record);
}

/// The first offset of any transaction not yet decided and replicated.
fn first_unstable(producers: &ProducerState, txns: &Transactions) -> Option<Offset> {
    match (producers.first_open_offset(), txns.first_unreplicated()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A COMMIT or ABORT marker of `producer_id` at `offset` (appended, copied
/// or recovered) closes its open transaction here, and fences older epochs.
fn apply_marker(
    producers: &mut ProducerState,
    txns: &mut Transactions,
    producer_id: i64,
    epoch: i16,
    offset: Offset,
    commit: bool,
) {
    let first = first_unstable(producers, txns).unwrap_or(offset);
    producers.fence(producer_id, epoch);
    if let Some(open) = producers.close_txn(producer_id) {
        txns.complete(producer_id, open, offset, commit, first);
    }
}

/// Applies a batch already in the log (recovery) or copied from the leader
/// (a follower) to the producer and transaction state, unchecked.
fn apply_copied_batch(producers: &mut ProducerState, txns: &mut Transactions, info: &BatchInfo, bytes: &[u8]) {
    if info.is_control() {
        let commit = batch::control_type(bytes) == Some(batch::CONTROL_COMMIT);
        apply_marker(producers, txns, info.producer_id, info.producer_epoch, info.base_offset, commit);
        return;
    }
    if info.base_sequence >= 0 {
        record_copied_batch(producers, info);
    }
    if info.is_transactional() {
        producers.open_txn(info.producer_id, info.producer_epoch, info.base_offset);
    }
}

/// The high watermark checkpoint of a replicated partition, if any.
fn read_high_watermark(dir: &Path) -> Option<Offset> {
    let text = std::fs::read_to_string(dir.join(dir::HIGH_WATERMARK_FILE_NAME)).ok()?;
    text.trim_end().strip_prefix("high_watermark ").and_then(|v| v.parse::<i64>().ok()).filter(|v| *v >= 0).map(Offset)
}

/// The text of the high watermark checkpoint.
pub fn encode_high_watermark(hw: Offset) -> String {
    format!("high_watermark {}\n", hw.0)
}

/// The text of the log start checkpoint.
pub fn encode_log_start(start: Offset) -> String {
    format!("log_start {}\n", start.0)
}

/// The producer snapshot and the offset it covers up to; empty when absent
/// or unreadable (logged).
fn read_producer_snapshot(dir: &Path, tp: &TopicPartition) -> (ProducerState, Offset) {
    let path = dir.join(dir::PRODUCER_SNAPSHOT_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => ProducerState::decode(&text).unwrap_or_else(|e| {
            warn!(partition = %tp, "ignoring unreadable producer snapshot: {e}");
            (ProducerState::default(), Offset::ZERO)
        }),
        Err(_) => (ProducerState::default(), Offset::ZERO),
    }
}

/// The bytes of the tail segment's last partial block.
async fn read_carry(segment: &Segment) -> StorageResult<Vec<u8>> {
    let partial = (segment.size_bytes % limits::io_alignment as u64) as usize;
    if partial == 0 {
        return Ok(Vec::new());
    }
    let start = dir::align_down(segment.size_bytes);
    let block = segment
        .file
        .read_at_aligned(start, limits::io_alignment)
        .await
        .map_err(|e| StorageError::io("read tail block", &segment.log_path, glommio_io(e)))?;
    if block.len() < partial {
        return Err(StorageError::Corrupt {
            what: "tail block",
            path: segment.log_path.clone(),
            reason: format!("read {} bytes, need {partial}", block.len()),
        });
    }
    Ok(block[..partial].to_vec())
}
