//! One shard's storage: the partitions it owns, its group commit, its batch
//! cache and its background tasks (interval flush, retention).
//!
//! Runs on exactly one shard. All state is `Rc`/`RefCell`; no borrow is held
//! across an `.await`: each step copies out what its I/O needs (an
//! `Rc<DmaFile>`, positions, a buffer) and borrows again to apply the result.
//! A per-partition write lock (a one-permit semaphore) orders the commit
//! path with roll, retention and close.
//!
//! Group commit. `submit` validates a batch, assigns its offsets and queues
//! it. The commit loop then takes the queued batches of every partition with
//! work and, for each partition, copies them behind the carried bytes of the
//! segment's last partial block into one 4 KiB-aligned `DmaBuffer` (the one
//! copy on ingest), writes it with O_DIRECT, and under `flush=always`
//! fdatasyncs it. All partitions of a round run concurrently on the shard's
//! io_uring, at most `shard.io.depth` DMA writes and fdatasyncs in flight at
//! once, each round at most `shard.write.buffer.bytes` per partition.
//! Appends that arrive meanwhile wait for the next round, so one
//! fdatasync covers every append that was in flight with it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::future::join_all;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::io::ReadResult;
use glommio::sync::Semaphore;
use tracing::{debug, error, info, warn};

use crate::cache::{BatchCache, CacheSlice, CacheStats, PartitionKey};
use crate::checkpoint::CleanMarker;
use crate::dir;
use crate::disk::Disk;
use crate::error::{glommio_io, StorageError, StorageResult};
use crate::faults::Faults;
use crate::log::{AppendInfo, Enqueued, FlushPolicy, LogConfig, PartitionLog, PartitionOffsets, Pending};
use crate::producer_state::BatchRecord;
use crate::segment::{self, Segment};
use ringstream_core::batch::{self, BatchHeader};
use ringstream_core::clock::{self, SharedClock};
use ringstream_core::limits;
use ringstream_core::limits::duplicate_wait_ms_max;
use ringstream_core::limits::timestamp_scan_records_max;
use ringstream_core::types::{LeaderEpoch, Offset, ShardId, TopicPartition};

/// Storage settings for one shard.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub flush: FlushPolicy,
    /// Bytes of the shard's batch cache.
    pub batch_cache_bytes: usize,
    /// `log.retention.check.interval.ms`
    pub retention_check_interval_ms: u64,
    /// Topic defaults (`log.segment.bytes`, `log.retention.ms`, ...).
    pub default_log: LogConfig,
    /// `shard.write.buffer.bytes`: bytes one group-commit round writes per
    /// partition, at most `commit_round_bytes_max` (the default).
    pub write_buffer_bytes: usize,
    /// `shard.io.depth`: DMA writes and fdatasyncs in flight per shard.
    pub io_depth: usize,
    /// Where storage reads the time (retention, segment age, append time).
    pub clock: SharedClock,
    /// Where segment writes, syncs and truncations go (the simulation seam).
    pub disk: Disk,
}

impl StorageConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> StorageConfig {
        StorageConfig {
            data_dir: data_dir.into(),
            flush: FlushPolicy::Always,
            batch_cache_bytes: limits::batch_cache_bytes_default,
            retention_check_interval_ms: 300_000,
            default_log: LogConfig::default(),
            write_buffer_bytes: limits::commit_round_bytes_max,
            io_depth: limits::io_depth_default,
            clock: clock::system(),
            disk: Disk::Direct,
        }
    }
}

/// One record batch returned by a read: a slice of a cached write buffer or
/// of a DMA read buffer. Either way, no copy was made.
#[derive(Clone)]
pub enum BatchBytes {
    Cached(CacheSlice),
    Disk(ReadResult),
}

impl Deref for BatchBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            BatchBytes::Cached(slice) => slice,
            BatchBytes::Disk(read) => read,
        }
    }
}

/// The result of a read: whole batches, in offset order.
pub struct ReadOutput {
    pub batches: Vec<BatchBytes>,
    pub bytes: usize,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub from_cache: usize,
}

