//! The appender: validation, offsets and group commit. `submit` queues a batch;
//! one commit loop per shard writes every partition's queued batches in one
//! round (one aligned buffer per partition, O_DIRECT, durable under
//! flush=always), then acknowledges; rolls seal a segment before the next.

use crate::cache::CacheSlice;
use crate::dir;
use crate::error::{StorageError, StorageResult};
use crate::log::{AppendInfo, Enqueued, FlushPolicy, Pending};
use crate::segment::{self, Segment};
use bytes::Bytes;
use futures_util::future::join_all;
use ringstream_core::batch::{self};
use ringstream_core::limits;
use ringstream_core::types::TopicPartition;
use std::path::PathBuf;
use std::rc::Rc;
use tracing::{debug, error};

use super::*;

impl ShardStorage {
    /// Appends one record batch and waits until it is acknowledged.
    pub async fn append(&self, tp: &TopicPartition, batch: Bytes) -> StorageResult<AppendInfo> {
        self.submit(tp, batch).await?.wait().await
    }

    /// Validates a batch, assigns its offsets and queues it for the next
    /// group commit. Returns once queued: batches submitted one after another
    /// get increasing offsets even if their tickets are awaited later.
    pub async fn submit(&self, tp: &TopicPartition, batch: Bytes) -> StorageResult<AppendTicket> {
        if self.inner.closing.get() {
            return Err(StorageError::ShuttingDown);
        }
        let partition = self.partition(tp)?;
        let (limit_bytes, segment_bytes) = {
            let log = partition.log.borrow();
            (log.config.max_message_bytes, log.config.segment_bytes)
        };
        let limit_bytes = limit_bytes.min(segment_bytes as usize);
        if batch.len() > limit_bytes {
            return Err(StorageError::BatchTooLarge { size_bytes: batch.len(), limit_bytes });
        }
        let info = batch::validate(&batch, limit_bytes)?;
        let permit = self.admit(&partition, batch.len()).await?;
        let enqueued = partition.log.borrow_mut().enqueue(batch, info, permit)?;
        match enqueued {
            Enqueued::Queued(receiver) => {
                let _ = self.inner.doorbell.try_send(()); // full means already rung
                Ok(AppendTicket::Queued(receiver))
            }
            Enqueued::Duplicate(record) => {
                Ok(AppendTicket::Duplicate { storage: self.clone(), tp: tp.clone(), record })
            }
        }
    }

    /// Queues a batch fetched from this partition's leader, at the offset
    /// it has there (the next one here), to be written as it is. The
    /// ticket resolves once it is written (durably under flush=always).
    pub async fn submit_replica(&self, tp: &TopicPartition, batch: Bytes) -> StorageResult<AppendTicket> {
        if self.inner.closing.get() {
            return Err(StorageError::ShuttingDown);
        }
        let partition = self.partition(tp)?;
        let info = batch::validate(&batch, limits::batch_bytes_max)?;
        let permit = self.admit(&partition, batch.len()).await?;
        let receiver = partition.log.borrow_mut().enqueue_replica(batch, info, permit)?;
        let _ = self.inner.doorbell.try_send(());
        Ok(AppendTicket::Queued(receiver))
    }

    /// Room for `len` bytes in a partition's queue (waiting while it is
    /// full), counted as its traffic; refused once storage is closing.
    async fn admit(&self, partition: &Partition, len: usize) -> StorageResult<glommio::sync::StaticPermit> {
        let permit =
            partition.pending_bytes.acquire_static_permit(len as u64).await.map_err(|_| StorageError::ShuttingDown)?;
        if self.inner.closing.get() {
            return Err(StorageError::ShuttingDown);
        }
        partition.traffic_bytes.set(partition.traffic_bytes.get() + len as u64);
        Ok(permit)
    }

