#![allow(non_upper_case_globals)]
//! Deterministic simulation of one shard's storage, in the manner of
//! TigerBeetle's VOPR: a seed picks a flush policy, a segment size and a
//! sequence of appends (to one partition at a time, or with
//! `RINGSTREAM_SIM_SPREAD=3` to up to three at once, sharing commit rounds),
//! reads, rolls, time-based and size-based retention,
//! clean restarts and crashes, all on a simulated disk (`storage::disk::
//! SimDisk`) that fails writes with EIO, fails them with ENOSPC after a torn
//! prefix, fails syncs, completes writes out of order, and at a crash loses,
//! keeps or tears every write that was not yet durable. Time is a manual
//! clock. Every step is checked against an in-memory model of the log:
//!
//! - an acknowledged append gets the next offset, and a read returns exactly
//!   the acknowledged bytes;
//! - a failed append leaves nothing visible, then or after a restart;
//! - under flush=always, a crash loses nothing acknowledged;
//! - under flush=interval, a crash keeps a prefix of the acknowledged log
//!   that reaches at least the last point made durable (a roll or a clean
//!   close).
//!
//! One seed replays one run: `RINGSTREAM_SIM_SEED=<n>` (add
//! `RINGSTREAM_SIM_TRACE=1` to print every step). CI runs
//! `seeds_in_ci` seeds; a longer run is one command:
//! `RINGSTREAM_SIM_SEEDS=2000 cargo test --release --test storage_sim`.
//!
//! Open finding: with `RINGSTREAM_SIM_SPREAD=3` under CPU contention, about
//! one seed-run in 1,500 leaves an append unresolved (the watchdog reports
//! it with each partition's commit state). It does not replay from its seed:
//! the real io_uring work around a round (rolls, preallocation) still
//! completes in timing order. CI runs the spread of 1, which has not failed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ringstream_core::batch::BatchHeader;
use ringstream_core::clock::{Clock, ManualClock};
use ringstream_core::types::{Offset, ShardId, TopicPartition};
use ringstream_storage::disk::{Disk, FaultRates, SimDisk};
use ringstream_storage::log::{FlushPolicy, LogConfig};
use ringstream_storage::shard_storage::{ShardStorage, StorageConfig};
use ringstream_storage::StorageError;

const partitions: i32 = 3;
const steps_per_seed: usize = 200;
const seeds_in_ci: u64 = 24;
/// Real seconds an append may take before the run calls it stuck.
const append_wait_s_max: u64 = 10;

/// Per partition: every acknowledged batch by base offset (its last offset
/// and the bytes as stored), the log start, the next offset, and the offset
/// below which everything was made durable.
#[derive(Default, Clone)]
struct Model {
    batches: BTreeMap<Offset, (Offset, Vec<u8>)>,
    log_start: Offset,
    next: Offset,
    durable: Offset,
}

struct Sim {
    seed: u64,
    rng: SmallRng,
    clock: Arc<ManualClock>,
    disk: Arc<SimDisk>,
    config: StorageConfig,
    log: LogConfig,
    always: bool,
    models: Vec<Model>,
    /// Partitions one burst of appends spans, at most (`RINGSTREAM_SIM_SPREAD`).
    spread_max: i32,
    /// Counters for the report at the end.
    appends_failed: u64,
    crashes: u64,
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("sim", p)
}

