//! Append throughput of one shard's storage, against a raw glommio DmaFile
//! sequential write of the same bytes in the same buffer size.
//!
//! Scenarios: {16 KiB, 1 MiB} batches x {flush=always, flush=interval 50 ms}
//! x {1, 4 partitions}, each with `DEPTH` appends in flight (submit, then
//! wait for the oldest ticket), until `TARGET` bytes or `SECS` seconds,
//! whichever comes first. Then the raw baselines for each batch size:
//! - `raw/<size>/sync`: 4 KiB-aligned DmaBuffers of the batch size, written
//!   with `write_at`, `DEPTH` in flight, one fdatasync per N bytes, where N
//!   is the bytes per fdatasync that the storage's `always/p1` run measured
//!   (so the raw run mirrors its group commit);
//! - `raw/<size>/nosync`: the same with a single fdatasync at the end;
//! - `raw/<size>/sync-extend`: like `sync`, but the file is grown as the
//!   storage grows a segment (fallocate KEEP_SIZE in 32 MiB steps, each write
//!   extends the file size) instead of being fully allocated up front (as fio
//!   does);
//! - `raw/<size>/sync-qd1` and `nosync-qd1`: the storage's own I/O pattern
//!   without its code: one write at a time of the bytes per write that the
//!   storage's `always/p1` (`interval/p1`) run measured, each followed by an
//!   fdatasync (none). Together these separate the cost of the write pattern
//!   from the cost of the code;
//! - `raw/<size>/sync-nocopy` and `nosync-nocopy`: like `sync` and `nosync`
//!   but every write sends the same prefilled buffer (`write_rc_at`), as fio
//!   does: no allocation and no memcpy per write, the ceiling for glommio.
//!
//! The raw file is filled with one memcpy per buffer, as the storage's one
//! copy on ingest.
//!
//! Usage: `cargo bench --bench append [-- FILTER]`; FILTER is a substring of
//! the scenario names (`storage/1m/always/p1`, `raw/16k/nosync`, ...).
//! Environment: RINGSTREAM_BENCH_DIR (parent of the temp dir, default
//! /var/tmp), RINGSTREAM_BENCH_SECS (per scenario, default 4),
//! RINGSTREAM_BENCH_MIB (bytes per scenario, default 1024),
//! RINGSTREAM_BENCH_CACHE_MIB (the storage's batch cache, default: the
//! storage's default; a diagnostic knob, the cache keeps written buffers),
//! RINGSTREAM_BENCH_RAW_DEPTH (writes in flight in the raw baselines other
//! than the qd1 ones, default 64; a diagnostic knob).

mod common;
use common::batch_of;

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::io::DmaFile;
use glommio::{LocalExecutorBuilder, Placement};
use ringstream_core::batch::build_test_batch;
use ringstream_core::types::{ShardId, TopicPartition};
use ringstream_storage::log::{FlushPolicy, LogConfig};
use ringstream_storage::shard_storage::{CommitStats, ShardStorage, StorageConfig};

const MIB: u64 = 1024 * 1024;
/// Appends (or raw writes) in flight.
const DEPTH: usize = 64;
const INTERVAL_MS: u64 = 50;
/// The storage grows a segment's allocation in these steps (limits.rs).
const EXTEND_STEP: u64 = 32 * MIB;

