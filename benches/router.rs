//! Cross-shard router cost, against a bare flume channel in the same run.
//!
//! Two shards (the first two CPUs of the affinity mask), flush=interval.
//! - `router/offsets/serial`: `Shard::offsets` from shard 0 on a partition
//!   owned by shard 1, one at a time: a pure router round trip (flume inbox
//!   there, futures oneshot back).
//! - `router/offsets/32-tasks`: the same from 32 concurrent tasks on shard 0.
//! - `router/append-remote/w256`: one-record appends (~170-byte batches)
//!   from shard 0 to the partition on shard 1, 256 in flight (submit, then
//!   wait for the oldest ticket); latency is submit-to-acknowledgement.
//! - `router/append-local/w256`: the same on the owner, shard 1 (no router
//!   hop), to separate the router's cost from the storage's.
//! - `router/append-storage-direct/w256`: the same on the owner through
//!   `ShardStorage::submit`, without the `Shard` layer.
//!
//! Baselines, run first, with the same message (a u64 and a `Bytes` clone of
//! the same batch) and the same pinning:
//! - `flume/glommio/pingpong`: two glommio executors (spin-before-park
//!   50 µs, as the shards), request on one bounded flume channel, reply on
//!   another; one message at a time.
//! - `flume/glommio/w256`: the same with 256 in flight.
//! - `flume/std-threads/pingpong`: two pinned std threads, blocking send and
//!   recv.
//!
//! Usage: `cargo bench --bench router [-- FILTER]`. Environment:
//! RINGSTREAM_BENCH_DIR (parent of the temp dir, default /var/tmp),
//! RINGSTREAM_BENCH_SECS (per scenario, default 3).

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use ringstream_core::batch::build_test_batch;
use ringstream_core::clock::now_ms;
use ringstream_core::types::{ShardId, TopicPartition};
use ringstream_shard::{place, RuntimeConfig, Shard, ShardSet};
use ringstream_storage::log::{AppendInfo, FlushPolicy};
use ringstream_storage::shard_storage::StorageConfig;
use ringstream_storage::StorageResult;

const WINDOW: usize = 256;
const TASKS: usize = 32;
const SPIN: Duration = Duration::from_micros(50);
/// Results from the first part of each run are dropped (warm-up).
const WARMUP: Duration = Duration::from_millis(200);

struct Run {
    name: String,
    messages: u64,
    secs: f64,
    latency_ns: Histogram<u64>,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.messages as f64 / self.secs
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected = |name: &str| filter.as_ref().map_or(true, |f| name.contains(f.as_str()));
    let secs: f64 = std::env::var("RINGSTREAM_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let parent = std::env::var_os("RINGSTREAM_BENCH_DIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    println!("# router benchmark");
    let cpus = ringstream_tuning::allowed_cpus().expect("read CPU set");
    if cpus.len() < 2 {
        println!(
            "SKIPPED: the router benchmark needs 2 CPUs in this process's affinity mask, found {} ({:?}).",
            cpus.len(),
            cpus
        );
        return;
    }
    let (cpu_a, cpu_b) = (cpus[0], cpus[1]);
    let batch = Bytes::from(build_test_batch(1, 100, 1, now_ms()));
    let duration = Duration::from_secs_f64(secs);
    println!(
        "CPUs {cpu_a} and {cpu_b} | message: u64 + Bytes of a {}-byte batch | {:.1} s per scenario after {} ms warm-up",
        batch.len(),
        secs,
        WARMUP.as_millis()
    );

    let mut runs = Vec::new();
    if selected("flume/glommio/pingpong") {
        runs.push(flume_glommio("flume/glommio/pingpong", 1, cpu_a, cpu_b, batch.clone(), duration));
    }
    if selected("flume/glommio/w256") {
        runs.push(flume_glommio("flume/glommio/w256", WINDOW, cpu_a, cpu_b, batch.clone(), duration));
    }
    if selected("flume/std-threads/pingpong") {
        runs.push(flume_threads("flume/std-threads/pingpong", cpu_a, cpu_b, batch.clone(), duration));
    }
    let router_names = [
        "router/offsets/serial",
        "router/offsets/32-tasks",
        "router/append-remote/w256",
        "router/append-local/w256",
        "router/append-storage-direct/w256",
    ];
    if router_names.iter().any(|name| selected(name)) {
        runs.extend(router_runs(&selected, &parent, batch.clone(), duration));
    }

    println!();
    println!(
        "{:<34} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "scenario", "msgs/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "count"
    );
    for run in &runs {
        let q = |quantile: f64| run.latency_ns.value_at_quantile(quantile) as f64 / 1000.0;
        println!(
            "{:<34} {:>12.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10}",
            run.name,
            run.per_sec(),
            q(0.5),
            q(0.99),
            q(0.999),
            run.latency_ns.max() as f64 / 1000.0,
            run.messages
        );
    }
    println!();
    let find = |name: &str| runs.iter().find(|r| r.name == name);
    let pairs = [
        ("router/offsets/serial", "flume/glommio/pingpong"),
        ("router/append-remote/w256", "flume/glommio/w256"),
        ("router/append-remote/w256", "router/append-local/w256"),
        ("router/append-local/w256", "router/append-storage-direct/w256"),
    ];
    for (a, b) in pairs {
        if let (Some(a), Some(b)) = (find(a), find(b)) {
            println!(
                "{} / {}: msgs/s ratio {:.2}, p50 ratio {:.2}",
                a.name,
                b.name,
                a.per_sec() / b.per_sec(),
                a.latency_ns.value_at_quantile(0.5) as f64 / b.latency_ns.value_at_quantile(0.5).max(1) as f64
            );
        }
    }
    println!();
    for run in &runs {
        let q = |quantile: f64| run.latency_ns.value_at_quantile(quantile) as f64 / 1000.0;
        println!(
            "RESULT router {} msgs_s={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1}",
            run.name,
            run.per_sec(),
            q(0.5),
            q(0.99),
            q(0.999)
        );
    }
}

fn executor(cpu: usize, name: &str) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Fixed(cpu)).name(name).io_memory(512 * 1024).spin_before_park(SPIN)
}

