//! FindCoordinator (key 10), v0–v6 (v4: batched keys): a consumer group's
//! coordinator is the leader of its `__consumer_offsets` partition, a
//! transactional id's (key type 1) the leader of its `__transaction_state`
//! partition; either topic is created on first use.
//! v5 only allows the TRANSACTION_ABORTABLE code; v6's share-group keys
//! (KIP-932) get INVALID_REQUEST, as from a Kafka without share groups.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::limits::coordinator_keys_max;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::FindCoordinator, min_version: 0, max_version: 6 };

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let find: FindCoordinatorRequest = decode_body(&mut body, version, "FindCoordinator request")?;
    if find.coordinator_keys.len() > coordinator_keys_max {
        return Err(WireError::Malformed { what: "FindCoordinator request", reason: "too many keys".into() });
    }
    let correlation_id = request.header.correlation_id;
    let config = broker.config.clone();
    let broker = broker.clone();
    Ok(Box::pin(async move {
        // Per key: the broker leading its internal-topic partition.
        let key_type = if version >= 1 { find.key_type } else { KEY_TYPE_GROUP };
        let mut located = Vec::new();
        let keys: Vec<String> = if version >= 4 {
            find.coordinator_keys.iter().map(|k| k.as_str().to_owned()).collect()
        } else {
            vec![find.key.as_str().to_owned()]
        };
        for key in &keys {
            located.push(match key_type {
                KEY_TYPE_TRANSACTION => {
                    let p = crate::txn::state::txn_partition(key, broker.txn_partitions());
                    broker.internal_coordinator(crate::txn::TXN_TOPIC, p).await
                }
                _ => {
                    let p = crate::groups::group_partition(key, crate::groups::coordinator::partitions_configured());
                    broker.offsets_coordinator(p).await
                }
            });
        }
        let answer = |key_type: i8| -> (i16, Option<StrBytes>) {
            match key_type {
                KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => (error_code::NONE, None),
                other => (
                    error_code::INVALID_REQUEST,
                    Some(str_bytes(&format!("coordinator key type {other} is not served"))),
                ),
            }
        };
        let node = BrokerId(config.node_id);
        let host = str_bytes(&config.advertised_host);
        let response = if version >= 4 {
            let coordinators = find
                .coordinator_keys
                .iter()
                .zip(&located)
                .map(|(key, at)| {
                    let (mut code, mut message) = answer(find.key_type);
                    let (mut node, mut host, mut port) = (node, host.clone(), config.advertised_port);
                    if code == error_code::NONE {
                        match at {
                            Ok((id, h, p)) => (node, host, port) = (BrokerId(*id), str_bytes(h), *p),
                            Err(e) => (code, message) = (e.code, Some(str_bytes(&e.message))),
                        }
                    }
                    let found = code == error_code::NONE;
                    Coordinator::default()
                        .with_key(key.clone())
                        .with_node_id(if found { node } else { BrokerId(-1) })
                        .with_host(if found { host } else { str_bytes("") })
                        .with_port(if found { port } else { -1 })
                        .with_error_code(code)
                        .with_error_message(message)
                })
                .collect();
            FindCoordinatorResponse::default().with_coordinators(coordinators)
        } else {
            let (mut code, mut message) = answer(key_type);
            let (mut node, mut host, mut port) = (node, host, config.advertised_port);
            if code == error_code::NONE {
                match &located[0] {
                    Ok((id, h, p)) => (node, host, port) = (BrokerId(*id), str_bytes(h), *p),
                    Err(e) => (code, message) = (e.code, Some(str_bytes(&e.message))),
                }
            }
            let found = code == error_code::NONE;
            let mut response = FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_node_id(if found { node } else { BrokerId(-1) })
                .with_host(if found { host } else { str_bytes("") })
                .with_port(if found { port } else { -1 });
            if version >= 1 {
                response.error_message = message;
            }
            response
        };
        respond(ApiKey::FindCoordinator, version, correlation_id, &response)
    }))
}
