//! Per-shard metric cells: counters, gauges and histograms that the data
//! path updates cheaply, and the in-process `shard_load` view for placement.
//! This is the low half of metrics; the Prometheus export is the broker's
//! (`ringstream_broker::export`), the reactor sampler the shard crate's.
//!
//! Runs on: every shard updates its own cells; shard 0 serves `GET /metrics`;
//! any shard may call `shard_load`.
//!
//! Cheap on the hot path: every cell is an `AtomicU64` written by exactly one
//! thread, the shard it belongs to (single writer), so an update is a relaxed
//! load and store — no lock, no read-modify-write bus lock, no cross-core
//! traffic unless someone reads. Readers on other cores (the scrape on
//! shard 0, `shard_load`) see each cell's latest value, possibly a moment
//! old. Histograms are fixed buckets of such cells; a reader derives `_count`
//! from the buckets so the exported `le="+Inf"` always equals `_count`.
//!
//! The cells of all shards live in one `MetricsTable`, created by
//! `ShardSet::start` and installed on each shard's thread before its storage
//! opens. Storage opened outside a `ShardSet` (unit tests) gets detached
//! cells that nobody reads.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::limits;
use crate::types::ShardId;

/// A `u64` cell with a single writer: the thread of the shard that owns it.
#[derive(Default, Debug)]
pub struct Cell64(AtomicU64);

impl Cell64 {
    /// Adds `n`. Only the owning shard's thread calls this (single writer),
    /// so a plain load and store is exact and needs no locked instruction.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Subtracts `n` from a gauge; it never goes below zero.
    #[inline]
    pub fn sub(&self, n: u64) {
        let value = self.0.load(Relaxed);
        debug_assert!(value >= n, "gauge below zero");
        self.0.store(value.saturating_sub(n), Relaxed);
    }

    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Relaxed);
    }

    /// From any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Request latency bounds, nanoseconds: 50 µs to 10 s.
pub const latency_bounds_ns: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// fdatasync latency bounds, nanoseconds: 50 µs to 1 s, doubling from 1 ms.
pub const fdatasync_bounds_ns: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_000_000,
    4_000_000,
    8_000_000,
    16_000_000,
    32_000_000,
    64_000_000,
    128_000_000,
    256_000_000,
    512_000_000,
    1_000_000_000,
];
/// Group-commit round sizes in bytes: 4 KiB to 64 MiB, doubling.
pub const commit_bytes_bounds: &[u64] = &[
    4 << 10,
    8 << 10,
    16 << 10,
    32 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    8 << 20,
    16 << 20,
    32 << 20,
    64 << 20,
];
/// Group-commit round sizes in batches: 1 to 4096, doubling.
pub const commit_batches_bounds: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

const fn strictly_increasing(bounds: &[u64]) -> bool {
    let mut i = 1;
    while i < bounds.len() {
        if bounds[i - 1] >= bounds[i] {
            return false;
        }
        i += 1;
    }
    !bounds.is_empty()
}
const _: () = assert!(strictly_increasing(latency_bounds_ns));
const _: () = assert!(strictly_increasing(fdatasync_bounds_ns));
const _: () = assert!(strictly_increasing(commit_bytes_bounds));
const _: () = assert!(strictly_increasing(commit_batches_bounds));

/// A fixed-bucket histogram of integer observations (nanoseconds, bytes,
/// counts) with a single writer. `buckets[i]` counts observations `<=
/// bounds[i]` and above `bounds[i-1]`; the last bucket is `+Inf`.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    buckets: Box<[Cell64]>,
    sum: Cell64,
}

/// What a reader sees of a histogram: per-bucket (not cumulative) counts,
/// one more than the bounds (the `+Inf` bucket), and the sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [u64],
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl HistogramSnapshot {
    /// Observations in all buckets: `_count`, consistent with the buckets.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        assert!(strictly_increasing(bounds));
        Histogram { bounds, buckets: (0..=bounds.len()).map(|_| Cell64::default()).collect(), sum: Cell64::default() }
    }

    /// Owning shard only.
    #[inline]
    pub fn observe(&self, value: u64) {
        let index = self.bounds.partition_point(|&bound| bound < value);
        debug_assert!(index <= self.bounds.len());
        self.buckets[index].add(1);
        self.sum.add(value);
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// From any thread.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self.buckets.iter().map(Cell64::get).collect(),
            sum: self.sum.get(),
        }
    }
}

