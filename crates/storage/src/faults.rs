//! Fault injection for the storage I/O seam.
//!
//! Tests arm a fault on a shard's storage; the next segment write then fails
//! the way a full disk fails: part of the buffer reaches the file, and the
//! write returns ENOSPC. This lets `cargo test` prove, without root or a
//! small filesystem, that a failed append leaves no partial batch visible and
//! that the shard keeps serving reads. Unarmed, it costs one `Cell` read per
//! write.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use glommio::sync::Semaphore;

#[derive(Default)]
pub struct Faults {
    write_failures_armed: Cell<u32>,
    /// While set, every completed segment write waits here before its
    /// round goes on to acknowledge (a sync that has not finished yet).
    held_writes: RefCell<Option<Rc<Semaphore>>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("write_failures_armed", &self.write_failures_armed.get())
            .field("holding_writes", &self.held_writes.borrow().is_some())
            .finish()
    }
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

    /// From now on, completed segment writes wait before their round
    /// acknowledges, until `release_writes`: a test sees what a slow
    /// fdatasync looks like to producers.
    pub fn hold_writes(&self) {
        *self.held_writes.borrow_mut() = Some(Rc::new(Semaphore::new(0)));
    }

    /// Lets every held write go on.
    pub fn release_writes(&self) {
        if let Some(gate) = self.held_writes.borrow_mut().take() {
            gate.close();
        }
    }

    /// Waits while writes are held. Unarmed, one `RefCell` read.
    pub(crate) async fn hold_after_write(&self) {
        let gate = self.held_writes.borrow().clone();
        if let Some(gate) = gate {
            let _ = gate.acquire(1).await; // closed on release
        }
    }
}
