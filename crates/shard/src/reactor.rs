//! The reactor sampler: each shard folds glommio's executor busy time and
//! its thread's context switches into its metric cells, and keeps the
//! utilisation gauge that placement reads.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use ringstream_core::metrics::with_installed as with_local;

/// How often each shard samples its reactor busy time for the
/// utilisation gauge.
pub const reactor_sample_ms: u64 = 1_000;

thread_local! {
    /// glommio's executor stats reset when read, so this is their only
    /// reader on the shard; it keeps the running total here.
    static REACTOR: RefCell<ReactorClock> = const { RefCell::new(ReactorClock { busy_ns: 0, window: None }) };
}

struct ReactorClock {
    busy_ns: u64,
    /// (wall time, busy ns) at the start of the utilisation window.
    window: Option<(Instant, u64)>,
}

/// Folds glommio's busy time since the last call into this shard's
/// `busy_ns`. On a shard only. glommio 0.9's `executor_stats()` hands out
/// the stats and resets them (`mem::take`), so nothing else in the broker
/// may call it.
pub fn sample_reactor() {
    if with_local(|_| ()).is_none() {
        return;
    }
    let stats = glommio::executor().executor_stats();
    let added = u64::try_from(stats.total_runtime().as_nanos()).unwrap_or(u64::MAX);
    let total = REACTOR.with(|clock| {
        let mut clock = clock.borrow_mut();
        clock.busy_ns = clock.busy_ns.saturating_add(added);
        clock.busy_ns
    });
    let (wakeups, preemptions) = thread_context_switches();
    with_local(|cells| {
        cells.busy_ns.set(total);
        cells.wakeups.set(wakeups);
        cells.preemptions.set(preemptions);
    });
}

/// (voluntary, involuntary) context switches of the calling thread.
fn thread_context_switches() -> (u64, u64) {
    // SAFETY: getrusage writes one rusage struct, which this frame owns.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return (0, 0);
    }
    (u64::try_from(usage.ru_nvcsw).unwrap_or(0), u64::try_from(usage.ru_nivcsw).unwrap_or(0))
}

/// Samples and moves the utilisation window forward: the gauge becomes the
/// busy fraction since the previous call.
fn sample_utilisation() {
    sample_reactor();
    let now = Instant::now();
    let utilisation = REACTOR.with(|clock| {
        let mut clock = clock.borrow_mut();
        let busy = clock.busy_ns;
        let previous = clock.window.replace((now, busy));
        previous.map(|(since, busy_then)| {
            let wall = now.duration_since(since).as_nanos().max(1) as f64;
            ((busy - busy_then) as f64 / wall).clamp(0.0, 1.0)
        })
    });
    if let Some(fraction) = utilisation {
        with_local(|cells| cells.utilisation_ppm.set((fraction * 1e6).round() as u64));
    }
}

/// Starts this shard's reactor sampler (every `reactor_sample_ms`). It
/// ends with the executor.
pub fn start_reactor_sampler() {
    sample_utilisation();
    glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(Duration::from_millis(reactor_sample_ms)).await;
            sample_utilisation();
        }
    })
    .detach();
}
