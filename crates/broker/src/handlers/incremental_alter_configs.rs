//! IncrementalAlterConfigs (key 44), v0–v1: SET, DELETE, APPEND and
//! SUBTRACT applied to a topic's current overrides; the result replaces the
//! override set (`Broker::set_topic_configs`).
//!
//! As Kafka: APPEND and SUBTRACT work on LIST configs only (here
//! `cleanup.policy`), starting from the default when the topic has no
//! override; APPEND skips values already present, SUBTRACT drops them.
//! Broker resources (this node's id: per broker; empty name: cluster-wide
//! defaults): SET and DELETE of `config::DYNAMIC_BROKER_SETTINGS` (ours that
//! Kafka marks dynamic), validated as `--set` validates, persisted by shard 0
//! in `<data_dir>/broker-configs` (Kafka keeps them in its metadata log),
//! then copied to every shard, which re-applies its partitions' log configs
//! (topic overrides still win). SET of any other setting is INVALID_REQUEST
//! "Cannot update these configs dynamically" (DELETE of one is a no-op);
//! APPEND/SUBTRACT (no broker setting here is a LIST) and bad values are
//! INVALID_CONFIG.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::alter_configs::{
    check_topic_name, duplicate_resources, has_duplicates, invalid_request, refuse_broker_changes,
};
use super::describe_configs::{topic_config_def, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::{Broker, TopicError};
use crate::config::{
    dynamic_broker_configs, log_defaults, set_dynamic_broker_configs, DYNAMIC_BROKER_CONFIGS_FILE_NAME,
    DYNAMIC_BROKER_SETTINGS,
};
use ringstream_core::types::ShardId;
use ringstream_protocol::{decode_body, error_code, Request, WireError};
use ringstream_storage::dir;
use ringstream_storage::log::LogConfig;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::IncrementalAlterConfigs, min_version: 0, max_version: 1 };

/// Kafka's `AlterConfigOp.OpType` ids.
pub const OP_SET: i8 = 0;
pub const OP_DELETE: i8 = 1;
pub const OP_APPEND: i8 = 2;
pub const OP_SUBTRACT: i8 = 3;

/// One requested change: config name, operation, value.
pub type ConfigOp<'a> = (&'a str, i8, Option<&'a str>);

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let alter: IncrementalAlterConfigsRequest = decode_body(&mut body, version, "IncrementalAlterConfigs request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let duplicates =
            duplicate_resources(alter.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
        let mut responses = Vec::with_capacity(alter.resources.len());
        for (resource, duplicate) in alter.resources.iter().zip(duplicates) {
            let name = resource.resource_name.as_str();
            let ops: Vec<ConfigOp> = resource
                .configs
                .iter()
                .map(|c| (c.name.as_str(), c.config_operation, c.value.as_ref().map(|v| v.as_str())))
                .collect();
            let outcome = if duplicate {
                Err(invalid_request("Each resource must appear at most once."))
            } else {
                alter_resource(&broker, resource.resource_type, name, &ops, alter.validate_only).await
            };
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            responses.push(match outcome {
                Ok(()) => response.with_error_code(error_code::NONE).with_error_message(None),
                Err(e) => response.with_error_code(e.code).with_error_message(Some(str_bytes(&e.message))),
            });
        }
        respond(
            ApiKey::IncrementalAlterConfigs,
            version,
            correlation_id,
            &IncrementalAlterConfigsResponse::default().with_responses(responses),
        )
    }))
}

