//! A classic group's state machine: its members, the rebalance steps and
//! the transitions between its states. Pure state, no I/O and no storage:
//! callers pass the time in, write the group's records themselves, and the
//! members waiting in JoinGroup or SyncGroup are answered on their oneshots.
//!
//! The transitions, as this coordinator makes them (the full table is
//! `GroupState::may_become`; `Group::set_state` checks every move against
//! it in debug builds):
//!
//! - Empty → PreparingRebalance: a first member joins.
//! - PreparingRebalance → CompletingRebalance: every member joined (or the
//!   rebalance timeout passed); → Empty: no member is left.
//! - CompletingRebalance → Stable: the leader's assignment is durable.
//! - CompletingRebalance | Stable → PreparingRebalance: a member joins,
//!   leaves or changes its metadata; → Empty: the last member goes.
//! - Empty → Dead while DeleteGroups writes the tombstones (→ Empty again if
//!   they cannot be written).
//! - A KIP-848 group is Empty or Stable, by whether it has members.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use futures_channel::oneshot;
use tracing::info;

use super::{JoinArgs, JoinResult, JoinedMember, SyncResult};
use crate::groups::consumer;
use crate::groups::store::{GroupValue, OffsetValue, RecordValue, StoredMember};
use ringstream_protocol::error_code::*;

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

    /// Whether the coordinator ever moves a group from `self` to `to`
    /// (`modern`: a KIP-848 group). Exactly the transitions the code makes:
    /// Kafka's classic table, less the ones it never takes (nothing but an
    /// Empty group is deleted, so only Empty → Dead), plus those marked below.
    /// No state moves to itself.
    pub fn may_become(self, to: GroupState, modern: bool) -> bool {
        use GroupState::*;
        match (self, to) {
            // A member joins, leaves, or rejoins with new metadata.
            (Empty | CompletingRebalance | Stable, PreparingRebalance) => true,
            // The join phase completes, with members or without any.
            (PreparingRebalance, CompletingRebalance | Empty) => true,
            // The leader's assignment is durable.
            (CompletingRebalance, Stable) => true,
            // Not in Kafka's table (Kafka rebalances first): when the last
            // member leaves or expires, the group empties at once. A KIP-848
            // group whose last member goes takes this step too.
            (CompletingRebalance | Stable, Empty) => true,
            // DeleteGroups, only ever of an Empty group.
            (Empty, Dead) => true,
            // Not in Kafka's table (Dead is final there): a deletion whose
            // tombstones cannot be written puts the group back. The ticker
            // also re-derives an empty KIP-848 group's state as Empty while
            // its deletion is being written.
            (Dead, Empty) => true,
            // KIP-848 groups only show Empty or Stable (by whether they have
            // members); a classic group still in its initial rebalance delay
            // after its members left can become one.
            (Empty | PreparingRebalance, Stable) => modern,
            _ => false,
        }
    }
}

pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout_ms: i32,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) join_waiter: Option<oneshot::Sender<JoinResult>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncResult>>,
    pub(super) heartbeat_deadline_ms: i64,
}

impl Member {
    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
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

    pub(super) fn fail_waiters(&mut self, error: i16) {
        if let Some(w) = self.join_waiter.take() {
            let _ = w.send(JoinResult::error(error, &self.id));
        }
        if let Some(w) = self.sync_waiter.take() {
            let _ = w.send(SyncResult::error(error));
        }
    }
}

pub(super) struct Group {
    pub(super) id: String,
    pub(super) state: GroupState,
    pub(super) state_since_ms: i64,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) generation: i32,
    pub(super) leader: Option<String>,
    /// In join order (a BTreeMap by id would make the leader arbitrary).
    pub(super) members: Vec<Member>,
    /// group.instance.id → member id.
    pub(super) static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their deadline.
    pub(super) pending: HashMap<String, i64>,
    pub(super) offsets: BTreeMap<(String, i32), OffsetValue>,
    pub(super) rebalance_deadline_ms: i64,
    /// While the first members of an empty group gather: (until, budget left).
    pub(super) initial_delay: Option<(i64, i64)>,
    pub(super) sync_deadline_ms: i64,
    /// Group metadata changed and must be written.
    pub(super) dirty: bool,
    /// Some: a KIP-848 consumer group (the classic member fields stay empty).
    pub(super) modern: Option<Box<consumer::ConsumerGroup>>,
}