fn main() {
    let filter = filter_arg();
    let settings = Settings::from_env();
    let parent = settings.parent.clone();
    std::fs::create_dir_all(&parent).expect("bench parent dir");
    println!("# append benchmark");
    println!(
        "dir parent: {} | in flight: {DEPTH} | per scenario: {} MiB or {:.1} s, whichever first | 1 MiB = 2^20 bytes",
        parent.display(),
        settings.target_bytes / MIB,
        settings.secs
    );
    warn_if_other_device(&parent);
    if let Some(bytes) = settings.cache_bytes {
        println!("batch cache: {} MiB (RINGSTREAM_BENCH_CACHE_MIB)", bytes >> 20);
    }

    let sizes: [(&str, usize); 2] = [("16k", 16 * 1024), ("1m", 1024 * 1024)];
    let flushes: [(&str, FlushPolicy); 2] =
        [("always", FlushPolicy::Always), ("interval", FlushPolicy::Interval { interval_ms: INTERVAL_MS })];
    let partition_counts = [1usize, 4];

    let mut storage_runs: Vec<StorageRun> = Vec::new();
    println!();
    println!(
        "{:<26} {:>9} {:>10} {:>8} {:>7} {:>7} {:>7} {:>8} {:>10} {:>9} {:>5} {:>8} {:>7}",
        "scenario",
        "MiB/s",
        "batches/s",
        "MiB",
        "secs",
        "rounds",
        "writes",
        "fsyncs",
        "batch/sync",
        "KiB/write",
        "cpu%",
        "flt/MiB",
        "close s"
    );
    for &(size_name, size) in &sizes {
        for (flush_name, flush) in &flushes {
            for &partitions in &partition_counts {
                let name = format!("storage/{size_name}/{flush_name}/p{partitions}");
                if !selected(&filter, &name) {
                    continue;
                }
                let run = storage_scenario(&settings, name, size, *flush, partitions);
                run.print();
                storage_runs.push(run);
            }
        }
    }

    let mut raw_runs: HashMap<String, RawRun> = HashMap::new();
    println!();
    println!(
        "{:<26} {:>9} {:>10} {:>8} {:>7} {:>8} {:>10} {:>10} {:>5} {:>8}",
        "raw baseline", "MiB/s", "buffers/s", "MiB", "secs", "fsyncs", "MiB/fsync", "KiB/write", "cpu%", "flt/MiB"
    );
    for &(size_name, size) in &sizes {
        // Mirror the group commit that storage measured for this batch size.
        let measured = |flush: &str, per_sync: bool| {
            storage_runs.iter().find(|r| r.name == format!("storage/{size_name}/{flush}/p1")).and_then(|r| {
                let divisor = if per_sync { r.stats.fdatasyncs } else { r.stats.writes };
                (divisor > 0).then(|| r.stats.bytes / divisor)
            })
        };
        let default_round = if size < MIB as usize { MIB } else { 16 * MIB };
        let sync_every = measured("always", true).unwrap_or(default_round).max(size as u64);
        let round_always = align_up(measured("always", false).unwrap_or(default_round));
        let round_interval = align_up(measured("interval", false).unwrap_or(default_round));
        let depth = settings.raw_depth.unwrap_or(DEPTH);
        let variant =
            |name: &'static str, buffer: usize, depth: usize, sync_every: Option<u64>, extend: bool, copy: bool| {
                (name, RawPlan { buffer, depth, sync_every, extend, copy })
            };
        let variants = [
            variant("sync", size, depth, Some(sync_every), false, true),
            variant("nosync", size, depth, None, false, true),
            variant("sync-extend", size, depth, Some(sync_every), true, true),
            variant("sync-qd1", round_always as usize, 1, Some(round_always), true, true),
            variant("nosync-qd1", round_interval as usize, 1, None, true, true),
            variant("sync-nocopy", size, depth, Some(sync_every), false, false),
            variant("nosync-nocopy", size, depth, None, false, false),
        ];
        for (variant, plan) in variants {
            let name = format!("raw/{size_name}/{variant}");
            if !selected(&filter, &name) {
                continue;
            }
            let run = raw_scenario(&settings, name.clone(), plan);
            run.print();
            raw_runs.insert(name, run);
        }
    }

    println!();
    println!("storage / raw (always vs raw sync, interval vs raw nosync; same batch size):");
    println!("{:<26} {:>9} {:>9} {:>7}", "scenario", "MiB/s", "raw MiB/s", "ratio");
    let mut results = Vec::new();
    for run in &storage_runs {
        let mut parts = run.name.split('/');
        let (_, size_name, flush_name) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let raw_name = format!("raw/{size_name}/{}", if flush_name == "always" { "sync" } else { "nosync" });
        let ratio = raw_runs.get(&raw_name).map(|raw| run.mib_s() / raw.mib_s());
        match ratio {
            Some(ratio) => {
                println!("{:<26} {:>9.1} {:>9.1} {:>7.2}", run.name, run.mib_s(), raw_runs[&raw_name].mib_s(), ratio)
            }
            None => println!("{:<26} {:>9.1} {:>9} {:>7}", run.name, run.mib_s(), "-", "-"),
        }
        results.push(format!(
            "RESULT append {} mib_s={:.1} batches_s={:.0} batches_per_fsync={} ratio_raw={}",
            run.name,
            run.mib_s(),
            run.batches as f64 / run.secs,
            run.batches_per_sync().map_or("-".into(), |v| format!("{v:.1}")),
            ratio.map_or("-".into(), |r| format!("{r:.2}"))
        ));
    }
    let mut raw_names: Vec<_> = raw_runs.keys().cloned().collect();
    raw_names.sort();
    for name in raw_names {
        results.push(format!("RESULT append {name} mib_s={:.1}", raw_runs[&name].mib_s()));
    }
    println!();
    for line in results {
        println!("{line}");
    }
}