/// One shard's metrics. Written by that shard only; read from anywhere.
#[derive(Debug)]
pub struct ShardCells {
    /// Record-batch bytes appended (counted when a commit round applies them).
    pub bytes_in: Cell64,
    pub records_in: Cell64,
    /// Record-batch bytes and records put into Fetch responses on this
    /// shard (the shard that holds the client's connection).
    pub bytes_out: Cell64,
    pub records_out: Cell64,
    /// Batch-cache lookups by reads on this shard (the partitions' owner).
    pub cache_hits: Cell64,
    pub cache_misses: Cell64,
    /// Batch bytes that reads returned from segment files (DMA reads).
    pub disk_read_bytes: Cell64,
    /// Reactor busy time (glommio `total_runtime`: tasks plus I/O polling,
    /// no spinning, no parking), nanoseconds, as of the last sample.
    pub busy_ns: Cell64,
    /// Busy fraction over the last sampling window, in millionths.
    pub utilisation_ppm: Cell64,
    /// Times the shard's thread went to sleep and was woken again (its
    /// voluntary context switches, from getrusage(RUSAGE_THREAD)), as of
    /// the last sample: each one is a park in io_uring_enter and a wake-up.
    pub wakeups: Cell64,
    /// Times the kernel took the CPU from the shard's thread while it had
    /// work (involuntary context switches): io-wq workers, softirqs and
    /// other threads sharing its CPU.
    pub preemptions: Cell64,
    /// Router messages this shard sent to other shards' inboxes.
    pub cross_shard_sent: Cell64,
    /// Router messages this shard's inbox delivered to it.
    pub cross_shard_received: Cell64,
    /// Partitions this shard owns (gauge).
    pub partitions: Cell64,
    /// Kafka connections this shard serves (gauge).
    pub connections: Cell64,
    /// Open transactions at this shard's transaction coordinator (gauge, at scrape).
    pub transactions_open: Cell64,
    /// How long the oldest open transaction has held a partition's last
    /// stable offset below its high watermark, ms (gauge, at scrape).
    pub lso_lag_ms: Cell64,
    pub fdatasync_ns: Histogram,
    pub commit_bytes: Histogram,
    pub commit_batches: Histogram,
    /// Request latency from decode to response ready, per Kafka API key.
    request_ns: Box<[Histogram]>,
}

impl Default for ShardCells {
    fn default() -> ShardCells {
        ShardCells {
            bytes_in: Cell64::default(),
            records_in: Cell64::default(),
            bytes_out: Cell64::default(),
            records_out: Cell64::default(),
            cache_hits: Cell64::default(),
            cache_misses: Cell64::default(),
            disk_read_bytes: Cell64::default(),
            busy_ns: Cell64::default(),
            utilisation_ppm: Cell64::default(),
            wakeups: Cell64::default(),
            preemptions: Cell64::default(),
            cross_shard_sent: Cell64::default(),
            cross_shard_received: Cell64::default(),
            partitions: Cell64::default(),
            connections: Cell64::default(),
            transactions_open: Cell64::default(),
            lso_lag_ms: Cell64::default(),
            fdatasync_ns: Histogram::new(fdatasync_bounds_ns),
            commit_bytes: Histogram::new(commit_bytes_bounds),
            commit_batches: Histogram::new(commit_batches_bounds),
            request_ns: (0..limits::metrics_api_keys_max).map(|_| Histogram::new(latency_bounds_ns)).collect(),
        }
    }
}

impl ShardCells {
    /// The latency histogram of API `key`; None for keys beyond the table.
    pub fn request_latency(&self, key: i16) -> Option<&Histogram> {
        usize::try_from(key).ok().and_then(|k| self.request_ns.get(k))
    }
}

/// A shard's load as placement sees it: cheap to read from any core.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShardLoad {
    pub bytes_in_total: u64,
    pub records_in_total: u64,
    pub bytes_out_total: u64,
    pub records_out_total: u64,
    /// Reactor busy seconds since start, as of the last sample (at most
    /// `reactor_sample_ms` old, fresher right after a scrape).
    pub busy_seconds_total: f64,
    /// Busy fraction (0..=1) over the last sampling window.
    pub utilisation: f64,
    pub partitions: u64,
    pub connections: u64,
}

/// The cells of every shard of one `ShardSet`.
#[derive(Debug)]
pub struct MetricsTable {
    shards: Box<[ShardCells]>,
}

