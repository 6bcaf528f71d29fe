//! Lending zero-copy read buffers across shards: the owner's `Rc` slices go
//! to the reader as `LentBatches` (read-only there) and come home in batches
//! (`homeward_vectors_max`, `homeward_hold_ms_max`) to be dropped where they
//! were made.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use super::*;

/// Batches read on their owner shard and lent to another shard without a
/// copy (in the manner of Redpanda's `foreign_ptr`). The borrower only reads
/// the bytes; their `Rc` counts are touched only on the owner, to which
/// `Drop` sends them back. If the owner has stopped (shutdown), they are
/// leaked rather than dropped on the wrong shard.
pub struct LentBatches {
    batches: std::mem::ManuallyDrop<Vec<BatchBytes>>,
    home: ShardId,
    home_inbox: flume::Sender<Envelope>,
}

// SAFETY: the lent batches are immutable (written and acknowledged before
// the read returned them, never written again). The borrower reads their
// bytes through `batch()` only and never clones or drops the `Rc`s, so the
// non-atomic counts are touched on the home shard alone; the memory stays
// valid while those `Rc`s live, and they live until `Drop` has sent them
// home and the home shard has dropped them.
unsafe impl Send for LentBatches {}

/// The lent batches on their way home, to be dropped there.
pub(super) struct Homeward(#[allow(dead_code)] Vec<BatchBytes>); // held only to be dropped at home
                                                                 // SAFETY: moved, not used, until dropped on the home shard (see above).
unsafe impl Send for Homeward {}

impl LentBatches {
    pub(super) fn lend(batches: Vec<BatchBytes>, home: ShardId, home_inbox: flume::Sender<Envelope>) -> LentBatches {
        LentBatches { batches: std::mem::ManuallyDrop::new(batches), home, home_inbox }
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn batch(&self, index: usize) -> &[u8] {
        &self.batches[index]
    }
}

impl Drop for LentBatches {
    fn drop(&mut self) {
        // SAFETY: taken once, here; `self.batches` is not used again.
        let batches = unsafe { std::mem::ManuallyDrop::take(&mut self.batches) };
        if batches.is_empty() {
            return; // no Rc inside: nothing to send home
        }
        hold_homeward(self.home, &self.home_inbox, Homeward(batches));
    }
}

/// Lent batches this shard is done with, per home shard, waiting to ride
/// home with the next message to that shard (`Shard::send` flushes them
/// first), or alone after `homeward_hold_ms_max`, or at once past
/// `homeward_vectors_max`. A fetch of another shard's partitions then costs
/// that shard one wake-up (its read), not two (its read, then the batches
/// coming home).
pub(super) struct HomewardQueue {
    inbox: flume::Sender<Envelope>,
    vectors: Vec<Homeward>,
    /// A timed flush is pending for this queue.
    flush_armed: bool,
}

thread_local! {
    static HOMEWARD: RefCell<HashMap<ShardId, HomewardQueue>> = RefCell::new(HashMap::new());
}

pub(super) fn hold_homeward(home: ShardId, inbox: &flume::Sender<Envelope>, homeward: Homeward) {
    let (full, arm) = HOMEWARD.with(|queues| {
        let mut queues = queues.borrow_mut();
        let queue = queues.entry(home).or_insert_with(|| HomewardQueue {
            inbox: inbox.clone(),
            vectors: Vec::new(),
            flush_armed: false,
        });
        queue.vectors.push(homeward);
        let arm = !queue.flush_armed;
        queue.flush_armed = true;
        (queue.vectors.len() >= limits::homeward_vectors_max, arm)
    });
    if full {
        flush_homeward(home);
    }
    if arm {
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(limits::homeward_hold_ms_max)).await;
            HOMEWARD.with(|queues| {
                if let Some(queue) = queues.borrow_mut().get_mut(&home) {
                    queue.flush_armed = false;
                }
            });
            flush_homeward(home);
        })
        .detach();
    }
}

impl Drop for HomewardQueue {
    fn drop(&mut self) {
        // Only at thread exit, with vectors still held (a shard stopped by
        // other means than `Shutdown`): never drop another shard's buffers
        // on this thread; leak them, as a stopped home shard would.
        std::mem::forget(std::mem::take(&mut self.vectors));
    }
}

/// Sends every held vector of lent batches home now.
pub(super) fn flush_all_homeward() {
    let homes: Vec<ShardId> = HOMEWARD.with(|queues| queues.borrow().keys().copied().collect());
    for home in homes {
        flush_homeward(home);
    }
}

/// Sends the lent batches held for `home` back to it in one message, to be
/// dropped there. If `home` has stopped they are leaked, never dropped here.
pub(super) fn flush_homeward(home: ShardId) {
    let Some((vectors, inbox)) = HOMEWARD.with(|queues| {
        let mut queues = queues.borrow_mut();
        let queue = queues.get_mut(&home)?;
        (!queue.vectors.is_empty()).then(|| (std::mem::take(&mut queue.vectors), queue.inbox.clone()))
    }) else {
        return;
    };
    let task: ShardTask = Box::new(move |_| {
        Box::pin(async move {
            drop(vectors);
        })
    });
    ringstream_core::metrics::count_cross_shard_sent();
    match inbox.try_send(Envelope { to: home, message: Message::Run(task) }) {
        Ok(()) => {}
        Err(flume::TrySendError::Full(envelope)) => {
            // Wait for room without blocking this shard.
            glommio::spawn_local(async move {
                if let Err(unsent) = inbox.send_async(envelope).await {
                    std::mem::forget(unsent.into_inner());
                }
            })
            .detach();
        }
        Err(flume::TrySendError::Disconnected(envelope)) => std::mem::forget(envelope),
    }
}
