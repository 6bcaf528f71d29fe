//! Threads and phases. One glommio `LocalExecutor` per thread (unpinned:
//! the broker under test usually pins its shards on the same machine), each
//! running its share of the connections. The main thread only coordinates:
//! it waits until every thread has connected, publishes the start time,
//! prints the progress line each second, tells consumers when to stop, and
//! merges the threads' results.
//!
//! Nothing on the data path is shared between threads except relaxed
//! counters (`Progress`); ack and end-to-end histograms, four times a second,
//! reach the main thread over a bounded channel. The main thread turns them
//! into the progress line and a bounded `Timeline` (for `--plot`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

use crate::clock::{Clock, Phases};
use crate::consumer::{self, ConsumerSpec};
use crate::limits::drain_ms_max;
use crate::procstat::{self, WindowCpu, WindowUse};
use crate::producer::{self, ProducerSpec};
use crate::stats::{latency_histogram, percentiles, Progress, Second, ThreadStats, Timeline};

pub enum Job {
    Produce(ProducerSpec),
    Consume(ConsumerSpec),
}

impl Job {
    fn address(&self) -> std::net::SocketAddr {
        match self {
            Job::Produce(spec) => spec.address,
            Job::Consume(spec) => spec.address,
        }
    }
    fn name(&self) -> &str {
        match self {
            Job::Produce(spec) => &spec.name,
            Job::Consume(spec) => &spec.name,
        }
    }
}

/// What the threads and the main thread share while starting.
struct Control {
    clock: Clock,
    /// Threads whose connections are all open.
    ready: AtomicU64,
    /// 0 until the main thread publishes the start (then `start_ns + 1`).
    start: AtomicU64,
    abort: AtomicBool,
    failure: Mutex<Option<String>>,
    stop_consumers: Arc<AtomicBool>,
}

impl Control {
    fn fail(&self, message: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(message);
        self.abort.store(true, Ordering::SeqCst);
    }
}

/// Extra time after the start is published, so every thread is waiting
/// when the schedule begins.
const start_delay_ms: u64 = 20;
/// Interval histograms buffered for the progress line, per thread.
const interval_queue_depth_max: usize = 16;
/// How often a thread hands its interval histograms to the main thread.
/// The main thread drains the queue once a second, so a thread has at most
/// 1000 / 250 = 4 of them queued when the main thread keeps up.
const interval_send_ms: u64 = 250;
const _: () = assert!(1000 / interval_send_ms as usize * 2 <= interval_queue_depth_max);

/// One thread's latencies over the last `interval_send_ms`.
struct Interval {
    ack: Histogram<u64>,
    e2e: Histogram<u64>,
}

pub struct Outcome {
    pub stats: ThreadStats,
    pub phases: Phases,
    /// Per second, what the progress line printed (for `--plot`).
    pub timeline: Timeline,
    /// `--broker-pid`'s CPU time and the host's over the measured window,
    /// or why they could not be read; None without `--broker-pid`.
    pub cpu: Option<WindowUse>,
}

