//! AlterConfigs (key 33), v0–v2: the legacy API, whose configs replace a
//! resource's whole override set.
//!
//! Topic resources: validated, then applied to the topic's partitions
//! (`Broker::set_topic_configs`). Broker resources: none of this broker's
//! settings can change while it runs, so any config is refused with
//! INVALID_REQUEST, as Kafka refuses configs it cannot update dynamically;
//! an empty set succeeds (there are no dynamic broker configs to clear).
//! Checks follow Kafka's order: duplicate resources, duplicate keys, null
//! values, the resource name, then the configs, then the topic's existence.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::{Broker, TopicError};
use ringstream_core::types::is_valid_topic_name;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::AlterConfigs, min_version: 0, max_version: 2 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let alter: AlterConfigsRequest = decode_body(&mut body, version, "AlterConfigs request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let duplicates =
            duplicate_resources(alter.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
        let mut responses = Vec::with_capacity(alter.resources.len());
        for (resource, duplicate) in alter.resources.iter().zip(duplicates) {
            let name = resource.resource_name.as_str();
            let outcome = if duplicate {
                Err(invalid_request("Each resource must appear at most once."))
            } else {
                let keys = resource.configs.iter().map(|c| c.name.as_str());
                let nulls: Vec<&str> =
                    resource.configs.iter().filter(|c| c.value.is_none()).map(|c| c.name.as_str()).collect();
                if has_duplicates(keys) {
                    Err(invalid_request("Error due to duplicate config keys"))
                } else if !nulls.is_empty() {
                    Err(invalid_request(&format!("Null value not supported for : {}", nulls.join(", "))))
                } else {
                    match resource.resource_type {
                        RESOURCE_TOPIC => {
                            let configs: BTreeMap<String, String> = resource
                                .configs
                                .iter()
                                .filter_map(|c| {
                                    Some((c.name.as_str().to_owned(), c.value.as_ref()?.as_str().to_owned()))
                                })
                                .collect();
                            alter_topic(&broker, name, configs, alter.validate_only).await
                        }
                        RESOURCE_BROKER => {
                            refuse_broker_changes(&broker, name, resource.configs.iter().map(|c| c.name.as_str()))
                        }
                        other => Err(invalid_request(&format!("Unknown resource type {other}"))),
                    }
                }
            };
            responses.push(resource_response(resource.resource_type, &resource.resource_name, outcome));
        }
        respond(
            ApiKey::AlterConfigs,
            version,
            correlation_id,
            &AlterConfigsResponse::default().with_responses(responses),
        )
    }))
}

fn resource_response(
    resource_type: i8,
    resource_name: &kafka_protocol::protocol::StrBytes,
    outcome: Result<(), TopicError>,
) -> AlterConfigsResourceResponse {
    let response = AlterConfigsResourceResponse::default()
        .with_resource_type(resource_type)
        .with_resource_name(resource_name.clone());
    match outcome {
        Ok(()) => response.with_error_code(error_code::NONE).with_error_message(None),
        Err(e) => response.with_error_code(e.code).with_error_message(Some(str_bytes(&e.message))),
    }
}

pub(super) fn invalid_request(message: &str) -> TopicError {
    TopicError { code: error_code::INVALID_REQUEST, message: message.to_owned() }
}

/// For each resource, whether another one has the same type and name (Kafka
/// refuses all copies).
pub(super) fn duplicate_resources<'a>(resources: impl Iterator<Item = (i8, &'a str)> + Clone) -> Vec<bool> {
    let mut counts: HashMap<(i8, &str), usize> = HashMap::new();
    for key in resources.clone() {
        *counts.entry(key).or_default() += 1;
    }
    resources.map(|key| counts[&key] > 1).collect()
}

pub(super) fn has_duplicates<'a>(names: impl Iterator<Item = &'a str>) -> bool {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().any(|name| !seen.insert(name))
}

/// Checks a topic resource's name as Kafka's controller does.
pub(super) fn check_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(invalid_request("Default topic resources are not allowed."));
    }
    if !is_valid_topic_name(name) {
        return Err(TopicError {
            code: error_code::INVALID_TOPIC_EXCEPTION,
            message: format!("Topic name {name:?} is illegal"),
        });
    }
    Ok(())
}

/// Replaces a topic's overrides with `configs` (validation first, then the
/// topic's existence, as Kafka).
pub(super) async fn alter_topic(
    broker: &Broker,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), TopicError> {
    check_topic_name(name)?;
    broker.set_topic_configs(name.to_owned(), configs, validate_only).await.map_err(|e| {
        if e.code == error_code::UNKNOWN_TOPIC_OR_PARTITION {
            TopicError { code: e.code, message: format!("The topic '{name}' does not exist.") }
        } else {
            e
        }
    })
}

/// Broker configs: the name must be empty or this node's id; changing any
/// setting is refused (none is dynamic here), changing none succeeds.
pub(super) fn refuse_broker_changes<'a>(
    broker: &Broker,
    name: &str,
    changed: impl Iterator<Item = &'a str>,
) -> Result<(), TopicError> {
    if !name.is_empty() {
        let id: i32 =
            name.parse().map_err(|_| invalid_request(&format!("Node id must be an integer, but it is: {name}")))?;
        if id != broker.config.node_id {
            return Err(invalid_request(&format!(
                "Unexpected broker id, expected {}, but received {name}",
                broker.config.node_id
            )));
        }
    }
    let changed: Vec<&str> = changed.collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(invalid_request(&format!(
        "Cannot update these configs dynamically: {} (broker settings are read at start-up only)",
        changed.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_resources_are_all_flagged() {
        let resources = [(2i8, "a"), (2, "b"), (2, "a"), (4, "a")];
        assert_eq!(duplicate_resources(resources.iter().copied()), vec![true, false, true, false]);
        assert!(has_duplicates(["x", "y", "x"].into_iter()));
        assert!(!has_duplicates(["x", "y"].into_iter()));
        assert_eq!(check_topic_name("").unwrap_err().code, error_code::INVALID_REQUEST);
        assert_eq!(check_topic_name("a b").unwrap_err().code, error_code::INVALID_TOPIC_EXCEPTION);
        assert!(check_topic_name("orders").is_ok());
    }
}