/// Counters for benchmarks and, later, metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommitStats {
    pub rounds: u64,
    pub writes: u64,
    /// Durable completions under flush=always: O_DSYNC segment writes
    /// (each is its own fdatasync), plus fdatasyncs of the interval flush.
    pub fdatasyncs: u64,
    /// Batches made durable by those completions (flush=always).
    pub synced_batches: u64,
    /// Batches acknowledged to their producers.
    pub acked_batches: u64,
    pub batches: u64,
    pub bytes: u64,
}

/// A queued append; resolves when the append is acknowledged or fails.
pub enum AppendTicket {
    Queued(oneshot::Receiver<StorageResult<AppendInfo>>),
    /// A resent idempotent batch: resolves with the original's offsets once
    /// the original is acknowledged.
    Duplicate {
        storage: ShardStorage,
        tp: TopicPartition,
        record: BatchRecord,
    },
}

/// DeleteRecords' offset meaning "up to the high watermark".
pub const DELETE_RECORDS_HIGH_WATERMARK: i64 = -1;

impl AppendTicket {
    pub async fn wait(self) -> StorageResult<AppendInfo> {
        match self {
            AppendTicket::Queued(receiver) => receiver.await.unwrap_or(Err(StorageError::ShuttingDown)),
            AppendTicket::Duplicate { storage, tp, record } => {
                let timeout = Duration::from_millis(duplicate_wait_ms_max);
                let acknowledged = storage.wait_for_data(&tp, record.last_offset, timeout).await?;
                if !acknowledged {
                    return Err(StorageError::AppendAborted(tp));
                }
                let log_start_offset = storage.offsets(&tp)?.log_start_offset;
                Ok(AppendInfo {
                    base_offset: record.base_offset,
                    last_offset: record.last_offset,
                    log_start_offset,
                    log_append_time_ms: -1,
                })
            }
        }
    }
}

struct Partition {
    log: RefCell<PartitionLog>,
    /// Bytes queued for commit; a full queue makes `submit` wait.
    pending_bytes: Rc<Semaphore>,
    /// One permit: held by a commit round, a roll, retention or close.
    write_lock: Rc<Semaphore>,
    /// Readers waiting for the high watermark to move (fetch long-polls);
    /// at most `partition_data_waiters_max`, woken by every commit.
    data_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Bytes appended to and read from the partition since it opened on
    /// this shard: the load that placement and the balancer weigh.
    traffic_bytes: Cell<u64>,
}

struct Inner {
    shard: ShardId,
    config: StorageConfig,
    partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    next_key: Cell<PartitionKey>,
    cache: RefCell<BatchCache>,
    doorbell: LocalSender<()>,
    closing: Cell<bool>,
    faults: Faults,
    stats: Cell<CommitStats>,
    /// This shard's metric cells (single writer: this shard).
    metrics: ringstream_core::metrics::Local,
    /// (batches, bytes) written by the commit round in progress.
    round: Cell<(u64, u64)>,
    /// `io_depth` permits: one per DMA write or fdatasync in flight.
    io_slots: Semaphore,
}

/// A shard's storage handle. Cheap to clone; never leaves its shard.
#[derive(Clone)]
pub struct ShardStorage {
    inner: Rc<Inner>,
}

impl ShardStorage {
    /// Opens storage for `shard`. Must run inside that shard's executor.
    pub async fn open(shard: ShardId, config: StorageConfig) -> StorageResult<ShardStorage> {
        tune_allocator();
        config.default_log.validate()?;
        if config.batch_cache_bytes > limits::batch_cache_bytes_max {
            return Err(StorageError::Config(format!(
                "batch cache of {} bytes exceeds {}",
                config.batch_cache_bytes,
                limits::batch_cache_bytes_max
            )));
        }
        if !(limits::io_alignment..=limits::commit_round_bytes_max).contains(&config.write_buffer_bytes) {
            return Err(StorageError::Config(format!(
                "write buffer of {} bytes is outside [{}, {}]",
                config.write_buffer_bytes,
                limits::io_alignment,
                limits::commit_round_bytes_max
            )));
        }
        if !(1..=limits::io_depth_max).contains(&config.io_depth) {
            return Err(StorageError::Config(format!(
                "io depth {} is outside [1, {}]",
                config.io_depth,
                limits::io_depth_max
            )));
        }
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StorageError::io("create data dir", &config.data_dir, e))?;
        dir::probe_dma_device(&config.data_dir)
            .await
            .map_err(|e| StorageError::io("probe DMA device", &config.data_dir, e))?;
        let (doorbell, ring) = local_channel::new_bounded(1);
        let config_io_depth = config.io_depth;
        let inner = Rc::new(Inner {
            shard,
            cache: RefCell::new(BatchCache::new(config.batch_cache_bytes)),
            config,
            partitions: RefCell::new(HashMap::new()),
            next_key: Cell::new(0),
            doorbell,
            closing: Cell::new(false),
            faults: Faults::default(),
            stats: Cell::new(CommitStats::default()),
            metrics: ringstream_core::metrics::local_or_detached(shard),
            round: Cell::new((0, 0)),
            io_slots: Semaphore::new(config_io_depth as u64),
        });
        let storage = ShardStorage { inner };

