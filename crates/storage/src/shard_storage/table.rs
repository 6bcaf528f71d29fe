//! The partition table: opening, configuring, removing, handing off and
//! closing the partitions this shard owns.

use crate::checkpoint::CleanMarker;
use crate::dir;
use crate::error::{StorageError, StorageResult};
use crate::log::{FlushPolicy, LogConfig, PartitionLog, PartitionOffsets};
use crate::segment::{self};
use glommio::sync::Semaphore;
use ringstream_core::batch::BatchHeader;
use ringstream_core::limits;
use ringstream_core::types::TopicPartition;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use tracing::{error, info, warn};

use super::*;

impl ShardStorage {
    /// One line of a partition's commit state, for diagnostics (the
    /// storage simulator prints it when an append does not resolve).
    pub fn commit_state(&self, tp: &TopicPartition) -> String {
        let Ok(partition) = self.partition(tp) else { return format!("{tp}: not here") };
        let log = partition.log.borrow();
        format!(
            "{tp}: {} pending ({} bytes), write lock free: {}, io slots free: {}, doorbell queued: {}, closing: {}",
            log.pending.len(),
            log.pending_bytes,
            partition.write_lock.available(),
            self.inner.io_slots.available(),
            self.inner.doorbell.len(),
            self.inner.closing.get()
        )
    }

    /// Creates (or recovers, if its directory exists) a partition on this shard.
    pub async fn open_partition(&self, tp: TopicPartition, config: LogConfig) -> StorageResult<PartitionOffsets> {
        if self.inner.closing.get() {
            return Err(StorageError::ShuttingDown);
        }
        if self.owns(&tp) {
            return Err(StorageError::PartitionExists(tp));
        }
        if self.inner.partitions.borrow().len() >= limits::shard_partitions_max {
            return Err(StorageError::Config(format!(
                "shard {} already owns {} partitions",
                self.inner.shard,
                limits::shard_partitions_max
            )));
        }
        let key = self.inner.next_key.get();
        self.inner.next_key.set(key.checked_add(1).expect("partition keys exhausted"));
        let dir = self.inner.config.data_dir.join(tp.dir_name());
        let log = PartitionLog::open(
            tp.clone(),
            key,
            dir,
            config,
            self.now_ms(),
            self.inner.config.flush == FlushPolicy::Always,
        )
        .await?;
        let offsets = log.offsets();
        info!(
            shard = %self.inner.shard,
            partition = %tp,
            log_start = %offsets.log_start_offset,
            log_end = %offsets.log_end_offset,
            segments = offsets.segments,
            "partition opened"
        );
        let partition = Rc::new(Partition {
            log: RefCell::new(log),
            pending_bytes: Rc::new(Semaphore::new(limits::partition_pending_bytes_max as u64)),
            write_lock: Rc::new(Semaphore::new(1)),
            data_waiters: RefCell::new(Vec::new()),
            traffic_bytes: Cell::new(0),
        });
        if self.inner.partitions.borrow_mut().insert(tp.clone(), partition).is_some() {
            return Err(StorageError::PartitionExists(tp));
        }
        self.inner.metrics.partitions.set(self.inner.partitions.borrow().len() as u64);
        Ok(offsets)
    }

    pub(super) fn partition(&self, tp: &TopicPartition) -> StorageResult<Rc<Partition>> {
        self.inner.partitions.borrow().get(tp).cloned().ok_or_else(|| StorageError::UnknownPartition(tp.clone()))
    }

    pub fn offsets(&self, tp: &TopicPartition) -> StorageResult<PartitionOffsets> {
        Ok(self.partition(tp)?.log.borrow().offsets())
    }

    pub fn epochs(&self, tp: &TopicPartition) -> StorageResult<crate::checkpoint::EpochCheckpoint> {
        Ok(self.partition(tp)?.log.borrow().epochs.clone())
    }

    /// Replaces a partition's settings (e.g. a topic config change).
    pub fn set_log_config(&self, tp: &TopicPartition, config: LogConfig) -> StorageResult<()> {
        config.validate()?;
        self.partition(tp)?.log.borrow_mut().config = config;
        Ok(())
    }

