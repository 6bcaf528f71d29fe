//! Broker settings under Kafka's names, applied to the runtime and storage
//! configuration. Unknown names and bad values are errors that name the
//! setting, never silently ignored.

use ringstream_core::limits;
use ringstream_shard::RuntimeConfig;
use ringstream_storage::log::{FlushPolicy, LogConfig};

/// Broker settings (Kafka names in comments).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// `node.id`
    pub node_id: i32,
    pub cluster_id: String,
    /// Host and port put in Metadata responses (`advertised.listeners`).
    pub advertised_host: String,
    pub advertised_port: i32,
    /// `num.partitions`
    pub num_partitions: i32,
    /// `auto.create.topics.enable`
    pub auto_create_topics: bool,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `socket.request.max.bytes`
    pub socket_request_max_bytes: usize,
    /// Requests read ahead on one connection before its responses are written.
    pub connection_requests_in_flight_max: usize,
    /// The group coordinator's settings.
    pub groups: crate::groups::GroupsConfig,
    /// The cluster settings (Kafka's names).
    pub cluster: ClusterSettings,
    /// The transaction coordinator's settings.
    pub txn: TxnConfig,
}

/// How this node takes part in a cluster. With `voters` empty the node is
/// a single broker, as before the cluster existed.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// `process.roles` contains `broker`.
    pub broker_role: bool,
    /// `process.roles` contains `controller`.
    pub controller_role: bool,
    /// `controller.quorum.voters`
    pub voters: Vec<ringstream_cluster::Voter>,
    /// `--controller-listen`: where this node's quorum and controller traffic listens.
    pub controller_listen: Option<std::net::SocketAddr>,
    /// `broker.rack`
    pub rack: Option<String>,
    /// `broker.session.timeout.ms`
    pub session_timeout_ms: i64,
    /// `broker.heartbeat.interval.ms`
    pub heartbeat_interval_ms: i64,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for
    /// this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits for data.
    pub replica_fetch_wait_max_ms: i64,
    /// `offsets.topic.replication.factor` (capped at the live brokers when
    /// the offsets topic is created).
    pub offsets_topic_replication_factor: i16,
    /// `replica.selector.class` is Kafka's RackAwareReplicaSelector: the
    /// leader sends a consumer with `client.rack` to an in-sync replica in
    /// its rack (KIP-392).
    pub rack_aware_reads: bool,
    /// `auto.leader.rebalance.enable`
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: i64,
    /// `leader.imbalance.per.broker.percentage`
    pub leader_imbalance_per_broker_percentage: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            broker_role: true,
            controller_role: true,
            voters: Vec::new(),
            controller_listen: None,
            rack: None,
            session_timeout_ms: 9_000,
            heartbeat_interval_ms: 2_000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            offsets_topic_replication_factor: 3,
            rack_aware_reads: false,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_broker_percentage: 10,
        }
    }
}

impl ClusterSettings {
    /// Whether this node runs as part of a cluster (voters configured).
    pub fn enabled(&self) -> bool {
        !self.voters.is_empty()
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            cluster_id: "ringstream-cluster".to_owned(),
            advertised_host: "127.0.0.1".to_owned(),
            advertised_port: 9092,
            num_partitions: 1,
            auto_create_topics: true,
            default_replication_factor: 1,
            socket_request_max_bytes: 104_857_600,
            connection_requests_in_flight_max: 32,
            groups: crate::groups::GroupsConfig::default(),
            txn: TxnConfig::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

/// Everything `ringstream serve` is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub runtime: RuntimeConfig,
    pub broker: BrokerConfig,
}

impl Settings {
    /// Applies one `name=value` setting (Kafka's broker setting names).
    pub fn apply(&mut self, setting: &str) -> Result<(), String> {
        if let Some(result) = apply_broker_setting(&mut self.broker, setting) {
            return result;
        }
        apply_setting(&mut self.runtime, setting)
    }

