//! JoinGroup (key 11), v0–v9: a member joins (or rejoins) a group and waits
//! until the rebalance's join phase completes. v4+: a new dynamic member
//! first gets MEMBER_ID_REQUIRED and its id (KIP-394); v5+: static members
//! (`group.instance.id`, KIP-345); v9: skip_assignment for a static leader
//! that rejoined a stable group.

use std::net::SocketAddr;
use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::coordinator::{JoinArgs, JoinResult};
use crate::groups::on_coordinator;
use ringstream_protocol::{decode_body, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::JoinGroup, min_version: 0, max_version: 9 };

pub fn handle(broker: &Rc<Broker>, request: Request, peer: Option<SocketAddr>) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let join: JoinGroupRequest = decode_body(&mut body, version, "JoinGroup request")?;
    let correlation_id = request.header.correlation_id;
    let client_id = request.header.client_id.as_ref().map_or("", |c| c.as_str()).to_owned();
    let shard = broker.shard.clone();
    Ok(Box::pin(async move {
        let group_id = join.group_id.0.as_str().to_owned();
        let args = JoinArgs {
            group_id: group_id.clone(),
            member_id: join.member_id.as_str().to_owned(),
            instance_id: join.group_instance_id.as_ref().map(|i| i.as_str().to_owned()),
            protocol_type: join.protocol_type.as_str().to_owned(),
            protocols: join.protocols.iter().map(|p| (p.name.as_str().to_owned(), p.metadata.clone())).collect(),
            session_timeout_ms: join.session_timeout_ms,
            // v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalance_timeout_ms: if version >= 1 { join.rebalance_timeout_ms } else { join.session_timeout_ms },
            client_id,
            client_host: peer.map_or_else(String::new, |p| format!("/{}", p.ip())),
            require_known_member_id: version >= 4,
        };
        let member_id = args.member_id.clone();
        let result = on_coordinator(&shard, &group_id, move |c| async move { c.join(args).await })
            .await
            .unwrap_or_else(|| JoinResult {
                error: crate::groups::no_coordinator_code(&group_id),
                generation: -1,
                member_id,
                ..JoinResult::default()
            });
        respond(ApiKey::JoinGroup, version, correlation_id, &encode(result, version))
    }))
}

/// Fields a version lacks stay at their defaults.
fn encode(result: JoinResult, version: i16) -> JoinGroupResponse {
    let members = result
        .members
        .into_iter()
        .map(|m| {
            let member =
                JoinGroupResponseMember::default().with_member_id(str_bytes(&m.member_id)).with_metadata(m.metadata);
            if version >= 5 {
                member.with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
            } else {
                member
            }
        })
        .collect();
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation)
        .with_leader(str_bytes(&result.leader))
        .with_member_id(str_bytes(&result.member_id))
        .with_members(members);
    if version >= 7 {
        response.protocol_type = result.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = result.protocol.as_deref().map(str_bytes);
    } else {
        response.protocol_name = Some(str_bytes(result.protocol.as_deref().unwrap_or("")));
    }
    if version >= 9 {
        response.skip_assignment = result.skip_assignment;
    }
    response
}