    /// The idempotent producers a partition remembers: (producer id, epoch,
    /// last sequence, the max timestamp of its newest batch or -1 when that
    /// batch is no longer readable, the first offset of its open
    /// transaction or -1), by producer id.
    pub async fn producers(&self, tp: &TopicPartition) -> StorageResult<Vec<(i64, i16, i32, i64, i64)>> {
        let partition = self.partition(tp)?;
        let (active, high_watermark, open) = {
            let log = partition.log.borrow();
            (log.producers.active(), log.high_watermark, log.producers.open_txns())
        };
        let txn_start = |id: i64| open.iter().find(|(p, _)| *p == id).map_or(-1, |(_, t)| t.first_offset.0);
        let mut out = Vec::with_capacity(active.len());
        for (id, epoch, last) in active {
            // Only acknowledged batches (queued ones are recorded already).
            if last.last_offset >= high_watermark {
                continue;
            }
            let timestamp = match self.read_from(&partition, tp, last.base_offset, 1, ReadBound::HighWatermark).await {
                Ok(read) => read
                    .batches
                    .first()
                    .and_then(|bytes| BatchHeader::ref_from_prefix(bytes))
                    .filter(|header| header.base_offset() == last.base_offset)
                    .map_or(-1, |header| header.max_timestamp()),
                Err(_) => -1,
            };
            out.push((id, epoch, last.last_sequence, timestamp, txn_start(id)));
        }
        // Open transactions of producers with no acknowledged batch listed
        // (a coordinator's offsets, or a batch not yet replicated).
        for (id, txn) in &open {
            if !out.iter().any(|row| row.0 == *id) {
                out.push((*id, txn.epoch, -1, -1, txn.first_offset.0));
            }
        }
        out.sort_by_key(|row| row.0);
        Ok(out)
    }

    /// How long the oldest open transaction has held any partition's last
    /// stable offset below its high watermark, ms (0: none). A scan of this
    /// shard's partitions, for the metrics scrape.
    pub fn last_stable_offset_lag_ms(&self, now_ms: i64) -> u64 {
        let partitions = self.inner.partitions.borrow();
        let mut lag = 0i64;
        for partition in partitions.values() {
            let log = partition.log.borrow();
            if log.producers.open_txn_count() == 0 {
                continue;
            }
            for (_, txn) in log.producers.open_txns() {
                if txn.first_offset < log.high_watermark {
                    lag = lag.max(now_ms - txn.opened_ms);
                }
            }
        }
        lag.max(0) as u64
    }

    /// Every partition of this shard with the bytes of its segments.
    pub fn partition_sizes(&self) -> Vec<(TopicPartition, u64)> {
        let mut sizes: Vec<(TopicPartition, u64)> =
            self.inner.partitions.borrow().iter().map(|(tp, p)| (tp.clone(), p.log.borrow().size_bytes())).collect();
        sizes.sort();
        sizes
    }

    /// Reads whole batches from `offset`, up to `max_bytes` (the first batch
    /// is returned whole even if larger, as Kafka does), below the high
    /// watermark. The hot tail comes from the batch cache, the rest from DMA
    /// reads of the segments.
    /// Bytes appended and read per partition since each opened here.
    pub fn partition_traffic(&self) -> Vec<(TopicPartition, u64)> {
        self.inner.partitions.borrow().iter().map(|(tp, p)| (tp.clone(), p.traffic_bytes.get())).collect()
    }

    /// Deletes a partition and its directory: queued appends fail, waiting
    /// readers wake, its cache entries go. Runs under the write lock, so no
    /// commit is half done.
    pub async fn remove_partition(&self, tp: &TopicPartition) -> StorageResult<()> {
        let partition = self.partition(tp)?;
        let _lock = partition.write_lock.acquire_static_permit(1).await.map_err(|_| StorageError::ShuttingDown)?;
        self.inner.partitions.borrow_mut().remove(tp);
        self.inner.metrics.partitions.set(self.inner.partitions.borrow().len() as u64);
        let (key, dir) = {
            let mut log = partition.log.borrow_mut();
            log.abort_pending();
            (log.key, log.dir.clone())
        };
        partition.pending_bytes.close();
        for waiter in partition.data_waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
        self.inner.cache.borrow_mut().remove_partition(key);
        // Rename first (atomic, durable), then delete at leisure: a crash in
        // between leaves a `.deleted` directory that start-up ignores.
        let doomed = dir.with_file_name(format!("{}.{}.deleted", tp.dir_name(), self.now_ms()));
        std::fs::rename(&dir, &doomed).map_err(|e| StorageError::io("rename partition dir", &dir, e))?;
        if let Some(parent) = dir.parent() {
            dir::sync_dir(parent).await.map_err(|e| StorageError::io("sync dir", parent, e))?;
        }
        let remove = glommio::executor().spawn_blocking(move || std::fs::remove_dir_all(&doomed));
        if let Err(e) = remove.await {
            warn!(partition = %tp, "deleting the partition's files failed: {e}");
        }
        info!(shard = %self.inner.shard, partition = %tp, "partition deleted");
        Ok(())
    }