    /// Applies a TOML config file whose keys are setting names, e.g.
    /// `"log.retention.ms" = 86400000` or `num.partitions = 3` (dotted keys
    /// are read back into the dotted name). Returns the names it set, so the
    /// caller can say which earlier values (a profile's) they override.
    pub fn apply_toml(&mut self, text: &str) -> Result<Vec<String>, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("config file: {e}"))?;
        let mut flat = Vec::new();
        flatten("", &table, &mut flat)?;
        let mut names = Vec::with_capacity(flat.len());
        for (name, value) in flat {
            self.apply(&format!("{name}={value}"))?;
            names.push(name);
        }
        Ok(names)
    }
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) -> Result<(), String> {
    for (key, value) in table {
        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(inner) => flatten(&name, inner, out)?,
            toml::Value::String(s) => out.push((name, s.clone())),
            toml::Value::Integer(i) => out.push((name, i.to_string())),
            toml::Value::Boolean(b) => out.push((name, b.to_string())),
            other => return Err(format!("config file: unsupported value for {name}: {other:?}")),
        }
    }
    Ok(())
}

/// Broker (protocol-level) settings; None when `setting` is not one.
fn apply_broker_setting(broker: &mut BrokerConfig, setting: &str) -> Option<Result<(), String>> {
    let (name, value) = setting.split_once('=')?;
    let (name, value) = (name.trim(), value.trim());
    let int = |min: i64, max: i64| -> Result<i64, String> {
        let v: i64 = value.parse().map_err(|_| format!("{name} must be an integer, got {value:?}"))?;
        if !(min..=max).contains(&v) {
            return Err(format!("{name} must be in [{min}, {max}], got {v}"));
        }
        Ok(v)
    };
    let result = match name {
        "num.partitions" => int(1, 100_000).map(|v| broker.num_partitions = v as i32),
        "auto.create.topics.enable" => match value {
            "true" | "false" => {
                broker.auto_create_topics = value == "true";
                Ok(())
            }
            _ => Err(format!("{name} must be true or false, got {value:?}")),
        },
        "default.replication.factor" => {
            int(1, i64::from(i16::MAX)).map(|v| broker.default_replication_factor = v as i16)
        }
        "offsets.topic.replication.factor" => {
            int(1, i64::from(i16::MAX)).map(|v| broker.cluster.offsets_topic_replication_factor = v as i16)
        }
        "replica.lag.time.max.ms" => int(100, i64::from(i32::MAX)).map(|v| broker.cluster.replica_lag_time_max_ms = v),
        "replica.selector.class" => match value {
            "org.apache.kafka.common.replica.RackAwareReplicaSelector" | "rack-aware" => {
                broker.cluster.rack_aware_reads = true;
                Ok(())
            }
            "org.apache.kafka.common.replica.LeaderSelector" | "" | "leader" => {
                broker.cluster.rack_aware_reads = false;
                Ok(())
            }
            _ => Err(format!("{name} must be Kafka's RackAwareReplicaSelector or LeaderSelector, got {value:?}")),
        },
        "auto.leader.rebalance.enable" => match value {
            "true" | "false" => {
                broker.cluster.auto_leader_rebalance = value == "true";
                Ok(())
            }
            _ => Err(format!("{name} must be true or false, got {value:?}")),
        },
        "leader.imbalance.check.interval.seconds" => {
            int(1, 86_400).map(|v| broker.cluster.leader_imbalance_check_interval_ms = v * 1000)
        }
        "leader.imbalance.per.broker.percentage" => {
            int(0, 100).map(|v| broker.cluster.leader_imbalance_per_broker_percentage = v as u64)
        }
        "replica.fetch.wait.max.ms" => int(0, 60_000).map(|v| broker.cluster.replica_fetch_wait_max_ms = v),
        "socket.request.max.bytes" => int(1024, ringstream_core::limits::frame_bytes_max as i64)
            .map(|v| broker.socket_request_max_bytes = v as usize),
        "node.id" | "broker.id" => int(0, i32::MAX as i64).map(|v| broker.node_id = v as i32),
        "cluster.id" => {
            if value.is_empty() || value.len() > 255 || value.contains(char::is_whitespace) {
                Err(format!("{name} must be 1 to 255 characters with no spaces, got {value:?}"))
            } else {
                broker.cluster_id = value.to_owned();
                Ok(())
            }
        }
        "process.roles" => {
            let roles: Vec<&str> = value.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
            if roles.is_empty() || roles.iter().any(|r| *r != "broker" && *r != "controller") {
                Err(format!("{name} must be broker, controller or broker,controller, got {value:?}"))
            } else {
                broker.cluster.broker_role = roles.contains(&"broker");
                broker.cluster.controller_role = roles.contains(&"controller");
                Ok(())
            }
        }
        "controller.quorum.voters" => ringstream_cluster::parse_voters(value)
            .map(|v| broker.cluster.voters = v)
            .map_err(|e| format!("{name}: {e}")),
        "broker.rack" => {
            broker.cluster.rack = (!value.is_empty()).then(|| value.to_owned());
            Ok(())
        }
        "broker.session.timeout.ms" => int(100, 3_600_000).map(|v| broker.cluster.session_timeout_ms = v),
        "broker.heartbeat.interval.ms" => int(10, 600_000).map(|v| broker.cluster.heartbeat_interval_ms = v),
        "connection.requests.in.flight.max" => {
            int(1, 1024).map(|v| broker.connection_requests_in_flight_max = v as usize)
        }
        "group.initial.rebalance.delay.ms" => {
            int(0, i32::MAX as i64).map(|v| broker.groups.initial_rebalance_delay_ms = v)
        }
        "group.min.session.timeout.ms" => {
            int(1, i32::MAX as i64).map(|v| broker.groups.min_session_timeout_ms = v as i32)
        }
        "group.max.session.timeout.ms" => {
            int(1, i32::MAX as i64).map(|v| broker.groups.max_session_timeout_ms = v as i32)
        }
        "group.max.size" => {
            int(1, ringstream_core::limits::group_members_max as i64).map(|v| broker.groups.max_size = v as usize)
        }
        "offsets.retention.minutes" => int(1, i32::MAX as i64).map(|v| broker.groups.offsets_retention_ms = v * 60_000),
        "offsets.retention.check.interval.ms" => {
            int(1, i32::MAX as i64).map(|v| broker.groups.offsets_retention_check_interval_ms = v)
        }
        "transaction.state.log.num.partitions" => int(1, i64::from(ringstream_core::limits::txn_topic_partitions_max))
            .map(|v| broker.txn.state_log_partitions = v as i32),
        "transaction.state.log.replication.factor" => {
            int(1, i64::from(i16::MAX)).map(|v| broker.txn.state_log_replication_factor = v as i16)
        }
        "transaction.state.log.segment.bytes" => {
            int(ringstream_core::limits::segment_bytes_min as i64, ringstream_core::limits::segment_bytes_max as i64)
                .map(|v| broker.txn.segment_bytes = v as u64)
        }
        "transaction.max.timeout.ms" => int(1, i32::MAX as i64).map(|v| broker.txn.max_timeout_ms = v as i32),
        "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
            int(1, i32::MAX as i64).map(|v| broker.txn.abort_check_interval_ms = v as u64)
        }
        "transactional.id.expiration.ms" => int(1, i32::MAX as i64).map(|v| broker.txn.id_expiration_ms = v),
        "offsets.topic.num.partitions" => int(1, i64::from(ringstream_core::limits::offsets_topic_partitions_max))
            .map(|v| broker.groups.offsets_topic_partitions = v as i32),
        "offsets.topic.segment.bytes" => {
            int(ringstream_core::limits::segment_bytes_min as i64, ringstream_core::limits::segment_bytes_max as i64)
                .map(|v| broker.groups.offsets_segment_bytes = v as u64)
        }
        "group.consumer.session.timeout.ms" => {
            int(1, i32::MAX as i64).map(|v| broker.groups.consumer_session_timeout_ms = v as i32)
        }
        "group.consumer.heartbeat.interval.ms" => {
            int(1, i32::MAX as i64).map(|v| broker.groups.consumer_heartbeat_interval_ms = v as i32)
        }
        "offset.metadata.max.bytes" => {
            int(0, 1024 * 1024).map(|v| broker.groups.offset_metadata_max_bytes = v as usize)
        }
        _ => return None,
    };
    Some(result)
}

