//! The classic group protocol's calls: JoinGroup, SyncGroup, Heartbeat and
//! LeaveGroup. They validate the request against the group and drive its
//! state machine (`group.rs`); JoinGroup and SyncGroup then wait on the
//! oneshot their member holds until the rebalance step completes.

use std::rc::Rc;

use futures_channel::oneshot;
use tracing::{info, warn};

use super::GroupError;
use super::{Coordinator, Group, GroupState, JoinArgs, JoinResult, SyncArgs, SyncResult};
use crate::groups::store::{RecordKey, RecordValue};
use ringstream_core::clock::now_ms;
use ringstream_core::limits;
use ringstream_protocol::error_code::*;

/// A JoinGroup's answer now, or the rebalance to wait for.
enum JoinStep {
    Now(Box<JoinResult>),
    Wait(oneshot::Receiver<JoinResult>),
}

impl Coordinator {
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
                return JoinStep::Wait(g.join_known(args, now));
            }
            if !args.member_id.is_empty() {
                return fail(UNKNOWN_MEMBER_ID);
            }
            if g.members.len() >= self.config.max_size {
                return fail(GROUP_MAX_SIZE_REACHED);
            }
            let id = self.new_member_id(&args.client_id);
            g.static_members.insert(instance, id.clone());
            return JoinStep::Wait(g.add_member(id, args, now, initial_delay));
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
            return JoinStep::Wait(g.add_member(id, args, now, initial_delay));
        }
        if g.pending.remove(&args.member_id).is_some() {
            let id = args.member_id.clone();
            return JoinStep::Wait(g.add_member(id, args, now, initial_delay));
        }
        if g.member(&args.member_id).is_none() {
            return fail(UNKNOWN_MEMBER_ID);
        }
        JoinStep::Wait(g.join_known(args, now))
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
            let leader_value = if is_leader { Some((g.generation, g.assign(args.assignments))) } else { None };
            (receiver, leader_value)
        };
        if let Some((generation, value)) = leader_value {
            let key = RecordKey::Group { group: args.group_id.clone() };
            let written = self.write(&args.group_id, vec![(key, Some(RecordValue::Group(value)))]).await;
            let mut groups = self.groups.borrow_mut();
            if let Some(g) = groups.get_mut(&args.group_id) {
                if g.state == GroupState::CompletingRebalance && g.generation == generation {
                    match written {
                        Ok(_) => g.complete_sync(now_ms()),
                        Err(error) => g.fail_sync(error.code(), now_ms()),
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
    pub fn leave(
        self: &Rc<Self>,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<i16>, GroupError> {
        let now = now_ms();
        let results = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group_id) else { return Err(GroupError::UnknownMemberId) };
            if g.state == GroupState::Dead {
                return Err(GroupError::CoordinatorNotAvailable);
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
}
