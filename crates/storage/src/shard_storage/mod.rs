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

use futures_channel::oneshot;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::io::ReadResult;
use glommio::sync::Semaphore;
use tracing::error;

use crate::cache::{BatchCache, CacheSlice, CacheStats, PartitionKey};
use crate::dir;
use crate::disk::Disk;
use crate::error::{StorageError, StorageResult};
use crate::faults::Faults;
use crate::log::{AppendInfo, FlushPolicy, LogConfig, PartitionLog};
use crate::producer_state::BatchRecord;
use ringstream_core::clock::{self, SharedClock};
use ringstream_core::limits;
use ringstream_core::limits::duplicate_wait_ms_max;
use ringstream_core::types::{Offset, ShardId, TopicPartition};

mod appender;
mod reader;
mod replication;
mod retention;
mod table;

pub use reader::record_timestamps;
pub use replication::{FollowedPartition, ReplicationCounts};

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
    /// A relative `data_dir` is made absolute against the current
    /// directory: glommio opens directories with no base descriptor, so a
    /// relative path fails there with EBADF.
    pub fn new(data_dir: impl Into<PathBuf>) -> StorageConfig {
        let data_dir: PathBuf = data_dir.into();
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        StorageConfig {
            data_dir,
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
    /// A follower's read only (KIP-320): (epoch, end offset) of the leader's
    /// log where the follower's last fetched epoch ends, when the follower
    /// has records past it; the read then carries no batches.
    pub diverging: Option<(ringstream_core::types::LeaderEpoch, Offset)>,
    pub last_stable_offset: Offset,
    /// A read_committed read only: the aborted transactions overlapping
    /// the batches returned, as (producer id, first offset).
    pub aborted: Vec<(i64, Offset)>,
}

/// How far a read may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadBound {
    /// A consumer (read_uncommitted).
    HighWatermark,
    /// A read_committed consumer.
    LastStable,
    /// A follower, or a coordinator loading its log.
    LogEnd,
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
                let acknowledged = storage.wait_for_high_watermark(&tp, record.last_offset, timeout).await?;
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
