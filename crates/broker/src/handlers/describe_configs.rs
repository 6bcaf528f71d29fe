//! DescribeConfigs (key 32), v1–v4 (the codec has no v0).
//!
//! Topic resources: every config in `TOPIC_CONFIGS` with its effective
//! value, the topic override when there is one, else the broker's default
//! (from the `log.*` settings) or Kafka's. Broker resources (named by this
//! node's id): every broker setting with its source (this broker's dynamic
//! value, the cluster-wide dynamic default, the static `--set`/`--config`
//! value, Kafka's default), writable only for `config::DYNAMIC_BROKER_SETTINGS`;
//! the empty name (cluster-wide defaults) describes the dynamic defaults set.
//! Synonyms are returned when asked for, in Kafka's order of precedence.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::{Broker, BrokerConfig, TopicError};
use crate::config::DynamicBrokerConfigs;
use ringstream_core::types::is_valid_topic_name;
use ringstream_protocol::{decode_body, error_code, Request, WireError};
use ringstream_storage::log::{FlushPolicy, LogConfig};
use ringstream_storage::shard_storage::StorageConfig;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeConfigs, min_version: 1, max_version: 4 };

/// Config resource types (Kafka's `ConfigResource.Type`).
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Config sources (Kafka's `DescribeConfigsResponse.ConfigSource`).
const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
const SOURCE_DYNAMIC_BROKER_CONFIG: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// Config types (Kafka's `DescribeConfigsResponse.ConfigType`), v3+.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// A topic config: its Kafka type, the broker setting that supplies its
/// default, its value in a partition log's settings, and the synonym Kafka
/// reports its built-in default under when that is another setting
/// (`log.retention.hours=168` for `retention.ms`).
pub struct TopicConfigDef {
    pub name: &'static str,
    pub config_type: i8,
    pub broker_name: &'static str,
    pub value: fn(&LogConfig) -> String,
    pub default_synonym: Option<(&'static str, &'static str)>,
}

impl TopicConfigDef {
    pub fn is_list(&self) -> bool {
        self.config_type == TYPE_LIST
    }
}

/// Every config of `TOPIC_CONFIGS` (a test keeps the two in step).
pub const TOPIC_CONFIG_DEFS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        config_type: TYPE_LIST,
        broker_name: "log.cleanup.policy",
        value: |_| "delete".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        config_type: TYPE_INT,
        broker_name: "log.index.interval.bytes",
        value: |log| log.index_interval_bytes.to_string(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "max.message.bytes",
        config_type: TYPE_INT,
        broker_name: "message.max.bytes",
        value: |log| log.max_message_bytes.to_string(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        config_type: TYPE_STRING,
        broker_name: "log.message.timestamp.type",
        value: |log| if log.log_append_time { "LogAppendTime" } else { "CreateTime" }.to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "retention.bytes",
        config_type: TYPE_LONG,
        broker_name: "log.retention.bytes",
        value: |log| log.retention_bytes.to_string(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "retention.ms",
        config_type: TYPE_LONG,
        broker_name: "log.retention.ms",
        value: |log| log.retention_ms.to_string(),
        default_synonym: Some(("log.retention.hours", "168")),
    },
    TopicConfigDef {
        name: "segment.bytes",
        config_type: TYPE_INT,
        broker_name: "log.segment.bytes",
        value: |log| log.segment_bytes.to_string(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "segment.ms",
        config_type: TYPE_LONG,
        broker_name: "log.roll.ms",
        value: |log| log.segment_ms.to_string(),
        default_synonym: Some(("log.roll.hours", "168")),
    },
    // Stored-only configs (`topics::STORED_ONLY_TOPIC_CONFIGS`): Kafka's defaults.
    TopicConfigDef {
        name: "compression.type",
        config_type: TYPE_STRING,
        broker_name: "compression.type",
        value: |_| "producer".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        config_type: TYPE_LONG,
        broker_name: "log.cleaner.delete.retention.ms",
        value: |_| "86400000".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        config_type: TYPE_LONG,
        broker_name: "log.segment.delete.delay.ms",
        value: |_| "60000".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "flush.messages",
        config_type: TYPE_LONG,
        broker_name: "log.flush.interval.messages",
        value: |_| "9223372036854775807".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "flush.ms",
        config_type: TYPE_LONG,
        broker_name: "log.flush.interval.ms",
        value: |_| "9223372036854775807".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        config_type: TYPE_LONG,
        broker_name: "log.cleaner.max.compaction.lag.ms",
        value: |_| "9223372036854775807".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        config_type: TYPE_STRING,
        broker_name: "log.cleaner.min.cleanable.ratio",
        value: |_| "0.5".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        config_type: TYPE_LONG,
        broker_name: "log.cleaner.min.compaction.lag.ms",
        value: |_| "0".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        config_type: TYPE_INT,
        broker_name: "min.insync.replicas",
        value: |_| "1".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "preallocate",
        config_type: TYPE_STRING,
        broker_name: "log.preallocate",
        value: |_| "false".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        config_type: TYPE_INT,
        broker_name: "log.index.size.max.bytes",
        value: |_| "10485760".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "segment.jitter.ms",
        config_type: TYPE_LONG,
        broker_name: "log.roll.jitter.ms",
        value: |_| "0".to_owned(),
        default_synonym: None,
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        config_type: TYPE_STRING,
        broker_name: "unclean.leader.election.enable",
        value: |_| "false".to_owned(),
        default_synonym: None,
    },
];

pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIG_DEFS.iter().find(|def| def.name == name)
}

/// A config as described: name, value, type, source, and its synonyms in
/// order of precedence (the entry's own source first).
struct Described {
    name: String,
    value: String,
    config_type: i8,
    source: i8,
    read_only: bool,
    synonyms: Vec<(String, String, i8)>,
}

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let describe: DescribeConfigsRequest = decode_body(&mut body, version, "DescribeConfigs request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let results = describe
            .resources
            .iter()
            .map(|resource| describe_resource(&broker, resource, describe.include_synonyms, version))
            .collect();
        respond(
            ApiKey::DescribeConfigs,
            version,
            correlation_id,
            &DescribeConfigsResponse::default().with_results(results),
        )
    }))
}