/// Applies one storage/runtime `name=value` setting.
pub fn apply_setting(config: &mut RuntimeConfig, setting: &str) -> Result<(), String> {
    let (name, value) =
        setting.split_once('=').ok_or_else(|| format!("setting {setting:?} must look like name=value"))?;
    let (name, value) = (name.trim(), value.trim());
    let int = |what: &str| -> Result<i64, String> {
        value.parse::<i64>().map_err(|_| format!("{what} must be an integer, got {value:?}"))
    };
    let storage = &mut config.storage;
    let log = &mut storage.default_log;
    match name {
        "log.segment.bytes" => log.segment_bytes = non_negative(int(name)?, name)?,
        "log.roll.ms" | "log.segment.ms" => log.segment_ms = int(name)?,
        "log.retention.ms" => log.retention_ms = int(name)?,
        "log.retention.hours" => log.retention_ms = int(name)?.saturating_mul(3_600_000),
        "log.retention.bytes" => log.retention_bytes = int(name)?,
        "log.index.interval.bytes" => {
            log.index_interval_bytes = u32::try_from(int(name)?).map_err(|_| format!("{name} out of range: {value}"))?
        }
        "message.max.bytes" => log.max_message_bytes = non_negative(int(name)?, name)? as usize,
        "log.retention.check.interval.ms" => {
            storage.retention_check_interval_ms = non_negative(int(name)?, name)?.max(1)
        }
        "log.flush.interval.ms" => {
            storage.flush = FlushPolicy::Interval { interval_ms: non_negative(int(name)?, name)?.max(1) }
        }
        "log.flush.policy" => storage.flush = value.parse()?,
        "log.message.timestamp.type" => {
            log.log_append_time = match value {
                "CreateTime" => false,
                "LogAppendTime" => true,
                _ => return Err(format!("{name} must be CreateTime or LogAppendTime, got {value:?}")),
            }
        }
        "batch.cache.bytes" => storage.batch_cache_bytes = non_negative(int(name)?, name)? as usize,
        "shard.spin.before.park.us" => config.spin_before_park_us = non_negative(int(name)?, name)?,
        "placement.policy" => config.balance.policy = value.parse()?,
        "balancer.enable" => {
            config.balance.balancer = match value {
                "true" => true,
                "false" => false,
                _ => return Err(format!("{name} must be true or false, got {value:?}")),
            }
        }
        "balancer.interval.ms" => config.balance.interval_ms = non_negative(int(name)?, name)?.max(1000),
        "balancer.imbalance.percent" => config.balance.imbalance_percent = non_negative(int(name)?, name)?,
        "balancer.min.bytes.per.sec" => config.balance.min_bytes_per_sec = non_negative(int(name)?, name)?,
        "shard.cpus" => {
            let cpus = ringstream_tuning::parse_cpu_list(value).map_err(|e| format!("{name}: {e}"))?;
            if cpus.len() > limits::shards_max {
                return Err(format!("{name} lists {} CPUs; at most {} shards", cpus.len(), limits::shards_max));
            }
            // One shard per listed CPU: the count follows the list.
            config.shards = None;
            config.cpus = Some(cpus);
        }
        "shard.write.buffer.bytes" => {
            storage.write_buffer_bytes =
                in_range(int(name)?, name, limits::io_alignment, limits::commit_round_bytes_max)?
        }
        "shard.io.depth" => storage.io_depth = in_range(int(name)?, name, 1, limits::io_depth_max)?,
        _ => return Err(format!("unknown setting {name:?}")),
    }
    storage.default_log.validate().map_err(|e| e.to_string())
}

