//! ListGroups (key 16), v0–v5: every group on every shard's coordinator,
//! filtered by state (v4+, case-insensitive, as Kafka) and by type (v5+:
//! "classic", or "consumer" for KIP-848 groups).

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::coordinator;
use ringstream_core::types::ShardId;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ListGroups, min_version: 0, max_version: 5 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let list: ListGroupsRequest = decode_body(&mut body, version, "ListGroups request")?;
    let correlation_id = request.header.correlation_id;
    let shard = broker.shard.clone();
    Ok(Box::pin(async move {
        let states: Vec<String> = list.states_filter.iter().map(|s| s.as_str().to_lowercase()).collect();
        let types: Vec<String> = list.types_filter.iter().map(|s| s.as_str().to_lowercase()).collect();
        let mut groups = Vec::new();
        let mut error = error_code::NONE;
        for i in 0..shard.shard_count() {
            // A closure (see `Shard::run_on`): group state lives with each shard's coordinator, above the router.
            let listed = shard
                .run_on(ShardId(i as u16), |_| async move {
                    let coordinator = coordinator::local();
                    coordinator.load_led().await;
                    coordinator
                        .list()
                        .into_iter()
                        .map(|g| (g.group_id, g.protocol_type, g.state, g.group_type))
                        .collect::<Vec<_>>()
                })
                .await;
            match listed {
                Ok(listed) => groups.extend(listed),
                Err(_) => error = error_code::COORDINATOR_NOT_AVAILABLE,
            }
        }
        groups.sort();
        let groups = groups
            .into_iter()
            .filter(|(_, _, state, _)| states.is_empty() || states.contains(&state.to_lowercase()))
            .filter(|(_, _, _, group_type)| types.is_empty() || types.iter().any(|t| t == group_type))
            .map(|(id, protocol_type, state, group_type)| {
                let mut listed = ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(&id)))
                    .with_protocol_type(str_bytes(&protocol_type));
                if version >= 4 {
                    listed.group_state = str_bytes(state);
                }
                if version >= 5 {
                    listed.group_type = str_bytes(group_type);
                }
                listed
            })
            .collect();
        respond(
            ApiKey::ListGroups,
            version,
            correlation_id,
            &ListGroupsResponse::default().with_error_code(error).with_groups(groups),
        )
    }))
}
