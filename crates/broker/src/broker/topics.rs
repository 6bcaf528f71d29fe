//! Topics: name, id, partition count and topic configs.
//!
//! Each shard's table is rebuilt from its copy of the cluster metadata
//! image; the metadata log is the source of truth. A topic reaches a shard
//! only after shard 0 opened the partitions placed on this broker, so any
//! shard that sees it can route to them. The text format below is the
//! `topics` file a single-node Ringstream wrote: it is read once, to import
//! those topics into the metadata log (then kept as `topics.imported`).

/// The internal topic holding transactional ids' state (`txn`).
pub const TXN_TOPIC: &str = "__transaction_state";

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use ringstream_core::limits::topic_partitions_max;
use ringstream_core::limits::topics_max;
use ringstream_core::types::is_valid_topic_name;
use ringstream_storage::log::LogConfig;

pub const TOPICS_FILE_NAME: &str = "topics";
const header: &str = "ringstream-topics 1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: i32,
    /// Topic-level overrides, by Kafka name (`retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
}

/// Topic configs we accept, with how each maps onto the partition log.
pub const TOPIC_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "max.message.bytes",
    "message.timestamp.type",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
    "index.interval.bytes",
    "compression.type",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "max.compaction.lag.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "segment.index.bytes",
    "segment.jitter.ms",
    "unclean.leader.election.enable",
];

/// Kafka topic configs that are accepted, validated by type and stored (and
/// described) but are not part of the partition log's settings: tools that
/// set them (Kafka's own, Terraform providers, Strimzi) must not fail. Two
/// act elsewhere: `min.insync.replicas` (Produce with acks=all) and
/// `unclean.leader.election.enable` (the controller); the others have no
/// effect yet. ARCHITECTURE.md lists them. (name, Kafka's default, kind)
pub const STORED_ONLY_TOPIC_CONFIGS: &[(&str, &str, ConfigKind)] = &[
    ("compression.type", "producer", ConfigKind::Compression),
    ("delete.retention.ms", "86400000", ConfigKind::Long),
    ("file.delete.delay.ms", "60000", ConfigKind::Long),
    ("flush.messages", "9223372036854775807", ConfigKind::Long),
    ("flush.ms", "9223372036854775807", ConfigKind::Long),
    ("max.compaction.lag.ms", "9223372036854775807", ConfigKind::Long),
    ("min.cleanable.dirty.ratio", "0.5", ConfigKind::Ratio),
    ("min.compaction.lag.ms", "0", ConfigKind::Long),
    ("min.insync.replicas", "1", ConfigKind::Long),
    ("preallocate", "false", ConfigKind::Bool),
    ("segment.index.bytes", "10485760", ConfigKind::Long),
    ("segment.jitter.ms", "0", ConfigKind::Long),
    ("unclean.leader.election.enable", "false", ConfigKind::Bool),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    Long,
    Bool,
    Ratio,
    Compression,
}

fn check_stored(name: &str, value: &str, kind: ConfigKind) -> Result<(), String> {
    let ok = match kind {
        ConfigKind::Long => value.parse::<i64>().is_ok_and(|v| v >= 0),
        ConfigKind::Bool => value == "true" || value == "false",
        ConfigKind::Ratio => value.parse::<f64>().is_ok_and(|v| (0.0..=1.0).contains(&v)),
        ConfigKind::Compression => ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"].contains(&value),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid value {value:?} for {name}"))
    }
}

impl TopicMeta {
    /// The partition log settings for this topic: broker defaults with the
    /// topic's overrides applied.
    pub fn log_config(&self, defaults: &LogConfig) -> Result<LogConfig, String> {
        apply_topic_configs(defaults, &self.configs)
    }
}