impl Sim {
    fn new(seed: u64, dir: &Path) -> Sim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let always = rng.gen_bool(0.5);
        let clock = ManualClock::new(1_700_000_000_000);
        let rates = FaultRates {
            write_eio_ppm: 20_000,
            write_enospc_ppm: 20_000,
            sync_eio_ppm: 10_000,
            late_completion_ppm: 250_000,
        };
        let disk = SimDisk::new(rng.gen(), rates);
        let mut config = common::config(dir);
        config.clock = clock.clone();
        config.disk = Disk::Simulated(disk.clone());
        config.flush = if always { FlushPolicy::Always } else { FlushPolicy::Interval { interval_ms: 3_600_000 } };
        let log = LogConfig { segment_bytes: [4096u64, 8192, 32768][rng.gen_range(0..3)], ..LogConfig::default() };
        Sim {
            seed,
            rng,
            clock,
            disk,
            config,
            log,
            always,
            models: vec![Model::default(); partitions as usize],
            spread_max: std::env::var("RINGSTREAM_SIM_SPREAD")
                .map_or(1, |n| n.parse::<i32>().expect("RINGSTREAM_SIM_SPREAD is a number").clamp(1, partitions)),
            appends_failed: 0,
            crashes: 0,
        }
    }

    fn at(&self, step: usize) -> String {
        format!("seed {} step {step} ({})", self.seed, if self.always { "flush=always" } else { "flush=interval" })
    }

    /// Opens storage with faults off (recovery is checked, not attacked),
    /// then arms the disk again.
    async fn open(&self) -> ShardStorage {
        self.disk.set_armed(false);
        let storage = ShardStorage::open(ShardId(0), self.config.clone()).await.expect("storage opens");
        for p in 0..partitions {
            storage.open_partition(tp(p), self.log.clone()).await.expect("partition opens");
        }
        self.disk.set_armed(true);
        storage
    }

    /// Appends to one partition, or with `RINGSTREAM_SIM_SPREAD=n` to up to
    /// n at once, so their writes share commit rounds.
    async fn append_burst(&mut self, storage: &ShardStorage, step: usize) {
        let first = self.rng.gen_range(0..partitions);
        let spread = self.rng.gen_range(1..=self.spread_max);
        let chosen: Vec<i32> = (0..spread).map(|k| (first + k) % partitions).collect();
        let mut tickets = Vec::new();
        for &p in &chosen {
            for _ in 0..self.rng.gen_range(1..=4) {
                let records = self.rng.gen_range(1..=5);
                let value = self.rng.gen_range(0..600); // a batch fits the smallest segment
                let b = batch(records, value, self.rng.gen(), self.clock.now_ms());
                tickets.push((p, b.clone(), storage.submit(&tp(p), b).await.expect("submit")));
            }
        }
        let trace = std::env::var_os("RINGSTREAM_SIM_TRACE").is_some();
        for (p, b, ticket) in tickets {
            if trace {
                eprintln!("  waiting for an append to partition {p} (faults so far {})", self.disk.faults_injected());
            }
            let model = &mut self.models[p as usize];
            // A watchdog: an append that never resolves is a liveness bug,
            // reported with the storage's state rather than hanging CI.
            let waited = glommio::timer::timeout(std::time::Duration::from_secs(append_wait_s_max), async {
                Ok(ticket.wait().await)
            })
            .await;
            let outcome = waited.unwrap_or_else(|_| {
                panic!(
                    "{}: an append to partition {p} was never resolved; offsets {:?}, commit stats {:?}; {}",
                    at(self.seed, self.always, step),
                    storage.offsets(&tp(p)),
                    storage.commit_stats(),
                    (0..partitions).map(|q| storage.commit_state(&tp(q))).collect::<Vec<_>>().join("; ")
                )
            });
            match outcome {
                Ok(info) => {
                    assert_eq!(info.base_offset, model.next, "{}: offsets are dense", at(self.seed, self.always, step));
                    model.next = info.last_offset.next(1);
                    model.batches.insert(info.base_offset, (info.last_offset, stamped(&b, info.base_offset, 0)));
                    if self.always {
                        model.durable = model.next;
                    }
                }
                Err(StorageError::Io { .. } | StorageError::NoSpace { .. } | StorageError::AppendAborted(_)) => {
                    self.appends_failed += 1
                }
                Err(e) => panic!("{}: append failed with {e}", at(self.seed, self.always, step)),
            }
        }
        for p in chosen {
            let hw = storage.offsets(&tp(p)).unwrap().high_watermark;
            assert_eq!(
                hw,
                self.models[p as usize].next,
                "{}: a failed append left something visible",
                at(self.seed, self.always, step)
            );
        }
    }

    async fn retention(&mut self, storage: &ShardStorage, step: usize) {
        let p = self.rng.gen_range(0..partitions);
        let mut c = self.log.clone();
        if self.rng.gen_bool(0.5) {
            c.retention_bytes = self.rng.gen_range(0..40_000);
        } else {
            c.retention_ms = self.rng.gen_range(0..20_000);
        }
        storage.set_log_config(&tp(p), c).unwrap();
        let outcome = storage.enforce_retention(self.clock.now_ms()).await;
        storage.set_log_config(&tp(p), self.log.clone()).unwrap();
        if let Err(e) = outcome {
            panic!("{}: retention failed: {e}", self.at(step));
        }
        for (q, model) in self.models.iter_mut().enumerate() {
            let start = storage.offsets(&tp(q as i32)).unwrap().log_start_offset;
            assert!(
                q as i32 == p || start == model.log_start,
                "{}: retention touched partition {q}",
                at(self.seed, self.always, step)
            );
            assert!(start >= model.log_start, "{}: log start went backwards", at(self.seed, self.always, step));
            assert!(
                start == model.next || model.batches.contains_key(&start),
                "{}: log start {start} is not a batch boundary",
                at(self.seed, self.always, step)
            );
            model.batches = model.batches.split_off(&start);
            model.log_start = start;
            model.durable = model.durable.max(start);
        }
    }

    async fn read(&mut self, storage: &ShardStorage, step: usize) {
        let p = self.rng.gen_range(0..partitions);
        let model = &self.models[p as usize];
        let hw = storage.offsets(&tp(p)).unwrap().high_watermark;
        assert_eq!(hw, model.next, "{}", self.at(step));
        let offset = Offset(self.rng.gen_range(model.log_start.0..=hw.0));
        let max_bytes = self.rng.gen_range(1..20_000);
        let read = storage.read(&tp(p), offset, max_bytes).await.expect("read");
        let first =
            model.batches.range(..=offset).next_back().filter(|(_, (last, _))| *last >= offset).map(|(b, _)| *b);
        let expected: Vec<&Vec<u8>> = first
            .into_iter()
            .chain(model.batches.range(offset..).map(|(b, _)| *b).filter(|b| Some(*b) != first))
            .map(|base| &model.batches[&base].1)
            .collect();
        let got: Vec<&[u8]> = read.batches.iter().map(|b| &b[..]).collect();
        assert!(got.len() <= expected.len(), "{}: read more batches than acknowledged", self.at(step));
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(*g, &e[..], "{}: read returned other bytes than acknowledged", self.at(step));
        }
        if offset < hw {
            assert!(!got.is_empty(), "{}: empty read below the high watermark", self.at(step));
        }
        for b in &got {
            assert!(BatchHeader::ref_from_prefix(b).is_some());
        }
    }

    /// After a restart: every partition's log is a prefix of the model that
    /// reaches at least its durable point; the model becomes what survived.
    async fn check_recovered(&mut self, storage: &ShardStorage, step: usize, crashed: bool) {
        for p in 0..partitions {
            let all = read_all(storage, &tp(p)).await;
            let at = self.at(step);
            let model = &mut self.models[p as usize];
            let offsets = storage.offsets(&tp(p)).unwrap();
            assert_eq!(offsets.log_start_offset, model.log_start, "{at}: partition {p} log start after restart");
            let expected: Vec<(Offset, Vec<u8>)> =
                model.batches.iter().map(|(b, (_, bytes))| (*b, bytes.clone())).collect();
            assert!(all.len() <= expected.len(), "{at}: partition {p} has batches nobody acknowledged");
            for ((base, _, got), (want_base, want)) in all.iter().zip(&expected) {
                assert_eq!(base, want_base, "{at}: partition {p} offsets after restart");
                assert_eq!(got, want, "{at}: partition {p} bytes at {base} changed across the restart");
            }
            let end = offsets.high_watermark;
            assert!(
                end >= model.durable,
                "{at}: partition {p} lost durable data: recovered to {end}, durable up to {}",
                model.durable
            );
            if !crashed || self.always {
                assert_eq!(end, model.next, "{at}: partition {p} lost acknowledged data across a clean restart");
            }
            model.batches.retain(|base, _| *base < end);
            model.next = end;
            model.durable = end;
        }
    }
}

