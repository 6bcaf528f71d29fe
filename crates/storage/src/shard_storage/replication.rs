//! The storage side of replication: roles, the leader's view of its
//! followers' fetches, a follower's high watermark, truncation to a
//! divergence point, and the high watermark checkpoint. The replica
//! fetchers and the ISR requests to the controller live in the broker.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::log::encode_high_watermark;
use crate::replica::{IsrChange, ReplicaId, Replication, Role};
use ringstream_core::types::LeaderEpoch;
use tracing::{info, warn};

use super::*;

/// Where a follower fetches from: the partition's leader and epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowedPartition {
    pub tp: TopicPartition,
    pub leader: ReplicaId,
    pub epoch: LeaderEpoch,
    pub log_end: Offset,
    /// The newest epoch in this replica's log (-1: none).
    pub last_epoch: LeaderEpoch,
}

/// Counts for `ringstream cluster describe` and the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicationCounts {
    pub leaders: usize,
    pub followers: usize,
    /// Led here with fewer replicas in the ISR than assigned.
    pub under_replicated: usize,
}

impl ShardStorage {
    /// Applies the metadata's role for a partition. Waiters wake if the
    /// high watermark moved.
    pub fn set_role(&self, tp: &TopicPartition, role: Role) -> StorageResult<()> {
        let partition = self.partition(tp)?;
        let before = partition.log.borrow().high_watermark;
        partition.log.borrow_mut().set_role(role, self.now_ms());
        if partition.log.borrow().high_watermark != before {
            wake(&partition);
        }
        Ok(())
    }

    /// The partition's replication state, to carry across a move between
    /// shards (`restore_replication` on the new owner).
    pub fn replication(&self, tp: &TopicPartition) -> StorageResult<Replication> {
        Ok(self.partition(tp)?.log.borrow().replication.clone())
    }

    /// Puts back the replication state a partition had on its previous
    /// owner (a live move): role, ISR and follower positions.
    pub fn restore_replication(&self, tp: &TopicPartition, replication: Replication) -> StorageResult<()> {
        let partition = self.partition(tp)?;
        {
            let mut log = partition.log.borrow_mut();
            if let Replication::Leader(state) = &replication {
                log.leader_epoch = log.leader_epoch.max(state.assignment.epoch);
            }
            if let Replication::Follower { epoch, .. } = &replication {
                log.leader_epoch = log.leader_epoch.max(*epoch);
            }
            log.replication = replication;
            log.advance_high_watermark();
        }
        wake(&partition);
        Ok(())
    }