/// Validates topic configs and applies them over `defaults`.
pub fn apply_topic_configs(defaults: &LogConfig, configs: &BTreeMap<String, String>) -> Result<LogConfig, String> {
    let mut log = defaults.clone();
    for (name, value) in configs {
        let int = || value.parse::<i64>().map_err(|_| format!("{name} must be an integer, got {value:?}"));
        match name.as_str() {
            "retention.ms" => log.retention_ms = int()?,
            "retention.bytes" => log.retention_bytes = int()?,
            "segment.bytes" => {
                log.segment_bytes = u64::try_from(int()?).map_err(|_| format!("{name} must not be negative"))?
            }
            "segment.ms" => log.segment_ms = int()?,
            "max.message.bytes" => {
                log.max_message_bytes = usize::try_from(int()?).map_err(|_| format!("{name} must not be negative"))?
            }
            "index.interval.bytes" => {
                log.index_interval_bytes = u32::try_from(int()?).map_err(|_| format!("{name} out of range"))?
            }
            "cleanup.policy" => {
                if value != "delete" && value != "compact" && value != "compact,delete" && value != "delete,compact" {
                    return Err(format!("cleanup.policy must be delete and/or compact, got {value:?}"));
                }
            }
            "message.timestamp.type" => {
                log.log_append_time = match value.as_str() {
                    "CreateTime" => false,
                    "LogAppendTime" => true,
                    _ => {
                        return Err(format!(
                            "message.timestamp.type must be CreateTime or LogAppendTime, got {value:?}"
                        ))
                    }
                };
            }
            other => match STORED_ONLY_TOPIC_CONFIGS.iter().find(|(n, _, _)| *n == other) {
                Some((_, _, kind)) => check_stored(name, value, *kind)?,
                None => return Err(format!("unknown topic config {name:?}")),
            },
        }
    }
    log.validate().map_err(|e| e.to_string())?;
    Ok(log)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicTable {
    topics: BTreeMap<String, TopicMeta>,
}

impl TopicTable {
    pub fn get(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub fn by_id(&self, id: &[u8; 16]) -> Option<&TopicMeta> {
        self.topics.values().find(|t| &t.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TopicMeta> {
        self.topics.values()
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    pub fn insert(&mut self, topic: TopicMeta) {
        assert!(is_valid_topic_name(&topic.name));
        assert!(topic.partitions >= 1 && topic.partitions <= topic_partitions_max);
        self.topics.insert(topic.name.clone(), topic);
    }

    pub fn remove(&mut self, name: &str) -> Option<TopicMeta> {
        self.topics.remove(name)
    }

    /// Text format: a header line, then per topic
    /// `topic <name> <id-hex> <partitions>` followed by its
    /// `config <name> <key> <value>` lines.
    pub fn encode(&self) -> String {
        let mut out = format!("{header}\n");
        for topic in self.topics.values() {
            out.push_str(&format!("topic {} {} {}\n", topic.name, hex(&topic.id), topic.partitions));
            for (key, value) in &topic.configs {
                assert!(!value.contains('\n'));
                out.push_str(&format!("config {} {} {}\n", topic.name, key, value));
            }
        }
        out
    }

    pub fn decode(text: &str) -> Result<TopicTable, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, line)) if line == header => {}
            _ => return Err("missing header".into()),
        }
        if !text.ends_with('\n') {
            return Err("torn file (no final newline)".into());
        }
        let mut table = TopicTable::default();
        for (number, line) in lines {
            let bad = |reason: &str| format!("line {}: {reason}", number + 1);
            let mut fields = line.splitn(4, ' ');
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some("topic"), Some(name), Some(id), Some(partitions)) => {
                    if !is_valid_topic_name(name) || table.topics.contains_key(name) {
                        return Err(bad("invalid or duplicate topic name"));
                    }
                    let id = unhex(id).ok_or_else(|| bad("bad topic id"))?;
                    let partitions: i32 = partitions.parse().map_err(|_| bad("bad partition count"))?;
                    if !(1..=topic_partitions_max).contains(&partitions) {
                        return Err(bad("partition count out of range"));
                    }
                    if table.topics.len() >= topics_max {
                        return Err(bad("too many topics"));
                    }
                    table.insert(TopicMeta { name: name.to_owned(), id, partitions, configs: BTreeMap::new() });
                }
                (Some("config"), Some(name), Some(key), Some(value)) => {
                    let topic = table.topics.get_mut(name).ok_or_else(|| bad("config for unknown topic"))?;
                    if !TOPIC_CONFIGS.contains(&key) {
                        return Err(bad("unknown config"));
                    }
                    topic.configs.insert(key.to_owned(), value.to_owned());
                }
                _ => return Err(bad("unparsable line")),
            }
        }
        Ok(table)
    }

    pub fn load(data_dir: &Path) -> io::Result<TopicTable> {
        let path = data_dir.join(TOPICS_FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => TopicTable::decode(&text)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(TopicTable::default()),
            Err(e) => Err(e),
        }
    }
}

fn hex(bytes: &[u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A fresh random topic id (a version-4 UUID), never all zeros.
pub fn new_topic_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
        ^ (std::process::id() as u64).rotate_left(32);
    let mut random = [0u8; 16];
    // getrandom through libc; fall back to a time-seeded xorshift.
    let got = unsafe { libc::getrandom(random.as_mut_ptr().cast(), 16, 0) };
    for (i, byte) in id.iter_mut().enumerate() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = if got == 16 { random[i] } else { state as u8 };
    }
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_round_trips_and_rejects_damage() {
        let mut table = TopicTable::default();
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_owned(), "1000".to_owned());
        table.insert(TopicMeta { name: "a".into(), id: new_topic_id(), partitions: 3, configs });
        table.insert(TopicMeta { name: "b-c".into(), id: new_topic_id(), partitions: 1, configs: BTreeMap::new() });
        let text = table.encode();
        assert_eq!(TopicTable::decode(&text).unwrap(), table);
        assert!(TopicTable::decode(&text[..text.len() - 1]).is_err());
        assert!(TopicTable::decode("ringstream-topics 1\ntopic a zz 1\n").is_err());
        assert!(TopicTable::decode("ringstream-topics 1\nconfig a retention.ms 1\n").is_err());
        assert!(TopicTable::decode("nope\n").is_err());
    }

    #[test]
    fn topic_configs_map_onto_the_log_and_bad_ones_are_rejected() {
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_owned(), "60000".to_owned());
        configs.insert("segment.bytes".to_owned(), "1048576".to_owned());
        let log = apply_topic_configs(&LogConfig::default(), &configs).unwrap();
        assert_eq!(log.retention_ms, 60_000);
        assert_eq!(log.segment_bytes, 1_048_576);
        for (key, value) in [("segment.bytes", "12"), ("retention.ms", "x"), ("nope", "1"), ("cleanup.policy", "keep")]
        {
            let mut configs = BTreeMap::new();
            configs.insert(key.to_owned(), value.to_owned());
            assert!(apply_topic_configs(&LogConfig::default(), &configs).is_err(), "{key}={value}");
        }
        assert_ne!(new_topic_id(), new_topic_id());
    }
}