struct Settings {
    parent: PathBuf,
    secs: f64,
    target_bytes: u64,
    cache_bytes: Option<usize>,
    raw_depth: Option<usize>,
}

impl Settings {
    fn from_env() -> Settings {
        let parent = std::env::var_os("RINGSTREAM_BENCH_DIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
        let secs = std::env::var("RINGSTREAM_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(4.0);
        let mib: u64 = std::env::var("RINGSTREAM_BENCH_MIB").ok().and_then(|s| s.parse().ok()).unwrap_or(1024);
        let cache_bytes =
            std::env::var("RINGSTREAM_BENCH_CACHE_MIB").ok().and_then(|s| s.parse::<usize>().ok()).map(|m| m << 20);
        let raw_depth =
            std::env::var("RINGSTREAM_BENCH_RAW_DEPTH").ok().and_then(|s| s.parse::<usize>().ok()).filter(|d| *d > 0);
        Settings { parent, secs, target_bytes: mib * MIB, cache_bytes, raw_depth }
    }
}

/// The first argument that is not a flag (cargo passes `--bench`).
fn filter_arg() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

fn selected(filter: &Option<String>, name: &str) -> bool {
    filter.as_ref().map_or(true, |f| name.contains(f.as_str()))
}

fn align_up(bytes: u64) -> u64 {
    bytes.div_ceil(4096) * 4096
}

/// CPU time and minor page faults of the calling thread so far.
fn thread_usage() -> (f64, u64) {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we pass.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (cpu(usage.ru_utime) + cpu(usage.ru_stime), usage.ru_minflt as u64)
}

fn warn_if_other_device(parent: &Path) {
    let here = std::fs::metadata(env!("CARGO_MANIFEST_DIR")).map(|m| m.dev());
    let there = std::fs::metadata(parent).map(|m| m.dev());
    if let (Ok(a), Ok(b)) = (here, there) {
        if a != b {
            println!("WARNING: {} is not on the same filesystem as the repository", parent.display());
        }
    }
}

fn temp_dir(settings: &Settings) -> tempfile::TempDir {
    tempfile::Builder::new().prefix("ringstream-bench-append-").tempdir_in(&settings.parent).expect("temp dir")
}

fn on_executor<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    // The first CPU this process may use (Fixed(n) fails outside the CPU set).
    let cpu = ringstream_tuning::allowed_cpus().ok().and_then(|cpus| cpus.first().copied());
    LocalExecutorBuilder::new(cpu.map_or(Placement::Unbound, Placement::Fixed))
        .io_memory(2 << 20)
        .spin_before_park(Duration::from_micros(50))
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("executor finishes")
}

struct StorageRun {
    name: String,
    bytes: u64,
    batches: u64,
    secs: f64,
    close_secs: f64,
    stats: CommitStats,
    cpu_secs: f64,
    faults: u64,
}

impl StorageRun {
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / MIB as f64 / self.secs
    }

    fn batches_per_sync(&self) -> Option<f64> {
        (self.stats.fdatasyncs > 0).then(|| self.stats.batches as f64 / self.stats.fdatasyncs as f64)
    }