impl MetricsTable {
    pub fn new(shard_count: usize) -> Arc<MetricsTable> {
        assert!((1..=limits::shards_max).contains(&shard_count));
        Arc::new(MetricsTable { shards: (0..shard_count).map(|_| ShardCells::default()).collect() })
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn shard(&self, shard: ShardId) -> &ShardCells {
        &self.shards[shard.index()]
    }

    pub fn load(&self, shard: ShardId) -> ShardLoad {
        let cells = self.shard(shard);
        ShardLoad {
            bytes_in_total: cells.bytes_in.get(),
            records_in_total: cells.records_in.get(),
            bytes_out_total: cells.bytes_out.get(),
            records_out_total: cells.records_out.get(),
            busy_seconds_total: cells.busy_ns.get() as f64 / 1e9,
            utilisation: cells.utilisation_ppm.get() as f64 / 1e6,
            partitions: cells.partitions.get(),
            connections: cells.connections.get(),
        }
    }
}

/// This shard's cells: a handle the data path keeps (no thread-local
/// lookup per update).
#[derive(Clone, Debug)]
pub struct Local {
    table: Arc<MetricsTable>,
    shard: ShardId,
}

impl std::ops::Deref for Local {
    type Target = ShardCells;
    fn deref(&self) -> &ShardCells {
        self.table.shard(self.shard)
    }
}

impl Local {
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn table(&self) -> &Arc<MetricsTable> {
        &self.table
    }
}

thread_local! {
    /// The table and shard of the shard running on this thread.
    static INSTALLED: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// Makes this thread shard `shard` of `table`. Called by `ShardSet::start`
/// on each executor before anything there records a metric.
pub fn install(table: Arc<MetricsTable>, shard: ShardId) {
    assert!(shard.index() < table.shard_count());
    INSTALLED.with(|installed| *installed.borrow_mut() = Some(Local { table, shard }));
}

/// This shard's cells, if this thread is a shard of a `ShardSet`.
pub fn local() -> Option<Local> {
    INSTALLED.with(|installed| installed.borrow().clone())
}

/// This shard's cells, or detached ones nobody reads (storage opened by a
/// test outside a `ShardSet`).
pub fn local_or_detached(shard: ShardId) -> Local {
    local().unwrap_or_else(|| Local { table: MetricsTable::new(1), shard: ShardId(0) }).with_check(shard)
}

impl Local {
    fn with_check(self, shard: ShardId) -> Local {
        // Installed cells must be this shard's; detached ones are shard 0 of a
        // one-shard table whatever the caller's id.
        debug_assert!(self.table.shard_count() == 1 || self.shard == shard, "metrics installed for another shard");
        self
    }
}

/// The load of `shard`, read from whichever shard calls it (placement, a
/// balancer). Panics when called off a shard thread: outside the shards,
/// use `ShardSet::metrics().load(shard)`.
pub fn shard_load(shard: ShardId) -> ShardLoad {
    // Borrowed, not cloned: cloning the shared `Arc` would bounce its count
    // between cores.
    INSTALLED.with(|installed| {
        let installed = installed.borrow();
        let local =
            installed.as_ref().expect("metrics::shard_load is called on a shard (use ShardSet::metrics outside)");
        local.table.load(shard)
    })
}

/// The load of every shard, by shard id (see `shard_load`).
pub fn shard_loads() -> Vec<ShardLoad> {
    INSTALLED.with(|installed| {
        let installed = installed.borrow();
        let local =
            installed.as_ref().expect("metrics::shard_loads is called on a shard (use ShardSet::metrics outside)");
        (0..local.table.shard_count()).map(|i| local.table.load(ShardId(i as u16))).collect()
    })
}

/// Runs `f` with this shard's cells, if installed (no `Arc` clone).
fn with_local<T>(f: impl FnOnce(&ShardCells) -> T) -> Option<T> {
    INSTALLED.with(|installed| installed.borrow().as_ref().map(|local| f(local)))
}

/// Counts one router message sent to another shard (on a shard only).
#[inline]
pub fn count_cross_shard_sent() {
    with_local(|cells| cells.cross_shard_sent.add(1));
}

/// Counts one router message delivered to this shard (on a shard only).
#[inline]
pub fn count_cross_shard_received() {
    with_local(|cells| cells.cross_shard_received.add(1));
}

/// Runs `f` with this shard's cells, if installed on this thread.
pub fn with_installed<T>(f: impl FnOnce(&ShardCells) -> T) -> Option<T> {
    with_local(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_le_bounds() {
        let histogram = Histogram::new(commit_batches_bounds);
        for value in [0, 1, 2, 3, 4096, 4097, u64::MAX / 2] {
            histogram.observe(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts.len(), commit_batches_bounds.len() + 1);
        assert_eq!(snapshot.counts[0], 2, "0 and 1 are <= 1");
        assert_eq!(snapshot.counts[1], 1, "2 is <= 2");
        assert_eq!(snapshot.counts[2], 1, "3 is <= 4");
        assert_eq!(snapshot.counts[commit_batches_bounds.len() - 1], 1, "4096 is <= 4096");
        assert_eq!(snapshot.counts[commit_batches_bounds.len()], 2, "the rest is +Inf");
        assert_eq!(snapshot.count(), 7);
        assert_eq!(snapshot.sum, 1 + 2 + 3 + 4096 + 4097 + u64::MAX / 2);
    }

    #[test]
    fn cells_count_and_table_reads_them() {
        let table = MetricsTable::new(2);
        let cells = table.shard(ShardId(1));
        cells.bytes_in.add(100);
        cells.bytes_in.add(23);
        cells.records_in.add(5);
        cells.connections.add(2);
        cells.connections.sub(1);
        cells.utilisation_ppm.set(250_000);
        let load = table.load(ShardId(1));
        assert_eq!(load.bytes_in_total, 123);
        assert_eq!(load.records_in_total, 5);
        assert_eq!(load.connections, 1);
        assert_eq!(load.utilisation, 0.25);
        assert_eq!(table.load(ShardId(0)), ShardLoad::default());
    }
}
