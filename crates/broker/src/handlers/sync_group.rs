//! SyncGroup (key 14), v0–v5: the leader hands in the assignment; every
//! member waits for its own part, which is answered once the group's
//! metadata is durable. v5 checks the protocol type and name.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::coordinator::{SyncArgs, SyncResult};
use crate::groups::on_coordinator;
use ringstream_protocol::{decode_body, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::SyncGroup, min_version: 0, max_version: 5 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let sync: SyncGroupRequest = decode_body(&mut body, version, "SyncGroup request")?;
    let correlation_id = request.header.correlation_id;
    let shard = broker.shard.clone();
    Ok(Box::pin(async move {
        let group_id = sync.group_id.0.as_str().to_owned();
        let args = SyncArgs {
            group_id: group_id.clone(),
            generation: sync.generation_id,
            member_id: sync.member_id.as_str().to_owned(),
            instance_id: sync.group_instance_id.as_ref().map(|i| i.as_str().to_owned()),
            protocol_type: sync.protocol_type.as_ref().map(|p| p.as_str().to_owned()),
            protocol: sync.protocol_name.as_ref().map(|p| p.as_str().to_owned()),
            assignments: sync
                .assignments
                .iter()
                .map(|a| (a.member_id.as_str().to_owned(), a.assignment.clone()))
                .collect(),
        };
        let result =
            on_coordinator(&shard, &group_id, move |c| async move { c.sync(args).await }).await.unwrap_or_else(|| {
                SyncResult { error: crate::groups::no_coordinator_code(&group_id), ..SyncResult::default() }
            });
        let mut response =
            SyncGroupResponse::default().with_error_code(result.error).with_assignment(result.assignment);
        if version >= 5 {
            response.protocol_type = result.protocol_type.as_deref().map(str_bytes);
            response.protocol_name = result.protocol.as_deref().map(str_bytes);
        }
        respond(ApiKey::SyncGroup, version, correlation_id, &response)
    }))
}
