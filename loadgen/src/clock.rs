//! One time base for the whole run. Threads share `Clock` (it is `Copy`):
//! `now_ns` is CLOCK_MONOTONIC nanoseconds since the run's epoch, and the
//! timestamp a producer writes into a record is the CLOCK_REALTIME reading
//! taken at that epoch plus the monotonic offset, so it is wall-clock time
//! (a consumer in another process can use its own CLOCK_REALTIME) while
//! in-process readers stay immune to clock steps during the run.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
    realtime_at_epoch_ns: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let realtime = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let realtime_at_epoch_ns = u64::try_from(realtime.as_nanos()).unwrap_or(u64::MAX / 2);
        Clock { epoch: Instant::now(), realtime_at_epoch_ns }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Wall-clock nanoseconds (since 1970) of the monotonic instant `mono_ns`.
    pub fn realtime_ns(&self, mono_ns: u64) -> u64 {
        self.realtime_at_epoch_ns.saturating_add(mono_ns)
    }

    /// The monotonic instant of a wall-clock timestamp, if it is after the epoch.
    pub fn mono_of_realtime(&self, realtime_ns: u64) -> Option<u64> {
        realtime_ns.checked_sub(self.realtime_at_epoch_ns)
    }
}

/// The run's phases on the clock: load from `start_ns`, measured from
/// `warm_ns` to `end_ns`.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    pub start_ns: u64,
    pub warm_ns: u64,
    pub end_ns: u64,
}

impl Phases {
    pub fn new(start_ns: u64, warmup: Duration, duration: Duration) -> Phases {
        let warm_ns = start_ns + u64::try_from(warmup.as_nanos()).unwrap_or(u64::MAX / 4);
        let end_ns = warm_ns + u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX / 4);
        assert!(start_ns <= warm_ns && warm_ns < end_ns);
        Phases { start_ns, warm_ns, end_ns }
    }

    pub fn measured(&self, ns: u64) -> bool {
        ns >= self.warm_ns && ns < self.end_ns
    }
}