impl Group {
    pub(super) fn new(id: String, now: i64) -> Group {
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

    pub(super) fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub(super) fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    /// Moves the group to `state` (since `now`); the move must be one the
    /// coordinator makes (`GroupState::may_become`).
    pub(super) fn set_state(&mut self, state: GroupState, now: i64) {
        debug_assert!(
            self.state.may_become(state, self.modern.is_some()),
            "group {}: illegal state transition {:?} -> {:?}",
            self.id,
            self.state,
            state
        );
        self.state = state;
        self.state_since_ms = now;
    }

    /// DeleteGroups: the group is Dead while its tombstones are written.
    /// The state's timestamp stays: the group comes back if they cannot be.
    pub(super) fn mark_dead(&mut self) {
        debug_assert!(
            self.state.may_become(GroupState::Dead, self.modern.is_some()),
            "group {}: illegal state transition {:?} -> Dead",
            self.id,
            self.state
        );
        self.state = GroupState::Dead;
    }

    /// The deletion's tombstones could not be written: the group is Empty
    /// again, as it was (its state's timestamp unchanged).
    pub(super) fn undo_dead(&mut self) {
        // Dead, unless the ticker already re-derived a KIP-848 group's
        // state from its members while the write ran (see `may_become`):
        // the group is set Empty regardless, as it always was.
        debug_assert!(
            self.state == GroupState::Dead || self.modern.is_some(),
            "group {}: a failed deletion found it {:?}, not Dead",
            self.id,
            self.state
        );
        self.state = GroupState::Empty;
    }

    /// FENCED_INSTANCE_ID when `instance_id` belongs to another member.
    pub(super) fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id.and_then(|i| self.static_members.get(i)).is_some_and(|owner| owner != member_id)
    }