    /// One group-commit round over every partition with queued appends.
    /// Returns false when there was nothing to do.
    pub(super) async fn commit_round(&self) -> bool {
        let ready: Vec<Rc<Partition>> =
            self.inner.partitions.borrow().values().filter(|p| !p.log.borrow().pending.is_empty()).cloned().collect();
        if ready.is_empty() {
            return false;
        }
        let mut stats = self.inner.stats.get();
        stats.rounds += 1;
        self.inner.stats.set(stats);
        // Rounds run one at a time (one commit loop per shard).
        self.inner.round.set((0, 0));
        join_all(ready.into_iter().map(|p| self.commit_partition(p))).await;
        let (batches, bytes) = self.inner.round.take();
        if batches > 0 {
            self.inner.metrics.commit_batches.observe(batches);
            self.inner.metrics.commit_bytes.observe(bytes);
        }
        true
    }

    pub(super) async fn commit_partition(&self, partition: Rc<Partition>) {
        let Ok(_lock) = partition.write_lock.acquire_static_permit(1).await else { return };
        let now = self.now_ms();
        let roll = {
            let log = partition.log.borrow();
            let Some(first) = log.pending.front() else { return };
            let active = log.active();
            !active.is_empty()
                && (active.size_bytes + first.batch.len() as u64 > log.config.segment_bytes
                    || now.saturating_sub(active.created_ms) >= log.config.segment_ms)
        };
        if roll {
            if let Err(e) = self.roll_locked(&partition, now).await {
                error!(shard = %self.inner.shard, "segment roll failed: {e}");
                self.fail_round(&partition, Vec::new(), e).await;
                return;
            }
        }

        // Take what fits in the active segment and in one round, and build
        // the aligned buffer: carried block bytes, then the batches.
        let (taken, file, log_path, aligned_position, buffer, positions, partition_dir) = {
            let mut log = partition.log.borrow_mut();
            let segment_bytes = log.config.segment_bytes;
            let active_size = log.active().size_bytes;
            let mut planned = 0usize;
            let mut taken: Vec<Pending> = Vec::new();
            while let Some(next) = log.pending.front() {
                let len = next.batch.len();
                let fits_segment = active_size + (planned + len) as u64 <= segment_bytes;
                let fits_round = planned + len <= self.inner.config.write_buffer_bytes;
                if !taken.is_empty() && (!fits_segment || !fits_round) {
                    break;
                }
                let pending = log.pending.pop_front().expect("front exists");
                log.pending_bytes -= len;
                planned += len;
                taken.push(pending);
            }
            assert!(!taken.is_empty());
            let aligned_position = dir::align_down(active_size);
            let carry_len = log.carry.len();
            assert_eq!(aligned_position + carry_len as u64, active_size);
            let used = carry_len + planned;
            let buffer_len = dir::align_up(used as u64) as usize;
            let active = log.active();
            let mut buffer = active.file.alloc_dma_buffer(buffer_len);
            let bytes = buffer.as_bytes_mut();
            bytes[..carry_len].copy_from_slice(&log.carry);
            let mut cursor = carry_len;
            let mut positions = Vec::with_capacity(taken.len());
            for pending in &taken {
                let len = pending.batch.len();
                let slot = &mut bytes[cursor..cursor + len];
                slot.copy_from_slice(&pending.batch);
                if !pending.replica {
                    batch::set_base_offset(slot, pending.base_offset);
                    batch::set_leader_epoch(slot, log.leader_epoch);
                    if log.config.log_append_time {
                        batch::set_log_append_time(slot, now);
                    }
                }
                positions.push(cursor);
                cursor += len;
            }
            assert_eq!(cursor, used);
            bytes[used..].fill(0); // padding reaches the disk: never leak memory
            (
                taken,
                active.file.clone(),
                active.log_path.clone(),
                aligned_position,
                Rc::new(buffer),
                positions,
                log.dir.clone(),
            )
        };

        let result =
            self.write_and_sync(&partition, taken.len() as u64, &file, &log_path, aligned_position, &buffer).await;
        if let Err(e) = result {
            error!(shard = %self.inner.shard, segment = %log_path.display(), "append write failed: {e}");
            self.fail_round(&partition, taken, e).await;
            return;
        }

        // Apply: sizes, indexes, offsets, cache, epochs; then acknowledge.
        let (replies, epochs_text) = {
            let mut log = partition.log.borrow_mut();
            let interval = log.config.index_interval_bytes;
            let epoch = log.leader_epoch;
            let key = log.key;
            let append_time = if log.config.log_append_time { now } else { -1 };
            let mut cache = self.inner.cache.borrow_mut();
            let mut epochs_changed = false;
            // The cache pins the whole buffer: each batch answers for an
            // equal share of what is not batches (carry and padding).
            let batch_bytes: usize = taken.iter().map(|p| p.batch.len()).sum();
            let overhead_share = (buffer.len() - batch_bytes).div_ceil(taken.len());
            let mut replies = Vec::with_capacity(taken.len());
            let mut bytes_total = 0u64;
            let mut records_total = 0u64;
            for (pending, &position) in taken.into_iter().zip(&positions) {
                let mut info = pending.info;
                if !pending.replica {
                    info.base_offset = pending.base_offset;
                    info.leader_epoch = epoch;
                    if append_time >= 0 {
                        info.max_timestamp = append_time;
                        info.attributes |= 0x08;
                    }
                }
                // A follower's batches carry the epochs they were led in.
                let batch_epoch = info.leader_epoch;
                let newer = log.epochs.latest().map_or(true, |latest| latest.epoch < batch_epoch);
                if newer && batch_epoch.0 >= 0 {
                    epochs_changed |= log.epochs.assign(batch_epoch, pending.base_offset);
                }
                let active = log.active_mut();
                active.on_batch_written(&info, aligned_position + position as u64, interval);
                active.acked_bytes = active.size_bytes;
                let slice = CacheSlice::new(
                    buffer.clone(),
                    position,
                    info.total_bytes as usize,
                    info.base_offset,
                    info.last_offset(),
                );
                cache.insert(key, slice.charged(info.total_bytes as usize + overhead_share));
                bytes_total += u64::from(info.total_bytes);
                records_total += u64::try_from(info.records_count).unwrap_or(0);
                replies.push((pending.reply, info));
            }
            let active = log.active();
            let end = active.size_bytes;
            let next_offset = active.next_offset;
            let carry_start = (dir::align_down(end) - aligned_position) as usize;
            let carry_end = (end - aligned_position) as usize;
            log.carry = buffer.as_bytes()[carry_start..carry_end].to_vec();
            log.log_end_offset = next_offset;
            log.advance_high_watermark();
            if matches!(self.inner.config.flush, FlushPolicy::Interval { .. }) {
                log.unsynced = true;
            }
            log.check_invariants();
            let mut stats = self.inner.stats.get();
            stats.batches += replies.len() as u64;
            stats.bytes += bytes_total;
            self.inner.stats.set(stats);
            self.inner.metrics.bytes_in.add(bytes_total);
            self.inner.metrics.records_in.add(records_total);
            let (round_batches, round_bytes) = self.inner.round.get();
            self.inner.round.set((round_batches + replies.len() as u64, round_bytes + bytes_total));
            (replies, epochs_changed.then(|| (log.epochs.encode(), partition_dir.clone())))
        };
        if let Some((text, partition_dir)) = epochs_text {
            // The epoch → offset map must be durable before the batches that
            // started the epoch are acknowledged.
            if let Err(e) =
                dir::write_file_atomic(&partition_dir, dir::EPOCH_CHECKPOINT_FILE_NAME, text.into_bytes()).await
            {
                error!(shard = %self.inner.shard, "writing epoch checkpoint failed: {e}");
            }
        }
        for waiter in partition.data_waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
        let log_start_offset = partition.log.borrow().log_start_offset();
        let sync_writes = partition.log.borrow().sync_writes;
        let mut stats = self.inner.stats.get();
        stats.acked_batches += replies.len() as u64;
        // Acknowledged means durable: under flush=always no batch is
        // acknowledged before a completed durable write covers it.
        assert!(
            !sync_writes || stats.acked_batches <= stats.synced_batches,
            "acknowledging {} batches with only {} synced",
            stats.acked_batches,
            stats.synced_batches
        );
        self.inner.stats.set(stats);
        for (reply, info) in replies {
            let log_append_time_ms = if info.attributes & 0x08 != 0 { info.max_timestamp } else { -1 };
            let _ = reply.send(Ok(AppendInfo {
                base_offset: info.base_offset,
                last_offset: info.last_offset(),
                log_start_offset,
                log_append_time_ms,
            }));
        }
    }