fn describe_resource(
    broker: &Broker,
    resource: &DescribeConfigsResource,
    include_synonyms: bool,
    version: i16,
) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(resource.resource_type)
        .with_resource_name(resource.resource_name.clone());
    let name = resource.resource_name.as_str();
    let described = match resource.resource_type {
        RESOURCE_TOPIC => describe_topic(broker, name),
        RESOURCE_BROKER => describe_broker(broker, name),
        other => Err(TopicError {
            code: error_code::INVALID_REQUEST,
            message: format!("Unsupported resource type: {other}"),
        }),
    };
    let configs = match described {
        Ok(configs) => configs,
        Err(e) => return result.with_error_code(e.code).with_error_message(Some(str_bytes(&e.message))),
    };
    // Null or empty keys: every config (as Kafka).
    let wanted = |name: &str| match &resource.configuration_keys {
        Some(keys) if !keys.is_empty() => keys.iter().any(|key| key.as_str() == name),
        _ => true,
    };
    let configs = configs
        .into_iter()
        .filter(|config| wanted(&config.name))
        .map(|config| {
            let mut entry = DescribeConfigsResourceResult::default()
                .with_name(str_bytes(&config.name))
                .with_value(Some(str_bytes(&config.value)))
                .with_read_only(config.read_only)
                .with_config_source(config.source)
                .with_is_sensitive(false)
                .with_documentation(None);
            if include_synonyms {
                entry.synonyms = config
                    .synonyms
                    .iter()
                    .map(|(name, value, source)| {
                        DescribeConfigsSynonym::default()
                            .with_name(str_bytes(name))
                            .with_value(Some(str_bytes(value)))
                            .with_source(*source)
                    })
                    .collect();
            }
            if version >= 3 {
                entry.config_type = config.config_type;
            }
            entry
        })
        .collect();
    result.with_error_code(error_code::NONE).with_error_message(None).with_configs(configs)
}

fn describe_topic(broker: &Broker, name: &str) -> Result<Vec<Described>, TopicError> {
    if !is_valid_topic_name(name) {
        return Err(TopicError {
            code: error_code::INVALID_TOPIC_EXCEPTION,
            message: format!("Topic name {name:?} is illegal"),
        });
    }
    let Some(topic) = broker.topic(name) else {
        return Err(TopicError {
            code: error_code::UNKNOWN_TOPIC_OR_PARTITION,
            message: format!("The topic '{name}' does not exist."),
        });
    };
    let storage = broker.shard.storage.config();
    let broker_log = &storage.default_log;
    let dynamic = crate::config::dynamic_broker_configs(&storage.data_dir);
    let effective = dynamic.apply_to(broker_log).unwrap_or_else(|_| broker_log.clone());
    let kafka_log = LogConfig::default();
    let mut described = Vec::with_capacity(TOPIC_CONFIG_DEFS.len());
    for def in TOPIC_CONFIG_DEFS {
        let broker_value = (def.value)(broker_log);
        let kafka_value = (def.value)(&kafka_log);
        let mut synonyms = Vec::new();
        if let Some(value) = topic.configs.get(def.name) {
            synonyms.push((def.name.to_owned(), value.clone(), SOURCE_DYNAMIC_TOPIC_CONFIG));
        }
        if let Some(value) = dynamic.broker.get(def.broker_name) {
            synonyms.push((def.broker_name.to_owned(), value.clone(), SOURCE_DYNAMIC_BROKER_CONFIG));
        }
        if let Some(value) = dynamic.cluster.get(def.broker_name) {
            synonyms.push((def.broker_name.to_owned(), value.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG));
        }
        if broker_value != kafka_value {
            synonyms.push((def.broker_name.to_owned(), broker_value.clone(), SOURCE_STATIC_BROKER_CONFIG));
        }
        match def.default_synonym {
            Some((name, value)) => synonyms.push((name.to_owned(), value.to_owned(), SOURCE_DEFAULT_CONFIG)),
            None => synonyms.push((def.broker_name.to_owned(), kafka_value, SOURCE_DEFAULT_CONFIG)),
        }
        let (value, source) = match topic.configs.get(def.name) {
            Some(value) => (value.clone(), SOURCE_DYNAMIC_TOPIC_CONFIG),
            None => ((def.value)(&effective), synonyms[0].2),
        };
        described.push(Described {
            name: def.name.to_owned(),
            value,
            config_type: def.config_type,
            source,
            read_only: false,
            synonyms,
        });
    }
    Ok(described)
}

