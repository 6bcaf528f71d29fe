//! The clock seam: wall-clock milliseconds, as Kafka timestamps them.
//!
//! Production code reads `SystemClock`. Code that must run under a
//! deterministic simulation (storage: retention, segment age, append time)
//! takes its time from a `Clock` handed to it in its configuration, so a
//! simulation can hold time still or move it by hand (`ManualClock`).
//! Elapsed-time measurements for metrics use `std::time::Instant` directly:
//! they never decide what is stored.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A source of wall-clock time. `Send + Sync` because a configuration that
/// holds one is built on one thread and handed to every shard.
pub trait Clock: Debug + Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(start_ms)))
    }

    /// Moves time forward by `ms` (never backward).
    pub fn advance(&self, ms: i64) {
        assert!(ms >= 0, "a manual clock moves forward only");
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The clock a configuration holds.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(250);
        assert_eq!(clock.now_ms(), 1_250);
        assert!(SystemClock.now_ms() > 1_600_000_000_000, "the system clock reads the epoch");
    }
}