    /// A follower's fetch from `offset`: records its position (which may
    /// move the high watermark), checks its last fetched epoch against this
    /// log (KIP-320: where they diverge, the follower truncates before it
    /// fetches again; `ReadOutput::diverging`), and reads up to the log end.
    pub async fn read_replica(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
        replica: ReplicaId,
        last_fetched_epoch: LeaderEpoch,
    ) -> StorageResult<ReadOutput> {
        let partition = self.partition(tp)?;
        let diverging = {
            let mut log = partition.log.borrow_mut();
            let follows =
                matches!(&log.replication, Replication::Leader(state) if state.followers.contains_key(&replica));
            if !follows {
                // Only this leader's own followers read past the high watermark.
                return Err(StorageError::NotLeader(tp.clone()));
            }
            let end = log.log_end_offset;
            let diverging = if last_fetched_epoch.0 >= 0 {
                match log.epochs.end_offset_for(last_fetched_epoch, end) {
                    Some((epoch, epoch_end)) if epoch != last_fetched_epoch || epoch_end < offset => {
                        Some((epoch, epoch_end))
                    }
                    Some(_) => None,
                    // The follower has an epoch this leader never had (an
                    // unclean election) and records past its end: it cuts
                    // back to this log's end.
                    None if offset > end => Some((log.epochs.latest().map_or(LeaderEpoch(-1), |e| e.epoch), end)),
                    // Older than anything here: nothing to compare.
                    None => None,
                }
            } else {
                None
            };
            if let Some((epoch, epoch_end)) = diverging {
                info!(
                    partition = %tp,
                    replica,
                    fetch_offset = %offset,
                    last_fetched_epoch = last_fetched_epoch.0,
                    epoch = epoch.0,
                    end_offset = %epoch_end,
                    "follower's log diverges from the leader's"
                );
            }
            if diverging.is_none() && offset > end {
                warn!(
                    partition = %tp,
                    replica,
                    fetch_offset = %offset,
                    log_end = %end,
                    last_fetched_epoch = last_fetched_epoch.0,
                    epochs = ?log.epochs.entries(),
                    "follower fetches past the log end"
                );
            }
            if diverging.is_none() && offset <= end {
                let now = self.now_ms();
                if let Replication::Leader(state) = &mut log.replication {
                    state.on_fetch(replica, offset, end, now);
                }
            }
            diverging
        };
        if diverging.is_none() && partition.log.borrow_mut().advance_high_watermark() {
            wake(&partition);
        }
        if let Some(diverging) = diverging {
            let log = partition.log.borrow();
            let output = ReadOutput {
                batches: Vec::new(),
                bytes: 0,
                high_watermark: log.high_watermark,
                log_start_offset: log.log_start_offset(),
                from_cache: 0,
                diverging: Some(diverging),
                last_stable_offset: log.last_stable_offset(),
                aborted: Vec::new(),
            };
            return Ok(output);
        }
        let output = self.read_from(&partition, tp, offset, max_bytes, ReadBound::LogEnd).await?;
        partition.traffic_bytes.set(partition.traffic_bytes.get() + output.bytes as u64);
        Ok(output)
    }

    /// A follower takes its leader's high watermark (capped at its log end).
    pub fn set_follower_high_watermark(&self, tp: &TopicPartition, leader_hw: Offset) -> StorageResult<()> {
        let partition = self.partition(tp)?;
        if partition.log.borrow_mut().set_follower_high_watermark(leader_hw) {
            wake(&partition);
        }
        Ok(())
    }

    /// The partitions this shard follows, with where to fetch them from.
    pub fn followed(&self) -> Vec<FollowedPartition> {
        let partitions = self.inner.partitions.borrow();
        let mut out: Vec<FollowedPartition> = partitions
            .iter()
            .filter_map(|(tp, p)| {
                let log = p.log.borrow();
                match log.replication {
                    Replication::Follower { leader, epoch } => Some(FollowedPartition {
                        tp: tp.clone(),
                        leader,
                        epoch,
                        log_end: log.next_offset,
                        last_epoch: log.epochs.latest().map_or(LeaderEpoch(-1), |e| e.epoch),
                    }),
                    _ => None,
                }
            })
            .collect();
        out.sort_by(|a, b| a.tp.cmp(&b.tp));
        out
    }

    /// The ISR changes this shard's leaders should ask the controller for.
    pub fn isr_changes(&self, lag_ms: i64, retry_ms: i64) -> Vec<(TopicPartition, IsrChange)> {
        let now = self.now_ms();
        let partitions = self.inner.partitions.borrow();
        let mut out = Vec::new();
        for (tp, p) in partitions.iter() {
            let mut log = p.log.borrow_mut();
            let hw = log.high_watermark;
            if let Replication::Leader(state) = &mut log.replication {
                if let Some(change) = state.isr_change(now, lag_ms, hw, retry_ms) {
                    out.push((tp.clone(), change));
                }
            }
            // A join asked for counts toward the high watermark at once.
            drop(log);
        }
        out
    }

    pub fn replication_counts(&self) -> ReplicationCounts {
        let mut counts = ReplicationCounts::default();
        for p in self.inner.partitions.borrow().values() {
            match &p.log.borrow().replication {
                Replication::Sole => {}
                Replication::Leader(state) => {
                    counts.leaders += 1;
                    if state.assignment.isr.len() < state.assignment.replicas.len() {
                        counts.under_replicated += 1;
                    }
                }
                Replication::Follower { .. } => counts.followers += 1,
            }
        }
        counts
    }