    /// Hands a partition off to another shard of this process (a live
    /// move): waits until every append queued for it is committed and
    /// acknowledged, closes it as a clean shutdown would (fdatasync, index,
    /// epochs, producer snapshot, clean marker), and forgets it: its waiting
    /// readers wake (and re-route), its cache entries go, its files stay for
    /// the new owner to open. The caller (the router) has already stopped
    /// new appends from reaching it. Returns the partition's log config,
    /// topic overrides included, for the new owner.
    pub async fn release_partition(&self, tp: &TopicPartition) -> StorageResult<LogConfig> {
        let partition = self.partition(tp)?;
        let started = std::time::Instant::now();
        let lock = loop {
            let _ = self.inner.doorbell.try_send(());
            let lock = partition.write_lock.acquire_static_permit(1).await.map_err(|_| StorageError::ShuttingDown)?;
            if partition.log.borrow().pending.is_empty() {
                break lock;
            }
            drop(lock);
            if started.elapsed() > Duration::from_millis(limits::partition_release_wait_ms_max) {
                return Err(StorageError::Moving(tp.clone()));
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        };
        self.close_partition(&partition).await?;
        self.inner.partitions.borrow_mut().remove(tp);
        self.inner.metrics.partitions.set(self.inner.partitions.borrow().len() as u64);
        partition.pending_bytes.close();
        for waiter in partition.data_waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
        let (key, config) = {
            let log = partition.log.borrow();
            (log.key, log.config.clone())
        };
        self.inner.cache.borrow_mut().remove_partition(key);
        drop(lock);
        info!(shard = %self.inner.shard, partition = %tp, "partition released to another shard");
        Ok(config)
    }

    /// Clean close: refuse new appends, drain the queued ones, then for each
    /// partition fdatasync, trim block padding, write indexes and epochs, and
    /// leave a clean-shutdown marker so the next start skips the scan.
    pub async fn close(&self) -> StorageResult<()> {
        self.inner.closing.set(true);
        let _ = self.inner.doorbell.try_send(());
        while self.commit_round().await {}
        let partitions: Vec<Rc<Partition>> = self.inner.partitions.borrow_mut().drain().map(|(_, p)| p).collect();
        let mut first_error = None;
        for chunk in partitions.chunks(limits::partition_file_ops_in_flight_max) {
            let closes = chunk.iter().map(|partition| async move {
                let Ok(_lock) = partition.write_lock.acquire_static_permit(1).await else { return Ok(()) };
                partition.pending_bytes.close();
                let result = self.close_partition(partition).await;
                if let Err(e) = &result {
                    error!(partition = %partition.log.borrow().tp, "unclean close: {e}");
                }
                result
            });
            for result in futures_util::future::join_all(closes).await {
                if let Err(e) = result {
                    first_error.get_or_insert(e);
                }
            }
        }
        info!(shard = %self.inner.shard, stats = ?self.inner.stats.get(), "storage closed");
        first_error.map_or(Ok(()), Err)
    }

    pub(super) async fn close_partition(&self, partition: &Partition) -> StorageResult<()> {
        let (file, path, size, index_bytes, time_bytes, base, dir, epochs, marker, producers, aborted) = {
            let log = partition.log.borrow();
            assert!(log.pending.is_empty());
            let active = log.active();
            let marker = CleanMarker { log_end_offset: log.log_end_offset, tail_segment_bytes: active.size_bytes };
            (
                active.file.clone(),
                active.log_path.clone(),
                active.size_bytes,
                active.offset_index.encode(),
                active.time_index.encode(),
                active.base_offset,
                log.dir.clone(),
                log.epochs.encode(),
                marker,
                log.producers.encode(log.log_end_offset, &log.txns.closed_from(log.log_end_offset)),
                log.txns.aborted_in_range(active.base_offset, log.log_end_offset),
            )
        };
        super::appender::write_txn_index(&dir, base, &aborted).await?;
        dir::write_file_atomic(&dir, dir::PRODUCER_SNAPSHOT_FILE_NAME, producers.into_bytes())
            .await
            .map_err(|e| StorageError::io("write producer snapshot", &dir, e))?;
        let disk = &self.inner.config.disk;
        disk.truncate(&file, &path, size).await.map_err(|e| StorageError::io("truncate segment", &path, e))?;
        disk.sync(&file, &path).await.map_err(|e| StorageError::io("fdatasync segment", &path, e))?;
        segment::write_index_files(&dir, base, index_bytes, time_bytes).await?;
        dir::write_file_atomic(&dir, dir::EPOCH_CHECKPOINT_FILE_NAME, epochs.into_bytes())
            .await
            .map_err(|e| StorageError::io("write epoch checkpoint", &dir, e))?;
        dir::write_file_atomic(&dir, dir::CLEAN_MARKER_FILE_NAME, marker.encode().into_bytes())
            .await
            .map_err(|e| StorageError::io("write clean marker", &dir, e))?;
        Ok(())
    }
}
