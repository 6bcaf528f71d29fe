//! ListGroups, DescribeGroups and DeleteGroups.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use bytes::Bytes;
use tracing::info;

use super::{Coordinator, GroupDescription, GroupListing, GroupState, MemberDescription};
use crate::groups::consumer;
use crate::groups::store::{RecordKey, RecordValue};
use ringstream_protocol::error_code::*;

impl Coordinator {
    pub fn list(&self) -> Vec<GroupListing> {
        self.groups
            .borrow()
            .values()
            .filter(|g| g.state != GroupState::Dead && self.serves(self.partition_of(&g.id)))
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
            g.mark_dead();
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
            Err(error) => {
                if let Some(g) = groups.get_mut(group_id) {
                    g.undo_dead();
                }
                error.code()
            }
        }
    }
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