fn at(seed: u64, always: bool, step: usize) -> String {
    format!("seed {seed} step {step} ({})", if always { "flush=always" } else { "flush=interval" })
}

fn run_seed(seed: u64) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let mut sim = Sim::new(seed, &path);
        let mut storage = sim.open().await;
        let trace = std::env::var_os("RINGSTREAM_SIM_TRACE").is_some();
        if trace {
            let _ = tracing_subscriber::fmt().with_env_filter("debug").with_writer(std::io::stderr).try_init();
        }
        for step in 0..steps_per_seed {
            sim.clock.advance(sim.rng.gen_range(0..1_000));
            let op = sim.rng.gen_range(0..100);
            if trace {
                eprintln!("{}: op {op}, faults so far {}", sim.at(step), sim.disk.faults_injected());
            }
            match op {
                0..=49 => sim.append_burst(&storage, step).await,
                50..=57 => {
                    let p = sim.rng.gen_range(0..partitions);
                    // A roll seals (truncates and syncs) the segment; a failed
                    // sync fails the roll and makes nothing durable.
                    if storage.roll(&tp(p)).await.is_ok() {
                        let model = &mut sim.models[p as usize];
                        model.durable = model.next;
                    }
                }
                58..=64 => sim.retention(&storage, step).await,
                65..=71 => {
                    let clean = sim.rng.gen_bool(0.5);
                    if clean && storage.close().await.is_ok() {
                        for model in &mut sim.models {
                            model.durable = model.next;
                        }
                        storage = sim.open().await;
                        sim.check_recovered(&storage, step, false).await;
                    } else {
                        // Power loss: whatever was not durable is lost, kept
                        // or torn, as the disk decides.
                        drop(storage); // no close: nothing flushed beyond what the disk kept
                        sim.disk.crash().expect("crash applies");
                        sim.crashes += 1;
                        storage = sim.open().await;
                        sim.check_recovered(&storage, step, true).await;
                    }
                }
                _ => sim.read(&storage, step).await,
            }
        }
        drop(storage); // no close: nothing flushed beyond what the disk kept
        sim.disk.crash().expect("crash applies");
        let storage = sim.open().await;
        sim.check_recovered(&storage, steps_per_seed, true).await;
        sim.disk.set_armed(false);
        storage.close().await.expect("clean close");
        (sim.disk.faults_injected(), sim.appends_failed, sim.crashes)
    })
}