/// Runs `jobs` on `threads` executors. Returns the merged stats, or the
/// first failure to connect. With `broker_pid`, that process's CPU time and
/// the host's (/proc/stat, and this process's own) are read as the measured
/// window starts and ends (by the main thread, which otherwise sleeps), so
/// they cover the same window as the throughput.
pub fn run(
    jobs: Vec<Job>,
    threads: usize,
    warmup: Duration,
    duration: Duration,
    connect_timeout: Duration,
    broker_pid: Option<u32>,
) -> Result<Outcome, String> {
    assert!(threads >= 1 && !jobs.is_empty());
    let producers = jobs.iter().filter(|j| matches!(j, Job::Produce(_))).count() as u64;
    let consumers = jobs.len() as u64 - producers;
    let control = Arc::new(Control {
        clock: Clock::new(),
        ready: AtomicU64::new(0),
        start: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        failure: Mutex::new(None),
        stop_consumers: Arc::new(AtomicBool::new(false)),
    });
    let progress = Arc::new(Progress::default());
    let (intervals, interval_receiver) = sync_channel::<Interval>(interval_queue_depth_max * threads);

    let mut shares: Vec<Vec<Job>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        shares[i % threads].push(job);
    }
    let mut handles = Vec::new();
    for (index, share) in shares.into_iter().enumerate() {
        if share.is_empty() {
            continue;
        }
        let control = control.clone();
        let progress = progress.clone();
        let intervals = intervals.clone();
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("loadgen-{index}"))
            .spawn(move || thread_main(share, control, progress, intervals, warmup, duration, connect_timeout))
            .map_err(|e| format!("cannot start executor thread {index}: {e}"))?;
        handles.push(handle);
    }
    drop(intervals);
    let started_threads = handles.len() as u64;

    // Wait for every thread's connections (each connect is bounded by its timeout).
    let wait_started = Instant::now();
    let clock = control.clock;
    while control.ready.load(Ordering::SeqCst) < started_threads && !control.abort.load(Ordering::SeqCst) {
        if wait_started.elapsed() > connect_timeout * 2 + Duration::from_secs(5) {
            control.fail("connections did not open in time".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let phases = if control.abort.load(Ordering::SeqCst) {
        None
    } else {
        let start_ns = clock.now_ns() + start_delay_ms * 1_000_000;
        control.start.store(start_ns + 1, Ordering::SeqCst);
        Some(Phases::new(start_ns, warmup, duration))
    };
    let mut cpu = phases.zip(broker_pid).map(|(phases, pid)| WindowCpu::new(pid, phases.warm_ns, phases.end_ns));
    let timeline = match phases {
        Some(phases) => {
            report_progress(&control, &progress, &interval_receiver, phases, producers, consumers, cpu.as_mut())
        }
        None => Timeline::default(),
    };
    // Every connection has finished: a window cut short (`--messages`) ends here.
    let cpu = cpu.map(|cpu| cpu.finish(clock.now_ns(), procstat::reading));
    let mut merged = ThreadStats::new();
    for handle in handles {
        match handle.join() {
            Ok(stats) => merged.merge(&stats),
            Err(e) => control.fail(format!("executor thread failed: {e}")),
        }
    }
    if let Some(failure) = control.failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(failure);
    }
    let phases = phases.expect("no failure, so the run started");
    Ok(Outcome { stats: merged, phases, timeline, cpu })
}

/// Prints a progress line every second on stderr until every connection has
/// finished; stops consumers once producers are done and consumers have
/// read what was acknowledged (or after `drain_ms_max`); takes `cpu`'s
/// readings when they are due. Returns the seconds it printed, as a timeline.
fn report_progress(
    control: &Control,
    progress: &Progress,
    intervals: &Receiver<Interval>,
    phases: Phases,
    producers: u64,
    consumers: u64,
    mut cpu: Option<&mut WindowCpu>,
) -> Timeline {
    let mut timeline = Timeline::default();
    let clock = control.clock;
    let mut tick = 1u64;
    let mut last = (0u64, 0u64, 0u64);
    let mut producers_done_ns: Option<u64> = None;
    loop {
        let finished = Progress::get(&progress.finished_producers) + Progress::get(&progress.finished_consumers);
        if finished >= producers + consumers {
            break;
        }
        let now = clock.now_ns();
        if let Some(cpu) = cpu.as_deref_mut() {
            cpu.poll(now, procstat::reading);
        }
        // Consumers stop when producers are done and they have caught up.
        if Progress::get(&progress.finished_producers) >= producers {
            let done = *producers_done_ns.get_or_insert(now.max(phases.end_ns));
            let caught_up = Progress::get(&progress.consumed_records) >= Progress::get(&progress.acked_records);
            let late = now.saturating_sub(done) > drain_ms_max * 1_000_000;
            if (producers > 0 && caught_up) || late || (producers == 0 && now >= phases.end_ns) {
                control.stop_consumers.store(true, Ordering::Relaxed);
            }
        }
        let next_tick_ns = phases.start_ns + tick * 1_000_000_000;
        if now < next_tick_ns {
            // Wake for a CPU reading on time, not up to a tick late.
            let reading_ns = cpu.as_deref().and_then(WindowCpu::next_reading_ns).filter(|&due| due > now);
            let wake_ns = reading_ns.map_or(next_tick_ns, |due| due.min(next_tick_ns));
            std::thread::sleep(Duration::from_nanos((wake_ns - now).min(50_000_000)));
            continue;
        }
        let mut interval = latency_histogram();
        let mut interval_e2e = latency_histogram();
        while let Ok(received) = intervals.try_recv() {
            let _ = interval.add(&received.ack);
            let _ = interval_e2e.add(&received.e2e);
        }
        let current = (
            Progress::get(&progress.acked_records),
            Progress::get(&progress.acked_bytes),
            Progress::get(&progress.consumed_records),
        );
        // The phase the second being reported began in.
        let interval_start_ns = next_tick_ns - 1_000_000_000;
        let phase = if interval_start_ns < phases.warm_ns {
            "warmup"
        } else if interval_start_ns < phases.end_ns {
            "run"
        } else {
            "drain"
        };
        let p99 = if interval.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.3}", interval.value_at_quantile(0.99) as f64 / 1000.0)
        };
        eprintln!(
            "[{:>4}s {:<6}] {:>9} rec/s {:>8.1} MiB/s  p99 ack {:>8} ms  consumed {:>9} rec/s  errors {}",
            tick,
            phase,
            current.0 - last.0,
            (current.1 - last.1) as f64 / (1024.0 * 1024.0),
            p99,
            current.2 - last.2,
            Progress::get(&progress.errors)
        );
        timeline.push(Second {
            index: tick,
            phase,
            acked_records: current.0 - last.0,
            consumed_records: current.2 - last.2,
            ack: percentiles(&interval),
            e2e: percentiles(&interval_e2e),
        });
        last = current;
        tick += 1;
    }
    timeline
}