/// Dynamic broker configs (IncrementalAlterConfigs on a BROKER resource):
/// the file shard 0 keeps them in, in the data dir.
pub const DYNAMIC_BROKER_CONFIGS_FILE_NAME: &str = "broker-configs";
const dynamic_configs_header: &str = "ringstream-broker-configs 1";

/// Our broker settings that Kafka lets change while the broker runs (per
/// broker and cluster-wide); every other setting is read-only.
pub const DYNAMIC_BROKER_SETTINGS: &[&str] = &[
    "log.index.interval.bytes",
    "log.message.timestamp.type",
    "log.retention.bytes",
    "log.retention.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "message.max.bytes",
];

/// Settings changed at run time: this broker's (`node.id` resource) and the
/// cluster-wide defaults (empty resource name). The broker's win.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynamicBrokerConfigs {
    pub broker: std::collections::BTreeMap<String, String>,
    pub cluster: std::collections::BTreeMap<String, String>,
}

impl DynamicBrokerConfigs {
    /// Reads the file in `data_dir`; none when it is absent.
    pub fn load(data_dir: &std::path::Path) -> Result<DynamicBrokerConfigs, String> {
        let path = data_dir.join(DYNAMIC_BROKER_CONFIGS_FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => DynamicBrokerConfigs::decode(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DynamicBrokerConfigs::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Text: a header, then `broker NAME=VALUE` or `cluster NAME=VALUE` lines.
    pub fn encode(&self) -> String {
        let mut out = format!("{dynamic_configs_header}\n");
        for (scope, map) in [("broker", &self.broker), ("cluster", &self.cluster)] {
            for (name, value) in map {
                out.push_str(&format!("{scope} {name}={value}\n"));
            }
        }
        out
    }

    pub fn decode(text: &str) -> Result<DynamicBrokerConfigs, String> {
        let mut lines = text.lines();
        if lines.next() != Some(dynamic_configs_header) {
            return Err("bad header".into());
        }
        let mut configs = DynamicBrokerConfigs::default();
        for line in lines {
            let (scope, setting) = line.split_once(' ').ok_or_else(|| format!("bad line {line:?}"))?;
            let (name, value) = setting.split_once('=').ok_or_else(|| format!("bad line {line:?}"))?;
            let map = match scope {
                "broker" => &mut configs.broker,
                "cluster" => &mut configs.cluster,
                _ => return Err(format!("bad scope in {line:?}")),
            };
            map.insert(name.to_owned(), value.to_owned());
        }
        Ok(configs)
    }

    /// The topic defaults with the cluster-wide, then this broker's, dynamic
    /// settings applied over `static_log` (what `--set`/`--config` gave).
    pub fn apply_to(&self, static_log: &LogConfig) -> Result<LogConfig, String> {
        let mut config = RuntimeConfig::new(ringstream_storage::shard_storage::StorageConfig::new(""));
        config.storage.default_log = static_log.clone();
        for (name, value) in self.cluster.iter().chain(&self.broker) {
            if !DYNAMIC_BROKER_SETTINGS.contains(&name.as_str()) {
                return Err(format!("{name} cannot be changed dynamically"));
            }
            apply_setting(&mut config, &format!("{name}={value}"))?;
        }
        Ok(config.storage.default_log)
    }
}

thread_local! {
    /// This shard's copy of the dynamic broker configs (None: not read yet).
    static DYNAMIC: std::cell::RefCell<Option<DynamicBrokerConfigs>> = const { std::cell::RefCell::new(None) };
}

/// This shard's dynamic broker configs, read from `data_dir` the first time
/// (an unreadable file is logged and read as none).
pub fn dynamic_broker_configs(data_dir: &std::path::Path) -> DynamicBrokerConfigs {
    DYNAMIC.with(|d| {
        d.borrow_mut()
            .get_or_insert_with(|| {
                DynamicBrokerConfigs::load(data_dir).unwrap_or_else(|e| {
                    tracing::warn!("ignoring unreadable dynamic broker configs: {e}");
                    DynamicBrokerConfigs::default()
                })
            })
            .clone()
    })
}

/// Replaces this shard's copy (after shard 0 persisted the change).
pub fn set_dynamic_broker_configs(configs: DynamicBrokerConfigs) {
    DYNAMIC.with(|d| *d.borrow_mut() = Some(configs));
}

/// The topic defaults in force on this shard: the static ones with the
/// dynamic broker configs over them. Topic configs are applied over these.
pub fn log_defaults(storage: &ringstream_storage::shard_storage::ShardStorage) -> LogConfig {
    let config = storage.config();
    let static_log = &config.default_log;
    dynamic_broker_configs(&config.data_dir).apply_to(static_log).unwrap_or_else(|e| {
        tracing::warn!("dynamic broker configs not applied: {e}");
        static_log.clone()
    })
}

fn in_range(value: i64, name: &str, min: usize, max: usize) -> Result<usize, String> {
    match usize::try_from(value) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("{name} must be in [{min}, {max}], got {value}")),
    }
}

fn non_negative(value: i64, name: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("{name} must not be negative, got {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringstream_storage::shard_storage::StorageConfig;

    #[test]
    fn settings_use_kafka_names_and_reject_bad_input() {
        let mut config = RuntimeConfig::new(StorageConfig::new("/tmp/x"));
        apply_setting(&mut config, "log.segment.bytes=8192").unwrap();
        apply_setting(&mut config, "log.retention.hours=2").unwrap();
        apply_setting(&mut config, "log.flush.interval.ms=20").unwrap();
        assert_eq!(config.storage.default_log.segment_bytes, 8192);
        assert_eq!(config.storage.default_log.retention_ms, 7_200_000);
        assert_eq!(config.storage.flush, FlushPolicy::Interval { interval_ms: 20 });
        apply_setting(&mut config, "placement.policy=least-loaded").unwrap();
        apply_setting(&mut config, "balancer.enable=true").unwrap();
        apply_setting(&mut config, "balancer.interval.ms=5000").unwrap();
        assert_eq!(config.balance.policy, ringstream_shard::policy::PlacementPolicy::LeastLoaded);
        assert!(config.balance.balancer);
        assert_eq!(config.balance.interval_ms, 5000);
        for bad in ["placement.policy=random", "balancer.enable=yes", "balancer.imbalance.percent=-1"] {
            assert!(apply_setting(&mut config, bad).is_err(), "{bad} accepted");
        }
        apply_setting(&mut config, "log.flush.policy=always").unwrap();
        assert_eq!(config.storage.flush, FlushPolicy::Always);
        let mut settings = Settings { runtime: config.clone(), broker: BrokerConfig::default() };
        settings.apply("num.partitions=6").unwrap();
        settings.apply("auto.create.topics.enable=false").unwrap();
        assert!(settings.apply("default.replication.factor=0").is_err());
        assert!(settings.apply("default.replication.factor=3").is_ok());
        settings.apply_toml("num.partitions = 4\n\"log.segment.bytes\" = 65536\n[log.retention]\nms = 1000\n").unwrap();
        assert_eq!(settings.broker.num_partitions, 4);
        assert!(!settings.broker.auto_create_topics);
        assert_eq!(settings.runtime.storage.default_log.retention_ms, 1000);
        assert_eq!(settings.runtime.storage.default_log.segment_bytes, 65536);
        assert!(settings.apply_toml("nope = 1").is_err());
        for bad in [
            "nope=1",
            "log.segment.bytes",
            "log.segment.bytes=abc",
            "log.segment.bytes=10",
            "log.flush.policy=sometimes",
        ] {
            assert!(apply_setting(&mut config, bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn tuning_settings_reach_the_runtime_and_storage_config() {
        let mut config = RuntimeConfig::new(StorageConfig::new("/tmp/x"));
        assert_eq!(config.storage.write_buffer_bytes, limits::commit_round_bytes_max, "default is the max");
        assert_eq!(config.storage.io_depth, limits::io_depth_default);
        config.shards = Some(3);
        apply_setting(&mut config, "shard.cpus=0-1,4").unwrap();
        assert_eq!(config.cpus, Some(vec![0, 1, 4]));
        assert_eq!(config.shards, None, "the count follows the list");
        apply_setting(&mut config, "shard.write.buffer.bytes=1048576").unwrap();
        apply_setting(&mut config, "shard.io.depth=16").unwrap();
        apply_setting(&mut config, "batch.cache.bytes=33554432").unwrap();
        apply_setting(&mut config, "shard.spin.before.park.us=200").unwrap();
        assert_eq!(config.storage.write_buffer_bytes, 1 << 20);
        assert_eq!(config.storage.io_depth, 16);
        assert_eq!(config.storage.batch_cache_bytes, 32 << 20);
        assert_eq!(config.spin_before_park_us, 200);
        let cases = [
            ("shard.io.depth=0", "shard.io.depth must be in [1, 1024], got 0"),
            ("shard.io.depth=1025", "shard.io.depth must be in [1, 1024], got 1025"),
            ("shard.write.buffer.bytes=4095", "shard.write.buffer.bytes must be in [4096, 16777216], got 4095"),
            ("shard.write.buffer.bytes=16777217", "shard.write.buffer.bytes must be in [4096, 16777216], got 16777217"),
            ("shard.cpus=3-1", "shard.cpus: range \"3-1\" runs backwards"),
            ("shard.cpus=", "shard.cpus: empty CPU list"),
        ];
        for (bad, expected) in cases {
            assert_eq!(apply_setting(&mut config, bad).unwrap_err(), expected);
        }
        let mut settings = Settings { runtime: config, broker: BrokerConfig::default() };
        let names = settings.apply_toml("\"batch.cache.bytes\" = 0\n[shard.io]\ndepth = 8\n").unwrap();
        assert_eq!(names, ["batch.cache.bytes", "shard.io.depth"]);
        assert_eq!(settings.runtime.storage.io_depth, 8);
    }

    #[test]
    fn dynamic_broker_configs_round_trip_and_apply_in_order() {
        let mut configs = DynamicBrokerConfigs::default();
        configs.cluster.insert("log.retention.ms".into(), "2000".into());
        configs.cluster.insert("log.segment.bytes".into(), "65536".into());
        configs.broker.insert("log.retention.ms".into(), "3000".into());
        assert_eq!(DynamicBrokerConfigs::decode(&configs.encode()).unwrap(), configs);
        assert!(DynamicBrokerConfigs::decode("nope\n").is_err());
        let applied = configs.apply_to(&LogConfig::default()).unwrap();
        assert_eq!((applied.retention_ms, applied.segment_bytes), (3000, 65536), "the broker's value wins");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DynamicBrokerConfigs::load(dir.path()).unwrap(), DynamicBrokerConfigs::default());
        std::fs::write(dir.path().join(DYNAMIC_BROKER_CONFIGS_FILE_NAME), configs.encode()).unwrap();
        assert_eq!(DynamicBrokerConfigs::load(dir.path()).unwrap(), configs);
        configs.broker.insert("num.partitions".into(), "3".into());
        assert!(configs.apply_to(&LogConfig::default()).is_err(), "read-only settings are not dynamic");
        configs.broker.remove("num.partitions");
        configs.broker.insert("log.segment.bytes".into(), "10".into());
        assert!(configs.apply_to(&LogConfig::default()).is_err(), "values are validated as --set validates them");
    }
}

/// Coordinator settings (Kafka's names in comments).
#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`
    pub state_log_partitions: i32,
    /// `transaction.state.log.replication.factor` (capped at the live brokers)
    pub state_log_replication_factor: i16,
    /// `transaction.state.log.segment.bytes`
    pub segment_bytes: u64,
    /// `transaction.max.timeout.ms`
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub abort_check_interval_ms: u64,
    /// `transactional.id.expiration.ms`
    pub id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            state_log_partitions: 50,
            state_log_replication_factor: 3,
            segment_bytes: 16 * 1024 * 1024,
            max_timeout_ms: 900_000,
            abort_check_interval_ms: 10_000,
            id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
        }
    }
}

/// The transaction log's partitions' settings: no retention (the
/// coordinator compacts it by rewriting the live state).
pub fn txn_log_config(config: &TxnConfig) -> ringstream_storage::log::LogConfig {
    ringstream_storage::log::LogConfig {
        segment_bytes: config.segment_bytes,
        retention_ms: -1,
        retention_bytes: -1,
        max_message_bytes: ringstream_core::limits::batch_bytes_max,
        ..ringstream_storage::log::LogConfig::default()
    }
}