    fn print(&self) {
        let per_sync = self.batches_per_sync().map_or("-".to_string(), |v| format!("{v:.1}"));
        let per_write =
            if self.stats.writes > 0 { self.stats.bytes as f64 / self.stats.writes as f64 / 1024.0 } else { 0.0 };
        println!(
            "{:<26} {:>9.1} {:>10.0} {:>8.0} {:>7.2} {:>7} {:>7} {:>8} {:>10} {:>9.0} {:>5.0} {:>8.0} {:>7.3}",
            self.name,
            self.mib_s(),
            self.batches as f64 / self.secs,
            self.bytes as f64 / MIB as f64,
            self.secs,
            self.stats.rounds,
            self.stats.writes,
            self.stats.fdatasyncs,
            per_sync,
            per_write,
            100.0 * self.cpu_secs / self.secs,
            self.faults as f64 / (self.bytes as f64 / MIB as f64),
            self.close_secs
        );
    }
}

fn storage_scenario(
    settings: &Settings,
    name: String,
    size: usize,
    flush: FlushPolicy,
    partitions: usize,
) -> StorageRun {
    let dir = temp_dir(settings);
    let data_dir = dir.path().to_path_buf();
    let target = settings.target_bytes;
    let deadline = Duration::from_secs_f64(settings.secs);
    let cache_bytes = settings.cache_bytes;
    let run_name = name.clone();
    let run = on_executor(move || async move {
        let log = LogConfig { max_message_bytes: 2 * MIB as usize, ..LogConfig::default() };
        let mut config = StorageConfig::new(&data_dir);
        config.flush = flush;
        config.retention_check_interval_ms = 3_600_000;
        config.default_log = log.clone();
        if let Some(bytes) = cache_bytes {
            config.batch_cache_bytes = bytes;
        }
        let storage = ShardStorage::open(ShardId(0), config).await.expect("storage opens");
        let tps: Vec<TopicPartition> = (0..partitions as i32).map(|p| TopicPartition::new("bench", p)).collect();
        for tp in &tps {
            storage.open_partition(tp.clone(), log.clone()).await.expect("partition opens");
        }
        let batches: Vec<Bytes> = (0..partitions).map(|p| batch_of(size, p as u64 + 1)).collect();
        let mut in_flight = VecDeque::with_capacity(DEPTH);
        let (mut bytes, mut count) = (0u64, 0u64);
        let start = Instant::now();
        let usage = thread_usage();
        let mut index = 0usize;
        loop {
            let p = index % partitions;
            // Stay within the target (and so within one 1 GiB segment).
            if bytes + batches[p].len() as u64 > target || start.elapsed() >= deadline {
                break;
            }
            index += 1;
            let ticket = storage.submit(&tps[p], batches[p].clone()).await.expect("submit");
            in_flight.push_back(ticket);
            bytes += batches[p].len() as u64;
            count += 1;
            if in_flight.len() >= DEPTH {
                in_flight.pop_front().unwrap().wait().await.expect("append acknowledged");
            }
        }
        while let Some(ticket) = in_flight.pop_front() {
            ticket.wait().await.expect("append acknowledged");
        }
        let secs = start.elapsed().as_secs_f64();
        let (cpu_secs, faults) = {
            let now = thread_usage();
            (now.0 - usage.0, now.1 - usage.1)
        };
        let stats = storage.commit_stats();
        let close_start = Instant::now();
        storage.close().await.expect("clean close");
        let close_secs = close_start.elapsed().as_secs_f64();
        StorageRun { name: run_name, bytes, batches: count, secs, close_secs, stats, cpu_secs, faults }
    });
    drop(dir);
    run
}

struct RawRun {
    name: String,
    bytes: u64,
    buffers: u64,
    secs: f64,
    syncs: u64,
    cpu_secs: f64,
    faults: u64,
}

impl RawRun {
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / MIB as f64 / self.secs
    }

    fn print(&self) {
        let per_sync = if self.syncs > 0 {
            format!("{:.1}", self.bytes as f64 / MIB as f64 / self.syncs as f64)
        } else {
            "-".into()
        };
        println!(
            "{:<26} {:>9.1} {:>10.0} {:>8.0} {:>7.2} {:>8} {:>10} {:>10.0} {:>5.0} {:>8.0}",
            self.name,
            self.mib_s(),
            self.buffers as f64 / self.secs,
            self.bytes as f64 / MIB as f64,
            self.secs,
            self.syncs,
            per_sync,
            self.bytes as f64 / self.buffers.max(1) as f64 / 1024.0,
            100.0 * self.cpu_secs / self.secs,
            self.faults as f64 / (self.bytes as f64 / MIB as f64)
        );
    }
}

