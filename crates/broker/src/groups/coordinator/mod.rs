//! One shard's group coordinator: the groups of the offsets-log partitions
//! this shard owns, their state machines, and their durable records.
//!
//! A group moves Empty → PreparingRebalance → CompletingRebalance → Stable
//! (and back to PreparingRebalance when membership or subscriptions change,
//! or to Empty when the last member goes; Dead while it is being deleted).
//! JoinGroup and SyncGroup calls wait on oneshots held by their member until
//! the rebalance step they wait for completes; a ticker (`tick_ms`) expires
//! sessions, rebalance and sync deadlines, the initial rebalance delay and
//! members that were handed a member id but never joined.
//!
//! Durability: a committed offset is appended to the offsets log and
//! acknowledged (fdatasync'd per the flush policy) before it is visible or
//! answered. Group metadata is written when a generation's assignment is in
//! place, when a group empties and when a static member is replaced, so a
//! restarted broker resumes its groups where they were. Startup replays the
//! log; the log is compacted by writing a snapshot of the live records and
//! deleting the segments before it.
//!
//! Files: `group.rs`, a classic group's state machine (pure state);
//! `classic.rs`, JoinGroup, SyncGroup, Heartbeat and LeaveGroup; `modern.rs`,
//! KIP-848 ConsumerGroupHeartbeat and ConsumerGroupDescribe; `admin.rs`,
//! listing, describing and deleting groups; `offsets.rs`, committed offsets;
//! `log.rs`, the offsets log; `ticker.rs`, the deadlines; `api.rs`, what
//! callers send and get back.

mod admin;
mod api;
mod classic;
mod group;
mod log;
mod modern;
mod offsets;
mod ticker;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use tracing::info;

pub use api::*;
pub use group::{subscription_topics, GroupState};

use self::group::{Group, Member};
use self::log::LogState;
use super::consumer::TopicView;
use super::{group_partition, GroupsConfig, OFFSETS_TOPIC};
use ringstream_core::clock::now_ms;
use ringstream_core::types::TopicPartition;
use ringstream_shard::Shard;

/// How often deadlines are checked.
pub const tick_ms: u64 = 100;
/// The offsets log is compacted once this much (or two segments, if less)
/// was written since the last snapshot, and at least the snapshot's size.
pub const offsets_compact_bytes: u64 = 8 * 1024 * 1024;

thread_local! {
    static COORDINATOR: RefCell<Option<Rc<Coordinator>>> = const { RefCell::new(None) };
    static PARTITIONS: Cell<i32> = const { Cell::new(0) };
}

/// The coordinator of the shard running on this thread.
impl Coordinator {
    /// Whether this broker coordinates offsets-log partition `partition`.
    pub fn coordinates(&self, partition: i32) -> bool {
        self.topics.coordinates(partition)
    }
}

pub fn local() -> Rc<Coordinator> {
    COORDINATOR.with(|c| c.borrow().clone()).expect("group coordinator installed on this shard")
}

/// `offsets.topic.num.partitions` as settled for this data dir.
pub fn partitions_configured() -> i32 {
    PARTITIONS.with(Cell::get)
}

pub struct Coordinator {
    shard: Rc<Shard>,
    /// The topic table as groups see it, handed in by whoever installs the
    /// coordinator (the broker); groups never reach for the broker itself.
    topics: Rc<dyn TopicView>,
    config: GroupsConfig,
    groups: RefCell<HashMap<String, Group>>,
    logs: RefCell<HashMap<i32, Rc<LogState>>>,
    create_lock: Rc<glommio::sync::Semaphore>,
    /// Offsets-log partitions whose groups are loaded here, with the
    /// leader epoch they were loaded in (`ensure_loaded`).
    loaded: RefCell<HashMap<i32, i32>>,
    load_lock: Rc<glommio::sync::Semaphore>,
    next_member: Cell<u64>,
    next_retention_check_ms: Cell<i64>,
    /// TxnOffsetCommit offsets waiting for their transaction's marker, by
    /// (offsets-log partition, producer id): the producer's epoch and
    /// (group, topic, partition, value) per offset.
    txn_offsets: RefCell<HashMap<(i32, i64), PendingTxn>>,
}

/// One offset of a transaction: (group, topic, partition, value).
type PendingTxnOffset = (String, String, i32, crate::groups::store::OffsetValue);
/// A producer's pending offsets in one offsets-log partition, with its epoch.
type PendingTxn = (i16, Vec<PendingTxnOffset>);