    /// Writes the high watermark of every replicated partition whose high
    /// watermark moved since its last checkpoint (Kafka's
    /// `replication-offset-checkpoint`, per partition here). A restart
    /// starts from it, so a replica never exposes records that a later
    /// leader may not have.
    pub async fn checkpoint_high_watermarks(&self) {
        let dirty: Vec<(TopicPartition, PathBuf, Offset)> = self
            .inner
            .partitions
            .borrow()
            .iter()
            .filter_map(|(tp, p)| {
                let mut log = p.log.borrow_mut();
                if !log.high_watermark_dirty {
                    return None;
                }
                log.high_watermark_dirty = false;
                Some((tp.clone(), log.dir.clone(), log.high_watermark))
            })
            .collect();
        for (tp, dir, hw) in dirty {
            let text = encode_high_watermark(hw).into_bytes();
            if let Err(e) = dir::write_file_atomic(&dir, dir::HIGH_WATERMARK_FILE_NAME, text).await {
                warn!(partition = %tp, "writing the high watermark checkpoint failed: {e}");
                if let Ok(p) = self.partition(&tp) {
                    p.log.borrow_mut().high_watermark_dirty = true;
                }
            }
        }
    }

    /// Cuts a follower's log back to `offset` (a divergence point from its
    /// leader), durably: the partition closes as for a move, the segments
    /// past the point go, the one holding it is cut at a batch boundary,
    /// and it reopens through recovery (indexes, epochs and producers
    /// rebuilt for what is left). Returns the new log end. Nothing at or
    /// below the high watermark is ever cut.
    pub async fn truncate_to(&self, tp: &TopicPartition, offset: Offset) -> StorageResult<Offset> {
        let partition = self.partition(tp)?;
        let (end, start, hw, replication, leader_epoch) = {
            let log = partition.log.borrow();
            (log.log_end_offset, log.log_start_offset(), log.high_watermark, log.replication.clone(), log.leader_epoch)
        };
        let offset = offset.max(start);
        if offset >= end {
            return Ok(end);
        }
        if offset < hw {
            warn!(partition = %tp, offset = %offset, high_watermark = %hw, "truncating below the high watermark");
        }
        let partition =
            self.reopen_after(tp, replication, leader_epoch, move |dir| cut_segment_files(dir, offset)).await?;
        let new_end = {
            let mut log = partition.log.borrow_mut();
            log.high_watermark = log.high_watermark.min(hw).min(log.log_end_offset);
            log.log_end_offset
        };
        info!(partition = %tp, from = %end, to = %new_end, "follower truncated its log to the leader's");
        Ok(new_end)
    }
}

impl ShardStorage {
    /// Empties a follower's log and starts it at `offset`: the leader's log
    /// starts past everything this replica has (retention or compaction
    /// moved it while this replica was away), as Kafka's
    /// `truncateFullyAndStartAt`. Durable, like `truncate_to`.
    pub async fn restart_log_at(&self, tp: &TopicPartition, offset: Offset) -> StorageResult<()> {
        let partition = self.partition(tp)?;
        let (replication, leader_epoch) = {
            let log = partition.log.borrow();
            (log.replication.clone(), log.leader_epoch)
        };
        self.reopen_after(tp, replication, leader_epoch, move |dir| start_segment_files_at(dir, offset)).await?;
        info!(partition = %tp, start = %offset, "follower's log restarted at the leader's log start");
        Ok(())
    }
}