    /// Writes one round's buffer for `partition`, which holds `batches`
    /// batches, and under flush=always makes it durable before returning.
    pub(super) async fn write_and_sync(
        &self,
        partition: &Partition,
        batches: u64,
        file: &Rc<glommio::io::DmaFile>,
        log_path: &PathBuf,
        position: u64,
        buffer: &Rc<glommio::io::DmaBuffer>,
    ) -> StorageResult<()> {
        let end = position + buffer.len() as u64;
        let (preallocated, segment_bytes) = {
            let log = partition.log.borrow();
            (log.active().preallocated_bytes, log.config.segment_bytes)
        };
        if let Some(target) = segment::preallocation_target(preallocated, end, segment_bytes) {
            segment::preallocate(file, log_path, target).await?;
            partition.log.borrow_mut().active_mut().preallocated_bytes = target;
        }
        if self.inner.faults.take_write_failure() {
            // Simulated full disk: a torn prefix reaches the file, then ENOSPC.
            let torn_len = dir::align_down(buffer.len() as u64 / 2) as usize;
            if torn_len > 0 {
                let mut torn = file.alloc_dma_buffer(torn_len);
                torn.as_bytes_mut().copy_from_slice(&buffer.as_bytes()[..torn_len]);
                let _ = file.write_at(torn, position).await;
            }
            return Err(StorageError::io("write segment", log_path, std::io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        // Under flush=always the segment is O_DSYNC (`segment::open_flags`):
        // the write completes only once it is durable, so it is the sync.
        let sync_writes = partition.log.borrow().sync_writes;
        debug_assert_eq!(sync_writes, self.inner.config.flush == FlushPolicy::Always);
        let slot = self.inner.io_slots.acquire_permit(1).await.map_err(|_| StorageError::ShuttingDown)?;
        let started = sync_writes.then(std::time::Instant::now);
        let written = self
            .inner
            .config
            .disk
            .write(file, log_path, buffer, position, sync_writes)
            .await
            .map_err(|e| StorageError::io("write segment", log_path, e))?;
        drop(slot);
        self.inner.faults.hold_after_write().await;
        if written != buffer.len() {
            // O_DIRECT writes come back short only when the device is full.
            return Err(StorageError::io("write segment", log_path, std::io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        // Read-modify-write the stats with no await in between: the other
        // partitions of the round update them while this one writes.
        let mut stats = self.inner.stats.get();
        stats.writes += 1;
        if let Some(started) = started {
            self.inner.metrics.fdatasync_ns.observe_duration(started.elapsed());
            stats.fdatasyncs += 1;
            stats.synced_batches += batches;
        }
        self.inner.stats.set(stats);
        Ok(())
    }

    /// A write failed: the round's appends get the error, queued ones are
    /// aborted, offsets rewind to the log end, and whatever the failed write
    /// left past the log end is cut off so it can never resurface.
    pub(super) async fn fail_round(&self, partition: &Partition, taken: Vec<Pending>, error: StorageError) {
        let (file, log_path, size) = {
            let mut log = partition.log.borrow_mut();
            for pending in taken {
                let _ = pending.reply.send(Err(error.clone()));
            }
            log.abort_pending();
            let active = log.active();
            (active.file.clone(), active.log_path.clone(), active.size_bytes)
        };
        // The cut must be durable before anything else is acknowledged: under
        // flush=always a torn prefix of the failed write is already on disk
        // (O_DSYNC), and an unsynced truncation can be undone by a crash,
        // bringing back batches nobody acknowledged (found by the storage
        // simulator, tests/storage_sim.rs). A sync that keeps failing leaves
        // the partition as it is, with an error logged.
        let disk = &self.inner.config.disk;
        let mut cut = disk.truncate(&file, &log_path, size).await;
        for _ in 0..limits::failed_write_cut_attempts_max {
            if cut.is_err() {
                break;
            }
            cut = disk.sync(&file, &log_path).await;
            if cut.is_ok() {
                break;
            }
        }
        if let Err(e) = cut {
            error!(segment = %log_path.display(), "could not durably cut a failed write: {e}");
        }
        partition.log.borrow_mut().active_mut().preallocated_bytes = 0;
    }

    /// Seals the active segment and starts a new one at the log end. The
    /// caller holds the partition's write lock.
    pub(super) async fn roll_locked(&self, partition: &Partition, now: i64) -> StorageResult<()> {
        let (job, dir, base, segment_bytes, producers, sync_writes, aborted) = {
            let log = partition.log.borrow();
            assert!(log.high_watermark <= log.log_end_offset);
            let producers = log.producers.encode(log.log_end_offset, &log.txns.closed_from(log.log_end_offset));
            let active = log.active().base_offset;
            let aborted = log.txns.aborted_in_range(active, log.log_end_offset);
            (
                log.active().seal_job(),
                log.dir.clone(),
                log.log_end_offset,
                log.config.segment_bytes,
                producers,
                log.sync_writes,
                (active, aborted),
            )
        };
        job.run(&dir, &self.inner.config.disk).await?;
        write_txn_index(&dir, aborted.0, &aborted.1).await?;
        // Before the next segment exists: an unclean start scans only the
        // tail, and finds the producers of every earlier segment here.
        dir::write_file_atomic(&dir, dir::PRODUCER_SNAPSHOT_FILE_NAME, producers.into_bytes())
            .await
            .map_err(|e| StorageError::io("write producer snapshot", &dir, e))?;
        let segment = Segment::create(&dir, base, segment_bytes, now, sync_writes).await?;
        dir::sync_dir(&dir).await.map_err(|e| StorageError::io("sync dir", &dir, e))?;
        let mut log = partition.log.borrow_mut();
        debug!(partition = %log.tp, base = %base, "rolled segment");
        log.segments.insert(base, segment);
        log.carry.clear();
        log.check_invariants();
        Ok(())
    }

    /// Rolls a partition's active segment now if it holds any data.
    pub async fn roll(&self, tp: &TopicPartition) -> StorageResult<()> {
        let partition = self.partition(tp)?;
        let _lock = partition.write_lock.acquire_static_permit(1).await.map_err(|_| StorageError::ShuttingDown)?;
        if partition.log.borrow().active().is_empty() {
            return Ok(());
        }
        self.roll_locked(&partition, self.now_ms()).await
    }

    pub(super) async fn flush_unsynced(&self) {
        let partitions: Vec<Rc<Partition>> = self.inner.partitions.borrow().values().cloned().collect();
        let jobs = partitions.into_iter().filter_map(|p| {
            let mut log = p.log.borrow_mut();
            if !log.unsynced {
                return None;
            }
            log.unsynced = false;
            let active = log.active();
            Some((p.clone(), active.file.clone(), active.log_path.clone()))
        });
        let jobs: Vec<_> = jobs.collect();
        let metrics = &self.inner.metrics;
        join_all(jobs.into_iter().map(|(partition, file, path)| async move {
            let _slot = self.inner.io_slots.acquire_permit(1).await;
            let started = std::time::Instant::now();
            let synced = self.inner.config.disk.sync(&file, &path).await;
            metrics.fdatasync_ns.observe_duration(started.elapsed());
            if let Err(e) = synced {
                error!(segment = %path.display(), "interval fdatasync failed: {e}");
                partition.log.borrow_mut().unsynced = true;
            }
        }))
        .await;
    }
}

/// Writes a segment's `.txnindex` (only when it has aborted transactions),
/// atomically, before the snapshot that relies on it.
pub(super) async fn write_txn_index(
    dir: &std::path::Path,
    base: Offset,
    aborted: &[crate::txn::AbortedTxn],
) -> StorageResult<()> {
    if aborted.is_empty() {
        return Ok(());
    }
    let path = dir::segment_txn_index_path(dir, base);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    dir::write_file_atomic(dir, &name, crate::txn::encode_index(aborted))
        .await
        .map_err(|e| StorageError::io("write transaction index", &path, e))
}