impl Coordinator {
    /// Installs this shard's coordinator: replays the offsets-log
    /// partitions it owns, then starts the ticker.
    pub async fn install(
        shard: Rc<Shard>,
        config: GroupsConfig,
        topics: Rc<dyn TopicView>,
    ) -> Result<Rc<Coordinator>, String> {
        PARTITIONS.with(|p| p.set(config.offsets_topic_partitions));
        let coordinator = Rc::new(Coordinator {
            shard,
            topics,
            next_retention_check_ms: Cell::new(now_ms() + config.offsets_retention_check_interval_ms),
            config,
            groups: RefCell::new(HashMap::new()),
            logs: RefCell::new(HashMap::new()),
            create_lock: Rc::new(glommio::sync::Semaphore::new(1)),
            loaded: RefCell::new(HashMap::new()),
            load_lock: Rc::new(glommio::sync::Semaphore::new(1)),
            next_member: Cell::new(0),
            txn_offsets: RefCell::new(HashMap::new()),
        });
        let internal: Vec<TopicPartition> =
            coordinator.shard.storage.partitions().into_iter().filter(|tp| tp.topic == OFFSETS_TOPIC).collect();
        for tp in internal {
            coordinator.shard.storage.set_log_config(&tp, coordinator.log_config()).map_err(|e| e.to_string())?;
        }
        // Groups load when this broker leads their offsets-log partition
        // (`ensure_loaded`): at the first request, or the ticker's next pass.
        COORDINATOR.with(|c| *c.borrow_mut() = Some(coordinator.clone()));
        ticker::start(&coordinator);
        Ok(coordinator)
    }

    /// Loads the groups of offsets-log partition `partition` if this broker
    /// leads it and has not loaded them in this leader epoch; groups loaded
    /// in an earlier epoch (before another broker led it) are dropped and
    /// read again from the replicated log. Err(NotCoordinator) when this
    /// broker does not lead it.
    pub async fn ensure_loaded(self: &Rc<Self>, partition: i32) -> Result<(), GroupError> {
        let epoch = self.topics.offsets_leader_epoch(partition).ok_or(GroupError::NotCoordinator)?;
        if self.loaded.borrow().get(&partition) == Some(&epoch) {
            return Ok(());
        }
        let _lock =
            self.load_lock.clone().acquire_static_permit(1).await.map_err(|_| GroupError::CoordinatorNotAvailable)?;
        if self.loaded.borrow().get(&partition) == Some(&epoch) {
            return Ok(());
        }
        self.groups.borrow_mut().retain(|id, _| self.partition_of(id) != partition);
        self.txn_offsets.borrow_mut().retain(|(p, _), _| *p != partition);
        let tp = crate::groups::offsets_partition(partition);
        if self.shard.storage.owns(&tp) {
            if let Err(e) = self.replay(&tp).await {
                tracing::error!(partition = %tp, "loading groups failed: {e}");
                return Err(GroupError::CoordinatorNotAvailable);
            }
        }
        let now = now_ms();
        let mut loaded = 0;
        self.groups.borrow_mut().retain(|id, g| {
            self.partition_of(id) != partition
                || g.state != GroupState::Empty
                || g.protocol_type.is_some()
                || !g.offsets.is_empty()
                || g.generation > 0
        });
        for g in self.groups.borrow_mut().values_mut().filter(|g| self.partition_of(&g.id) == partition) {
            loaded += 1;
            for m in &mut g.members {
                m.heartbeat_deadline_ms = now + i64::from(m.session_timeout_ms);
            }
        }
        self.loaded.borrow_mut().insert(partition, epoch);
        if loaded > 0 {
            info!(shard = %self.shard.id, partition, leader_epoch = epoch, groups = loaded, "consumer groups loaded");
        }
        Ok(())
    }

    /// Loads every offsets-log partition this shard holds and this broker
    /// leads (ListGroups, and the ticker after a leadership change).
    pub async fn load_led(self: &Rc<Self>) {
        let owned: Vec<i32> = self
            .shard
            .storage
            .partitions()
            .into_iter()
            .filter(|tp| tp.topic == OFFSETS_TOPIC)
            .map(|tp| tp.partition.0)
            .collect();
        for partition in owned {
            let _ = self.ensure_loaded(partition).await;
        }
    }

    /// Whether the groups of `partition` are loaded here and this broker
    /// still leads it in the epoch they were loaded in.
    fn serves(&self, partition: i32) -> bool {
        let epoch = self.topics.offsets_leader_epoch(partition);
        epoch.is_some() && self.loaded.borrow().get(&partition).copied() == epoch
    }

    fn partition_of(&self, group_id: &str) -> i32 {
        group_partition(group_id, self.config.offsets_topic_partitions)
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let seq = self.next_member.get();
        self.next_member.set(seq + 1);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let id = (nanos << 64) ^ (u128::from(self.shard.id.0) << 48) ^ u128::from(seq);
        format!("{client_id}-{}", uuid::Uuid::from_u128(id))
    }
}