/// Request/reply over two bounded flume channels between two glommio
/// executors, `window` requests in flight.
fn flume_glommio(name: &str, window: usize, cpu_a: usize, cpu_b: usize, batch: Bytes, duration: Duration) -> Run {
    let (request_tx, request_rx) = flume::bounded::<(u64, Bytes)>(1024);
    let (reply_tx, reply_rx) = flume::bounded::<u64>(1024);
    let echo = executor(cpu_b, "echo")
        .spawn(move || async move {
            while let Ok((sequence, payload)) = request_rx.recv_async().await {
                drop(payload);
                if reply_tx.send_async(sequence).await.is_err() {
                    break;
                }
            }
        })
        .expect("echo executor");
    let run_name = name.to_string();
    let run = executor(cpu_a, "client")
        .spawn(move || async move {
            let mut latency = histogram();
            let mut sent: VecDeque<Instant> = VecDeque::with_capacity(window);
            let (mut sequence, mut received, mut measured) = (0u64, 0u64, 0u64);
            let start = Instant::now();
            let mut measure_start = None;
            loop {
                let elapsed = start.elapsed();
                let open = elapsed < WARMUP + duration;
                if open && sent.len() < window {
                    sent.push_back(Instant::now());
                    request_tx.send_async((sequence, batch.clone())).await.expect("echo alive");
                    sequence += 1;
                    continue;
                }
                if sent.is_empty() {
                    break;
                }
                let got = reply_rx.recv_async().await.expect("echo alive");
                assert_eq!(got, received, "replies in order");
                received += 1;
                let at = sent.pop_front().unwrap();
                if elapsed >= WARMUP {
                    let begin = *measure_start.get_or_insert_with(Instant::now);
                    if begin <= at {
                        latency.saturating_record(at.elapsed().as_nanos() as u64);
                        measured += 1;
                    }
                }
            }
            let secs = measure_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
            drop(request_tx);
            Run { name: run_name, messages: measured, secs, latency_ns: latency }
        })
        .expect("client executor")
        .join()
        .expect("client finishes");
    echo.join().expect("echo finishes");
    run
}

fn pin_current_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only touch the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "pin to CPU {cpu}");
    }
}

/// Ping-pong between two pinned std threads with blocking flume calls.
fn flume_threads(name: &str, cpu_a: usize, cpu_b: usize, batch: Bytes, duration: Duration) -> Run {
    let (request_tx, request_rx) = flume::bounded::<(u64, Bytes)>(1024);
    let (reply_tx, reply_rx) = flume::bounded::<u64>(1024);
    let echo = std::thread::spawn(move || {
        pin_current_thread(cpu_b);
        while let Ok((sequence, payload)) = request_rx.recv() {
            drop(payload);
            if reply_tx.send(sequence).is_err() {
                break;
            }
        }
    });
    let run_name = name.to_string();
    let client = std::thread::spawn(move || {
        pin_current_thread(cpu_a);
        let mut latency = histogram();
        let start = Instant::now();
        let mut measure_start = None;
        let (mut sequence, mut measured) = (0u64, 0u64);
        while start.elapsed() < WARMUP + duration {
            let at = Instant::now();
            request_tx.send((sequence, batch.clone())).expect("echo alive");
            assert_eq!(reply_rx.recv().expect("echo alive"), sequence);
            sequence += 1;
            if start.elapsed() >= WARMUP {
                measure_start.get_or_insert(at);
                latency.saturating_record(at.elapsed().as_nanos() as u64);
                measured += 1;
            }
        }
        let secs = measure_start.map_or(0.0, |s: Instant| s.elapsed().as_secs_f64());
        drop(request_tx);
        Run { name: run_name, messages: measured, secs, latency_ns: latency }
    });
    let run = client.join().expect("client finishes");
    echo.join().expect("echo finishes");
    run
}

