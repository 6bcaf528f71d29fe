//! The router: the only code that crosses cores.
//!
//! Every shard has one bounded inbox (a flume channel of depth
//! `router_queue_depth_max`) and a sender to every other shard's inbox. Code
//! on any shard calls `Shard::append`/`read`/...: if this shard owns the
//! partition it goes straight to local storage, otherwise a typed `Message`
//! carries it to the owner, whose receive loop runs it and sends the result
//! back on a oneshot. A full inbox makes the sender wait: that pressure
//! reaches the submitting connection, and nothing grows.
//!
//! Order: one shard's messages to another arrive in the order sent, and the
//! owner queues appends (assigning offsets) in arrival order before it takes
//! the next message, so appends from shard A to a partition on shard B land
//! in submission order.
//!
//! Only `Send` data crosses: `Bytes` for appends; for reads, the owner's
//! zero-copy slices (`Rc`s of its write and read buffers) are lent to the
//! reader (`LentBatches`): read-only there, sent home to be dropped.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use tracing::{error, warn};

use crate::placement::{place, PlacementTable};
use crate::policy::{least_loaded, BalanceConfig, LoadSampler, PlacementPolicy};
use ringstream_core::limits;
use ringstream_core::limits::route_attempts_max;
use ringstream_core::types::{Offset, ShardId, TopicPartition};
use ringstream_storage::dir;
use ringstream_storage::log::{AppendInfo, LogConfig, PartitionOffsets};
use ringstream_storage::shard_storage::{AppendTicket, BatchBytes, ReadOutput, ShardStorage};
use ringstream_storage::{StorageError, StorageResult};

/// A task shipped to a shard: built there, run there.
pub type ShardTask = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

pub enum Message {
    Append {
        tp: TopicPartition,
        batch: Bytes,
        reply: oneshot::Sender<StorageResult<AppendInfo>>,
    },
    /// Appends of one produce request to partitions this shard owns: one
    /// message and one wake-up for all of them, each queued in order.
    AppendMany {
        appends: Vec<RemoteAppendRequest>,
    },
    Read {
        tp: TopicPartition,
        offset: Offset,
        max_bytes: usize,
        reply: oneshot::Sender<StorageResult<LentRead>>,
    },
    /// Reads of several partitions this shard owns, for one fetch: one
    /// message and one wake-up however many partitions it names.
    ReadMany {
        reads: Vec<ReadRequest>,
        reply: oneshot::Sender<LentReads>,
    },
    Offsets {
        tp: TopicPartition,
        reply: oneshot::Sender<StorageResult<PartitionOffsets>>,
    },
    /// DeleteRecords on the owner: move the log start up to `offset` (-1:
    /// the high watermark); replies with the log start after it.
    DeleteRecords {
        tp: TopicPartition,
        offset: i64,
        reply: oneshot::Sender<StorageResult<Offset>>,
    },
    /// To shard 0, the control plane: decide an owner, persist, broadcast.
    CreatePartition {
        tp: TopicPartition,
        config: LogConfig,
        reply: oneshot::Sender<StorageResult<ShardId>>,
    },
    /// To the chosen owner: open (create or recover) the partition.
    OpenPartition {
        tp: TopicPartition,
        config: LogConfig,
        reply: oneshot::Sender<StorageResult<PartitionOffsets>>,
    },
    /// To every shard: a new placement-table entry (None: the partition is gone).
    Placement {
        tp: TopicPartition,
        shard: Option<ShardId>,
        reply: oneshot::Sender<()>,
    },
    Run(ShardTask),
    Shutdown {
        reply: oneshot::Sender<StorageResult<()>>,
    },
}