/// One raw baseline: `buffer`-byte writes, `depth` in flight, an fdatasync
/// per `sync_every` bytes, the file grown as it is written (`extend`) or
/// allocated up front, a fresh buffer filled per write (`copy`) or one
/// prefilled buffer for all.
struct RawPlan {
    buffer: usize,
    depth: usize,
    sync_every: Option<u64>,
    extend: bool,
    copy: bool,
}

/// Sequential O_DIRECT writes; with `sync_every`, the writes of each
/// `sync_every` bytes complete and then one fdatasync runs (a group-commit
/// round); a final fdatasync always.
fn raw_scenario(settings: &Settings, name: String, plan: RawPlan) -> RawRun {
    let RawPlan { buffer: size, depth, sync_every, extend, copy } = plan;
    let dir = temp_dir(settings);
    let data_dir = dir.path().to_path_buf();
    let total = settings.target_bytes / size as u64 * size as u64;
    let deadline = Duration::from_secs_f64(settings.secs);
    let run_name = name.clone();
    let run = on_executor(move || async move {
        // glommio #605: read a non-empty file on the device before any empty
        // DmaFile is opened (the storage does the same at open).
        ringstream_storage::dir::probe_dma_device(&data_dir).await.expect("probe");
        let path = data_dir.join("raw.log");
        let file = Rc::new(DmaFile::create(&path).await.expect("create raw file"));
        let mut allocated = 0u64;
        if extend {
            file.pre_allocate(EXTEND_STEP, true).await.expect("fallocate");
            allocated = EXTEND_STEP;
        } else {
            file.pre_allocate(total, false).await.expect("fallocate");
        }
        let batch = build_test_batch(16, 1000, 7, 0);
        let pattern: Vec<u8> = batch.iter().copied().cycle().take(size).collect();
        let mut prefilled = file.alloc_dma_buffer(size);
        prefilled.as_bytes_mut().copy_from_slice(&pattern);
        let prefilled = Rc::new(prefilled);
        let mut in_flight: VecDeque<glommio::Task<usize>> = VecDeque::with_capacity(depth);
        let (mut position, mut since_sync, mut syncs, mut buffers) = (0u64, 0u64, 0u64, 0u64);
        let start = Instant::now();
        let usage = thread_usage();
        while position < total && start.elapsed() < deadline {
            if extend && position + size as u64 > allocated {
                allocated = (allocated + EXTEND_STEP).min(total.max(position + size as u64));
                file.pre_allocate(allocated, true).await.expect("fallocate");
            }
            let writer = file.clone();
            let at = position;
            if copy {
                let mut buffer = file.alloc_dma_buffer(size);
                buffer.as_bytes_mut().copy_from_slice(&pattern);
                in_flight
                    .push_back(glommio::spawn_local(async move { writer.write_at(buffer, at).await.expect("write") }));
            } else {
                let buffer = prefilled.clone();
                in_flight.push_back(glommio::spawn_local(async move {
                    writer.write_rc_at(buffer, at).await.expect("write")
                }));
            }
            position += size as u64;
            since_sync += size as u64;
            buffers += 1;
            if in_flight.len() >= depth {
                assert_eq!(in_flight.pop_front().unwrap().await, size);
            }
            if let Some(every) = sync_every {
                if since_sync >= every {
                    while let Some(write) = in_flight.pop_front() {
                        assert_eq!(write.await, size);
                    }
                    file.fdatasync().await.expect("fdatasync");
                    syncs += 1;
                    since_sync = 0;
                }
            }
        }
        while let Some(write) = in_flight.pop_front() {
            assert_eq!(write.await, size);
        }
        file.fdatasync().await.expect("fdatasync");
        syncs += 1;
        let secs = start.elapsed().as_secs_f64();
        let (cpu_secs, faults) = {
            let now = thread_usage();
            (now.0 - usage.0, now.1 - usage.1)
        };
        drop(prefilled);
        file.close_rc().await.expect("close");
        RawRun { name: run_name, bytes: position, buffers, secs, syncs, cpu_secs, faults }
    });
    drop(dir);
    run
}
