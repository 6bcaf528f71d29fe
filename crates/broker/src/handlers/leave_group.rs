//! LeaveGroup (key 13), v0–v5: members leave at once instead of timing out.
//! v3+ takes a batch of members, each by member id or by
//! `group.instance.id` (an empty member id: an admin removing a static
//! member), with an answer per member.

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::on_coordinator;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::LeaveGroup, min_version: 0, max_version: 5 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let leave: LeaveGroupRequest = decode_body(&mut body, version, "LeaveGroup request")?;
    let correlation_id = request.header.correlation_id;
    let shard = broker.shard.clone();
    Ok(Box::pin(async move {
        let group_id = leave.group_id.0.as_str().to_owned();
        let members: Vec<(String, Option<String>)> = if version >= 3 {
            leave
                .members
                .iter()
                .map(|m| (m.member_id.as_str().to_owned(), m.group_instance_id.as_ref().map(|i| i.as_str().to_owned())))
                .collect()
        } else {
            vec![(leave.member_id.as_str().to_owned(), None)]
        };
        let asked = members.clone();
        let group = group_id.clone();
        let outcome = on_coordinator(&shard, &group_id, move |c| async move { c.leave(&group, members) })
            .await
            .unwrap_or_else(|| Err(crate::groups::no_coordinator_error(&group_id)));
        let response = match (outcome, version >= 3) {
            (Err(error), _) => LeaveGroupResponse::default().with_error_code(error.code()),
            (Ok(codes), false) => {
                LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(error_code::NONE))
            }
            (Ok(codes), true) => LeaveGroupResponse::default().with_members(
                asked
                    .iter()
                    .zip(codes)
                    .map(|((member_id, instance_id), code)| {
                        MemberResponse::default()
                            .with_member_id(str_bytes(member_id))
                            .with_group_instance_id(instance_id.as_deref().map(str_bytes))
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        };
        respond(ApiKey::LeaveGroup, version, correlation_id, &response)
    }))
}
