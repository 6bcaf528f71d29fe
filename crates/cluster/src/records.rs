//! Metadata records and the image built from them.
//!
//! The image is a pure function of the committed records, applied in log
//! order: every node that applies the same prefix holds the same image.
//! Records are JSON (serde) inside a Raft entry: metadata is the control
//! plane, a few records per admin request, and JSON keeps the log readable
//! with `jq`. One entry holds the records of one controller decision, so a
//! decision is applied whole or not at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// One change to the cluster's metadata (KIP-631's record types, trimmed to
/// what the image holds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker (re-)registered: a new epoch, its endpoint and rack. It
    /// stays fenced until its first heartbeat after registering.
    RegisterBroker {
        id: NodeId,
        /// Random per process start: tells a restart from a second process
        /// claiming the same id.
        incarnation: u64,
        epoch: i64,
        host: String,
        port: i32,
        rack: Option<String>,
    },
    /// The broker may lead partitions (heartbeating, not shutting down).
    UnfenceBroker { id: NodeId, epoch: i64 },
    /// The broker missed heartbeats or shut down: it leads nothing.
    FenceBroker { id: NodeId, epoch: i64 },
    /// A topic appears (with its partitions in `Partition` records of the
    /// same entry) or an existing one gets new configs.
    Topic { name: String, id: [u8; 16], configs: BTreeMap<String, String> },
    /// Creates or replaces one partition's replica assignment and leadership.
    Partition { topic: String, partition: i32, info: PartitionInfo },
    /// The topic and all its partitions are gone.
    RemoveTopic { name: String },
    /// A block of producer ids was handed out: ids below `next` are used.
    ProducerIds { broker: NodeId, next: i64 },
}

/// A registered broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: NodeId,
    pub incarnation: u64,
    pub epoch: i64,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// A topic: id, config overrides and partitions by index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: [u8; 16],
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionInfo>,
}

/// One partition's replicas and leadership (Kafka's PartitionRecord).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// -1: no leader (offline).
    pub leader: NodeId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// A reassignment in progress (KIP-455): replicas being added, which
    /// are in `replicas` and catch up as followers ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<NodeId>,
    /// ... and replicas to be removed once every target replica is in the ISR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<NodeId>,
}

impl PartitionInfo {
    pub fn new(replicas: Vec<NodeId>) -> PartitionInfo {
        PartitionInfo {
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// Whether a reassignment is in progress.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas a reassignment in progress ends with (or the replicas).
    pub fn target(&self) -> Vec<NodeId> {
        self.replicas.iter().copied().filter(|r| !self.removing.contains(r)).collect()
    }
}

/// Why a record could not be applied. The controller checks before it
/// proposes, so this means a bug or a corrupt log: the node stops applying
/// and says so rather than diverging from the others.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("record for unknown broker {0}")]
    UnknownBroker(NodeId),
    #[error("record for unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("partition {1} of {0:?} is not the next one")]
    PartitionGap(String, i32),
    #[error("partition with no replicas")]
    NoReplicas,
}

/// The cluster as of one metadata offset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Raft index of the last entry applied (0: none).
    pub offset: u64,
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
    /// Producer ids below this have been handed out.
    pub next_producer_id: i64,
}

impl MetadataImage {
    /// Applies one entry's records, all or none.
    pub fn apply_entry(&mut self, offset: u64, records: &[MetadataRecord]) -> Result<(), ApplyError> {
        let mut next = self.clone();
        for record in records {
            next.apply(record)?;
        }
        next.offset = offset;
        *self = next;
        Ok(())
    }

    fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::RegisterBroker { id, incarnation, epoch, host, port, rack } => {
                self.brokers.insert(
                    *id,
                    BrokerInfo {
                        id: *id,
                        incarnation: *incarnation,
                        epoch: *epoch,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: true,
                    },
                );
            }
            MetadataRecord::UnfenceBroker { id, epoch } | MetadataRecord::FenceBroker { id, epoch } => {
                let broker = self.brokers.get_mut(id).ok_or(ApplyError::UnknownBroker(*id))?;
                if broker.epoch == *epoch {
                    broker.fenced = matches!(record, MetadataRecord::FenceBroker { .. });
                }
            }
            MetadataRecord::Topic { name, id, configs } => {
                let topic = self.topics.entry(name.clone()).or_insert_with(|| TopicInfo {
                    name: name.clone(),
                    id: *id,
                    configs: BTreeMap::new(),
                    partitions: Vec::new(),
                });
                topic.configs = configs.clone();
            }
            MetadataRecord::Partition { topic, partition, info } => {
                if info.replicas.is_empty() {
                    return Err(ApplyError::NoReplicas);
                }
                let t = self.topics.get_mut(topic).ok_or_else(|| ApplyError::UnknownTopic(topic.clone()))?;
                let index =
                    usize::try_from(*partition).map_err(|_| ApplyError::PartitionGap(topic.clone(), *partition))?;
                match index.cmp(&t.partitions.len()) {
                    std::cmp::Ordering::Less => t.partitions[index] = info.clone(),
                    std::cmp::Ordering::Equal => t.partitions.push(info.clone()),
                    std::cmp::Ordering::Greater => return Err(ApplyError::PartitionGap(topic.clone(), *partition)),
                }
            }
            MetadataRecord::RemoveTopic { name } => {
                self.topics.remove(name).ok_or_else(|| ApplyError::UnknownTopic(name.clone()))?;
            }
            MetadataRecord::ProducerIds { next, .. } => {
                self.next_producer_id = self.next_producer_id.max(*next);
            }
        }
        Ok(())
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<&TopicInfo> {
        self.topics.values().find(|t| &t.id == id)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionInfo> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(index)
    }

    /// Brokers that may lead partitions.
    pub fn unfenced(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Partitions led by `node`.
    pub fn partitions_led(&self, node: NodeId) -> usize {
        self.topics.values().flat_map(|t| &t.partitions).filter(|p| p.leader == node).count()
    }

    /// Partitions with a replica on `node`: (topic, index).
    pub fn replicas_on(&self, node: NodeId) -> Vec<(String, i32)> {
        let mut out = Vec::new();
        for topic in self.topics.values() {
            for (i, p) in topic.partitions.iter().enumerate() {
                if p.replicas.contains(&node) {
                    out.push((topic.name.clone(), i as i32));
                }
            }
        }
        out
    }
}

/// Encodes one entry's records.
pub fn encode_entry(records: &[MetadataRecord]) -> Vec<u8> {
    serde_json::to_vec(records).expect("records serialize")
}

/// Decodes one entry's records (bounded by the entry's size, which the
/// frame cap bounds).
pub fn decode_entry(data: &[u8]) -> Result<Vec<MetadataRecord>, String> {
    let records: Vec<MetadataRecord> = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    if records.len() > ringstream_core::limits::metadata_entry_records_max {
        return Err(format!("{} records in one entry", records.len()));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(id: NodeId, epoch: i64) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            id,
            incarnation: 7,
            epoch,
            host: "127.0.0.1".into(),
            port: 9092 + id,
            rack: None,
        }
    }

    #[test]
    fn entries_apply_whole_or_not_at_all() {
        let mut image = MetadataImage::default();
        image.apply_entry(1, &[register(1, 1), MetadataRecord::UnfenceBroker { id: 1, epoch: 1 }]).unwrap();
        assert!(!image.brokers[&1].fenced);
        let topic = MetadataRecord::Topic { name: "t".into(), id: [1; 16], configs: BTreeMap::new() };
        let bad = MetadataRecord::Partition { topic: "t".into(), partition: 1, info: PartitionInfo::new(vec![1]) };
        let before = image.clone();
        assert_eq!(image.apply_entry(2, &[topic.clone(), bad]), Err(ApplyError::PartitionGap("t".into(), 1)));
        assert_eq!(image, before);
        let good = MetadataRecord::Partition { topic: "t".into(), partition: 0, info: PartitionInfo::new(vec![1]) };
        image.apply_entry(3, &[topic, good]).unwrap();
        assert_eq!(image.offset, 3);
        assert_eq!(image.partition("t", 0).unwrap().leader, 1);
        assert_eq!(image.partitions_led(1), 1);
        // A fence for an older epoch is ignored: the broker re-registered.
        image.apply_entry(4, &[register(1, 2)]).unwrap();
        image.apply_entry(5, &[MetadataRecord::UnfenceBroker { id: 1, epoch: 1 }]).unwrap();
        assert!(image.brokers[&1].fenced);
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let records = vec![register(3, 9), MetadataRecord::RemoveTopic { name: "x".into() }];
        assert_eq!(decode_entry(&encode_entry(&records)).unwrap(), records);
        assert!(decode_entry(b"[{\"type\":\"Nope\"}]").is_err());
        assert!(decode_entry(&[0xff, 0, 1]).is_err());
    }
}