fn router_runs(
    selected: &dyn Fn(&str) -> bool,
    parent: &std::path::Path,
    batch: Bytes,
    duration: Duration,
) -> Vec<Run> {
    let dir = tempfile::Builder::new().prefix("ringstream-bench-router-").tempdir_in(parent).expect("temp dir");
    let mut storage = StorageConfig::new(dir.path());
    storage.flush = FlushPolicy::Interval { interval_ms: 50 };
    storage.retention_check_interval_ms = 3_600_000;
    let mut config = RuntimeConfig::new(storage);
    config.shards = Some(2);
    config.spin_before_park_us = SPIN.as_micros() as u64;
    let set = ShardSet::start(config).expect("2 shards start");
    let tp = (0..64)
        .map(|p| TopicPartition::new("bench", p))
        .find(|tp| place(tp, 2) == ShardId(1))
        .expect("a partition on shard 1");
    let owner = set.run_on(ShardId(0), {
        let tp = tp.clone();
        move |shard: Rc<Shard>| async move {
            let config = shard.storage.config().default_log.clone();
            shard.create_partition(&tp, config).await.expect("create partition")
        }
    });
    assert_eq!(owner, ShardId(1));

    let mut runs = Vec::new();
    if selected("router/offsets/serial") {
        let tp = tp.clone();
        runs.push(set.run_on(ShardId(0), move |shard: Rc<Shard>| async move {
            assert!(!shard.storage.owns(&tp));
            offsets_loop(shard, tp, duration).await.into_run("router/offsets/serial")
        }));
    }
    if selected("router/offsets/32-tasks") {
        let tp = tp.clone();
        runs.push(set.run_on(ShardId(0), move |shard: Rc<Shard>| async move {
            let tasks: Vec<_> =
                (0..TASKS).map(|_| glommio::spawn_local(offsets_loop(shard.clone(), tp.clone(), duration))).collect();
            let mut total = Tally { messages: 0, secs: 0.0, latency: histogram() };
            for task in tasks {
                let tally = task.await;
                total.messages += tally.messages;
                total.secs = total.secs.max(tally.secs);
                total.latency.add(&tally.latency).expect("same bounds");
            }
            total.into_run("router/offsets/32-tasks")
        }));
    }
    for (name, on, direct) in [
        ("router/append-remote/w256", ShardId(0), false),
        ("router/append-local/w256", ShardId(1), false),
        ("router/append-storage-direct/w256", ShardId(1), true),
    ] {
        if !selected(name) {
            continue;
        }
        let tp = tp.clone();
        let batch = batch.clone();
        runs.push(set.run_on(on, move |shard: Rc<Shard>| async move {
            append_loop(shard, tp, batch, duration, direct).await.into_run(name)
        }));
    }
    set.shutdown().expect("clean shutdown");
    drop(dir);
    runs
}

struct Tally {
    messages: u64,
    secs: f64,
    latency: Histogram<u64>,
}

impl Tally {
    fn into_run(self, name: &str) -> Run {
        Run { name: name.to_string(), messages: self.messages, secs: self.secs, latency_ns: self.latency }
    }
}

async fn offsets_loop(shard: Rc<Shard>, tp: TopicPartition, duration: Duration) -> Tally {
    let mut latency = histogram();
    let start = Instant::now();
    while start.elapsed() < WARMUP {
        shard.offsets(&tp).await.expect("offsets");
    }
    let measure = Instant::now();
    let mut messages = 0u64;
    while measure.elapsed() < duration {
        let at = Instant::now();
        shard.offsets(&tp).await.expect("offsets");
        latency.saturating_record(at.elapsed().as_nanos() as u64);
        messages += 1;
    }
    Tally { messages, secs: measure.elapsed().as_secs_f64(), latency }
}

/// `WINDOW` appends in flight; latency from submit to acknowledgement.
/// With `direct`, calls the owner's `ShardStorage::submit` instead of
/// `Shard::submit` (which on the owner adds a task and a oneshot per append).
async fn append_loop(shard: Rc<Shard>, tp: TopicPartition, batch: Bytes, duration: Duration, direct: bool) -> Tally {
    let mut latency = histogram();
    let mut in_flight = VecDeque::with_capacity(WINDOW);
    let start = Instant::now();
    let mut measure_start: Option<Instant> = None;
    let mut messages = 0u64;
    loop {
        let open = start.elapsed() < WARMUP + duration;
        if open && in_flight.len() < WINDOW {
            let at = Instant::now();
            let ticket: Pin<Box<dyn Future<Output = StorageResult<AppendInfo>>>> = if direct {
                Box::pin(shard.storage.submit(&tp, batch.clone()).await.expect("submit").wait())
            } else {
                Box::pin(shard.submit(&tp, batch.clone()).await.expect("submit").wait())
            };
            in_flight.push_back((at, ticket));
            continue;
        }
        let Some((at, ticket)) = in_flight.pop_front() else { break };
        ticket.await.expect("append acknowledged");
        if start.elapsed() >= WARMUP {
            let begin = *measure_start.get_or_insert_with(Instant::now);
            if begin <= at {
                latency.saturating_record(at.elapsed().as_nanos() as u64);
                messages += 1;
            }
        }
    }
    let secs = measure_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Tally { messages, secs, latency }
}