#[test]
fn seeded_runs_on_a_faulty_disk_match_the_model() {
    if let Ok(seed) = std::env::var("RINGSTREAM_SIM_SEED") {
        let seed = seed.parse().expect("RINGSTREAM_SIM_SEED is a number");
        let (faults, failed, crashes) = run_seed(seed);
        eprintln!("seed {seed}: {faults} faults injected, {failed} appends failed, {crashes} crashes");
        return;
    }
    let seeds = std::env::var("RINGSTREAM_SIM_SEEDS").map_or(seeds_in_ci, |n| n.parse().expect("a number of seeds"));
    let (mut faults, mut failed, mut crashes) = (0, 0, 0);
    for seed in 1..=seeds {
        let outcome = std::panic::catch_unwind(|| run_seed(seed));
        match outcome {
            Ok((f, a, c)) => {
                faults += f;
                failed += a;
                crashes += c;
            }
            Err(panic) => {
                eprintln!("storage_sim: seed {seed} failed; replay it with RINGSTREAM_SIM_SEED={seed}");
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!("storage_sim: {seeds} seeds, {faults} faults injected, {failed} appends failed, {crashes} crashes");
    // The run must have exercised the faults it claims to check.
    assert!(faults > 0 && failed > 0 && crashes > 0, "the simulation injected no faults");
}
