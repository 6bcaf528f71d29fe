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
use tracing::error;

use crate::placement::{place, PlacementTable};
use crate::policy::{least_loaded, BalanceConfig, LoadSampler, PlacementPolicy};
use ringstream_core::limits;
use ringstream_core::limits::route_attempts_max;
use ringstream_core::types::{Offset, ShardId, TopicPartition};
use ringstream_storage::dir;
use ringstream_storage::log::{AppendInfo, LogConfig, PartitionOffsets};
use ringstream_storage::shard_storage::{AppendTicket, BatchBytes, ReadOutput, ShardStorage};
use ringstream_storage::{StorageError, StorageResult};

mod control;
mod data;
mod lend;
mod query;

pub use data::*;
pub use lend::LentBatches;
use lend::*;
pub use query::PartitionQuery;

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
    /// A typed question or small change for the owner of `tp`.
    Partition {
        tp: TopicPartition,
        query: PartitionQuery,
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
    /// To every shard: the cluster's metadata as of a new offset (shard 0
    /// sends it after opening the partitions the image places here).
    Metadata {
        view: ringstream_cluster::MetadataView,
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
    /// In a cluster: this shard's copy of the metadata (`Message::Metadata`).
    metadata: RefCell<Option<ringstream_cluster::MetadataView>>,
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
            metadata: RefCell::new(None),
        }
    }

    /// This shard's copy of the cluster metadata (None: not in a cluster yet).
    pub fn metadata(&self) -> Option<ringstream_cluster::MetadataView> {
        self.metadata.borrow().clone()
    }

    /// From shard 0: gives every shard (this one first) `view`, and returns
    /// once all have it.
    pub async fn publish_metadata(&self, view: ringstream_cluster::MetadataView) -> StorageResult<()> {
        assert_eq!(self.id, ShardId(0), "metadata is published from shard 0");
        *self.metadata.borrow_mut() = Some(view.clone());
        for peer in 1..self.shard_count() {
            let (reply, receiver) = oneshot::channel();
            self.send(ShardId(peer as u16), Message::Metadata { view: view.clone(), reply }).await?;
            receiver.await.map_err(|_| StorageError::ShuttingDown)?;
        }
        Ok(())
    }

    pub fn shard_count(&self) -> usize {
        self.peers.len()
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
    ///
    /// When a closure, not a typed `Message`: the work belongs to a layer
    /// above the router (the broker's topic changes, a group's coordinator,
    /// a dynamic config) or to the router's own control plane on shard 0.
    /// The router cannot name the broker's types (dependencies run one way),
    /// so those layers ship their work as a closure; every data-plane and
    /// partition operation is a typed message (`Append*`, `Read*`,
    /// `Offsets`, `DeleteRecords`, `Partition`). Each call site says which
    /// case it is.
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
                Message::Partition { tp, query } => {
                    glommio::spawn_local(query::answer(self.storage.clone(), tp, query)).detach();
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
                Message::Metadata { view, reply } => {
                    *self.metadata.borrow_mut() = Some(view);
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
