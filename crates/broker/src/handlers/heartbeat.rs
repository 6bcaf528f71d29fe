//! Heartbeat (key 12), v0–v4: keeps a member's session alive and tells it
//! when a rebalance is under way (REBALANCE_IN_PROGRESS).

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse};

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::on_coordinator;
use ringstream_protocol::{decode_body, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Heartbeat, min_version: 0, max_version: 4 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let beat: HeartbeatRequest = decode_body(&mut body, version, "Heartbeat request")?;
    let correlation_id = request.header.correlation_id;
    let shard = broker.shard.clone();
    Ok(Box::pin(async move {
        let group_id = beat.group_id.0.as_str().to_owned();
        let (generation, member_id) = (beat.generation_id, beat.member_id.as_str().to_owned());
        let instance_id = beat.group_instance_id.as_ref().map(|i| i.as_str().to_owned());
        let group = group_id.clone();
        let code = on_coordinator(&shard, &group_id, move |c| async move {
            c.heartbeat(&group, generation, &member_id, instance_id.as_deref())
        })
        .await
        .unwrap_or(crate::groups::no_coordinator_code(&group_id));
        respond(ApiKey::Heartbeat, version, correlation_id, &HeartbeatResponse::default().with_error_code(code))
    }))
}
