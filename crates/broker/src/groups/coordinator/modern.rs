//! KIP-848 glue: ConsumerGroupHeartbeat and ConsumerGroupDescribe drive the
//! group's `consumer::ConsumerGroup` (pure state) and keep the classic
//! group's state (Empty or Stable) and durable record in step with it.

use std::rc::Rc;

use tracing::{info, warn};

use super::{ConsumerGroupDescription, ConsumerMemberDescription, Coordinator, Group, GroupState};
use crate::groups::consumer::{HeartbeatArgs, HeartbeatResult};
use ringstream_core::clock::now_ms;
use ringstream_core::limits;
use ringstream_protocol::error_code::*;

impl Coordinator {
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
}
