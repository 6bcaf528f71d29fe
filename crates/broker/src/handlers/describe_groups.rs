//! DescribeGroups (key 15), v0–v6: state, protocol and members of each
//! group; member metadata and assignments only while the group is Stable,
//! as Kafka. An unknown group is reported Dead (v6: with GROUP_ID_NOT_FOUND).

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::coordinator::GroupDescription;
use crate::groups::on_coordinator;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeGroups, min_version: 0, max_version: 6 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let describe: DescribeGroupsRequest = decode_body(&mut body, version, "DescribeGroups request")?;
    let correlation_id = request.header.correlation_id;
    let shard = broker.shard.clone();
    Ok(Box::pin(async move {
        let mut groups = Vec::with_capacity(describe.groups.len());
        for group in &describe.groups {
            let group_id = group.0.as_str().to_owned();
            let id = group_id.clone();
            let described = on_coordinator(&shard, &group_id, move |c| async move { c.describe(&id) }).await;
            groups.push(encode(&group_id, described, version));
        }
        respond(ApiKey::DescribeGroups, version, correlation_id, &DescribeGroupsResponse::default().with_groups(groups))
    }))
}

fn encode(group_id: &str, described: Option<GroupDescription>, version: i16) -> DescribedGroup {
    let base = DescribedGroup::default().with_group_id(GroupId(str_bytes(group_id)));
    let Some(d) = described else {
        return base.with_error_code(crate::groups::no_coordinator_code(group_id)).with_group_state(str_bytes("Dead"));
    };
    let Some(state) = d.state else {
        let mut dead = base.with_group_state(str_bytes("Dead"));
        if version >= 6 {
            dead.error_code = error_code::GROUP_ID_NOT_FOUND;
            dead.error_message = Some(str_bytes(&format!("Group {group_id} not found.")));
        }
        return dead;
    };
    let members = d
        .members
        .into_iter()
        .map(|m| {
            let member = DescribedGroupMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_client_id(str_bytes(&m.client_id))
                .with_client_host(str_bytes(&m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment);
            if version >= 4 {
                member.with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
            } else {
                member
            }
        })
        .collect();
    base.with_error_code(error_code::NONE)
        .with_group_state(str_bytes(state))
        .with_protocol_type(str_bytes(&d.protocol_type))
        .with_protocol_data(str_bytes(&d.protocol))
        .with_members(members)
}