impl ShardStorage {
    /// Closes a follower's partition as for a move, runs `surgery` on its
    /// files (blocking, off the executor), reopens it through recovery and
    /// gives it back its replication state and leader epoch. The shared
    /// part of `truncate_to` and `restart_log_at`.
    async fn reopen_after(
        &self,
        tp: &TopicPartition,
        replication: Replication,
        leader_epoch: LeaderEpoch,
        surgery: impl FnOnce(&Path) -> io::Result<()> + Send + 'static,
    ) -> StorageResult<Rc<Partition>> {
        let config = self.release_partition(tp).await?;
        let dir = self.inner.config.data_dir.join(tp.dir_name());
        let cut = glommio::executor().spawn_blocking(move || surgery(&dir)).await;
        if let Err(e) = cut {
            // Reopen whatever is there: recovery makes it consistent.
            warn!(partition = %tp, "changing the log's files failed: {e}");
        }
        self.open_partition(tp.clone(), config).await?;
        let partition = self.partition(tp)?;
        {
            let mut log = partition.log.borrow_mut();
            log.leader_epoch = log.leader_epoch.max(leader_epoch);
            log.replication = replication;
            log.high_watermark_dirty = true;
        }
        Ok(partition)
    }
}

/// Blocking file surgery for `restart_log_at` on a closed partition: every
/// segment and its indexes go, an empty segment named for `offset` takes
/// their place, and the checkpoints that described the old log go too.
fn start_segment_files_at(dir: &Path, offset: Offset) -> io::Result<()> {
    for base in dir::list_segments(dir)? {
        for path in dir::segment_file_paths(dir, base) {
            remove_file_if_exists(&path)?;
        }
    }
    for name in [
        dir::CLEAN_MARKER_FILE_NAME,
        dir::EPOCH_CHECKPOINT_FILE_NAME,
        dir::PRODUCER_SNAPSHOT_FILE_NAME,
        dir::LOG_START_FILE_NAME,
        dir::HIGH_WATERMARK_FILE_NAME,
    ] {
        remove_file_if_exists(&dir.join(name))?;
    }
    std::fs::File::create(dir::segment_log_path(dir, offset))?.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

fn wake(partition: &Partition) {
    for waiter in partition.data_waiters.borrow_mut().drain(..) {
        let _ = waiter.send(());
    }
}

/// Blocking file surgery for `truncate_to`, on a closed partition: drops
/// the segments after `offset`, cuts the one holding it before the first
/// batch that reaches `offset`, removes its now stale indexes and the
/// clean-shutdown marker (so the next open scans it), all fsync'd.
fn cut_segment_files(dir: &Path, offset: Offset) -> io::Result<()> {
    let bases = dir::list_segments(dir)?;
    let holder = bases.iter().rev().find(|&&b| b <= offset).copied();
    for &base in bases.iter().filter(|&&b| b > offset) {
        for path in dir::segment_file_paths(dir, base) {
            remove_file_if_exists(&path)?;
        }
    }
    if let Some(base) = holder {
        let path = dir::segment_log_path(dir, base);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
        let len = file.metadata()?.len();
        // Batch framing: base offset (8), length (4), ..., last offset
        // delta at byte 23 (4).
        let mut header = [0u8; 27];
        let mut position = 0u64;
        while position + header.len() as u64 <= len {
            file.read_exact_at(&mut header, position)?;
            let base_offset = i64::from_be_bytes(header[0..8].try_into().expect("8 bytes"));
            let length = i32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
            let last_delta = i32::from_be_bytes(header[23..27].try_into().expect("4 bytes"));
            if length <= 0 || last_delta < 0 {
                break; // zeros: the end of the data
            }
            if base_offset.saturating_add(i64::from(last_delta)) >= offset.0 {
                break;
            }
            position += 12 + length as u64;
        }
        file.set_len(position.min(len))?;
        file.sync_all()?;
        // Its indexes go (the transaction index too: recovery rescans the
        // cut segment and rebuilds them from what is left).
        for path in dir::segment_file_paths(dir, base).iter().skip(1) {
            remove_file_if_exists(path)?;
        }
    }
    remove_file_if_exists(&dir.join(dir::CLEAN_MARKER_FILE_NAME))?;
    std::fs::File::open(dir)?.sync_all()
}

fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