async fn wait_for_start(control: &Control) -> Option<u64> {
    loop {
        if control.abort.load(Ordering::SeqCst) {
            return None;
        }
        let start = control.start.load(Ordering::SeqCst);
        if start != 0 {
            return Some(start - 1);
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

async fn thread_main(
    jobs: Vec<Job>,
    control: Arc<Control>,
    progress: Arc<Progress>,
    intervals: SyncSender<Interval>,
    warmup: Duration,
    duration: Duration,
    connect_timeout: Duration,
) -> ThreadStats {
    let stats = Rc::new(RefCell::new(ThreadStats::new()));
    let mut connected = Vec::with_capacity(jobs.len());
    for job in jobs {
        match glommio::net::TcpStream::connect_timeout(job.address(), connect_timeout).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                connected.push((job, stream));
            }
            Err(e) => {
                control.fail(format!(
                    "{}: cannot connect to {} within {:?}: {e}",
                    job.name(),
                    job.address(),
                    connect_timeout
                ));
                return Rc::try_unwrap(stats).map(RefCell::into_inner).unwrap_or_else(|_| ThreadStats::new());
            }
        }
    }
    control.ready.fetch_add(1, Ordering::SeqCst);
    let Some(start_ns) = wait_for_start(&control).await else {
        return ThreadStats::new();
    };
    let clock = control.clock;
    let phases = Phases::new(start_ns, warmup, duration);
    glommio::timer::sleep(Duration::from_nanos(start_ns.saturating_sub(clock.now_ns()))).await;

    // Hand this quarter second's latencies to the progress line.
    let reporter = {
        let stats = stats.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(interval_send_ms)).await;
                let interval = {
                    let mut stats = stats.borrow_mut();
                    let interval = Interval { ack: stats.interval_ack.clone(), e2e: stats.interval_e2e.clone() };
                    stats.interval_ack.reset();
                    stats.interval_e2e.reset();
                    interval
                };
                if !interval.ack.is_empty() || !interval.e2e.is_empty() {
                    // A full queue drops a sample of the progress line and the plot only.
                    let _ = intervals.try_send(interval);
                }
            }
        })
        .detach()
    };

    let mut tasks = Vec::new();
    for (job, stream) in connected {
        let stats = stats.clone();
        let progress = progress.clone();
        let stop = control.stop_consumers.clone();
        tasks.push(glommio::spawn_local(async move {
            match job {
                Job::Produce(spec) => {
                    producer::run(spec, stream, clock, phases, stats, progress.clone()).await;
                    Progress::add(&progress.finished_producers, 1);
                }
                Job::Consume(spec) => {
                    consumer::run(spec, stream, clock, phases, stats, progress.clone(), stop).await;
                    Progress::add(&progress.finished_consumers, 1);
                }
            }
        }));
    }
    for task in tasks {
        task.await;
    }
    reporter.cancel();
    let mut stats = Rc::try_unwrap(stats).map(RefCell::into_inner).unwrap_or_else(|rc| {
        // A detached task still holds a reference: copy the totals out.
        let stats = rc.borrow();
        let mut copy = ThreadStats::new();
        copy.merge(&stats);
        copy
    });
    stats.interval_ack.reset();
    stats.interval_e2e.reset();
    stats
}