    /// Protocols every member but `except` supports, in the order the first
    /// such member prefers them.
    pub(super) fn common_protocols(&self, except: &str) -> Option<Vec<String>> {
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

    pub(super) fn join_response(&self, member_id: &str, skip_assignment: bool) -> JoinResult {
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
    pub(super) fn prepare_rebalance(&mut self, now: i64, initial_delay_ms: i64, reason: &str) {
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
    pub(super) fn maybe_complete_join(&mut self, now: i64, force: bool) {
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

    pub(super) fn remove_member(&mut self, id: &str) {
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
    pub(super) fn after_member_removed(&mut self, now: i64, reason: &str) {
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
    pub(super) fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
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
    pub(super) fn record_value(&self) -> RecordValue {
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

    /// A new member joins: it waits in JoinGroup for the rebalance this
    /// starts, or joins the one running.
    pub(super) fn add_member(
        &mut self,
        id: String,
        args: JoinArgs,
        now: i64,
        initial_delay: i64,
    ) -> oneshot::Receiver<JoinResult> {
        let (sender, receiver) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(args.protocol_type.clone());
        }
        self.members.push(Member {
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
        match self.state {
            GroupState::PreparingRebalance => {
                self.extend_initial_delay(now, initial_delay);
                self.rebalance_deadline_ms = self.rebalance_deadline_ms.max(now + self.max_rebalance_timeout());
            }
            _ => self.prepare_rebalance(now, initial_delay, "a member joined"),
        }
        self.maybe_complete_join(now, false);
        receiver
    }

    /// A member already in the group calls JoinGroup again.
    pub(super) fn join_known(&mut self, args: JoinArgs, now: i64) -> oneshot::Receiver<JoinResult> {
        let (sender, receiver) = oneshot::channel();
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(args.member_id.as_str());
        let Some(m) = self.member_mut(&args.member_id) else {
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
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now, false),
            GroupState::CompletingRebalance if same => {
                let response = self.join_response(&args.member_id, false);
                if let Some(w) = self.member_mut(&args.member_id).and_then(|m| m.join_waiter.take()) {
                    let _ = w.send(response);
                }
            }
            GroupState::Stable if !is_leader && same_selected => {
                let response = self.join_response(&args.member_id, false);
                if let Some(w) = self.member_mut(&args.member_id).and_then(|m| m.join_waiter.take()) {
                    let _ = w.send(response);
                }
            }
            _ => {
                self.prepare_rebalance(now, 0, "a member rejoined with new metadata");
                self.maybe_complete_join(now, false);
            }
        }
        receiver
    }

    /// The leader's SyncGroup: each member gets its assignment from it
    /// (none if it has none). Returns the group's record to write: as it
    /// will be once Stable.
    pub(super) fn assign(&mut self, assignments: Vec<(String, Bytes)>) -> GroupValue {
        let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
        for m in &mut self.members {
            m.assignment = assignments.remove(&m.id).unwrap_or_default();
        }
        // Written as Stable: that is what it becomes once durable.
        let mut value = self.stored_value();
        let protocol = self.protocol.clone().unwrap_or_default();
        value.members = self.members.iter().map(|m| m.stored(&protocol)).collect();
        value
    }

    /// The leader's assignment is durable: the group is Stable and the
    /// members waiting in SyncGroup get their assignments.
    pub(super) fn complete_sync(&mut self, now: i64) {
        self.set_state(GroupState::Stable, now);
        let results: Vec<(String, SyncResult)> = self
            .members
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    SyncResult {
                        error: NONE,
                        protocol_type: self.protocol_type.clone(),
                        protocol: self.protocol.clone(),
                        assignment: m.assignment.clone(),
                    },
                )
            })
            .collect();
        for (id, result) in results {
            if let Some(w) = self.member_mut(&id).and_then(|m| m.sync_waiter.take()) {
                let _ = w.send(result);
            }
        }
        info!(group = %self.id, generation = self.generation, members = self.members.len(), "group is stable");
    }

    /// The leader's assignment could not be written (`code`): the members
    /// waiting in SyncGroup get the error, and the group rebalances.
    pub(super) fn fail_sync(&mut self, code: i16, now: i64) {
        for m in &mut self.members {
            m.assignment = Bytes::new();
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(code));
            }
        }
        self.prepare_rebalance(now, 0, "group metadata could not be written");
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

#[cfg(test)]
mod tests {
    use super::*;
    use GroupState::*;

    const states: [GroupState; 5] = [Empty, PreparingRebalance, CompletingRebalance, Stable, Dead];
    const session_ms: i32 = 10_000;
    const rebalance_ms: i32 = 30_000;

    fn join_args(member_id: &str, protocols: &[(&str, &[u8])]) -> JoinArgs {
        JoinArgs {
            group_id: "g".to_owned(),
            member_id: member_id.to_owned(),
            instance_id: None,
            protocol_type: "consumer".to_owned(),
            protocols: protocols.iter().map(|(name, m)| ((*name).to_owned(), Bytes::copy_from_slice(m))).collect(),
            session_timeout_ms: session_ms,
            rebalance_timeout_ms: rebalance_ms,
            client_id: "client".to_owned(),
            client_host: "/127.0.0.1".to_owned(),
            require_known_member_id: true,
        }
    }

    /// The JoinGroup answer a member got (panics if it is still waiting).
    fn answered(receiver: &mut oneshot::Receiver<JoinResult>) -> JoinResult {
        receiver.try_recv().expect("waiter dropped").expect("JoinGroup not answered yet")
    }

    fn waiting(receiver: &mut oneshot::Receiver<JoinResult>) -> bool {
        matches!(receiver.try_recv(), Ok(None))
    }

    /// A group of `ids` that completed its join (no initial delay) and
    /// whose leader's assignment is in place: Stable.
    fn stable_group(ids: &[&str], now: i64) -> Group {
        let mut g = Group::new("g".to_owned(), now);
        let mut receivers = Vec::new();
        for id in ids {
            receivers.push(g.add_member((*id).to_owned(), join_args("", &[("range", b"m")]), now, 0));
            // Members already answered rejoin, as clients do on REBALANCE_IN_PROGRESS.
            for (other, receiver) in ids.iter().zip(&mut receivers) {
                if other != id && receiver.try_recv().is_ok_and(|r| r.is_some()) {
                    *receiver = g.join_known(join_args(other, &[("range", b"m")]), now);
                }
            }
        }
        assert_eq!(g.state, CompletingRebalance);
        g.assign(ids.iter().map(|id| ((*id).to_owned(), Bytes::from(format!("to {id}")))).collect());
        g.complete_sync(now);
        assert_eq!(g.state, Stable);
        g
    }

    #[test]
    fn first_join_moves_empty_to_preparing_rebalance() {
        let mut g = Group::new("g".to_owned(), 1_000);
        assert_eq!(g.state, Empty);
        let mut a = g.add_member("a".to_owned(), join_args("", &[("range", b"a")]), 2_000, 3_000);
        assert_eq!(g.state, PreparingRebalance);
        assert_eq!(g.state_since_ms, 2_000);
        assert_eq!(g.generation, 0);
        assert_eq!(g.protocol_type.as_deref(), Some("consumer"));
        // The initial delay holds the join open for more members.
        assert_eq!(g.initial_delay, Some((5_000, i64::from(rebalance_ms) - 3_000)));
        assert_eq!(g.rebalance_deadline_ms, 2_000 + i64::from(rebalance_ms));
        assert!(waiting(&mut a));
    }

    #[test]
    fn completing_the_join_moves_to_completing_rebalance() {
        let mut g = Group::new("g".to_owned(), 0);
        let mut a = g.add_member("a".to_owned(), join_args("", &[("range", b"a"), ("roundrobin", b"a2")]), 0, 3_000);
        let mut b = g.add_member("b".to_owned(), join_args("", &[("roundrobin", b"b2"), ("range", b"b")]), 100, 3_000);
        // Everyone joined, but the initial delay still runs.
        assert_eq!(g.state, PreparingRebalance);
        assert!(waiting(&mut a) && waiting(&mut b));

        // The ticker ends the delay once it passed.
        g.initial_delay = None;
        g.maybe_complete_join(3_100, false);
        assert_eq!(g.state, CompletingRebalance);
        assert_eq!(g.state_since_ms, 3_100);
        assert_eq!(g.generation, 1);
        assert_eq!(g.leader.as_deref(), Some("a"), "the first member to join leads");
        // One vote each: the tie goes to the first member's preference.
        assert_eq!(g.protocol.as_deref(), Some("range"));
        assert_eq!(g.sync_deadline_ms, 3_100 + i64::from(rebalance_ms));

        let leader = answered(&mut a);
        assert_eq!((leader.error, leader.generation, leader.leader.as_str()), (NONE, 1, "a"));
        let metadata: Vec<(&str, &[u8])> =
            leader.members.iter().map(|m| (m.member_id.as_str(), m.metadata.as_ref())).collect();
        assert_eq!(metadata, [("a", &b"a"[..]), ("b", &b"b"[..])]);
        let follower = answered(&mut b);
        assert_eq!((follower.error, follower.generation, follower.leader.as_str()), (NONE, 1, "a"));
        assert!(follower.members.is_empty(), "only the leader gets the members");
    }

    #[test]
    fn rebalance_timeout_completes_the_join_without_the_silent() {
        let mut g = stable_group(&["a", "b"], 0);
        let generation = g.generation;
        let mut a = g.join_known(join_args("a", &[("range", b"new")]), 1_000);
        assert_eq!(g.state, PreparingRebalance, "new metadata starts a rebalance");
        g.maybe_complete_join(2_000, false);
        assert_eq!(g.state, PreparingRebalance, "b has not rejoined yet");
        g.maybe_complete_join(1_000 + i64::from(rebalance_ms), true);
        assert_eq!(g.state, CompletingRebalance);
        assert!(g.member("b").is_none(), "b did not rejoin in time");
        assert_eq!(answered(&mut a).generation, generation + 1);
    }

    #[test]
    fn leader_assignment_moves_to_stable() {
        let mut g = Group::new("g".to_owned(), 0);
        let mut a = g.add_member("a".to_owned(), join_args("", &[("range", b"a")]), 0, 0);
        // Alone and no initial delay: the join completes at once.
        assert_eq!(g.state, CompletingRebalance);
        assert_eq!(answered(&mut a).generation, 1);

        // A second member rebalances the group; it completes once a rejoins.
        let mut b = g.add_member("b".to_owned(), join_args("", &[("range", b"b")]), 10, 0);
        assert_eq!(g.state, PreparingRebalance);
        assert!(waiting(&mut b));
        let mut a = g.join_known(join_args("a", &[("range", b"a")]), 20);
        assert_eq!(g.state, CompletingRebalance);
        assert_eq!(answered(&mut a).generation, 2);
        assert_eq!(answered(&mut b).generation, 2);

        // Both wait in SyncGroup; the leader's assignment is written first.
        let (a_tx, mut a_sync) = oneshot::channel();
        let (b_tx, mut b_sync) = oneshot::channel();
        g.member_mut("a").expect("a").sync_waiter = Some(a_tx);
        g.member_mut("b").expect("b").sync_waiter = Some(b_tx);
        let value = g.assign(vec![("a".to_owned(), Bytes::from("p0")), ("b".to_owned(), Bytes::from("p1"))]);
        assert_eq!(g.state, CompletingRebalance, "not Stable before the assignment is durable");
        assert_eq!(value.generation, 2);
        let stored: Vec<(&str, &[u8])> =
            value.members.iter().map(|m| (m.member_id.as_str(), m.assignment.as_ref())).collect();
        assert_eq!(stored, [("a", &b"p0"[..]), ("b", &b"p1"[..])]);

        g.complete_sync(30);
        assert_eq!(g.state, Stable);
        assert_eq!(g.state_since_ms, 30);
        let a_result = a_sync.try_recv().expect("waiter").expect("answered");
        let b_result = b_sync.try_recv().expect("waiter").expect("answered");
        assert_eq!((a_result.error, a_result.assignment), (NONE, Bytes::from("p0")));
        assert_eq!((b_result.error, b_result.assignment), (NONE, Bytes::from("p1")));
        assert_eq!(g.stored_value().members.len(), 2, "a Stable group's record holds its members");
    }

    #[test]
    fn failed_assignment_write_rebalances() {
        let mut g = Group::new("g".to_owned(), 0);
        let mut a = g.add_member("a".to_owned(), join_args("", &[("range", b"a")]), 0, 0);
        assert_eq!(answered(&mut a).generation, 1);
        let (tx, mut sync) = oneshot::channel();
        g.member_mut("a").expect("a").sync_waiter = Some(tx);
        g.assign(vec![("a".to_owned(), Bytes::from("p0"))]);
        g.fail_sync(COORDINATOR_NOT_AVAILABLE, 50);
        assert_eq!(g.state, PreparingRebalance);
        assert_eq!(sync.try_recv().expect("waiter").expect("answered").error, COORDINATOR_NOT_AVAILABLE);
        assert!(g.member("a").expect("a").assignment.is_empty());
    }

    #[test]
    fn removing_the_last_member_ends_empty() {
        let mut g = stable_group(&["a"], 0);
        assert_eq!(g.generation, 1);
        g.dirty = false;
        g.remove_member("a");
        g.after_member_removed(500, "a member left");
        assert_eq!(g.state, Empty);
        assert_eq!(g.state_since_ms, 500);
        assert_eq!(g.generation, 2);
        assert_eq!((g.protocol.as_deref(), g.leader.as_deref()), (None, None));
        assert!(g.members.is_empty());
        assert!(g.dirty, "an emptied group's metadata is written");
    }

    #[test]
    fn removing_members_one_by_one_rebalances_then_ends_empty() {
        let mut g = stable_group(&["a", "b"], 0);
        let generation = g.generation;
        g.remove_member("a");
        g.after_member_removed(100, "a member left");
        assert_eq!(g.state, PreparingRebalance, "b must rejoin");
        assert_eq!(g.leader.as_deref(), Some("b"), "leadership passes on");
        g.remove_member("b");
        g.after_member_removed(200, "a member left");
        assert_eq!(g.state, Empty);
        assert_eq!(g.generation, generation + 1, "the rebalance completed with no member");
        assert!(g.members.is_empty());
    }

    #[test]
    fn deletion_marks_dead_and_a_failed_one_restores_empty() {
        let mut g = Group::new("g".to_owned(), 7);
        g.mark_dead();
        assert_eq!(g.state, Dead);
        g.undo_dead();
        assert_eq!(g.state, Empty);
        assert_eq!(g.state_since_ms, 7, "deletion keeps the state's timestamp");
    }

    #[test]
    fn transition_table_is_exactly_what_the_coordinator_does() {
        let allowed = |modern: bool| -> Vec<(GroupState, GroupState)> {
            let mut out = Vec::new();
            for from in states {
                for to in states {
                    if from.may_become(to, modern) {
                        out.push((from, to));
                    }
                }
            }
            out
        };
        let classic = vec![
            (Empty, PreparingRebalance),
            (Empty, Dead),
            (PreparingRebalance, Empty),
            (PreparingRebalance, CompletingRebalance),
            (CompletingRebalance, Empty),
            (CompletingRebalance, PreparingRebalance),
            (CompletingRebalance, Stable),
            (Stable, Empty),
            (Stable, PreparingRebalance),
            (Dead, Empty),
        ];
        assert_eq!(allowed(false), classic);
        let mut modern = classic.clone();
        modern.extend([(Empty, Stable), (PreparingRebalance, Stable)]);
        let mut got = allowed(true);
        got.sort_by_key(|&(from, to)| (from as u8, to as u8));
        modern.sort_by_key(|&(from, to)| (from as u8, to as u8));
        assert_eq!(got, modern);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "illegal state transition Empty -> Stable")]
    fn illegal_transition_panics() {
        let mut g = Group::new("g".to_owned(), 0);
        g.set_state(Stable, 1);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "illegal state transition Stable -> Dead")]
    fn deleting_a_group_with_members_panics() {
        let mut g = stable_group(&["a"], 0);
        g.mark_dead();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "illegal state transition Dead -> PreparingRebalance")]
    fn a_dead_group_cannot_rebalance() {
        let mut g = Group::new("g".to_owned(), 0);
        g.mark_dead();
        g.prepare_rebalance(1, 0, "test");
    }
}
