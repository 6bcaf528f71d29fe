//! Fault injection for the storage I/O seam.
//!
//! Tests arm a fault on a shard's storage; the next segment write then fails
//! the way a full disk fails: part of the buffer reaches the file, and the
//! write returns ENOSPC. This lets `cargo test` prove, without root or a
//! small filesystem, that a failed append leaves no partial batch visible and
//! that the shard keeps serving reads. Unarmed, it costs one `Cell` read per
//! write.

use std::cell::Cell;

#[derive(Debug, Default)]
pub struct Faults {
    write_failures_armed: Cell<u32>,
}

impl Faults {
    /// The next `count` segment writes fail with ENOSPC after writing a torn
    /// prefix (half of the buffer, rounded down to a block).
    pub fn arm_write_enospc(&self, count: u32) {
        self.write_failures_armed.set(count);
    }

    /// Consumes one armed failure, if any.
    pub(crate) fn take_write_failure(&self) -> bool {
        let armed = self.write_failures_armed.get();
        if armed == 0 {
            return false;
        }
        self.write_failures_armed.set(armed - 1);
        true
    }
}
