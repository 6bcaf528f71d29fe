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

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use tracing::{error, info, warn};

use super::consumer::{self, HeartbeatArgs, HeartbeatResult, TopicView};
use super::store::{self, GroupValue, OffsetValue, RecordKey, RecordValue, StoredMember};
use super::{group_partition, offsets_partition, GroupsConfig, OFFSETS_TOPIC};
use ringstream_core::batch::{self, BatchBuilder, Record};
use ringstream_core::clock::now_ms;
use ringstream_core::limits;
use ringstream_core::types::{Offset, TopicPartition};
use ringstream_protocol::error_code::*;
use ringstream_shard::Shard;
use ringstream_storage::log::LogConfig;
use ringstream_storage::StorageError;

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
pub fn local() -> Rc<Coordinator> {
    COORDINATOR.with(|c| c.borrow().clone()).expect("group coordinator installed on this shard")
}

/// `offsets.topic.num.partitions` as settled for this data dir.
pub fn partitions_configured() -> i32 {
    PARTITIONS.with(Cell::get)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka reports (ListGroups, DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

// ---- What callers send and get back (Send: it crosses shards) ----

pub struct JoinArgs {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

#[derive(Clone, Debug)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

impl JoinResult {
    fn error(error: i16, member_id: &str) -> JoinResult {
        JoinResult { error, generation: -1, member_id: member_id.to_owned(), ..JoinResult::default() }
    }
}

pub struct SyncArgs {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Clone, Debug, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: i16) -> SyncResult {
        SyncResult { error, ..SyncResult::default() }
    }
}

pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// Kafka's state name ("Stable", "Reconciling", ...).
    pub state: &'static str,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
}

pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

pub struct GroupDescription {
    pub group_id: String,
    /// None: no such group (Kafka reports it as Dead).
    pub state: Option<&'static str>,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

pub struct CommitArgs {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub offsets: Vec<CommitOffset>,
}

pub struct CommitOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Per partition of a commit: (topic, partition, error).
pub type CommitResult = Vec<(String, i32, i16)>;

/// A committed offset as OffsetFetch reports it.
#[derive(Clone, Debug)]
pub struct FetchedOffset {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error: i16,
}

pub struct ConsumerGroupDescription {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberDescription>,
}

pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub assigned: Vec<consumer::Tp>,
    pub target: Vec<consumer::Tp>,
}

// ---- Internal state ----

/// A JoinGroup's answer now, or the rebalance to wait for.
enum JoinStep {
    Now(Box<JoinResult>),
    Wait(oneshot::Receiver<JoinResult>),
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    heartbeat_deadline_ms: i64,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    /// The member as stored with its group (its metadata for `protocol`).
    fn stored(&self, protocol: &str) -> StoredMember {
        StoredMember {
            member_id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            subscription: self.metadata(protocol),
            assignment: self.assignment.clone(),
        }
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn fail_waiters(&mut self, error: i16) {
        if let Some(w) = self.join_waiter.take() {
            let _ = w.send(JoinResult::error(error, &self.id));
        }
        if let Some(w) = self.sync_waiter.take() {
            let _ = w.send(SyncResult::error(error));
        }
    }
}

struct Group {
    id: String,
    state: GroupState,
    state_since_ms: i64,
    protocol_type: Option<String>,
    protocol: Option<String>,
    generation: i32,
    leader: Option<String>,
    /// In join order (a BTreeMap by id would make the leader arbitrary).
    members: Vec<Member>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their deadline.
    pending: HashMap<String, i64>,
    offsets: BTreeMap<(String, i32), OffsetValue>,
    rebalance_deadline_ms: i64,
    /// While the first members of an empty group gather: (until, budget left).
    initial_delay: Option<(i64, i64)>,
    sync_deadline_ms: i64,
    /// Group metadata changed and must be written.
    dirty: bool,
    /// Some: a KIP-848 consumer group (the classic member fields stay empty).
    modern: Option<Box<consumer::ConsumerGroup>>,
}

impl Group {
    fn new(id: String, now: i64) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            state_since_ms: now,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: Vec::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            offsets: BTreeMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay: None,
            sync_deadline_ms: 0,
            dirty: false,
            modern: None,
        }
    }

    fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn set_state(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_since_ms = now;
    }

    /// FENCED_INSTANCE_ID when `instance_id` belongs to another member.
    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id.and_then(|i| self.static_members.get(i)).is_some_and(|owner| owner != member_id)
    }

    /// Protocols every member but `except` supports, in the order the first
    /// such member prefers them.
    fn common_protocols(&self, except: &str) -> Option<Vec<String>> {
        let mut others = self.members.iter().filter(|m| m.id != except);
        let first = others.next()?;
        let mut common: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in others {
            common.retain(|p| m.supports(p));
        }
        Some(common)
    }

    /// Kafka's vote: each member votes for its most preferred protocol that
    /// all members support; most votes wins, ties to the earlier candidate.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.common_protocols("")?;
        let mut votes = vec![0usize; candidates.len()];
        for m in &self.members {
            if let Some(i) = m.protocols.iter().find_map(|(n, _)| candidates.iter().position(|c| c == n)) {
                votes[i] += 1;
            }
        }
        let best = votes.iter().enumerate().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))?.0;
        candidates.into_iter().nth(best)
    }

    fn join_response(&self, member_id: &str, skip_assignment: bool) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        let members = if is_leader {
            self.members
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members,
            skip_assignment,
        }
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members.iter().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    /// Starts a rebalance (from any state but Dead).
    fn prepare_rebalance(&mut self, now: i64, initial_delay_ms: i64, reason: &str) {
        if self.state == GroupState::CompletingRebalance {
            for m in &mut self.members {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult::error(REBALANCE_IN_PROGRESS));
                }
            }
        }
        let rebalance = self.max_rebalance_timeout();
        if self.state == GroupState::Empty && initial_delay_ms > 0 {
            let first = initial_delay_ms.min(rebalance);
            self.initial_delay = Some((now + first, rebalance - first));
        } else {
            self.initial_delay = None;
        }
        self.rebalance_deadline_ms = now + rebalance;
        info!(group = %self.id, generation = self.generation, reason, "preparing rebalance");
        self.set_state(GroupState::PreparingRebalance, now);
    }

    /// A new member arrived while the initial delay runs: extend it.
    fn extend_initial_delay(&mut self, now: i64, initial_delay_ms: i64) {
        if let Some((until, left)) = self.initial_delay {
            if left > 0 {
                let more = initial_delay_ms.min(left);
                self.initial_delay = Some((until.max(now + more), left - more));
            }
        }
    }

    /// Completes the join phase if every member is waiting in JoinGroup (or
    /// `force`: the rebalance timeout passed, and those who are not leave).
    fn maybe_complete_join(&mut self, now: i64, force: bool) {
        if self.state != GroupState::PreparingRebalance || (!force && self.initial_delay.is_some()) {
            return;
        }
        let all_joined = self.members.iter().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        if !all_joined && !force {
            return;
        }
        let gone: Vec<String> = self.members.iter().filter(|m| m.join_waiter.is_none()).map(|m| m.id.clone()).collect();
        for id in gone {
            info!(group = %self.id, member = %id, "member did not rejoin in time; removed");
            self.remove_member(&id);
        }
        if force {
            self.pending.clear();
        }
        self.generation = self.generation.wrapping_add(1);
        self.initial_delay = None;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now);
            self.dirty = true;
            info!(group = %self.id, generation = self.generation, "group is empty");
            return;
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.member(l).is_some()) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.set_state(GroupState::CompletingRebalance, now);
        self.sync_deadline_ms = now + self.max_rebalance_timeout();
        let responses: Vec<(String, JoinResult)> =
            self.members.iter().map(|m| (m.id.clone(), self.join_response(&m.id, false))).collect();
        for (id, response) in responses {
            if let Some(m) = self.member_mut(&id) {
                m.heartbeat_deadline_ms = now + i64::from(m.session_timeout_ms);
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(response);
                }
            }
        }
        info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol.as_deref().unwrap_or(""),
            "rebalance joined; awaiting the leader's assignment"
        );
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(index) = self.members.iter().position(|m| m.id == id) {
            let mut m = self.members.remove(index);
            m.fail_waiters(UNKNOWN_MEMBER_ID);
            if let Some(instance) = &m.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
    }

    /// After a member left or expired: rebalance, or finish the one running.
    fn after_member_removed(&mut self, now: i64, reason: &str) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation = self.generation.wrapping_add(1);
                    self.protocol = None;
                    self.leader = None;
                    self.set_state(GroupState::Empty, now);
                    self.dirty = true;
                } else {
                    self.prepare_rebalance(now, 0, reason);
                }
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, false),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Topics the members subscribe to (consumer protocol); None when some
    /// member's subscription cannot be read.
    fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if let Some(modern) = &self.modern {
            return Some(modern.subscribed_topics());
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in &self.members {
            topics.extend(subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    /// The group's record: classic metadata, or a KIP-848 group.
    fn record_value(&self) -> RecordValue {
        match &self.modern {
            Some(modern) => RecordValue::ConsumerGroup(modern.stored()),
            None => RecordValue::Group(self.stored_value()),
        }
    }

    fn stored_value(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_since_ms,
            members: if self.state == GroupState::Stable {
                self.members.iter().map(|m| m.stored(&protocol)).collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// The topics of a ConsumerProtocolSubscription (any version: they all
/// start with version int16, then topics as an int32-counted array of
/// int16-length strings).
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut at = 2usize;
    let count = i32::from_be_bytes(metadata.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    if count < 0 || count as usize > metadata.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = i16::from_be_bytes(metadata.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        let len = usize::try_from(len).ok()?;
        topics.push(std::str::from_utf8(metadata.get(at..at + len)?).ok()?.to_owned());
        at += len;
    }
    Some(topics)
}

/// Per offsets-log partition: its write gate and compaction bookkeeping.
struct LogState {
    /// Writers hold one permit from write until their state change is
    /// applied; compaction takes them all, so a snapshot misses nothing.
    gate: Rc<glommio::sync::Semaphore>,
    bytes_since_snapshot: Cell<u64>,
    snapshot_bytes: Cell<u64>,
    compacting: Cell<bool>,
}

const gate_permits: u64 = 1 << 20;

pub struct Coordinator {
    shard: Rc<Shard>,
    /// The topic table as groups see it, handed in by whoever installs the
    /// coordinator (the broker); groups never reach for the broker itself.
    topics: Rc<dyn TopicView>,
    config: GroupsConfig,
    groups: RefCell<HashMap<String, Group>>,
    logs: RefCell<HashMap<i32, Rc<LogState>>>,
    create_lock: Rc<glommio::sync::Semaphore>,
    next_member: Cell<u64>,
    next_retention_check_ms: Cell<i64>,
}

/// A permit on a partition's write gate, held while a write is applied.
type GatePermit = glommio::sync::StaticPermit;

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
            next_member: Cell::new(0),
        });
        let internal: Vec<TopicPartition> =
            coordinator.shard.storage.partitions().into_iter().filter(|tp| tp.topic == OFFSETS_TOPIC).collect();
        for tp in internal {
            coordinator.shard.storage.set_log_config(&tp, coordinator.log_config()).map_err(|e| e.to_string())?;
            coordinator.replay(&tp).await.map_err(|e| format!("replay {tp}: {e}"))?;
        }
        let now = now_ms();
        coordinator.groups.borrow_mut().retain(|_, g| {
            g.state != GroupState::Empty || g.protocol_type.is_some() || !g.offsets.is_empty() || g.generation > 0
        });
        for g in coordinator.groups.borrow_mut().values_mut() {
            for m in &mut g.members {
                m.heartbeat_deadline_ms = now + i64::from(m.session_timeout_ms);
            }
        }
        let groups = coordinator.groups.borrow().len();
        if groups > 0 {
            info!(shard = %coordinator.shard.id, groups, "consumer groups loaded");
        }
        COORDINATOR.with(|c| *c.borrow_mut() = Some(coordinator.clone()));
        let weak = Rc::downgrade(&coordinator);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(tick_ms)).await;
                let Some(coordinator) = weak.upgrade() else { break };
                coordinator.tick();
            }
        })
        .detach();
        Ok(coordinator)
    }

    fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.config.offsets_segment_bytes,
            retention_ms: -1,
            retention_bytes: -1,
            max_message_bytes: limits::batch_bytes_max,
            ..LogConfig::default()
        }
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

    // ---- The offsets log ----

    async fn replay(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let offsets = self.shard.storage.offsets(tp)?;
        let mut cursor = offsets.log_start_offset;
        let mut bytes = 0u64;
        while cursor < offsets.high_watermark {
            let read = self.shard.storage.read(tp, cursor, limits::recovery_read_bytes).await?;
            if read.batches.is_empty() {
                break;
            }
            for batch_bytes in &read.batches {
                bytes += batch_bytes.len() as u64;
                let Some(header) = batch::BatchHeader::ref_from_prefix(batch_bytes) else { break };
                cursor = Offset(header.base_offset().0 + i64::from(header.last_offset_delta()) + 1);
                match batch::records(batch_bytes) {
                    Ok(records) => {
                        for record in records {
                            self.apply_record(record.key, record.value);
                        }
                    }
                    Err(e) => error!(partition = %tp, "skipping an unreadable offsets-log batch: {e}"),
                }
            }
        }
        let state = self.log_state(tp.partition.0);
        state.bytes_since_snapshot.set(bytes);
        Ok(())
    }

    fn apply_record(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(key) = key else { return };
        let key = match store::decode_key(key) {
            Ok(key) => key,
            Err(e) => return error!("skipping an offsets-log record: {e}"),
        };
        let value = match value.map(|v| store::decode_value(&key, v)).transpose() {
            Ok(value) => value,
            Err(e) => return error!(group = key.group(), "skipping an offsets-log record: {e}"),
        };
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        match (key, value) {
            (RecordKey::Offset { group, topic, partition }, Some(RecordValue::Offset(v))) => {
                groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now))
                    .offsets
                    .insert((topic, partition), v);
            }
            (RecordKey::Offset { group, topic, partition }, None) => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            (RecordKey::Group { group }, Some(RecordValue::ConsumerGroup(v))) => {
                let g = groups.entry(group.clone()).or_insert_with(|| Group::new(group, now));
                let modern = consumer::ConsumerGroup::restore(v, now, self.config.consumer_session_timeout_ms);
                g.state = if modern.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
                g.modern = Some(Box::new(modern));
                g.protocol_type = Some("consumer".to_owned());
                g.protocol = None;
                g.members.clear();
                g.static_members.clear();
            }
            (RecordKey::Group { group }, Some(RecordValue::Group(v))) => {
                let g = groups.entry(group.clone()).or_insert_with(|| Group::new(group, now));
                g.modern = None;
                g.protocol_type = v.protocol_type;
                g.generation = v.generation;
                g.protocol = v.protocol.clone();
                g.leader = v.leader;
                g.state_since_ms = v.state_timestamp_ms;
                g.static_members.clear();
                g.members = v
                    .members
                    .into_iter()
                    .map(|m| {
                        if let Some(instance) = &m.instance_id {
                            g.static_members.insert(instance.clone(), m.member_id.clone());
                        }
                        Member {
                            id: m.member_id,
                            instance_id: m.instance_id,
                            client_id: m.client_id,
                            client_host: m.client_host,
                            session_timeout_ms: m.session_timeout_ms,
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            protocols: vec![(v.protocol.clone().unwrap_or_default(), m.subscription)],
                            assignment: m.assignment,
                            join_waiter: None,
                            sync_waiter: None,
                            heartbeat_deadline_ms: 0,
                        }
                    })
                    .collect();
                g.state = if g.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
            }
            (RecordKey::Group { group }, None) => {
                groups.remove(&group);
            }
            (key, Some(_)) => error!(group = key.group(), "offsets-log record value does not match its key"),
        }
    }

    fn log_state(&self, partition: i32) -> Rc<LogState> {
        self.logs
            .borrow_mut()
            .entry(partition)
            .or_insert_with(|| {
                Rc::new(LogState {
                    gate: Rc::new(glommio::sync::Semaphore::new(gate_permits)),
                    bytes_since_snapshot: Cell::new(0),
                    snapshot_bytes: Cell::new(0),
                    compacting: Cell::new(false),
                })
            })
            .clone()
    }

    /// Creates the offsets-log partition on first use.
    async fn ensure_partition(&self, tp: &TopicPartition) -> Result<(), i16> {
        if self.shard.storage.owns(tp) {
            return Ok(());
        }
        let _lock = self.create_lock.clone().acquire_static_permit(1).await.map_err(|_| COORDINATOR_NOT_AVAILABLE)?;
        if self.shard.storage.owns(tp) {
            return Ok(());
        }
        match self.shard.create_partition(tp, self.log_config()).await {
            Ok(owner) if owner == self.shard.id => Ok(()),
            Ok(owner) => {
                error!(partition = %tp, %owner, "offsets-log partition was placed on another shard");
                Err(NOT_COORDINATOR)
            }
            Err(StorageError::PartitionExists(_)) if self.shard.storage.owns(tp) => Ok(()),
            Err(e) => {
                error!(partition = %tp, "could not create the offsets-log partition: {e}");
                Err(COORDINATOR_NOT_AVAILABLE)
            }
        }
    }

    /// Appends `records` to the group's offsets-log partition and waits
    /// until they are durable. The returned permit holds off compaction
    /// until the caller has applied the change in memory.
    async fn write(
        self: &Rc<Self>,
        group_id: &str,
        records: Vec<(RecordKey, Option<RecordValue>)>,
    ) -> Result<GatePermit, i16> {
        let partition = self.partition_of(group_id);
        let tp = offsets_partition(partition);
        self.ensure_partition(&tp).await?;
        let state = self.log_state(partition);
        let permit = state.gate.clone().acquire_static_permit(1).await.map_err(|_| COORDINATOR_NOT_AVAILABLE)?;
        let batches = build_batches(&records).map_err(|bytes| {
            error!(group = group_id, bytes, "a group record is too large to store (Kafka: UNKNOWN_SERVER_ERROR)");
            UNKNOWN_SERVER_ERROR
        })?;
        let mut tickets = Vec::with_capacity(batches.len());
        let mut bytes = 0u64;
        for batch in batches {
            bytes += batch.len() as u64;
            match self.shard.storage.submit(&tp, Bytes::from(batch)).await {
                Ok(ticket) => tickets.push(ticket),
                Err(e) => {
                    error!(partition = %tp, group = group_id, "offsets-log write failed: {e}");
                    return Err(COORDINATOR_NOT_AVAILABLE);
                }
            }
        }
        for ticket in tickets {
            if let Err(e) = ticket.wait().await {
                error!(partition = %tp, group = group_id, "offsets-log write failed: {e}");
                return Err(COORDINATOR_NOT_AVAILABLE);
            }
        }
        state.bytes_since_snapshot.set(state.bytes_since_snapshot.get() + bytes);
        let threshold =
            (2 * self.config.offsets_segment_bytes).min(offsets_compact_bytes).max(state.snapshot_bytes.get());
        if state.bytes_since_snapshot.get() >= threshold && !state.compacting.get() {
            state.compacting.set(true);
            let this = self.clone();
            glommio::spawn_local(async move {
                if let Err(e) = this.compact(partition).await {
                    error!(partition, "offsets-log compaction failed: {e}");
                }
                this.log_state(partition).compacting.set(false);
            })
            .detach();
        }
        Ok(permit)
    }

    /// Rewrites partition `partition`'s live records after a roll and
    /// deletes the segments before them.
    async fn compact(&self, partition: i32) -> Result<(), StorageError> {
        let tp = offsets_partition(partition);
        let state = self.log_state(partition);
        let _all =
            state.gate.clone().acquire_static_permit(gate_permits).await.map_err(|_| StorageError::ShuttingDown)?;
        self.shard.storage.roll(&tp).await?;
        let start = self.shard.storage.offsets(&tp)?.log_end_offset;
        let records: Vec<(RecordKey, Option<RecordValue>)> = {
            let groups = self.groups.borrow();
            let mut records = Vec::new();
            for g in groups.values().filter(|g| self.partition_of(&g.id) == partition) {
                records.push((RecordKey::Group { group: g.id.clone() }, Some(g.record_value())));
                for ((topic, p), v) in &g.offsets {
                    let key = RecordKey::Offset { group: g.id.clone(), topic: topic.clone(), partition: *p };
                    records.push((key, Some(RecordValue::Offset(v.clone()))));
                }
            }
            records
        };
        let mut bytes = 0u64;
        let batches = build_batches(&records)
            .map_err(|size| StorageError::Config(format!("a group record of {size} bytes is too large to store")))?;
        for batch in batches {
            bytes += batch.len() as u64;
            self.shard.storage.append(&tp, Bytes::from(batch)).await?;
        }
        let deleted = self.shard.storage.delete_segments_before(&tp, start).await?;
        state.snapshot_bytes.set(bytes);
        state.bytes_since_snapshot.set(bytes);
        info!(partition = %tp, records = records.len(), bytes, segments_deleted = deleted, "offsets log compacted");
        Ok(())
    }

    /// Writes the group's metadata if it changed (spawned: callers do not wait).
    fn persist_if_dirty(self: &Rc<Self>, group_id: &str) {
        let value = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group_id) else { return };
            if !std::mem::take(&mut g.dirty) {
                return;
            }
            g.record_value()
        };
        let this = self.clone();
        let group_id = group_id.to_owned();
        glommio::spawn_local(async move {
            let key = RecordKey::Group { group: group_id.clone() };
            if let Err(code) = this.write(&group_id, vec![(key, Some(value))]).await {
                warn!(group = %group_id, code, "could not write group metadata; it is kept in memory");
            }
        })
        .detach();
    }

    // ---- The ticker ----

    fn tick(self: &Rc<Self>) {
        let now = now_ms();
        let mut changed = Vec::new();
        let topics = &*self.topics;
        for g in self.groups.borrow_mut().values_mut() {
            if let Some(modern) = &mut g.modern {
                for id in modern.expire(now, topics) {
                    info!(group = %g.id, member = %id, "consumer-group member expired");
                }
                let state = if modern.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
                if std::mem::take(&mut modern.dirty) {
                    g.dirty = true;
                    changed.push(g.id.clone());
                }
                if g.state != state {
                    g.set_state(state, now);
                }
                continue;
            }
            if g.state == GroupState::Empty && g.pending.is_empty() {
                continue;
            }
            g.pending.retain(|id, deadline| {
                let keep = *deadline > now;
                if !keep {
                    info!(group = %g.id, member = %id, "member id never joined; dropped");
                }
                keep
            });
            match g.state {
                GroupState::PreparingRebalance => {
                    if g.initial_delay.is_some_and(|(until, _)| until <= now) {
                        g.initial_delay = None;
                    }
                    // A member that neither rejoins nor heartbeats is gone
                    // after its session, not only at the rebalance timeout.
                    let silent: Vec<String> = g
                        .members
                        .iter()
                        .filter(|m| m.join_waiter.is_none() && m.heartbeat_deadline_ms <= now)
                        .map(|m| m.id.clone())
                        .collect();
                    for id in &silent {
                        info!(group = %g.id, member = %id, "session timed out during a rebalance; member removed");
                        g.remove_member(id);
                    }
                    let force = now >= g.rebalance_deadline_ms;
                    g.maybe_complete_join(now, force);
                }
                GroupState::CompletingRebalance | GroupState::Stable => {
                    let expired: Vec<String> = g
                        .members
                        .iter()
                        .filter(|m| m.heartbeat_deadline_ms <= now && m.sync_waiter.is_none())
                        .map(|m| m.id.clone())
                        .collect();
                    for id in &expired {
                        info!(group = %g.id, member = %id, "session timed out; member removed");
                        g.remove_member(id);
                    }
                    if !expired.is_empty() {
                        g.after_member_removed(now, "session timeout");
                    } else if g.state == GroupState::CompletingRebalance && now >= g.sync_deadline_ms {
                        let stragglers: Vec<String> =
                            g.members.iter().filter(|m| m.sync_waiter.is_none()).map(|m| m.id.clone()).collect();
                        for id in &stragglers {
                            g.remove_member(id);
                        }
                        g.after_member_removed(now, "sync timed out");
                    }
                }
                GroupState::Empty | GroupState::Dead => {}
            }
            if g.dirty {
                changed.push(g.id.clone());
            }
        }
        for id in changed {
            self.persist_if_dirty(&id);
        }
        if now >= self.next_retention_check_ms.get() {
            self.next_retention_check_ms.set(now + self.config.offsets_retention_check_interval_ms);
            let this = self.clone();
            glommio::spawn_local(async move { this.expire_offsets(now).await }).detach();
        }
    }

    /// Kafka's offset expiry: an empty consumer group's offsets expire
    /// `offsets.retention.minutes` after it became empty; offsets of a group
    /// that only stores offsets, and of topics a stable group no longer
    /// subscribes to, expire that long after their commit. A group left
    /// empty with no offsets is deleted.
    pub async fn expire_offsets(self: &Rc<Self>, now: i64) {
        let retention = self.config.offsets_retention_ms;
        // (group, offsets that expire, whether the group goes too)
        type Plan = Vec<(String, Vec<(String, i32)>, bool)>;
        let plan: Plan = {
            let groups = self.groups.borrow();
            groups
                .values()
                .filter_map(|g| {
                    let expired: Vec<(String, i32)> = match g.state {
                        GroupState::Empty if g.protocol_type.is_some() => {
                            if now - g.state_since_ms >= retention {
                                g.offsets.keys().cloned().collect()
                            } else {
                                Vec::new()
                            }
                        }
                        GroupState::Empty => g
                            .offsets
                            .iter()
                            .filter(|(_, v)| now - v.commit_timestamp_ms >= retention)
                            .map(|(k, _)| k.clone())
                            .collect(),
                        GroupState::Stable if g.protocol_type.as_deref() == Some("consumer") => {
                            match g.subscribed_topics() {
                                Some(subscribed) => g
                                    .offsets
                                    .iter()
                                    .filter(|((t, _), v)| {
                                        !subscribed.contains(t) && now - v.commit_timestamp_ms >= retention
                                    })
                                    .map(|(k, _)| k.clone())
                                    .collect(),
                                None => Vec::new(),
                            }
                        }
                        _ => Vec::new(),
                    };
                    let delete_group =
                        g.state == GroupState::Empty && g.offsets.len() == expired.len() && g.pending.is_empty();
                    (!expired.is_empty() || delete_group).then(|| (g.id.clone(), expired, delete_group))
                })
                .collect()
        };
        for (group_id, expired, delete_group) in plan {
            let mut records: Vec<(RecordKey, Option<RecordValue>)> = expired
                .iter()
                .map(|(t, p)| (RecordKey::Offset { group: group_id.clone(), topic: t.clone(), partition: *p }, None))
                .collect();
            if delete_group {
                records.push((RecordKey::Group { group: group_id.clone() }, None));
            }
            let Ok(_permit) = self.write(&group_id, records).await else { continue };
            let mut groups = self.groups.borrow_mut();
            if let Some(g) = groups.get_mut(&group_id) {
                for k in &expired {
                    g.offsets.remove(k);
                }
                if delete_group && g.state == GroupState::Empty && g.offsets.is_empty() {
                    groups.remove(&group_id);
                }
            }
            info!(group = %group_id, offsets = expired.len(), deleted = delete_group, "expired committed offsets");
        }
    }

    // ---- JoinGroup ----

    pub async fn join(self: &Rc<Self>, args: JoinArgs) -> JoinResult {
        let group_id = args.group_id.clone();
        let member_hint = if args.member_id.is_empty() { String::new() } else { args.member_id.clone() };
        let waiter = match self.join_begin(args) {
            JoinStep::Wait(waiter) => waiter,
            JoinStep::Now(result) => {
                self.persist_if_dirty(&group_id);
                return *result;
            }
        };
        let result = waiter.await.unwrap_or_else(|_| JoinResult::error(COORDINATOR_NOT_AVAILABLE, &member_hint));
        self.persist_if_dirty(&group_id);
        result
    }

    fn join_begin(&self, args: JoinArgs) -> JoinStep {
        let now = now_ms();
        let fail = |code: i16| JoinStep::Now(Box::new(JoinResult::error(code, &args.member_id)));
        if args.group_id.is_empty() {
            return fail(INVALID_GROUP_ID);
        }
        if args.session_timeout_ms < self.config.min_session_timeout_ms
            || args.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(INVALID_SESSION_TIMEOUT);
        }
        if args.protocol_type.is_empty()
            || args.protocols.is_empty()
            || args.protocols.len() > limits::group_protocols_max
        {
            return fail(INCONSISTENT_GROUP_PROTOCOL);
        }
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(&args.group_id) {
            if !args.member_id.is_empty() {
                return fail(UNKNOWN_MEMBER_ID);
            }
            if groups.len() >= limits::shard_groups_max {
                warn!(group = %args.group_id, "refusing a new group: this shard coordinates shard_groups_max groups");
                return fail(COORDINATOR_NOT_AVAILABLE);
            }
            groups.insert(args.group_id.clone(), Group::new(args.group_id.clone(), now));
        }
        let g = groups.get_mut(&args.group_id).expect("inserted above");
        if g.state == GroupState::Dead {
            return fail(COORDINATOR_NOT_AVAILABLE);
        }
        match &g.modern {
            Some(modern) if !modern.members.is_empty() => return fail(INCONSISTENT_GROUP_PROTOCOL),
            Some(_) => g.modern = None, // an empty consumer group turns classic
            None => {}
        }
        // The protocol must fit the group's (any fits an empty group).
        if !g.members.is_empty() {
            if g.protocol_type.as_deref().is_some_and(|t| t != args.protocol_type) {
                return fail(INCONSISTENT_GROUP_PROTOCOL);
            }
            if let Some(common) = g.common_protocols(&args.member_id) {
                if !args.protocols.iter().any(|(name, _)| common.contains(name)) {
                    return fail(INCONSISTENT_GROUP_PROTOCOL);
                }
            }
        }
        let initial_delay = self.config.initial_rebalance_delay_ms;

        if let Some(instance) = args.instance_id.clone() {
            if let Some(old) = g.static_members.get(&instance).cloned() {
                if !args.member_id.is_empty() && args.member_id != old {
                    return fail(FENCED_INSTANCE_ID);
                }
                if args.member_id.is_empty() {
                    return self.replace_static_member(g, old, args, now);
                }
                return JoinStep::Wait(self.join_known(g, args, now));
            }
            if !args.member_id.is_empty() {
                return fail(UNKNOWN_MEMBER_ID);
            }
            if g.members.len() >= self.config.max_size {
                return fail(GROUP_MAX_SIZE_REACHED);
            }
            let id = self.new_member_id(&args.client_id);
            g.static_members.insert(instance, id.clone());
            return JoinStep::Wait(self.add_member(g, id, args, now, initial_delay));
        }
        if args.member_id.is_empty() {
            if g.members.len() + g.pending.len() >= self.config.max_size {
                return fail(GROUP_MAX_SIZE_REACHED);
            }
            let id = self.new_member_id(&args.client_id);
            if args.require_known_member_id {
                g.pending.insert(id.clone(), now + i64::from(args.session_timeout_ms));
                return JoinStep::Now(Box::new(JoinResult::error(MEMBER_ID_REQUIRED, &id)));
            }
            return JoinStep::Wait(self.add_member(g, id, args, now, initial_delay));
        }
        if g.pending.remove(&args.member_id).is_some() {
            let id = args.member_id.clone();
            return JoinStep::Wait(self.add_member(g, id, args, now, initial_delay));
        }
        if g.member(&args.member_id).is_none() {
            return fail(UNKNOWN_MEMBER_ID);
        }
        JoinStep::Wait(self.join_known(g, args, now))
    }

    fn add_member(
        &self,
        g: &mut Group,
        id: String,
        args: JoinArgs,
        now: i64,
        initial_delay: i64,
    ) -> oneshot::Receiver<JoinResult> {
        let (sender, receiver) = oneshot::channel();
        if g.members.is_empty() {
            g.protocol_type = Some(args.protocol_type.clone());
        }
        g.members.push(Member {
            id,
            instance_id: args.instance_id,
            client_id: args.client_id,
            client_host: args.client_host,
            session_timeout_ms: args.session_timeout_ms,
            rebalance_timeout_ms: args.rebalance_timeout_ms.max(args.session_timeout_ms),
            protocols: args.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(sender),
            sync_waiter: None,
            heartbeat_deadline_ms: now + i64::from(args.session_timeout_ms),
        });
        match g.state {
            GroupState::PreparingRebalance => {
                g.extend_initial_delay(now, initial_delay);
                g.rebalance_deadline_ms = g.rebalance_deadline_ms.max(now + g.max_rebalance_timeout());
            }
            _ => g.prepare_rebalance(now, initial_delay, "a member joined"),
        }
        g.maybe_complete_join(now, false);
        receiver
    }

    /// A member already in the group calls JoinGroup again.
    fn join_known(&self, g: &mut Group, args: JoinArgs, now: i64) -> oneshot::Receiver<JoinResult> {
        let (sender, receiver) = oneshot::channel();
        let protocol = g.protocol.clone().unwrap_or_default();
        let is_leader = g.leader.as_deref() == Some(args.member_id.as_str());
        let Some(m) = g.member_mut(&args.member_id) else {
            let _ = sender.send(JoinResult::error(UNKNOWN_MEMBER_ID, &args.member_id));
            return receiver;
        };
        let same = m.protocols == args.protocols;
        let same_selected = m.metadata(&protocol)
            == args.protocols.iter().find(|(n, _)| *n == protocol).map(|(_, b)| b.clone()).unwrap_or_default()
            && args.protocols.iter().any(|(n, _)| *n == protocol);
        m.protocols = args.protocols;
        m.session_timeout_ms = args.session_timeout_ms;
        m.rebalance_timeout_ms = args.rebalance_timeout_ms.max(args.session_timeout_ms);
        m.client_id = args.client_id;
        m.client_host = args.client_host;
        m.heartbeat_deadline_ms = now + i64::from(args.session_timeout_ms);
        if let Some(old) = m.join_waiter.replace(sender) {
            let _ = old.send(JoinResult::error(COORDINATOR_NOT_AVAILABLE, &args.member_id));
        }
        match g.state {
            GroupState::PreparingRebalance => g.maybe_complete_join(now, false),
            GroupState::CompletingRebalance if same => {
                let response = g.join_response(&args.member_id, false);
                if let Some(w) = g.member_mut(&args.member_id).and_then(|m| m.join_waiter.take()) {
                    let _ = w.send(response);
                }
            }
            GroupState::Stable if !is_leader && same_selected => {
                let response = g.join_response(&args.member_id, false);
                if let Some(w) = g.member_mut(&args.member_id).and_then(|m| m.join_waiter.take()) {
                    let _ = w.send(response);
                }
            }
            _ => {
                g.prepare_rebalance(now, 0, "a member rejoined with new metadata");
                g.maybe_complete_join(now, false);
            }
        }
        receiver
    }

    /// A static member rejoins with no member id (e.g. after a restart): it
    /// takes over its instance's place under a new id, and the old id is
    /// fenced. A stable group with unchanged subscriptions does not rebalance.
    fn replace_static_member(&self, g: &mut Group, old: String, args: JoinArgs, now: i64) -> JoinStep {
        let new_id = self.new_member_id(&args.client_id);
        let protocol = g.protocol.clone().unwrap_or_default();
        let Some(m) = g.member_mut(&old) else {
            return JoinStep::Now(Box::new(JoinResult::error(UNKNOWN_MEMBER_ID, &args.member_id)));
        };
        m.fail_waiters(FENCED_INSTANCE_ID);
        let same_selected = args.protocols.iter().any(|(n, b)| *n == protocol && *b == m.metadata(&protocol));
        m.id = new_id.clone();
        m.protocols = args.protocols;
        m.session_timeout_ms = args.session_timeout_ms;
        m.rebalance_timeout_ms = args.rebalance_timeout_ms.max(args.session_timeout_ms);
        m.client_id = args.client_id;
        m.client_host = args.client_host;
        m.heartbeat_deadline_ms = now + i64::from(args.session_timeout_ms);
        if let Some(instance) = &args.instance_id {
            g.static_members.insert(instance.clone(), new_id.clone());
        }
        if g.leader.as_deref() == Some(old.as_str()) {
            g.leader = Some(new_id.clone());
        }
        info!(group = %g.id, old = %old, new = %new_id, "static member rejoined");
        if g.state == GroupState::Stable && same_selected {
            g.dirty = true;
            let is_leader = g.leader.as_deref() == Some(new_id.as_str());
            return JoinStep::Now(Box::new(g.join_response(&new_id, is_leader)));
        }
        let (sender, receiver) = oneshot::channel();
        if let Some(m) = g.member_mut(&new_id) {
            m.join_waiter = Some(sender);
        }
        if g.state == GroupState::PreparingRebalance {
            g.maybe_complete_join(now, false);
        } else {
            g.prepare_rebalance(now, 0, "a static member rejoined with new metadata");
            g.maybe_complete_join(now, false);
        }
        JoinStep::Wait(receiver)
    }

    // ---- SyncGroup ----

    pub async fn sync(self: &Rc<Self>, args: SyncArgs) -> SyncResult {
        let now = now_ms();
        let (receiver, leader_value) = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(&args.group_id) else { return SyncResult::error(UNKNOWN_MEMBER_ID) };
            if g.fenced(&args.member_id, args.instance_id.as_deref()) {
                return SyncResult::error(FENCED_INSTANCE_ID);
            }
            if g.state == GroupState::Dead {
                return SyncResult::error(COORDINATOR_NOT_AVAILABLE);
            }
            if g.member(&args.member_id).is_none() {
                return SyncResult::error(UNKNOWN_MEMBER_ID);
            }
            if args.generation != g.generation {
                return SyncResult::error(ILLEGAL_GENERATION);
            }
            if args.protocol_type.as_ref().is_some_and(|t| Some(t) != g.protocol_type.as_ref())
                || args.protocol.as_ref().is_some_and(|p| Some(p) != g.protocol.as_ref())
            {
                return SyncResult::error(INCONSISTENT_GROUP_PROTOCOL);
            }
            let done = |g: &Group, id: &str| SyncResult {
                error: NONE,
                protocol_type: g.protocol_type.clone(),
                protocol: g.protocol.clone(),
                assignment: g.member(id).map(|m| m.assignment.clone()).unwrap_or_default(),
            };
            match g.state {
                GroupState::PreparingRebalance => return SyncResult::error(REBALANCE_IN_PROGRESS),
                GroupState::Stable => {
                    if let Some(m) = g.member_mut(&args.member_id) {
                        m.heartbeat_deadline_ms = now + i64::from(m.session_timeout_ms);
                    }
                    return done(g, &args.member_id);
                }
                GroupState::Empty | GroupState::Dead => return SyncResult::error(UNKNOWN_MEMBER_ID),
                GroupState::CompletingRebalance => {}
            }
            let (sender, receiver) = oneshot::channel();
            let is_leader = g.leader.as_deref() == Some(args.member_id.as_str());
            if let Some(m) = g.member_mut(&args.member_id) {
                m.heartbeat_deadline_ms = now + i64::from(m.session_timeout_ms);
                if let Some(old) = m.sync_waiter.replace(sender) {
                    let _ = old.send(SyncResult::error(COORDINATOR_NOT_AVAILABLE));
                }
            }
            let leader_value = if is_leader {
                let mut assignments: HashMap<String, Bytes> = args.assignments.into_iter().collect();
                for m in &mut g.members {
                    m.assignment = assignments.remove(&m.id).unwrap_or_default();
                }
                // Written as Stable: that is what it becomes once durable.
                let mut value = g.stored_value();
                let protocol = g.protocol.clone().unwrap_or_default();
                value.members = g.members.iter().map(|m| m.stored(&protocol)).collect();
                Some((g.generation, value))
            } else {
                None
            };
            (receiver, leader_value)
        };
        if let Some((generation, value)) = leader_value {
            let key = RecordKey::Group { group: args.group_id.clone() };
            let written = self.write(&args.group_id, vec![(key, Some(RecordValue::Group(value)))]).await;
            let mut groups = self.groups.borrow_mut();
            if let Some(g) = groups.get_mut(&args.group_id) {
                if g.state == GroupState::CompletingRebalance && g.generation == generation {
                    match written {
                        Ok(_) => {
                            g.set_state(GroupState::Stable, now_ms());
                            let results: Vec<(String, SyncResult)> = g
                                .members
                                .iter()
                                .map(|m| {
                                    (
                                        m.id.clone(),
                                        SyncResult {
                                            error: NONE,
                                            protocol_type: g.protocol_type.clone(),
                                            protocol: g.protocol.clone(),
                                            assignment: m.assignment.clone(),
                                        },
                                    )
                                })
                                .collect();
                            for (id, result) in results {
                                if let Some(w) = g.member_mut(&id).and_then(|m| m.sync_waiter.take()) {
                                    let _ = w.send(result);
                                }
                            }
                            info!(group = %g.id, generation, members = g.members.len(), "group is stable");
                        }
                        Err(code) => {
                            for m in &mut g.members {
                                m.assignment = Bytes::new();
                                if let Some(w) = m.sync_waiter.take() {
                                    let _ = w.send(SyncResult::error(code));
                                }
                            }
                            g.prepare_rebalance(now_ms(), 0, "group metadata could not be written");
                        }
                    }
                }
            }
        }
        receiver.await.unwrap_or_else(|_| SyncResult::error(COORDINATOR_NOT_AVAILABLE))
    }

    // ---- Heartbeat and LeaveGroup ----

    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str, instance_id: Option<&str>) -> i16 {
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id) else { return UNKNOWN_MEMBER_ID };
        if g.fenced(member_id, instance_id) {
            return FENCED_INSTANCE_ID;
        }
        match g.state {
            GroupState::Dead => return COORDINATOR_NOT_AVAILABLE,
            GroupState::Empty => return UNKNOWN_MEMBER_ID,
            _ => {}
        }
        let generation_now = g.generation;
        let state = g.state;
        let Some(m) = g.member_mut(member_id) else { return UNKNOWN_MEMBER_ID };
        if generation != generation_now {
            return ILLEGAL_GENERATION;
        }
        m.heartbeat_deadline_ms = now + i64::from(m.session_timeout_ms);
        if state == GroupState::PreparingRebalance {
            REBALANCE_IN_PROGRESS
        } else {
            NONE
        }
    }

    /// Removes members (member id, instance id); returns an error per member.
    pub fn leave(self: &Rc<Self>, group_id: &str, members: Vec<(String, Option<String>)>) -> Result<Vec<i16>, i16> {
        let now = now_ms();
        let results = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group_id) else { return Err(UNKNOWN_MEMBER_ID) };
            if g.state == GroupState::Dead {
                return Err(COORDINATOR_NOT_AVAILABLE);
            }
            let mut results = Vec::with_capacity(members.len());
            let mut removed = false;
            for (member_id, instance_id) in members {
                let target = if member_id.is_empty() {
                    instance_id.as_ref().and_then(|i| g.static_members.get(i).cloned())
                } else if g.fenced(&member_id, instance_id.as_deref()) {
                    results.push(FENCED_INSTANCE_ID);
                    continue;
                } else {
                    Some(member_id.clone())
                };
                match target {
                    Some(id) if g.member(&id).is_some() => {
                        info!(group = %group_id, member = %id, "member left");
                        g.remove_member(&id);
                        removed = true;
                        results.push(NONE);
                    }
                    Some(id) if g.pending.remove(&id).is_some() => {
                        results.push(NONE);
                        removed = true;
                    }
                    _ => results.push(UNKNOWN_MEMBER_ID),
                }
            }
            if removed {
                g.after_member_removed(now, "a member left");
            }
            results
        };
        self.persist_if_dirty(group_id);
        Ok(results)
    }

    // ---- Listing, describing, deleting ----

    pub fn list(&self) -> Vec<GroupListing> {
        self.groups
            .borrow()
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.modern.as_ref().map_or(g.state.name(), |m| m.state_name()),
                group_type: if g.modern.is_some() { "consumer" } else { "classic" },
            })
            .collect()
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let groups = self.groups.borrow();
        let Some(g) = groups.get(group_id) else {
            return GroupDescription {
                group_id: group_id.to_owned(),
                state: None,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            };
        };
        if let Some(modern) = &g.modern {
            return GroupDescription {
                group_id: g.id.clone(),
                state: Some(modern.state_name()),
                protocol_type: "consumer".to_owned(),
                protocol: modern.assignor().to_owned(),
                members: modern
                    .members
                    .values()
                    .map(|m| MemberDescription {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: encode_subscription(&m.subscribed),
                        assignment: encode_assignment(&m.assigned),
                    })
                    .collect(),
            };
        }
        let stable = g.state == GroupState::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        GroupDescription {
            group_id: g.id.clone(),
            state: Some(g.state.name()),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable { protocol.clone() } else { String::new() },
            members: g
                .members
                .iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable { m.metadata(&protocol) } else { Bytes::new() },
                    assignment: if stable { m.assignment.clone() } else { Bytes::new() },
                })
                .collect(),
        }
    }

    /// DeleteGroups for one group: only an empty group can go.
    pub async fn delete_group(self: &Rc<Self>, group_id: &str) -> i16 {
        let records = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group_id) else { return GROUP_ID_NOT_FOUND };
            match g.state {
                GroupState::Empty if g.pending.is_empty() => {}
                GroupState::Dead => return GROUP_ID_NOT_FOUND,
                _ => return NON_EMPTY_GROUP,
            }
            g.state = GroupState::Dead;
            let mut records: Vec<(RecordKey, Option<RecordValue>)> = g
                .offsets
                .keys()
                .map(|(t, p)| (RecordKey::Offset { group: group_id.to_owned(), topic: t.clone(), partition: *p }, None))
                .collect();
            records.push((RecordKey::Group { group: group_id.to_owned() }, None));
            records
        };
        let written = self.write(group_id, records).await;
        let mut groups = self.groups.borrow_mut();
        match written {
            Ok(_permit) => {
                groups.remove(group_id);
                info!(group = %group_id, "group deleted");
                NONE
            }
            Err(code) => {
                if let Some(g) = groups.get_mut(group_id) {
                    g.state = GroupState::Empty;
                }
                code
            }
        }
    }

    // ---- KIP-848 ConsumerGroupHeartbeat ----

    /// One ConsumerGroupHeartbeat; also returns the heartbeat interval to give.
    pub fn consumer_heartbeat(self: &Rc<Self>, group_id: &str, args: HeartbeatArgs) -> (HeartbeatResult, i32) {
        let configured = self.config.consumer_heartbeat_interval_ms;
        let result = self.consumer_heartbeat_inner(group_id, args);
        let now = now_ms();
        let interval = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group_id) else { return (result, configured) };
            let Some(modern) = g.modern.as_mut() else { return (result, configured) };
            if std::mem::take(&mut modern.dirty) {
                g.dirty = true;
            }
            modern.heartbeat_interval_ms(configured, now)
        };
        // Written in the background: a member whose change is lost in a
        // crash is fenced and rejoins, as after a coordinator move.
        self.persist_if_dirty(group_id);
        (result, interval)
    }

    fn consumer_heartbeat_inner(&self, group_id: &str, args: HeartbeatArgs) -> HeartbeatResult {
        let now = now_ms();
        let topics = &*self.topics;
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(group_id) {
            if args.epoch != 0 {
                return HeartbeatResult::error(UNKNOWN_MEMBER_ID, "unknown group", &args.member_id);
            }
            if groups.len() >= limits::shard_groups_max {
                warn!(group = %group_id, "refusing a new group: this shard coordinates shard_groups_max groups");
                return HeartbeatResult::error(COORDINATOR_NOT_AVAILABLE, "too many groups", &args.member_id);
            }
            groups.insert(group_id.to_owned(), Group::new(group_id.to_owned(), now));
        }
        let g = groups.get_mut(group_id).expect("inserted above");
        if g.state == GroupState::Dead {
            return HeartbeatResult::error(COORDINATOR_NOT_AVAILABLE, "group is being deleted", &args.member_id);
        }
        if g.modern.is_none() {
            if !g.members.is_empty() || !g.pending.is_empty() {
                return HeartbeatResult::error(
                    INCONSISTENT_GROUP_PROTOCOL,
                    "the group uses the classic protocol; stop its members first",
                    &args.member_id,
                );
            }
            g.modern = Some(Box::default());
            g.protocol_type = Some("consumer".to_owned());
            g.protocol = None;
        }
        let modern = g.modern.as_mut().expect("set above");
        let before = modern.epoch;
        let result = modern.heartbeat(
            args,
            || self.new_member_id("consumer"),
            now,
            self.config.consumer_session_timeout_ms,
            topics,
        );
        if modern.epoch != before {
            info!(group = %g.id, epoch = modern.epoch, members = modern.members.len(), "consumer group epoch moved");
        }
        let state = if modern.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        if g.state != state {
            g.set_state(state, now);
        }
        result
    }

    /// ConsumerGroupDescribe for one group; None when it is not a KIP-848 group.
    pub fn describe_consumer_group(&self, group_id: &str) -> Option<ConsumerGroupDescription> {
        let groups = self.groups.borrow();
        let g = groups.get(group_id)?;
        let modern = g.modern.as_ref()?;
        Some(ConsumerGroupDescription {
            state: modern.state_name(),
            epoch: modern.epoch,
            assignment_epoch: modern.assignment_epoch,
            assignor: modern.assignor().to_owned(),
            members: modern
                .members
                .values()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed: m.subscribed.clone(),
                    assigned: m.assigned.iter().cloned().collect(),
                    target: modern.target.get(&m.id).map(|t| t.iter().cloned().collect()).unwrap_or_default(),
                })
                .collect(),
        })
    }

    // ---- Offsets ----

    pub async fn commit(self: &Rc<Self>, args: CommitArgs) -> CommitResult {
        let now = now_ms();
        let all =
            |code: i16| -> CommitResult { args.offsets.iter().map(|o| (o.topic.clone(), o.partition, code)).collect() };
        // An empty group id is valid here, as in Kafka (only JoinGroup refuses it).
        {
            let mut groups = self.groups.borrow_mut();
            match groups.get_mut(&args.group_id) {
                None if args.generation < 0 => {
                    if groups.len() >= limits::shard_groups_max {
                        warn!(group = %args.group_id, "refusing a new group: this shard coordinates shard_groups_max groups");
                        return all(COORDINATOR_NOT_AVAILABLE);
                    }
                    // A group that only stores offsets (assign() consumers, tools).
                    groups.insert(args.group_id.clone(), Group::new(args.group_id.clone(), now));
                }
                None => return all(ILLEGAL_GENERATION),
                Some(g) if g.modern.is_some() => {
                    let modern = g.modern.as_ref().expect("checked");
                    let error = match modern.members.get(&args.member_id) {
                        None if args.generation < 0 && args.member_id.is_empty() && modern.members.is_empty() => NONE,
                        None => UNKNOWN_MEMBER_ID,
                        Some(m) if args.generation > m.epoch => FENCED_MEMBER_EPOCH,
                        Some(m) if args.generation < m.epoch => STALE_MEMBER_EPOCH,
                        Some(_) => NONE,
                    };
                    if error != NONE {
                        return all(error);
                    }
                }
                Some(g) => {
                    let error = if g.fenced(&args.member_id, args.instance_id.as_deref()) {
                        FENCED_INSTANCE_ID
                    } else if g.state == GroupState::Dead {
                        COORDINATOR_NOT_AVAILABLE
                    } else if args.generation < 0 && g.state == GroupState::Empty {
                        NONE
                    } else if g.state == GroupState::CompletingRebalance {
                        REBALANCE_IN_PROGRESS
                    } else if g.member(&args.member_id).is_none() {
                        UNKNOWN_MEMBER_ID
                    } else if args.generation != g.generation {
                        ILLEGAL_GENERATION
                    } else {
                        NONE
                    };
                    if error != NONE {
                        return all(error);
                    }
                    if let Some(m) = g.member_mut(&args.member_id) {
                        m.heartbeat_deadline_ms = now + i64::from(m.session_timeout_ms);
                    }
                }
            }
        }
        let mut results = Vec::with_capacity(args.offsets.len());
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for o in args.offsets {
            let known = self.topics.partitions(&o.topic).is_some_and(|count| o.partition >= 0 && o.partition < count);
            let code = if !known {
                UNKNOWN_TOPIC_OR_PARTITION
            } else if o.metadata.as_ref().is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes) {
                OFFSET_METADATA_TOO_LARGE
            } else {
                NONE
            };
            results.push((o.topic.clone(), o.partition, code));
            if code == NONE {
                let value = OffsetValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata,
                    commit_timestamp_ms: now,
                };
                let key =
                    RecordKey::Offset { group: args.group_id.clone(), topic: o.topic.clone(), partition: o.partition };
                records.push((key, Some(RecordValue::Offset(value.clone()))));
                accepted.push(((o.topic, o.partition), value));
            }
        }
        if records.is_empty() {
            return results;
        }
        match self.write(&args.group_id, records).await {
            Ok(_permit) => {
                let mut groups = self.groups.borrow_mut();
                match groups.get_mut(&args.group_id) {
                    Some(g) if g.state != GroupState::Dead => g.offsets.extend(accepted),
                    _ => {
                        // Deleted while the write ran: the deletion's tombstones came after.
                        for r in &mut results {
                            if r.2 == NONE {
                                r.2 = COORDINATOR_NOT_AVAILABLE;
                            }
                        }
                    }
                }
            }
            Err(code) => {
                for r in &mut results {
                    if r.2 == NONE {
                        r.2 = code;
                    }
                }
            }
        }
        results
    }

    /// OffsetFetch for one group. `topics` None: every committed offset.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        let groups = self.groups.borrow();
        let g = groups.get(group_id).filter(|g| g.state != GroupState::Dead);
        let unknown = |partition: i32| FetchedOffset {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: Some(String::new()),
            error: NONE,
        };
        let found = |partition: i32, v: &OffsetValue| FetchedOffset {
            partition,
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: Some(v.metadata.clone().unwrap_or_default()),
            error: NONE,
        };
        match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let rows = partitions
                        .into_iter()
                        .map(|p| match g.and_then(|g| g.offsets.get(&(topic.clone(), p))) {
                            Some(v) => found(p, v),
                            None => unknown(p),
                        })
                        .collect();
                    (topic, rows)
                })
                .collect(),
            None => {
                let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
                if let Some(g) = g {
                    for ((topic, p), v) in &g.offsets {
                        match out.last_mut() {
                            Some((t, rows)) if t == topic => rows.push(found(*p, v)),
                            _ => out.push((topic.clone(), vec![found(*p, v)])),
                        }
                    }
                }
                out
            }
        }
    }

    /// OffsetDelete: Err is a group-level error; Ok has one per partition.
    pub async fn delete_offsets(
        self: &Rc<Self>,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<i16>, i16> {
        let (codes, records) = {
            let groups = self.groups.borrow();
            let Some(g) = groups.get(group_id).filter(|g| g.state != GroupState::Dead) else {
                return Err(GROUP_ID_NOT_FOUND);
            };
            let subscribed = if g.state == GroupState::Empty {
                Some(BTreeSet::new())
            } else if g.protocol_type.as_deref() == Some("consumer") {
                g.subscribed_topics()
            } else {
                return Err(NON_EMPTY_GROUP);
            };
            let mut codes = Vec::with_capacity(partitions.len());
            let mut records = Vec::new();
            for (topic, p) in &partitions {
                let busy = !subscribed.as_ref().is_some_and(|s| !s.contains(topic));
                if busy {
                    codes.push(GROUP_SUBSCRIBED_TO_TOPIC);
                } else {
                    codes.push(NONE);
                    if g.offsets.contains_key(&(topic.clone(), *p)) {
                        records.push((
                            RecordKey::Offset { group: group_id.to_owned(), topic: topic.clone(), partition: *p },
                            None,
                        ));
                    }
                }
            }
            (codes, records)
        };
        if records.is_empty() {
            return Ok(codes);
        }
        let keys: Vec<(String, i32)> = records
            .iter()
            .filter_map(|(k, _)| match k {
                RecordKey::Offset { topic, partition, .. } => Some((topic.clone(), *partition)),
                RecordKey::Group { .. } => None,
            })
            .collect();
        let _permit = self.write(group_id, records).await?;
        if let Some(g) = self.groups.borrow_mut().get_mut(group_id) {
            for k in &keys {
                g.offsets.remove(k);
            }
        }
        Ok(codes)
    }

    /// A topic was deleted: its committed offsets go too.
    pub async fn topic_deleted(self: &Rc<Self>, topic: &str) {
        let plan: Vec<(String, Vec<i32>)> = self
            .groups
            .borrow()
            .values()
            .filter_map(|g| {
                let parts: Vec<i32> = g.offsets.keys().filter(|(t, _)| t == topic).map(|(_, p)| *p).collect();
                (!parts.is_empty()).then(|| (g.id.clone(), parts))
            })
            .collect();
        for (group_id, parts) in plan {
            let records = parts
                .iter()
                .map(|p| (RecordKey::Offset { group: group_id.clone(), topic: topic.to_owned(), partition: *p }, None))
                .collect();
            match self.write(&group_id, records).await {
                Ok(_permit) => {
                    if let Some(g) = self.groups.borrow_mut().get_mut(&group_id) {
                        g.offsets.retain(|(t, _), _| t != topic);
                    }
                }
                Err(code) => warn!(group = %group_id, topic, code, "could not remove the offsets of a deleted topic"),
            }
        }
    }
}

