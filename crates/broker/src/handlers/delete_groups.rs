//! DeleteGroups (key 42), v0–v2: deletes empty groups and their committed
//! offsets (NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for
//! unknown groups).

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::on_coordinator;
use ringstream_protocol::{decode_body, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DeleteGroups, min_version: 0, max_version: 2 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let delete: DeleteGroupsRequest = decode_body(&mut body, version, "DeleteGroups request")?;
    let correlation_id = request.header.correlation_id;
    let shard = broker.shard.clone();
    Ok(Box::pin(async move {
        let mut results = Vec::with_capacity(delete.groups_names.len());
        for group in &delete.groups_names {
            let group_id = group.0.as_str().to_owned();
            let id = group_id.clone();
            let code = on_coordinator(&shard, &group_id, move |c| async move { c.delete_group(&id).await })
                .await
                .unwrap_or(crate::groups::no_coordinator_code(&group_id));
            results.push(
                DeletableGroupResult::default().with_group_id(GroupId(str_bytes(&group_id))).with_error_code(code),
            );
        }
        respond(ApiKey::DeleteGroups, version, correlation_id, &DeleteGroupsResponse::default().with_results(results))
    }))
}