/// Checks a broker resource's name: empty (cluster-wide defaults) or this
/// node's id. Returns whether it names this node.
pub fn check_broker_name(config: &BrokerConfig, name: &str) -> Result<bool, TopicError> {
    if name.is_empty() {
        return Ok(false);
    }
    let invalid = |message: String| TopicError { code: error_code::INVALID_REQUEST, message };
    let id: i32 = name.parse().map_err(|_| invalid(format!("Broker id must be an integer, but it is: {name}")))?;
    if id != config.node_id {
        return Err(invalid(format!(
            "Unexpected broker id, expected {} or empty string, but received {name}",
            config.node_id
        )));
    }
    Ok(true)
}

fn describe_broker(broker: &Broker, name: &str) -> Result<Vec<Described>, TopicError> {
    let storage = broker.shard.storage.config();
    let dynamic = crate::config::dynamic_broker_configs(&storage.data_dir);
    let configs = broker_configs(&broker.config, storage, &dynamic);
    if !check_broker_name(&broker.config, name)? {
        // Cluster-wide defaults: only those set dynamically, as Kafka.
        return Ok(configs
            .into_iter()
            .filter_map(|config| {
                let value = dynamic.cluster.get(&config.name)?.clone();
                Some(Described {
                    synonyms: vec![(config.name.clone(), value.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG)],
                    value,
                    source: SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG,
                    ..config
                })
            })
            .collect());
    }
    Ok(configs)
}