async fn alter_resource(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    ops: &[ConfigOp<'_>],
    validate_only: bool,
) -> Result<(), TopicError> {
    if has_duplicates(ops.iter().map(|op| op.0)) {
        return Err(invalid_request("Error due to duplicate config keys"));
    }
    let nulls: Vec<&str> = ops.iter().filter(|op| op.1 != OP_DELETE && op.2.is_none()).map(|op| op.0).collect();
    if !nulls.is_empty() {
        return Err(invalid_request(&format!("Null value not supported for : {}", nulls.join(", "))));
    }
    match resource_type {
        RESOURCE_TOPIC => {
            check_topic_name(name)?;
            // Applied on shard 0 against the current overrides (no lost updates).
            let owned: Vec<(String, i8, Option<String>)> =
                ops.iter().map(|&(n, op, v)| (n.to_owned(), op, v.map(str::to_owned))).collect();
            let result = broker
                .update_topic_configs(name.to_owned(), validate_only, move |current, defaults| {
                    let ops: Vec<ConfigOp<'_>> =
                        owned.iter().map(|(n, op, v)| (n.as_str(), *op, v.as_deref())).collect();
                    apply_ops(current, &ops, defaults)
                })
                .await;
            result.map_err(|e| {
                if e.code == error_code::UNKNOWN_TOPIC_OR_PARTITION {
                    TopicError { code: e.code, message: format!("The topic '{name}' does not exist.") }
                } else {
                    e
                }
            })
        }
        RESOURCE_BROKER => {
            if let Some(op) = ops.iter().find(|op| !(OP_SET..=OP_SUBTRACT).contains(&op.1)) {
                return Err(invalid_request(&format!("Unknown operations type {}", op.1)));
            }
            refuse_broker_changes(broker, name, std::iter::empty())?;
            let fixed =
                ops.iter().filter(|op| op.1 != OP_DELETE && !DYNAMIC_BROKER_SETTINGS.contains(&op.0)).map(|op| op.0);
            refuse_broker_changes(broker, name, fixed)?;
            if let Some(op) = ops.iter().find(|op| op.1 == OP_APPEND || op.1 == OP_SUBTRACT) {
                let verb = if op.1 == OP_APPEND { "APPEND" } else { "SUBTRACT" };
                return Err(TopicError {
                    code: error_code::INVALID_CONFIG,
                    message: format!("Can't {verb} to key {} because its type is not LIST.", op.0),
                });
            }
            let changes: Vec<(String, Option<String>)> = ops
                .iter()
                .filter(|op| DYNAMIC_BROKER_SETTINGS.contains(&op.0))
                .map(|&(n, op, v)| (n.to_owned(), if op == OP_SET { v.map(str::to_owned) } else { None }))
                .collect();
            alter_broker_configs(broker, !name.is_empty(), changes, validate_only).await
        }
        other => Err(invalid_request(&format!("Unknown resource type {other}"))),
    }
}

thread_local! {
    /// Shard 0: one dynamic broker config change at a time (read, persist, copy).
    static BROKER_CONFIGS_LOCK: Rc<glommio::sync::Semaphore> = Rc::new(glommio::sync::Semaphore::new(1));
}

/// Applies SETs (Some) and DELETEs (None) of dynamic broker settings to
/// this broker's (`per_broker`) or the cluster-wide configs, on shard 0:
/// validates the result, persists it, then hands it to every shard, which
/// re-applies the log configs of the partitions it owns.
async fn alter_broker_configs(
    broker: &Broker,
    per_broker: bool,
    changes: Vec<(String, Option<String>)>,
    validate_only: bool,
) -> Result<(), TopicError> {
    let storage_error = |e: ringstream_storage::StorageError| TopicError {
        code: error_code::KAFKA_STORAGE_ERROR,
        message: e.to_string(),
    };
    // A closure (see `Shard::run_on`): dynamic broker configs belong to the broker, above the router.
    broker
        .shard
        .run_on(ShardId(0), move |shard| async move {
            let lock = BROKER_CONFIGS_LOCK.with(Rc::clone);
            let _one = lock.acquire_static_permit(1).await.map_err(|_| invalid_request("broker is shutting down"))?;
            let data_dir = shard.storage.config().data_dir.clone();
            let mut configs = dynamic_broker_configs(&data_dir);
            let map = if per_broker { &mut configs.broker } else { &mut configs.cluster };
            for (name, value) in changes {
                match value {
                    Some(value) => map.insert(name, value),
                    None => map.remove(&name),
                };
            }
            configs
                .apply_to(&shard.storage.config().default_log)
                .map_err(|message| TopicError { code: error_code::INVALID_CONFIG, message })?;
            if validate_only {
                return Ok(());
            }
            dir::write_file_atomic(&data_dir, DYNAMIC_BROKER_CONFIGS_FILE_NAME, configs.encode().into_bytes())
                .await
                .map_err(|e| TopicError { code: error_code::KAFKA_STORAGE_ERROR, message: e.to_string() })?;
            for i in 0..shard.shard_count() {
                let configs = configs.clone();
                // A closure (see `Shard::run_on`): dynamic broker configs belong to the broker, above the router.
                shard
                    .run_on(ShardId(i as u16), move |shard| async move {
                        set_dynamic_broker_configs(configs);
                        let defaults = log_defaults(&shard.storage);
                        let broker = crate::broker::local();
                        for tp in shard.storage.partitions() {
                            let Some(topic) = broker.topic(&tp.topic) else { continue };
                            match topic.log_config(&defaults) {
                                Ok(log) => {
                                    if let Err(e) = shard.storage.set_log_config(&tp, log) {
                                        tracing::warn!(partition = %tp, "dynamic broker config not applied: {e}");
                                    }
                                }
                                Err(e) => tracing::warn!(partition = %tp, "dynamic broker config not applied: {e}"),
                            }
                        }
                    })
                    .await
                    .map_err(storage_error)?;
            }
            tracing::info!(per_broker, configs = ?configs, "dynamic broker configs changed");
            Ok(())
        })
        .await
        .map_err(storage_error)?
}

/// Applies `ops` to a topic's `current` overrides; `defaults` are the
/// broker's topic defaults, the base of an APPEND or SUBTRACT on a config
/// the topic does not override. The result still has to be validated.
pub fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: &[ConfigOp<'_>],
    defaults: &LogConfig,
) -> Result<BTreeMap<String, String>, TopicError> {
    let mut configs = current.clone();
    for &(name, op, value) in ops {
        match op {
            OP_SET => {
                configs.insert(name.to_owned(), value.unwrap_or_default().to_owned());
            }
            OP_DELETE => {
                configs.remove(name);
            }
            OP_APPEND | OP_SUBTRACT => {
                let verb = if op == OP_APPEND { "APPEND" } else { "SUBTRACT" };
                let Some(def) = topic_config_def(name).filter(|def| def.is_list()) else {
                    return Err(TopicError {
                        code: error_code::INVALID_CONFIG,
                        message: format!("Can't {verb} to key {name} because its type is not LIST."),
                    });
                };
                let base = configs.get(name).cloned().unwrap_or_else(|| (def.value)(defaults));
                let mut parts: Vec<String> = base.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
                for item in value.unwrap_or_default().split(',') {
                    if op == OP_APPEND {
                        if !parts.iter().any(|p| p == item) {
                            parts.push(item.to_owned());
                        }
                    } else if let Some(at) = parts.iter().position(|p| p == item) {
                        parts.remove(at);
                    }
                }
                configs.insert(name.to_owned(), parts.join(","));
            }
            other => return Err(invalid_request(&format!("Unknown operations type {other}"))),
        }
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ops_apply_to_the_current_overrides() {
        let defaults = LogConfig::default();
        let current = map(&[("retention.ms", "1000"), ("segment.bytes", "1048576")]);
        let ops = [
            ("retention.ms", OP_SET, Some("2000")),
            ("segment.bytes", OP_DELETE, None),
            ("segment.ms", OP_DELETE, None),
        ];
        assert_eq!(apply_ops(&current, &ops, &defaults).unwrap(), map(&[("retention.ms", "2000")]));

        // APPEND starts from the default ("delete") and skips what is there.
        let appended =
            apply_ops(&current, &[("cleanup.policy", OP_APPEND, Some("compact,delete"))], &defaults).unwrap();
        assert_eq!(appended["cleanup.policy"], "delete,compact");
        let subtracted = apply_ops(&appended, &[("cleanup.policy", OP_SUBTRACT, Some("delete"))], &defaults).unwrap();
        assert_eq!(subtracted["cleanup.policy"], "compact");
        assert_eq!(subtracted["retention.ms"], "1000");

        for (name, op) in [("retention.ms", OP_APPEND), ("segment.ms", OP_SUBTRACT), ("no.such", OP_APPEND)] {
            let e = apply_ops(&current, &[(name, op, Some("1"))], &defaults).unwrap_err();
            assert_eq!(e.code, error_code::INVALID_CONFIG, "{name}");
            assert!(e.message.contains("because its type is not LIST"), "{}", e.message);
        }
        assert_eq!(
            apply_ops(&current, &[("retention.ms", 7, Some("1"))], &defaults).unwrap_err().code,
            error_code::INVALID_REQUEST
        );
    }
}