        let weak = Rc::downgrade(&storage.inner);
        glommio::spawn_local(async move {
            while ring.recv().await.is_some() {
                let Some(storage) = upgrade(&weak) else { break };
                while storage.commit_round().await {}
                if storage.inner.closing.get() {
                    break;
                }
            }
        })
        .detach();

        if let FlushPolicy::Interval { interval_ms } = storage.inner.config.flush {
            storage.spawn_periodic(interval_ms, |storage| async move { storage.flush_unsynced().await });
        }
        let interval_ms = storage.inner.config.retention_check_interval_ms.max(1);
        storage.spawn_periodic(interval_ms, |storage| async move {
            if let Err(e) = storage.enforce_retention(storage.now_ms()).await {
                error!(shard = %storage.inner.shard, "retention failed: {e}");
            }
        });
        Ok(storage)
    }

    /// Runs `job` every `interval_ms` until storage closes or is dropped.
    fn spawn_periodic<F, Fut>(&self, interval_ms: u64, job: F)
    where
        F: Fn(ShardStorage) -> Fut + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let weak = Rc::downgrade(&self.inner);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(interval_ms)).await;
                let Some(storage) = upgrade(&weak) else { break };
                if storage.inner.closing.get() {
                    break;
                }
                job(storage).await;
            }
        })
        .detach();
    }

    pub fn shard(&self) -> ShardId {
        self.inner.shard
    }

    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    /// Wall-clock time as this storage's clock tells it.
    pub fn now_ms(&self) -> i64 {
        self.inner.config.clock.now_ms()
    }

    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.borrow().stats()
    }

    pub fn commit_stats(&self) -> CommitStats {
        self.inner.stats.get()
    }

    pub fn owns(&self, tp: &TopicPartition) -> bool {
        self.inner.partitions.borrow().contains_key(tp)
    }

    pub fn partitions(&self) -> Vec<TopicPartition> {
        let mut tps: Vec<_> = self.inner.partitions.borrow().keys().cloned().collect();
        tps.sort();
        tps
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

    fn partition(&self, tp: &TopicPartition) -> StorageResult<Rc<Partition>> {
        self.inner.partitions.borrow().get(tp).cloned().ok_or_else(|| StorageError::UnknownPartition(tp.clone()))
    }

    pub fn offsets(&self, tp: &TopicPartition) -> StorageResult<PartitionOffsets> {
        Ok(self.partition(tp)?.log.borrow().offsets())
    }

    pub fn epochs(&self, tp: &TopicPartition) -> StorageResult<crate::checkpoint::EpochCheckpoint> {
        Ok(self.partition(tp)?.log.borrow().epochs.clone())
    }

    /// Sets the epoch stamped into batches from now on (a new leader term).
    pub fn set_leader_epoch(&self, tp: &TopicPartition, epoch: LeaderEpoch) -> StorageResult<()> {
        let partition = self.partition(tp)?;
        let mut log = partition.log.borrow_mut();
        assert!(epoch >= log.leader_epoch, "leader epochs only grow");
        log.leader_epoch = epoch;
        Ok(())
    }

    /// Replaces a partition's settings (e.g. a topic config change).
    pub fn set_log_config(&self, tp: &TopicPartition, config: LogConfig) -> StorageResult<()> {
        config.validate()?;
        self.partition(tp)?.log.borrow_mut().config = config;
        Ok(())
    }

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
        let permit = partition
            .pending_bytes
            .acquire_static_permit(batch.len() as u64)
            .await
            .map_err(|_| StorageError::ShuttingDown)?;
        if self.inner.closing.get() {
            return Err(StorageError::ShuttingDown);
        }
        partition.traffic_bytes.set(partition.traffic_bytes.get() + batch.len() as u64);
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

    /// One group-commit round over every partition with queued appends.
    /// Returns false when there was nothing to do.
    async fn commit_round(&self) -> bool {
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

    async fn commit_partition(&self, partition: Rc<Partition>) {
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
                batch::set_base_offset(slot, pending.base_offset);
                batch::set_leader_epoch(slot, log.leader_epoch);
                if log.config.log_append_time {
                    batch::set_log_append_time(slot, now);
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
                info.base_offset = pending.base_offset;
                info.leader_epoch = epoch;
                if append_time >= 0 {
                    info.max_timestamp = append_time;
                    info.attributes |= 0x08;
                }
                let newer = log.epochs.latest().map_or(true, |latest| latest.epoch < epoch);
                if newer {
                    epochs_changed |= log.epochs.assign(epoch, pending.base_offset);
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
            log.high_watermark = next_offset;
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
    async fn write_and_sync(
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
    async fn fail_round(&self, partition: &Partition, taken: Vec<Pending>, error: StorageError) {
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
    async fn roll_locked(&self, partition: &Partition, now: i64) -> StorageResult<()> {
        let (job, dir, base, segment_bytes, producers, sync_writes) = {
            let log = partition.log.borrow();
            assert_eq!(log.high_watermark, log.log_end_offset);
            let producers = log.producers.encode(log.log_end_offset);
            (
                log.active().seal_job(),
                log.dir.clone(),
                log.log_end_offset,
                log.config.segment_bytes,
                producers,
                log.sync_writes,
            )
        };
        job.run(&dir, &self.inner.config.disk).await?;
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

    async fn flush_unsynced(&self) {
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

    /// Deletes whole segments past `retention.ms` or beyond
    /// `retention.bytes`, oldest first, never the active one, and moves the
    /// log start offset forward. Returns the number of segments deleted.
    pub async fn enforce_retention(&self, now: i64) -> StorageResult<usize> {
        let partitions: Vec<Rc<Partition>> = self.inner.partitions.borrow().values().cloned().collect();
        let mut deleted = 0;
        for partition in partitions {
            deleted += self.delete_segments(&partition, |log| log.retention_victims(now), "retention").await?;
        }
        Ok(deleted)
    }

    /// Deletes the sealed segments that lie wholly below `offset` (the
    /// offsets log's compaction: a snapshot of the live records was written
    /// from `offset` on). Returns the number of segments deleted.
    pub async fn delete_segments_before(&self, tp: &TopicPartition, offset: Offset) -> StorageResult<usize> {
        let partition = self.partition(tp)?;
        let victims = |log: &PartitionLog| -> Vec<Offset> {
            let bases: Vec<Offset> = log.segments.keys().copied().collect();
            bases.windows(2).take_while(|pair| pair[1] <= offset).map(|pair| pair[0]).collect()
        };
        self.delete_segments(&partition, victims, "compaction").await
    }

    /// DeleteRecords: moves the log start up to `offset` (-1: the high
    /// watermark), persists it before answering, then deletes the segments
    /// wholly below it. An offset below the current start changes nothing.
    /// Out of range (negative other than -1, or past the high watermark):
    /// OffsetOutOfRange. Returns the log start after the call (Kafka's low
    /// watermark on a single replica).
    pub async fn delete_records(&self, tp: &TopicPartition, offset: i64) -> StorageResult<Offset> {
        let partition = self.partition(tp)?;
        let lock = partition.write_lock.acquire_static_permit(1).await.map_err(|_| StorageError::ShuttingDown)?;
        let (start, dir, moved) = {
            let mut log = partition.log.borrow_mut();
            let (log_start, high_watermark) = (log.log_start_offset(), log.high_watermark);
            let target = if offset == DELETE_RECORDS_HIGH_WATERMARK { high_watermark } else { Offset(offset) };
            if target.0 < 0 || target > high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    tp: tp.clone(),
                    offset: target,
                    log_start,
                    high_watermark,
                });
            }
            let moved = target > log_start;
            if moved {
                log.log_start = target;
                let key = log.key;
                self.inner.cache.borrow_mut().evict_below(key, target);
                log.epochs.truncate_from_start(target);
            }
            (log.log_start_offset(), log.dir.clone(), moved)
        };
        if !moved {
            return Ok(start);
        }
        let text = crate::log::encode_log_start(start);
        dir::write_file_atomic(&dir, dir::LOG_START_FILE_NAME, text.into_bytes())
            .await
            .map_err(|e| StorageError::io("write log start checkpoint", &dir, e))?;
        drop(lock);
        info!(partition = %tp, log_start = %start, "log start moved by DeleteRecords");
        let victims = move |log: &PartitionLog| -> Vec<Offset> {
            let bases: Vec<Offset> = log.segments.keys().copied().collect();
            bases.windows(2).take_while(|pair| pair[1] <= start).map(|pair| pair[0]).collect()
        };
        self.delete_segments(&partition, victims, "DeleteRecords").await?;
        let start = partition.log.borrow().log_start_offset();
        Ok(start)
    }

    /// The idempotent producers a partition remembers: (producer id, epoch,
    /// last sequence, the max timestamp of its newest batch or -1 when that
    /// batch is no longer readable), by producer id.
    pub async fn producers(&self, tp: &TopicPartition) -> StorageResult<Vec<(i64, i16, i32, i64)>> {
        let partition = self.partition(tp)?;
        let (active, high_watermark) = {
            let log = partition.log.borrow();
            (log.producers.active(), log.high_watermark)
        };
        let mut out = Vec::with_capacity(active.len());
        for (id, epoch, last) in active {
            // Only acknowledged batches (queued ones are recorded already).
            if last.last_offset >= high_watermark {
                continue;
            }
            let timestamp = match self.read_from(&partition, tp, last.base_offset, 1).await {
                Ok(read) => read
                    .batches
                    .first()
                    .and_then(|bytes| BatchHeader::ref_from_prefix(bytes))
                    .filter(|header| header.base_offset() == last.base_offset)
                    .map_or(-1, |header| header.max_timestamp()),
                Err(_) => -1,
            };
            out.push((id, epoch, last.last_sequence, timestamp));
        }
        Ok(out)
    }

    /// Every partition of this shard with the bytes of its segments.
    pub fn partition_sizes(&self) -> Vec<(TopicPartition, u64)> {
        let mut sizes: Vec<(TopicPartition, u64)> =
            self.inner.partitions.borrow().iter().map(|(tp, p)| (tp.clone(), p.log.borrow().size_bytes())).collect();
        sizes.sort();
        sizes
    }

    /// Deletes the segments `choose` picks (oldest first, never the active
    /// one) under the partition's write lock, and moves the log start.
    async fn delete_segments(
        &self,
        partition: &Rc<Partition>,
        choose: impl FnOnce(&PartitionLog) -> Vec<Offset>,
        why: &'static str,
    ) -> StorageResult<usize> {
        let Ok(_lock) = partition.write_lock.acquire_static_permit(1).await else { return Ok(0) };
        let (victims, epochs_text, dir) = {
            let mut log = partition.log.borrow_mut();
            let bases = choose(&log);
            if bases.is_empty() {
                return Ok(0);
            }
            let victims: Vec<Segment> =
                bases.iter().map(|base| log.segments.remove(base).expect("victim exists")).collect();
            let start = log.log_start_offset();
            self.inner.cache.borrow_mut().evict_below(log.key, start);
            let changed = log.epochs.truncate_from_start(start);
            info!(partition = %log.tp, segments = victims.len(), log_start = %start, why, "deleted segments");
            log.check_invariants();
            (victims, changed.then(|| log.epochs.encode()), log.dir.clone())
        };
        for segment in &victims {
            segment.remove_files(&dir).await?;
        }
        if let Some(text) = epochs_text {
            dir::write_file_atomic(&dir, dir::EPOCH_CHECKPOINT_FILE_NAME, text.into_bytes())
                .await
                .map_err(|e| StorageError::io("write epoch checkpoint", &dir, e))?;
        }
        Ok(victims.len())
    }

    /// Reads whole batches from `offset`, up to `max_bytes` (the first batch
    /// is returned whole even if larger, as Kafka does), below the high
    /// watermark. The hot tail comes from the batch cache, the rest from DMA
    /// reads of the segments.
    /// Bytes appended and read per partition since each opened here.
    pub fn partition_traffic(&self) -> Vec<(TopicPartition, u64)> {
        self.inner.partitions.borrow().iter().map(|(tp, p)| (tp.clone(), p.traffic_bytes.get())).collect()
    }

    pub async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> StorageResult<ReadOutput> {
        let partition = self.partition(tp)?;
        let read = self.read_from(&partition, tp, offset, max_bytes).await;
        if let Ok(out) = &read {
            partition.traffic_bytes.set(partition.traffic_bytes.get() + out.bytes as u64);
        }
        read
    }

    async fn read_from(
        &self,
        partition: &Partition,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> StorageResult<ReadOutput> {
        let max_bytes = max_bytes.min(limits::read_bytes_max);
        let (key, high_watermark, log_start_offset) = {
            let log = partition.log.borrow();
            (log.key, log.high_watermark, log.log_start_offset())
        };
        if offset < log_start_offset || offset > high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                tp: tp.clone(),
                offset,
                log_start: log_start_offset,
                high_watermark,
            });
        }
        let mut out = ReadOutput { batches: Vec::new(), bytes: 0, high_watermark, log_start_offset, from_cache: 0 };
        let mut cursor = offset;
        // Each step adds a batch or a disk window; bounded by the byte limit.
        let steps_max = max_bytes / limits::batch_bytes_min + 2;
        for _ in 0..steps_max {
            if cursor >= high_watermark || out.bytes >= max_bytes {
                break;
            }
            let cached = self.inner.cache.borrow_mut().lookup(key, cursor);
            if let Some(slice) = cached {
                if !out.batches.is_empty() && out.bytes + slice.len() > max_bytes {
                    break;
                }
                cursor = slice.next_offset();
                self.inner.metrics.cache_hits.add(1);
                out.bytes += slice.len();
                out.from_cache += 1;
                out.batches.push(BatchBytes::Cached(slice));
                continue;
            }
            let located = partition.log.borrow().locate(cursor);
            let Some((file, path, position, limit)) = located else {
                return Err(StorageError::OffsetOutOfRange {
                    tp: tp.clone(),
                    offset: cursor,
                    log_start: log_start_offset,
                    high_watermark,
                });
            };
            if position >= limit {
                break; // nothing acknowledged past here in this segment
            }
            // The window is the byte budget left. (Flooring the first window
            // at `max.message.bytes`, to spare batches larger than the budget
            // a second read, measured 2 DMA reads per call and 0.3-0.5x the
            // throughput for 16 KiB batches; BENCHMARKS.md.)
            let want = (max_bytes - out.bytes).clamp(limits::read_window_bytes_min, limits::read_window_bytes_max);
            let len = (want as u64).min(limit - position) as usize;
            let window = file
                .read_at(position, len)
                .await
                .map_err(|e| StorageError::io("read segment", &path, glommio_io(e)))?;
            let mut local = 0usize;
            let mut progressed = false;
            while local < window.len() && cursor < high_watermark {
                let total = match batch::peek_total_bytes(&window[local..], limits::batch_bytes_max) {
                    Ok(total) => total,
                    Err(batch::BatchError::Truncated { .. }) => break,
                    Err(e) => {
                        return Err(StorageError::Corrupt {
                            what: "segment batch",
                            path,
                            reason: format!("at byte {}: {e}", position + local as u64),
                        })
                    }
                };
                let header = BatchHeader::ref_from_prefix(&window[local..]).expect("peeked a whole header");
                let last_offset = Offset(header.base_offset().0 + i64::from(header.last_offset_delta()));
                if last_offset < cursor {
                    local += total; // before the target: the index points at or before it
                    continue;
                }
                if !out.batches.is_empty() && out.bytes + total > max_bytes {
                    return Ok(out);
                }
                let bytes = if local + total <= window.len() {
                    ReadResult::slice(&window, local, total).expect("in bounds")
                } else if !progressed {
                    // One batch larger than the window: read exactly it.
                    let read = file
                        .read_at(position + local as u64, total)
                        .await
                        .map_err(|e| StorageError::io("read segment", &path, glommio_io(e)))?;
                    if read.len() != total {
                        return Err(StorageError::Corrupt { what: "segment batch", path, reason: "short read".into() });
                    }
                    read
                } else {
                    break;
                };
                out.bytes += total;
                // A batch from disk is a cache miss (counted per batch, as hits are).
                self.inner.metrics.cache_misses.add(1);
                self.inner.metrics.disk_read_bytes.add(total as u64);
                out.batches.push(BatchBytes::Disk(bytes));
                cursor = Offset(last_offset.0 + 1);
                local += total;
                progressed = true;
                if out.bytes >= max_bytes {
                    return Ok(out);
                }
            }
            if !progressed {
                // Nothing usable in this segment past `cursor`: move on to the next.
                let next = partition.log.borrow().next_segment_base(cursor);
                match next {
                    Some(base) if base > cursor => cursor = base,
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    /// Parks `waiter` on a partition until its high watermark passes
    /// `offset`; fires it at once if it already has. No task and no timer
    /// per waiter: the fetch that parked it keeps the one timer. Returns
    /// false (and drops the waiter) when the partition's waiters are full.
    pub fn park_data_waiter(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        waiter: oneshot::Sender<()>,
    ) -> StorageResult<bool> {
        let partition = self.partition(tp)?;
        if partition.log.borrow().high_watermark > offset {
            let _ = waiter.send(());
            return Ok(true);
        }
        let mut waiters = partition.data_waiters.borrow_mut();
        waiters.retain(|w| !w.is_canceled());
        if waiters.len() >= limits::partition_data_waiters_max {
            return Ok(false);
        }
        waiters.push(waiter);
        Ok(true)
    }

    /// Waits until the high watermark passes `offset` (data to read there)
    /// or `timeout` elapses; true when data is available. Woken by commits,
    /// not by polling.
    pub async fn wait_for_data(&self, tp: &TopicPartition, offset: Offset, timeout: Duration) -> StorageResult<bool> {
        let partition = self.partition(tp)?;
        if partition.log.borrow().high_watermark > offset {
            return Ok(true);
        }
        let (waiter, woken) = oneshot::channel();
        let parked = {
            let mut waiters = partition.data_waiters.borrow_mut();
            waiters.retain(|w| !w.is_canceled());
            let room = waiters.len() < limits::partition_data_waiters_max;
            if room {
                waiters.push(waiter);
            }
            room
        };
        if !parked {
            // Too many readers parked here: this one sleeps out its timeout
            // instead of being woken early.
            glommio::timer::sleep(timeout).await;
            let high_watermark = partition.log.borrow().high_watermark;
            return Ok(high_watermark > offset);
        }
        let _ = futures_lite::future::or(async { woken.await.is_ok() }, async {
            glommio::timer::sleep(timeout).await;
            false
        })
        .await;
        let high_watermark = partition.log.borrow().high_watermark;
        Ok(high_watermark > offset)
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`
    /// (Kafka's ListOffsets by time), with that record's timestamp, found
    /// through the time indexes. None when every record is older.
    pub async fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        timestamp_ms: i64,
    ) -> StorageResult<Option<(Offset, i64)>> {
        let partition = self.partition(tp)?;
        let (start, log_start) = {
            let log = partition.log.borrow();
            let log_start = log.log_start_offset();
            let segment = log.segments.values().find(|s| s.time_index.max_timestamp() >= timestamp_ms);
            match segment {
                None => return Ok(None),
                Some(segment) => (segment.time_index.lookup(timestamp_ms).max(log_start), log_start),
            }
        };
        let mut cursor = start;
        loop {
            let read = self.read(tp, cursor, limits::read_window_bytes_min).await?;
            if read.batches.is_empty() {
                return Ok(None);
            }
            for bytes in &read.batches {
                let header = BatchHeader::ref_from_prefix(bytes).expect("stored batches have headers");
                cursor = Offset(header.base_offset().0 + i64::from(header.last_offset_delta()) + 1);
                if header.max_timestamp() < timestamp_ms {
                    continue;
                }
                let timestamps = record_timestamps(bytes)?;
                if timestamps.is_empty() {
                    // Too large to unpack: answer at batch granularity.
                    return Ok(Some((header.base_offset().max(log_start), header.max_timestamp())));
                }
                // Records of the first batch may lie below a log start that
                // DeleteRecords moved into it: never answer those.
                if let Some(found) =
                    timestamps.into_iter().find(|(offset, ts)| *ts >= timestamp_ms && *offset >= log_start)
                {
                    return Ok(Some(found));
                }
            }
        }
    }

    /// The offset and value of the largest timestamp in the log, if any
    /// (ListOffsets MAX_TIMESTAMP, KIP-734): the time indexes name the batch,
    /// and within an uncompressed CreateTime batch the first record with
    /// that timestamp is found.
    pub async fn max_timestamp(&self, tp: &TopicPartition) -> StorageResult<Option<(Offset, i64)>> {
        let partition = self.partition(tp)?;
        let found = {
            let log = partition.log.borrow();
            let start = log.log_start_offset();
            log.segments
                .values()
                .filter(|s| s.time_index.max_timestamp() >= 0 && s.time_index.max_timestamp_offset() >= start)
                .max_by_key(|s| s.time_index.max_timestamp())
                .map(|s| (s.time_index.max_timestamp_offset(), s.time_index.max_timestamp()))
        };
        let Some((batch_offset, max)) = found else { return Ok(None) };
        let read = self.read(tp, batch_offset, 1).await?;
        let Some(bytes) = read.batches.first() else { return Ok(Some((batch_offset, max))) };
        let header = BatchHeader::ref_from_prefix(bytes).expect("stored batches have headers");
        if header.timestamp_type_log_append() {
            return Ok(Some((batch_offset, max)));
        }
        let found = record_timestamps(bytes)?.into_iter().find(|(_, ts)| *ts == max);
        Ok(Some(found.unwrap_or((batch_offset, max))))
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

    async fn close_partition(&self, partition: &Partition) -> StorageResult<()> {
        let (file, path, size, index_bytes, time_bytes, base, dir, epochs, marker, producers) = {
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
                log.producers.encode(log.log_end_offset),
            )
        };
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

/// (offset, timestamp) of every record of a batch, in order: read in place
/// for an uncompressed batch, inflated (`batch::for_each_record`, bounded by
/// `limits::decompressed_batch_bytes_max`) for a compressed one, and the
/// batch's append time for every record of a LogAppendTime batch. Empty when
/// a compressed batch claims more than `timestamp_scan_records_max` records
/// or inflates past the bound: callers then answer at batch granularity.
pub fn record_timestamps(bytes: &[u8]) -> StorageResult<Vec<(Offset, i64)>> {
    let header = BatchHeader::ref_from_prefix(bytes).expect("stored batches have headers");
    let base = header.base_offset();
    if header.timestamp_type_log_append() {
        let count = i64::from(header.last_offset_delta()) + 1;
        return Ok((0..count).map(|i| (Offset(base.0 + i), header.max_timestamp())).collect());
    }
    let compressed = !matches!(header.compression(), Ok(batch::Compression::None));
    if compressed && header.records_count() > timestamp_scan_records_max {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let walked = batch::for_each_record(bytes, limits::decompressed_batch_bytes_max, |r| {
        out.push((Offset(base.0 + i64::from(r.offset_delta)), header.base_timestamp() + r.timestamp_delta));
    });
    match walked {
        Ok(()) => Ok(out),
        Err(batch::BatchError::Codec(ringstream_core::codec::CodecError::TooLarge { .. })) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Every commit round copies into a freshly allocated aligned buffer, which
/// the batch cache keeps until it evicts it. With glibc's defaults, buffers
/// above 128 KiB are mmap'd and unmapped each time, so every round's pages
/// fault and are zeroed by the kernel before the write starts (measured:
/// 200–260 faults per MiB written, and appends at 0.6× the fault-free rate;
/// BENCHMARKS.md). Raising the mmap threshold to its ceiling (32 MiB on
/// 64-bit, above `commit_round_bytes_max`) and keeping freed memory lets
/// evicted buffers' pages be reused. Process-wide, once.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    const _: () = assert!(limits::commit_round_bytes_max + limits::io_alignment <= 32 * 1024 * 1024);
    ONCE.call_once(|| unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
    });
}

fn upgrade(weak: &Weak<Inner>) -> Option<ShardStorage> {
    weak.upgrade().map(|inner| ShardStorage { inner })
}