/// The broker settings, by Kafka name, sorted, each with its source in
/// Kafka's order of precedence: this broker's dynamic value, the
/// cluster-wide dynamic default, the static setting (`--set`, `--config`),
/// Kafka's default. Only `DYNAMIC_BROKER_SETTINGS` are writable.
fn broker_configs(config: &BrokerConfig, storage: &StorageConfig, dynamic: &DynamicBrokerConfigs) -> Vec<Described> {
    let kafka = BrokerConfig::default();
    let kafka_storage = StorageConfig::new("");
    let log = &storage.default_log;
    let kafka_log = &kafka_storage.default_log;
    let effective = dynamic.apply_to(log).unwrap_or_else(|_| log.clone());
    // (name, static value, type, Kafka's default, effective value)
    let mut entries: Vec<(&str, String, i8, String, String)> = Vec::new();
    let mut fixed = |name: &'static str, value: String, config_type: i8, default: String| {
        entries.push((name, value.clone(), config_type, default, value));
    };
    fixed(
        "advertised.listeners",
        format!("PLAINTEXT://{}:{}", config.advertised_host, config.advertised_port),
        TYPE_STRING,
        String::new(),
    );
    fixed(
        "auto.create.topics.enable",
        config.auto_create_topics.to_string(),
        TYPE_BOOLEAN,
        kafka.auto_create_topics.to_string(),
    );
    fixed("broker.id", config.node_id.to_string(), TYPE_INT, String::new());
    fixed(
        "default.replication.factor",
        config.default_replication_factor.to_string(),
        TYPE_INT,
        kafka.default_replication_factor.to_string(),
    );
    fixed(
        "log.retention.check.interval.ms",
        storage.retention_check_interval_ms.to_string(),
        TYPE_LONG,
        kafka_storage.retention_check_interval_ms.to_string(),
    );
    fixed("node.id", config.node_id.to_string(), TYPE_INT, String::new());
    fixed("num.partitions", config.num_partitions.to_string(), TYPE_INT, kafka.num_partitions.to_string());
    fixed(
        "socket.request.max.bytes",
        config.socket_request_max_bytes.to_string(),
        TYPE_INT,
        kafka.socket_request_max_bytes.to_string(),
    );
    match storage.flush {
        FlushPolicy::Always => fixed("log.flush.interval.messages", "1".to_owned(), TYPE_LONG, i64::MAX.to_string()),
        FlushPolicy::Interval { interval_ms } => {
            fixed("log.flush.interval.ms", interval_ms.to_string(), TYPE_LONG, String::new())
        }
    }
    // Stored-only topic configs have no broker setting behind them here.
    let stored_only = |name: &str| crate::broker::topics::STORED_ONLY_TOPIC_CONFIGS.iter().any(|(n, _, _)| *n == name);
    for def in TOPIC_CONFIG_DEFS.iter().filter(|def| !stored_only(def.name)) {
        entries.push((
            def.broker_name,
            (def.value)(log),
            def.config_type,
            (def.value)(kafka_log),
            (def.value)(&effective),
        ));
    }
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
        .into_iter()
        .map(|(name, value, config_type, kafka_default, effective)| {
            let mut synonyms = Vec::new();
            if let Some(v) = dynamic.broker.get(name) {
                synonyms.push((name.to_owned(), v.clone(), SOURCE_DYNAMIC_BROKER_CONFIG));
            }
            if let Some(v) = dynamic.cluster.get(name) {
                synonyms.push((name.to_owned(), v.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG));
            }
            if value != kafka_default {
                synonyms.push((name.to_owned(), value.clone(), SOURCE_STATIC_BROKER_CONFIG));
            }
            if !kafka_default.is_empty() {
                synonyms.push((name.to_owned(), kafka_default, SOURCE_DEFAULT_CONFIG));
            }
            let source = synonyms.first().map_or(SOURCE_STATIC_BROKER_CONFIG, |s| s.2);
            let read_only = !crate::config::DYNAMIC_BROKER_SETTINGS.contains(&name);
            Described { name: name.to_owned(), value: effective, config_type, source, read_only, synonyms }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::topics::TOPIC_CONFIGS;

    #[test]
    fn every_topic_config_is_described() {
        for name in TOPIC_CONFIGS {
            assert!(topic_config_def(name).is_some(), "{name} has no description");
        }
        assert_eq!(TOPIC_CONFIG_DEFS.len(), TOPIC_CONFIGS.len());
        // Kafka's defaults.
        let log = LogConfig::default();
        let value = |name| (topic_config_def(name).unwrap().value)(&log);
        assert_eq!(value("retention.ms"), "604800000");
        assert_eq!(value("segment.bytes"), "1073741824");
        assert_eq!(value("max.message.bytes"), "1048588");
        assert_eq!(value("cleanup.policy"), "delete");
        assert_eq!(value("message.timestamp.type"), "CreateTime");
        let append_time = LogConfig { log_append_time: true, ..LogConfig::default() };
        assert_eq!((topic_config_def("message.timestamp.type").unwrap().value)(&append_time), "LogAppendTime");
    }

    #[test]
    fn broker_settings_report_their_source() {
        let mut storage = StorageConfig::new("/tmp/x");
        storage.default_log.retention_ms = 1000;
        let configs = broker_configs(&BrokerConfig::default(), &storage, &DynamicBrokerConfigs::default());
        let find = |name: &str| configs.iter().find(|c| c.name == name).unwrap();
        assert_eq!(find("log.retention.ms").value, "1000");
        assert_eq!(find("log.retention.ms").source, SOURCE_STATIC_BROKER_CONFIG);
        assert_eq!(find("log.segment.bytes").source, SOURCE_DEFAULT_CONFIG);
        assert!(!find("log.segment.bytes").read_only && find("num.partitions").read_only);
        assert!(configs.windows(2).all(|w| w[0].name < w[1].name));

        // Dynamic values win: this broker's over the cluster default over static.
        let mut dynamic = DynamicBrokerConfigs::default();
        dynamic.cluster.insert("log.retention.ms".into(), "2000".into());
        dynamic.cluster.insert("log.segment.bytes".into(), "65536".into());
        dynamic.broker.insert("log.retention.ms".into(), "3000".into());
        let configs = broker_configs(&BrokerConfig::default(), &storage, &dynamic);
        let find = |name: &str| configs.iter().find(|c| c.name == name).unwrap();
        let retention = find("log.retention.ms");
        assert_eq!((retention.value.as_str(), retention.source), ("3000", SOURCE_DYNAMIC_BROKER_CONFIG));
        let sources: Vec<i8> = retention.synonyms.iter().map(|s| s.2).collect();
        assert_eq!(
            sources,
            [
                SOURCE_DYNAMIC_BROKER_CONFIG,
                SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG,
                SOURCE_STATIC_BROKER_CONFIG,
                SOURCE_DEFAULT_CONFIG
            ]
        );
        let segment = find("log.segment.bytes");
        assert_eq!((segment.value.as_str(), segment.source), ("65536", SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG));
    }
}