/// Encodes records into uncompressed batches of at most
/// `offsets_log_batch_bytes_max` bytes of records each (a larger record
/// gets a batch of its own). Err: the size of a record no batch can hold.
fn build_batches(records: &[(RecordKey, Option<RecordValue>)]) -> Result<Vec<Vec<u8>>, usize> {
    let now = now_ms();
    let mut batches = Vec::new();
    let mut builder = BatchBuilder::new(now);
    let mut in_batch = 0usize;
    let mut bytes = 0usize;
    for (key, value) in records {
        let key = store::encode_key(key);
        let value = value.as_ref().map(store::encode_value);
        let size = key.len() + value.as_ref().map_or(0, Vec::len) + 32;
        if size > limits::offsets_log_record_bytes_max {
            return Err(size);
        }
        if in_batch > 0 && bytes + size > limits::offsets_log_batch_bytes_max {
            batches.push(builder.build());
            builder = BatchBuilder::new(now);
            in_batch = 0;
            bytes = 0;
        }
        builder.push(&Record { key: Some(&key), value: value.as_deref(), headers: &[], timestamp_delta: 0 });
        in_batch += 1;
        bytes += size;
    }
    if in_batch > 0 {
        batches.push(builder.build());
    }
    Ok(batches)
}

/// ConsumerProtocolSubscription v0 for `topics` (how DescribeGroups shows
/// a KIP-848 member's subscription).
fn encode_subscription(topics: &[String]) -> Bytes {
    let mut out = vec![0u8, 0];
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(out)
}

/// ConsumerProtocolAssignment v0 for `assigned`.
fn encode_assignment(assigned: &BTreeSet<consumer::Tp>) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in assigned {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let mut out = vec![0u8, 0];
    out.extend_from_slice(&(by_topic.len() as i32).to_be_bytes());
    for (t, ps) in by_topic {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(out)
}