pub struct Envelope {
    pub to: ShardId,
    pub message: Message,
}

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
struct Homeward(#[allow(dead_code)] Vec<BatchBytes>); // held only to be dropped at home
                                                      // SAFETY: moved, not used, until dropped on the home shard (see above).
unsafe impl Send for Homeward {}

impl LentBatches {
    fn lend(batches: Vec<BatchBytes>, home: ShardId, home_inbox: flume::Sender<Envelope>) -> LentBatches {
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
struct HomewardQueue {
    inbox: flume::Sender<Envelope>,
    vectors: Vec<Homeward>,
    /// A timed flush is pending for this queue.
    flush_armed: bool,
}

thread_local! {
    static HOMEWARD: RefCell<HashMap<ShardId, HomewardQueue>> = RefCell::new(HashMap::new());
}

fn hold_homeward(home: ShardId, inbox: &flume::Sender<Envelope>, homeward: Homeward) {
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
fn flush_all_homeward() {
    let homes: Vec<ShardId> = HOMEWARD.with(|queues| queues.borrow().keys().copied().collect());
    for home in homes {
        flush_homeward(home);
    }
}

/// Sends the lent batches held for `home` back to it in one message, to be
/// dropped there. If `home` has stopped they are leaked, never dropped here.
fn flush_homeward(home: ShardId) {
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

/// A read served by another shard: its batches lent, not copied.
pub struct LentRead {
    pub batches: LentBatches,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
}

/// One append of a `Message::AppendMany`.
pub struct RemoteAppendRequest {
    pub tp: TopicPartition,
    pub batch: Bytes,
    pub reply: oneshot::Sender<StorageResult<AppendInfo>>,
}

/// One partition of a batched read: read `max_bytes` from `offset`.
pub struct ReadRequest {
    pub tp: TopicPartition,
    pub offset: Offset,
    pub max_bytes: usize,
    /// A fetch long-poll waiter, parked by the owner right after the read
    /// at the high watermark the read saw: it fires when anything newer is
    /// committed. Riding on the read saves the fetch a second message (and
    /// the owner a second wake-up) when the read finds too little.
    pub waiter: Option<oneshot::Sender<()>>,
}

/// Where one partition's batches are in a batched read's lent vector.
#[derive(Clone, Debug)]
pub struct ReadPart {
    pub batches: std::ops::Range<usize>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
}

/// The answer to `Message::ReadMany`: every partition's batches in one lent
/// vector (so they go home in one message), and each partition's part of it
/// in request order.
pub struct LentReads {
    pub batches: LentBatches,
    pub parts: Vec<StorageResult<ReadPart>>,
}

/// One partition's result of `Shard::read_many`.
pub enum ManyRead {
    Local(ReadOutput),
    /// Batches `part.batches` of a vector lent by the owner, shared by all
    /// the partitions that owner served in this read.
    Remote {
        lent: Rc<LentBatches>,
        part: ReadPart,
    },
}

/// A read as seen by the shard that asked for it.
pub enum RoutedRead {
    Local(ReadOutput),
    Remote(LentRead),
}

impl RoutedRead {
    pub fn batches(&self) -> Vec<&[u8]> {
        match self {
            RoutedRead::Local(read) => read.batches.iter().map(|b: &BatchBytes| &b[..]).collect(),
            RoutedRead::Remote(read) => (0..read.batches.len()).map(|i| read.batches.batch(i)).collect(),
        }
    }

    pub fn high_watermark(&self) -> Offset {
        match self {
            RoutedRead::Local(read) => read.high_watermark,
            RoutedRead::Remote(read) => read.high_watermark,
        }
    }
}

/// An append queued on its owner; resolves when acknowledged.
pub enum RoutedTicket {
    Local(AppendTicket),
    Remote(oneshot::Receiver<StorageResult<AppendInfo>>),
}

impl RoutedTicket {
    pub async fn wait(self) -> StorageResult<AppendInfo> {
        match self {
            RoutedTicket::Local(ticket) => ticket.wait().await,
            RoutedTicket::Remote(receiver) => receiver.await.unwrap_or(Err(StorageError::ShuttingDown)),
        }
    }
}

/// One shard: its storage, its copy of the placement table, and its senders
/// to every shard's inbox. Lives on its executor only.
pub struct Shard {
    pub id: ShardId,
    pub storage: ShardStorage,
    placement: RefCell<PlacementTable>,
    peers: Vec<flume::Sender<Envelope>>,
    /// Partitions being moved between shards: requests for them wait in
    /// `route` until the move ends (see `move_partition`).
    moving: RefCell<HashSet<TopicPartition>>,
    /// Appends to partitions this shard owns that are between routing and
    /// being queued in storage; a move's fence waits for its partition's
    /// count to reach zero.
    submitting: RefCell<HashMap<TopicPartition, usize>>,
    /// Appends other shards routed here, per partition, waiting for the
    /// partition's drainer to queue them in storage, in arrival order
    /// (`drain_remote_appends`). An entry exists while its drainer runs.
    remote_appends: RefCell<HashMap<TopicPartition, VecDeque<RemoteAppend>>>,
    /// Bytes of `remote_appends`, bounded by `limits::remote_append_bytes_max`:
    /// past it the inbox waits, as it did for every append before.
    remote_append_room: Rc<glommio::sync::Semaphore>,
    /// On shard 0: one move at a time, and no partition deleted during one.
    move_lock: Rc<glommio::sync::Semaphore>,
    /// Placement policy and balancer settings (read on shard 0).
    balance: RefCell<BalanceConfig>,
    /// On shard 0, when a policy needs it: the last load sample.
    sampler: RefCell<LoadSampler>,
}

/// Counts one append in `Shard::submitting` while it is alive: a local one
/// until storage has queued it.
struct Submitting<'a> {
    shard: &'a Shard,
    tp: &'a TopicPartition,
}

impl<'a> Submitting<'a> {
    fn new(shard: &'a Shard, tp: &'a TopicPartition) -> Submitting<'a> {
        shard.count_submitting(tp);
        Submitting { shard, tp }
    }
}

impl Drop for Submitting<'_> {
    fn drop(&mut self) {
        self.shard.uncount_submitting(self.tp);
    }
}

/// An append another shard routed here, waiting its turn.
struct RemoteAppend {
    batch: Bytes,
    reply: oneshot::Sender<StorageResult<AppendInfo>>,
    /// Its bytes in `remote_append_room`, held until storage has it.
    _room: glommio::sync::StaticPermit,
}

impl Shard {
    pub fn new(
        id: ShardId,
        storage: ShardStorage,
        placement: PlacementTable,
        peers: Vec<flume::Sender<Envelope>>,
    ) -> Shard {
        assert!(id.index() < peers.len());
        Shard {
            id,
            storage,
            placement: RefCell::new(placement),
            peers,
            moving: RefCell::new(HashSet::new()),
            submitting: RefCell::new(HashMap::new()),
            remote_appends: RefCell::new(HashMap::new()),
            remote_append_room: Rc::new(glommio::sync::Semaphore::new(limits::remote_append_bytes_max as u64)),
            move_lock: Rc::new(glommio::sync::Semaphore::new(1)),
            balance: RefCell::new(BalanceConfig::default()),
            sampler: RefCell::new(LoadSampler::default()),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.peers.len()
    }

    /// Sets the placement policy and balancer settings; before serving.
    pub fn set_balance_config(&self, config: BalanceConfig) {
        *self.balance.borrow_mut() = config;
    }

    pub fn balance_config(&self) -> BalanceConfig {
        self.balance.borrow().clone()
    }

    pub fn load_sampler(&self) -> &RefCell<LoadSampler> {
        &self.sampler
    }

    /// Owners for new partitions, by the placement policy: `place` (hash),
    /// or the least-loaded shards by the last load sample.
    fn choose_owners(&self, tps: &[TopicPartition]) -> Vec<ShardId> {
        let count = self.shard_count();
        let sampler = self.sampler.borrow();
        match self.balance.borrow().policy {
            PlacementPolicy::LeastLoaded if sampler.loads.len() == count => least_loaded(&sampler.loads, tps.len()),
            PlacementPolicy::LeastLoaded => {
                // No sample yet (just started): spread by partition count.
                let table = self.placement.borrow();
                let mut loads = vec![crate::policy::ShardLoad::default(); count];
                for (tp, owner) in table.iter() {
                    loads[owner.index()].partitions.push((tp.clone(), 0.0));
                }
                least_loaded(&loads, tps.len())
            }
            PlacementPolicy::Hash => tps.iter().map(|tp| place(tp, count)).collect(),
        }
    }

    /// Messages waiting in `shard`'s router inbox now (for metrics).
    pub fn inbox_depth(&self, shard: ShardId) -> usize {
        self.peers[shard.index()].len()
    }

    /// Every partition with its owner, from this shard's copy of the table.
    pub fn placement_snapshot(&self) -> Vec<(TopicPartition, ShardId)> {
        self.placement.borrow().iter().map(|(tp, shard)| (tp.clone(), shard)).collect()
    }

    /// The shard that owns `tp`, from this shard's copy of the table.
    pub fn owner(&self, tp: &TopicPartition) -> Option<ShardId> {
        self.placement.borrow().owner(tp)
    }

    fn owner_or_err(&self, tp: &TopicPartition) -> StorageResult<ShardId> {
        self.owner(tp).ok_or_else(|| StorageError::UnknownPartition(tp.clone()))
    }

    /// The shard to send a request for `tp` to. While `tp` is moving it
    /// waits (polling every 200 µs, at most `partition_move_wait_ms_max`)
    /// for the move to end, so a request never reaches the old owner after
    /// the move's fence. No `.await` may come between this returning and
    /// the request being sent or queued: that gap is what the fence closes.
    pub async fn route(&self, tp: &TopicPartition) -> StorageResult<ShardId> {
        if self.moving.borrow().contains(tp) {
            let started = std::time::Instant::now();
            while self.moving.borrow().contains(tp) {
                if started.elapsed() > Duration::from_millis(limits::partition_move_wait_ms_max) {
                    return Err(StorageError::Moving(tp.clone()));
                }
                glommio::timer::sleep(Duration::from_micros(200)).await;
            }
        }
        self.owner_or_err(tp)
    }

    /// Whether a failed request may be sent again: it reached a shard that
    /// had just given `tp` away, and `tp` still exists.
    fn should_retry(&self, error: &StorageError, tp: &TopicPartition, attempt: usize) -> bool {
        let moved = match error {
            StorageError::Moved(moved) | StorageError::UnknownPartition(moved) => moved == tp,
            _ => false,
        };
        moved && attempt < route_attempts_max && self.owner(tp).is_some()
    }

    async fn send(&self, to: ShardId, message: Message) -> StorageResult<()> {
        assert_ne!(to, self.id, "local work does not go through the router");
        flush_homeward(to); // lent batches ride along: one wake-up for both
        ringstream_core::metrics::count_cross_shard_sent();
        self.peers[to.index()].send_async(Envelope { to, message }).await.map_err(|_| StorageError::ShuttingDown)
    }

    /// Runs `task` on shard `to` (right here when `to` is this shard) and
    /// returns its result.
    pub async fn run_on<T, F, Fut>(self: &Rc<Self>, to: ShardId, task: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if to == self.id {
            return Ok(task(self.clone()).await);
        }
        let (reply, receiver) = oneshot::channel();
        let boxed: ShardTask = Box::new(move |shard| {
            Box::pin(async move {
                let _ = reply.send(task(shard).await);
            })
        });
        self.send(to, Message::Run(boxed)).await?;
        receiver.await.map_err(|_| StorageError::ShuttingDown)
    }

    /// Runs `task` with the storage of the shard that owns `tp`. If the
    /// partition moved away before the task ran there, it runs again at the
    /// new owner.
    pub async fn with_owner<T, F, Fut>(self: &Rc<Self>, tp: &TopicPartition, task: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(ShardStorage, TopicPartition) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let mut attempt = 0;
        loop {
            let owner = self.route(tp).await?;
            let (tp_there, task) = (tp.clone(), task.clone());
            let ran = self
                .run_on(owner, move |shard| async move {
                    if !shard.storage.owns(&tp_there) {
                        return Err(StorageError::Moved(tp_there));
                    }
                    Ok(task(shard.storage.clone(), tp_there).await)
                })
                .await;
            match ran.and_then(|r| r) {
                Err(e) if self.should_retry(&e, tp, attempt) => attempt += 1,
                other => return other,
            }
        }
    }

    /// Reads several partitions for one fetch: local ones here, remote ones
    /// with one `ReadMany` message per owner shard, all owners at once.
    /// Results come back in request order. A partition that moved while
    /// its owner read is read again on its own (`read`), which follows it.
    pub async fn read_many(&self, reads: Vec<ReadRequest>) -> Vec<StorageResult<ManyRead>> {
        let count = reads.len();
        let mut results: Vec<Option<StorageResult<ManyRead>>> = (0..count).map(|_| None).collect();
        // Where each request read from, kept for a partition that moved
        // (its `Moved` error names it).
        let asked_for: Vec<(Offset, usize)> = reads.iter().map(|r| (r.offset, r.max_bytes)).collect();
        let mut moved = Vec::new();
        // (request index, request) per owner shard.
        let mut by_owner: Vec<Vec<(usize, ReadRequest)>> = (0..self.peers.len()).map(|_| Vec::new()).collect();
        for (index, read) in reads.into_iter().enumerate() {
            match self.route(&read.tp).await {
                Ok(owner) => by_owner[owner.index()].push((index, read)),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let mut asked = Vec::new();
        for (owner, reads) in by_owner.iter_mut().enumerate() {
            if reads.is_empty() || owner == self.id.index() {
                continue;
            }
            let (indexes, requests): (Vec<usize>, Vec<ReadRequest>) = std::mem::take(reads).into_iter().unzip();
            let (reply, receiver) = oneshot::channel();
            match self.send(ShardId(owner as u16), Message::ReadMany { reads: requests, reply }).await {
                Ok(()) => asked.push((indexes, receiver)),
                Err(e) => {
                    for index in indexes {
                        results[index] = Some(Err(e.clone()));
                    }
                }
            }
        }
        // While the owners read, read the local partitions.
        for (index, read) in std::mem::take(&mut by_owner[self.id.index()]) {
            let result = self.storage.read(&read.tp, read.offset, read.max_bytes).await;
            if let (Ok(output), Some(waiter)) = (&result, read.waiter) {
                let _ = self.storage.park_data_waiter(&read.tp, output.high_watermark, waiter);
            }
            results[index] = Some(result.map(ManyRead::Local));
        }
        for (indexes, receiver) in asked {
            let Ok(answer) = receiver.await else {
                for index in indexes {
                    results[index] = Some(Err(StorageError::ShuttingDown));
                }
                continue;
            };
            let lent = Rc::new(answer.batches);
            for (index, part) in indexes.into_iter().zip(answer.parts) {
                match part {
                    Ok(part) => results[index] = Some(Ok(ManyRead::Remote { lent: lent.clone(), part })),
                    Err(StorageError::Moved(tp)) => moved.push((index, tp)), // read again below
                    Err(e) => results[index] = Some(Err(e)),
                }
            }
        }
        for (index, tp) in moved {
            let (offset, max_bytes) = asked_for[index];
            results[index] = Some(self.read(&tp, offset, max_bytes).await.map(|read| match read {
                RoutedRead::Local(read) => ManyRead::Local(read),
                RoutedRead::Remote(read) => {
                    let part = ReadPart {
                        batches: 0..read.batches.len(),
                        high_watermark: read.high_watermark,
                        log_start_offset: read.log_start_offset,
                    };
                    ManyRead::Remote { lent: Rc::new(read.batches), part }
                }
            }));
        }
        results.into_iter().map(|r| r.expect("every read answered")).collect()
    }

    /// Queues an append on the owning shard, preserving submission order.
    pub async fn submit(&self, tp: &TopicPartition, batch: Bytes) -> StorageResult<RoutedTicket> {
        let owner = self.route(tp).await?;
        if owner == self.id {
            let _counted = Submitting::new(self, tp);
            return Ok(RoutedTicket::Local(self.storage.submit(tp, batch).await?));
        }
        let (reply, receiver) = oneshot::channel();
        self.send(owner, Message::Append { tp: tp.clone(), batch, reply }).await?;
        Ok(RoutedTicket::Remote(receiver))
    }

    /// Queues the appends of one produce request: those for each other
    /// shard in one `AppendMany` message (one wake-up there however many
    /// partitions it names), local ones here, in request order per
    /// partition. Like `submit`, it returns once every append is queued or
    /// sent, so the next request's appends come after these. Appends to a
    /// partition being moved take `submit`'s path, which waits for the move.
    /// A request that repeats a partition keeps its order: both go in the
    /// same message, or both the local way.
    pub async fn submit_many(&self, appends: Vec<(TopicPartition, Bytes)>) -> Vec<StorageResult<RoutedTicket>> {
        let count = appends.len();
        let mut results: Vec<Option<StorageResult<RoutedTicket>>> = (0..count).map(|_| None).collect();
        let mut waiting: Vec<Option<(TopicPartition, Bytes)>> = appends.into_iter().map(Some).collect();
        // One owner at a time, each group routed right before its send with
        // no await in between (a move's fence relies on it, see `route`):
        // a send that waits for room must not carry routes taken before it.
        loop {
            let route_now = |tp: &TopicPartition| {
                if self.moving.borrow().contains(tp) {
                    None // `submit` waits for the move
                } else {
                    self.owner(tp).filter(|owner| *owner != self.id)
                }
            };
            let Some(owner) = waiting.iter().flatten().find_map(|(tp, _)| route_now(tp)) else { break };
            let mut receivers = Vec::new();
            let mut requests = Vec::new();
            for (index, slot) in waiting.iter_mut().enumerate() {
                if slot.as_ref().is_some_and(|(tp, _)| route_now(tp) == Some(owner)) {
                    let (tp, batch) = slot.take().expect("checked");
                    let (reply, receiver) = oneshot::channel();
                    requests.push(RemoteAppendRequest { tp, batch, reply });
                    receivers.push((index, receiver));
                }
            }
            let message = if requests.len() == 1 {
                let RemoteAppendRequest { tp, batch, reply } = requests.pop().expect("one");
                Message::Append { tp, batch, reply }
            } else {
                Message::AppendMany { appends: requests }
            };
            match self.send(owner, message).await {
                Ok(()) => {
                    for (index, receiver) in receivers {
                        results[index] = Some(Ok(RoutedTicket::Remote(receiver)));
                    }
                }
                Err(e) => {
                    for (index, _) in receivers {
                        results[index] = Some(Err(e.clone()));
                    }
                }
            }
        }
        // Local, moving or unknown partitions: one at a time, as `submit` does.
        for (index, slot) in waiting.into_iter().enumerate() {
            if let Some((tp, batch)) = slot {
                results[index] = Some(self.submit(&tp, batch).await);
            }
        }
        results.into_iter().map(|r| r.expect("every append answered")).collect()
    }

    pub async fn append(&self, tp: &TopicPartition, batch: Bytes) -> StorageResult<AppendInfo> {
        self.submit(tp, batch).await?.wait().await
    }

    pub async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> StorageResult<RoutedRead> {
        let mut attempt = 0;
        loop {
            let owner = self.route(tp).await?;
            let read = if owner == self.id {
                self.storage.read(tp, offset, max_bytes).await.map(RoutedRead::Local)
            } else {
                let (reply, receiver) = oneshot::channel();
                self.send(owner, Message::Read { tp: tp.clone(), offset, max_bytes, reply }).await?;
                receiver.await.unwrap_or(Err(StorageError::ShuttingDown)).map(RoutedRead::Remote)
            };
            match read {
                Err(e) if self.should_retry(&e, tp, attempt) => attempt += 1,
                other => return other,
            }
        }
    }

    pub async fn offsets(&self, tp: &TopicPartition) -> StorageResult<PartitionOffsets> {
        let mut attempt = 0;
        loop {
            let owner = self.route(tp).await?;
            let offsets = if owner == self.id {
                self.storage.offsets(tp)
            } else {
                let (reply, receiver) = oneshot::channel();
                self.send(owner, Message::Offsets { tp: tp.clone(), reply }).await?;
                receiver.await.unwrap_or(Err(StorageError::ShuttingDown))
            };
            match offsets {
                Err(e) if self.should_retry(&e, tp, attempt) => attempt += 1,
                other => return other,
            }
        }
    }

    /// DeleteRecords for `tp`, on its owner (see `ShardStorage::delete_records`).
    pub async fn delete_records(&self, tp: &TopicPartition, offset: i64) -> StorageResult<Offset> {
        let mut attempt = 0;
        loop {
            let owner = self.route(tp).await?;
            let result = if owner == self.id {
                self.storage.delete_records(tp, offset).await
            } else {
                let (reply, receiver) = oneshot::channel();
                self.send(owner, Message::DeleteRecords { tp: tp.clone(), offset, reply }).await?;
                receiver.await.unwrap_or(Err(StorageError::ShuttingDown))
            };
            match result {
                Err(e) if self.should_retry(&e, tp, attempt) => attempt += 1,
                other => return other,
            }
        }
    }

    /// Creates a partition: shard 0 picks the owner, persists the table,
    /// has the owner open it, then tells every other shard. Returns once
    /// every shard can route to it.
    pub async fn create_partition(&self, tp: &TopicPartition, config: LogConfig) -> StorageResult<ShardId> {
        if self.id == ShardId(0) {
            return self.create_partition_here(tp.clone(), config).await;
        }
        let (reply, receiver) = oneshot::channel();
        self.send(ShardId(0), Message::CreatePartition { tp: tp.clone(), config, reply }).await?;
        receiver.await.unwrap_or(Err(StorageError::ShuttingDown))
    }

    async fn create_partition_here(&self, tp: TopicPartition, config: LogConfig) -> StorageResult<ShardId> {
        assert_eq!(self.id, ShardId(0), "the placement table is written by shard 0 only");
        if !ringstream_core::types::is_valid_topic_name(&tp.topic) || tp.partition.0 < 0 {
            return Err(StorageError::Config(format!("invalid partition name {tp}")));
        }
        config.validate()?;
        if self.owner(&tp).is_some() {
            return Err(StorageError::PartitionExists(tp));
        }
        let owner = self.choose_owners(std::slice::from_ref(&tp))[0];
        // Open on the owner first: only then may anyone route to it.
        if owner == self.id {
            self.storage.open_partition(tp.clone(), config).await?;
        } else {
            let (reply, receiver) = oneshot::channel();
            self.send(owner, Message::OpenPartition { tp: tp.clone(), config, reply }).await?;
            receiver.await.unwrap_or(Err(StorageError::ShuttingDown))?;
        }
        let text = {
            let mut table = self.placement.borrow_mut();
            table.insert(tp.clone(), owner);
            table.encode()
        };
        let data_dir = self.storage.config().data_dir.clone();
        dir::write_file_atomic(&data_dir, dir::PLACEMENT_FILE_NAME, text.into_bytes())
            .await
            .map_err(|e| StorageError::io("write placement table", &data_dir, e))?;
        for peer in 1..self.shard_count() {
            let (reply, receiver) = oneshot::channel();
            self.send(ShardId(peer as u16), Message::Placement { tp: tp.clone(), shard: Some(owner), reply }).await?;
            receiver.await.map_err(|_| StorageError::ShuttingDown)?;
        }
        Ok(owner)
    }

    /// Creates many partitions with the same config in one go, as a topic
    /// is created: shard 0 picks the owners, each owner opens its share
    /// (`partition_file_ops_in_flight_max` at a time), the placement table is
    /// persisted once (not once per partition: the table is rewritten whole,
    /// so per-partition writes made a 10,000-partition topic quadratic), and
    /// every other shard then learns all of them. Partitions that opened stay
    /// placed even when others failed, so a retry skips them; the first
    /// failure is returned.
    pub async fn create_partitions(self: &Rc<Self>, tps: Vec<TopicPartition>, config: LogConfig) -> StorageResult<()> {
        self.run_on(ShardId(0), move |shard| async move { shard.create_partitions_here(tps, config).await }).await?
    }

    async fn create_partitions_here(self: &Rc<Self>, tps: Vec<TopicPartition>, config: LogConfig) -> StorageResult<()> {
        assert_eq!(self.id, ShardId(0), "the placement table is written by shard 0 only");
        config.validate()?;
        let count = self.shard_count();
        let mut by_owner: Vec<Vec<TopicPartition>> = vec![Vec::new(); count];
        for tp in &tps {
            if !ringstream_core::types::is_valid_topic_name(&tp.topic) || tp.partition.0 < 0 {
                return Err(StorageError::Config(format!("invalid partition name {tp}")));
            }
            if self.owner(tp).is_some() {
                return Err(StorageError::PartitionExists(tp.clone()));
            }
        }
        let owners = self.choose_owners(&tps);
        for (tp, owner) in tps.into_iter().zip(owners) {
            by_owner[owner.index()].push(tp);
        }
        // Open on the owners first: only then may anyone route to them.
        let opens = by_owner.into_iter().enumerate().filter(|(_, list)| !list.is_empty()).map(|(owner, list)| {
            let config = config.clone();
            self.run_on(
                ShardId(owner as u16),
                move |shard| async move { shard.open_partitions_here(list, config).await },
            )
        });
        let mut opened = Vec::new();
        let mut first_error = None;
        for outcome in futures_util::future::join_all(opens).await {
            match outcome {
                Ok((owner, list, error)) => {
                    opened.extend(list.into_iter().map(|tp| (tp, owner)));
                    first_error = first_error.or(error);
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if !opened.is_empty() {
            let text = {
                let mut table = self.placement.borrow_mut();
                for (tp, owner) in &opened {
                    table.insert(tp.clone(), *owner);
                }
                table.encode()
            };
            let data_dir = self.storage.config().data_dir.clone();
            dir::write_file_atomic(&data_dir, dir::PLACEMENT_FILE_NAME, text.into_bytes())
                .await
                .map_err(|e| StorageError::io("write placement table", &data_dir, e))?;
            for peer in 1..count {
                let placed = opened.clone();
                self.run_on(ShardId(peer as u16), move |shard| async move {
                    let mut table = shard.placement.borrow_mut();
                    for (tp, owner) in placed {
                        table.insert(tp, owner);
                    }
                })
                .await?;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Opens `list` on this shard, `partition_file_ops_in_flight_max` at a
    /// time, and places the ones that opened. Returns them with the first
    /// error, if any (later chunks are not started after one).
    async fn open_partitions_here(
        self: &Rc<Self>,
        list: Vec<TopicPartition>,
        config: LogConfig,
    ) -> (ShardId, Vec<TopicPartition>, Option<StorageError>) {
        let mut opened = Vec::with_capacity(list.len());
        for chunk in list.chunks(ringstream_core::limits::partition_file_ops_in_flight_max) {
            let opens = chunk.iter().map(|tp| self.storage.open_partition(tp.clone(), config.clone()));
            let results = futures_util::future::join_all(opens).await;
            let mut error = None;
            for (tp, result) in chunk.iter().zip(results) {
                match result {
                    Ok(_) => {
                        self.placement.borrow_mut().insert(tp.clone(), self.id);
                        opened.push(tp.clone());
                    }
                    Err(e) => error = error.or(Some(e)),
                }
            }
            if error.is_some() {
                return (self.id, opened, error);
            }
        }
        (self.id, opened, None)
    }

    /// Moves `tp` to shard `to` while clients keep producing and fetching:
    /// nothing acknowledged is lost, nothing is appended twice or out of
    /// submission order, and no client sees an error. Only the router
    /// changes; clients see the same broker. Runs on shard 0, one move at a
    /// time. Returns the shard it came from.
    ///
    /// 1. Freeze: every shard marks `tp` moving; from then on its requests
    ///    for `tp` wait in `route` instead of being sent.
    /// 2. Fence: every other shard sends the old owner a no-op through its
    ///    own inbox, which is FIFO, so every append it routed before the
    ///    freeze is queued there first; the old owner waits for its own
    ///    in-flight local appends to be queued.
    /// 3. The old owner commits what is queued, closes the partition cleanly
    ///    and forgets it; the new owner opens it from the same files (the
    ///    clean marker spares it the recovery scan).
    /// 4. Shard 0 persists the placement table, then every shard learns the
    ///    new owner and thaws; waiting requests go there.
    ///
    /// A failure before step 4 reopens the partition on its old owner. A
    /// crash at any step leaves a closed partition whose persisted owner is
    /// either the old shard or the new one: both open it at start-up.
    pub async fn move_partition(self: &Rc<Self>, tp: TopicPartition, to: ShardId) -> StorageResult<ShardId> {
        self.run_on(ShardId(0), move |shard| async move { shard.move_partition_here(tp, to).await }).await?
    }

    async fn move_partition_here(self: &Rc<Self>, tp: TopicPartition, to: ShardId) -> StorageResult<ShardId> {
        assert_eq!(self.id, ShardId(0), "the placement table is written by shard 0 only");
        if to.index() >= self.shard_count() {
            return Err(StorageError::Config(format!("shard {to} does not exist (shards: {})", self.shard_count())));
        }
        if tp.topic.starts_with("__") {
            return Err(StorageError::Config(format!(
                "{tp} belongs to an internal topic, whose partitions stay with their group coordinators"
            )));
        }
        let _one_at_a_time = self.move_lock.acquire_static_permit(1).await.map_err(|_| StorageError::ShuttingDown)?;
        let from = self.owner_or_err(&tp)?;
        if from == to {
            return Ok(from);
        }
        let started = std::time::Instant::now();
        // 1 and 2: freeze and fence, on every shard at once.
        let fences = (0..self.shard_count()).map(|index| {
            let tp = tp.clone();
            self.run_on(ShardId(index as u16), move |shard| async move { shard.freeze_and_fence(tp, from).await })
        });
        let fenced = futures_util::future::join_all(fences).await;
        let mut outcome = fenced.into_iter().find_map(|r| r.err()).map_or(Ok(()), Err);
        // 3: hand off.
        if outcome.is_ok() {
            outcome = self.hand_off(&tp, from, to).await;
        }
        let owner = if outcome.is_ok() { to } else { from };
        if outcome.is_ok() {
            let text = {
                let mut table = self.placement.borrow_mut();
                table.insert(tp.clone(), to);
                table.encode()
            };
            let data_dir = self.storage.config().data_dir.clone();
            if let Err(e) = dir::write_file_atomic(&data_dir, dir::PLACEMENT_FILE_NAME, text.into_bytes()).await {
                // The partition is open on `to`; route there for the rest of
                // this run. The next start-up opens it where the old table
                // says, from the same files.
                error!(partition = %tp, "persisting the placement table after a move failed: {e}");
            }
        }
        // 4: thaw, on every shard, with the owner that holds it now.
        for index in 0..self.shard_count() {
            let tp = tp.clone();
            self.run_on(ShardId(index as u16), move |shard| async move {
                shard.placement.borrow_mut().insert(tp.clone(), owner);
                shard.moving.borrow_mut().remove(&tp);
            })
            .await?;
        }
        match outcome {
            Ok(()) => {
                tracing::info!(partition = %tp, %from, %to, took_ms = started.elapsed().as_millis() as u64, "partition moved");
                Ok(from)
            }
            Err(e) => {
                warn!(partition = %tp, %from, %to, "partition move failed, the partition stays on its shard: {e}");
                Err(e)
            }
        }
    }

    fn count_submitting(&self, tp: &TopicPartition) {
        let mut submitting = self.submitting.borrow_mut();
        match submitting.get_mut(tp) {
            Some(count) => *count += 1,
            None => {
                submitting.insert(tp.clone(), 1);
            }
        }
    }

    fn uncount_submitting(&self, tp: &TopicPartition) {
        let mut submitting = self.submitting.borrow_mut();
        let count = submitting.get_mut(tp).expect("counted on creation");
        *count -= 1;
        if *count == 0 {
            submitting.remove(tp);
        }
    }

    /// Queues `tp`'s remote appends in storage one after another, in arrival
    /// order, until none is left. One drainer per partition at a time: the
    /// inbox starts one when it finds no queue for the partition. (Spawning
    /// a task per append and letting storage order them is not enough:
    /// glommio's semaphore wakes a smaller waiter ahead of a larger one that
    /// does not fit yet, and a woken waiter can lose its turn to a newcomer.)
    async fn drain_remote_appends(self: Rc<Self>, tp: TopicPartition) {
        loop {
            let next = {
                let mut queues = self.remote_appends.borrow_mut();
                let queue = queues.get_mut(&tp).expect("a drainer's queue lives until it ends");
                match queue.pop_front() {
                    Some(next) => next,
                    None => {
                        queues.remove(&tp);
                        return;
                    }
                }
            };
            let RemoteAppend { batch, reply, _room: room } = next;
            let queued = self.storage.submit(&tp, batch).await;
            drop(room);
            self.uncount_submitting(&tp);
            match queued {
                Ok(ticket) => {
                    glommio::spawn_local(async move {
                        let _ = reply.send(ticket.wait().await);
                    })
                    .detach();
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    /// Waits until every append to `tp` routed to this shard is queued in
    /// storage; gives up past `partition_release_wait_ms_max`.
    async fn wait_submitted(&self, tp: &TopicPartition) -> StorageResult<()> {
        let started = std::time::Instant::now();
        while self.submitting.borrow().contains_key(tp) {
            if started.elapsed() > Duration::from_millis(limits::partition_release_wait_ms_max) {
                return Err(StorageError::Moving(tp.clone()));
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
        Ok(())
    }

    /// Step 1 and 2 of a move, on this shard.
    async fn freeze_and_fence(self: Rc<Self>, tp: TopicPartition, from: ShardId) -> StorageResult<()> {
        self.moving.borrow_mut().insert(tp.clone());
        if self.id != from {
            return self.run_on(from, |_| async {}).await;
        }
        self.wait_submitted(&tp).await
    }

    /// Step 3 of a move: release on `from`, open on `to`; on failure to
    /// open, reopen on `from`.
    async fn hand_off(self: &Rc<Self>, tp: &TopicPartition, from: ShardId, to: ShardId) -> StorageResult<()> {
        let released = tp.clone();
        // Appends other shards fenced into the inbox are queued by tasks of
        // their own (`Message::Append`): all of them first.
        let config = self
            .run_on(from, move |shard| async move {
                shard.wait_submitted(&released).await?;
                shard.storage.release_partition(&released).await
            })
            .await??;
        let (opened, open_config) = (tp.clone(), config.clone());
        let open =
            self.run_on(to, move |shard| async move { shard.storage.open_partition(opened, open_config).await }).await;
        match open.and_then(|r| r) {
            Ok(_) => Ok(()),
            Err(e) => {
                let reopened = tp.clone();
                let back = self
                    .run_on(from, move |shard| async move { shard.storage.open_partition(reopened, config).await })
                    .await;
                if let Err(again) = back.and_then(|r| r) {
                    error!(partition = %tp, "reopening on shard {from} after a failed move failed too: {again}");
                }
                Err(e)
            }
        }
    }

    /// Deletes a partition: every shard forgets its placement first (so no
    /// new request routes to it), then the owner deletes its data, then the
    /// persisted table drops it. Runs the table change on shard 0.
    pub async fn delete_partition(self: &Rc<Self>, tp: &TopicPartition) -> StorageResult<()> {
        self.delete_partitions(vec![tp.clone()]).await
    }

    /// Deletes many partitions in one go, as a topic is deleted: every shard
    /// forgets all of them (one message each), each owner deletes its share
    /// (`partition_file_ops_in_flight_max` at a time), and the placement
    /// table is persisted once. One table write per partition made deleting
    /// a 10,000-partition topic quadratic (minutes; clients timed out).
    /// Partitions not in the table are skipped; the first error is returned.
    pub async fn delete_partitions(self: &Rc<Self>, tps: Vec<TopicPartition>) -> StorageResult<()> {
        self.run_on(ShardId(0), move |shard| async move { shard.delete_partitions_here(tps).await }).await?
    }

    async fn delete_partitions_here(self: &Rc<Self>, tps: Vec<TopicPartition>) -> StorageResult<()> {
        assert_eq!(self.id, ShardId(0), "the placement table is written by shard 0 only");
        // Not while a move is under way: the move holds its own copy of the owner.
        let _no_move = self.move_lock.acquire_static_permit(1).await.map_err(|_| StorageError::ShuttingDown)?;
        let mut by_owner: Vec<Vec<TopicPartition>> = vec![Vec::new(); self.shard_count()];
        for tp in tps {
            if let Some(owner) = self.owner(&tp) {
                by_owner[owner.index()].push(tp);
            }
        }
        for list in &mut by_owner {
            list.sort();
            list.dedup();
        }
        let doomed: Vec<TopicPartition> = by_owner.iter().flatten().cloned().collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for peer in 1..self.shard_count() {
            let forget = doomed.clone();
            self.run_on(ShardId(peer as u16), move |shard| async move {
                let mut table = shard.placement.borrow_mut();
                for tp in &forget {
                    table.remove(tp);
                }
            })
            .await?;
        }
        let text = {
            let mut table = self.placement.borrow_mut();
            for tp in &doomed {
                table.remove(tp);
            }
            table.encode()
        };
        let removals = by_owner.into_iter().enumerate().filter(|(_, list)| !list.is_empty()).map(|(owner, list)| {
            self.run_on(ShardId(owner as u16), move |shard| async move {
                let mut first_error = None;
                for chunk in list.chunks(limits::partition_file_ops_in_flight_max) {
                    let removed =
                        futures_util::future::join_all(chunk.iter().map(|tp| shard.storage.remove_partition(tp))).await;
                    first_error = first_error.or(removed.into_iter().find_map(Result::err));
                }
                first_error.map_or(Ok(()), Err)
            })
        });
        let mut first_error = None;
        for outcome in futures_util::future::join_all(removals).await {
            if let Err(e) = outcome.and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        let data_dir = self.storage.config().data_dir.clone();
        dir::write_file_atomic(&data_dir, dir::PLACEMENT_FILE_NAME, text.into_bytes())
            .await
            .map_err(|e| StorageError::io("write placement table", &data_dir, e))?;
        first_error.map_or(Ok(()), Err)
    }

    /// Takes an append another shard routed here: counted in `submitting`
    /// from now (a move's fence and hand-off wait for it), then queued for
    /// its partition's drainer in arrival order.
    async fn accept_remote_append(
        self: &Rc<Self>,
        tp: TopicPartition,
        batch: Bytes,
        reply: oneshot::Sender<StorageResult<AppendInfo>>,
    ) {
        // A move's fence guarantees no append reaches a former
        // owner; should one anyway, it fails (NOT_LEADER, which
        // clients retry) rather than land out of order.
        if !self.storage.owns(&tp) {
            let _ = reply.send(Err(StorageError::Moved(tp)));
            return;
        }
        // Not queued in storage inline: `submit` may wait for
        // write-buffer room until a commit's fdatasync ends, and
        // every message behind it in this inbox (group
        // heartbeats, joins and syncs among them) would wait
        // too. The partition's drainer queues it, in arrival
        // order. Counted in `submitting` from now, so a move's
        // fence and hand-off wait for it.
        let room = match self.remote_append_room.acquire_static_permit(batch.len() as u64).await {
            Ok(room) => room,
            Err(_) => {
                let _ = reply.send(Err(StorageError::ShuttingDown));
                return;
            }
        };
        self.count_submitting(&tp);
        let append = RemoteAppend { batch, reply, _room: room };
        let mut queues = self.remote_appends.borrow_mut();
        match queues.get_mut(&tp) {
            Some(queue) => queue.push_back(append), // its drainer runs
            None => {
                queues.insert(tp.clone(), VecDeque::from([append]));
                drop(queues);
                glommio::spawn_local(self.clone().drain_remote_appends(tp)).detach();
            }
        }
    }

    /// The receive loop: runs every routed message addressed to this shard.
    /// Returns after a `Shutdown` message closed storage.
    pub async fn serve(self: Rc<Self>, inbox: flume::Receiver<Envelope>) {
        while let Ok(envelope) = inbox.recv_async().await {
            assert_eq!(envelope.to, self.id, "router delivered to the wrong shard");
            ringstream_core::metrics::count_cross_shard_received();
            match envelope.message {
                Message::Append { tp, batch, reply } => self.accept_remote_append(tp, batch, reply).await,
                Message::AppendMany { appends } => {
                    for RemoteAppendRequest { tp, batch, reply } in appends {
                        self.accept_remote_append(tp, batch, reply).await;
                    }
                }
                Message::Read { tp, offset, max_bytes, reply } => {
                    let storage = self.storage.clone();
                    let (home, home_inbox) = (self.id, self.peers[self.id.index()].clone());
                    glommio::spawn_local(async move {
                        let read = storage.read(&tp, offset, max_bytes).await.map(|r| LentRead {
                            batches: LentBatches::lend(r.batches, home, home_inbox),
                            high_watermark: r.high_watermark,
                            log_start_offset: r.log_start_offset,
                        });
                        // A read the asker no longer wants comes back here
                        // inside the error, and its batches go home anyway.
                        let _ = reply.send(read);
                    })
                    .detach();
                }
                Message::ReadMany { reads, reply } => {
                    let storage = self.storage.clone();
                    let (home, home_inbox) = (self.id, self.peers[self.id.index()].clone());
                    glommio::spawn_local(async move {
                        let _ = reply.send(read_here(&storage, reads, home, home_inbox).await);
                    })
                    .detach();
                }
                Message::Offsets { tp, reply } => {
                    let _ = reply.send(self.storage.offsets(&tp).map_err(|e| match e {
                        StorageError::UnknownPartition(tp) => StorageError::Moved(tp),
                        e => e,
                    }));
                }
                Message::DeleteRecords { tp, offset, reply } => {
                    let storage = self.storage.clone();
                    glommio::spawn_local(async move {
                        let result = storage.delete_records(&tp, offset).await.map_err(|e| match e {
                            StorageError::UnknownPartition(tp) => StorageError::Moved(tp),
                            e => e,
                        });
                        let _ = reply.send(result);
                    })
                    .detach();
                }
                Message::CreatePartition { tp, config, reply } => {
                    let shard = self.clone();
                    glommio::spawn_local(async move {
                        let _ = reply.send(shard.create_partition_here(tp, config).await);
                    })
                    .detach();
                }
                Message::OpenPartition { tp, config, reply } => {
                    let result = self.storage.open_partition(tp.clone(), config).await;
                    if result.is_ok() {
                        self.placement.borrow_mut().insert(tp, self.id);
                    }
                    let _ = reply.send(result);
                }
                Message::Placement { tp, shard, reply } => {
                    match shard {
                        Some(shard) => self.placement.borrow_mut().insert(tp, shard),
                        None => {
                            self.placement.borrow_mut().remove(&tp);
                        }
                    }
                    let _ = reply.send(());
                }
                Message::Run(task) => {
                    glommio::spawn_local(task(self.clone())).detach();
                }
                Message::Shutdown { reply } => {
                    // Lent batches held here go home while their shards run.
                    flush_all_homeward();
                    let result = self.storage.close().await;
                    if let Err(e) = &result {
                        error!(shard = %self.id, "storage close failed: {e}");
                    }
                    let _ = reply.send(result);
                    // Drop what is still queued here, on this shard: lent
                    // batches coming home belong to it, and dropped later
                    // with the channel they would be dropped on whichever
                    // thread lets go of it last. Sends after this see the
                    // inbox closed and leak theirs instead.
                    while let Ok(envelope) = inbox.try_recv() {
                        drop(envelope);
                    }
                    return;
                }
            }
        }
    }
}

/// Serves a `ReadMany` on the owner: every read in turn, their batches
/// gathered into one vector lent to the asker, each read's waiter parked
/// at the high watermark it saw. A partition this shard no longer owns
/// answers `Moved` (its waiter dropped: a wake-up), and the asker follows it.
async fn read_here(
    storage: &ShardStorage,
    reads: Vec<ReadRequest>,
    home: ShardId,
    home_inbox: flume::Sender<Envelope>,
) -> LentReads {
    let mut batches = Vec::new();
    let mut parts = Vec::with_capacity(reads.len());
    for read in reads {
        let part = match storage.read(&read.tp, read.offset, read.max_bytes).await {
            Ok(output) => {
                if let Some(waiter) = read.waiter {
                    // A full waiter list drops it: the fetch wakes and reads again.
                    let _ = storage.park_data_waiter(&read.tp, output.high_watermark, waiter);
                }
                let start = batches.len();
                batches.extend(output.batches);
                Ok(ReadPart {
                    batches: start..batches.len(),
                    high_watermark: output.high_watermark,
                    log_start_offset: output.log_start_offset,
                })
            }
            Err(StorageError::UnknownPartition(tp)) => Err(StorageError::Moved(tp)),
            Err(e) => Err(e),
        };
        parts.push(part);
    }
    LentReads { batches: LentBatches::lend(batches, home, home_inbox), parts }
}
