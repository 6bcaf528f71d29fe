//! ListOffsets (key 2), v1–v10: earliest (-2), latest (-1), max timestamp
//! (-3, from v7) and the first offset at or after a timestamp, through the
//! owning shard's time index. The tiered-storage specs answer as a Kafka
//! without tiered storage does: earliest local (-4, v8+) is the log start,
//! latest tiered (-5, v9+) is offset -1 (nothing is tiered). v10's timeout
//! bounds remote lookups, which there are none of. READ_COMMITTED (v2+)
//! answers latest with the last stable offset, and a timestamp lookup finds
//! only offsets below it, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::types::TopicPartition;
use ringstream_protocol::{decode_body, error_code, Request, WireError};
use ringstream_storage::StorageResult;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ListOffsets, min_version: 1, max_version: 10 };

const latest: i64 = -1;
const earliest: i64 = -2;
const max_timestamp: i64 = -3;
const earliest_local: i64 = -4;
const latest_tiered: i64 = -5;

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let list: ListOffsetsRequest = decode_body(&mut body, version, "ListOffsets request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut topics = Vec::with_capacity(list.topics.len());
        for topic in list.topics {
            let name = topic.name.0.as_str().to_owned();
            let meta = broker.topic_or_internal(&name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for partition in topic.partitions {
                let response = ListOffsetsPartitionResponse::default().with_partition_index(partition.partition_index);
                let known = meta.as_ref().is_some_and(|m| (0..m.partitions).contains(&partition.partition_index));
                let response = if !known {
                    response.with_error_code(error_code::UNKNOWN_TOPIC_OR_PARTITION).with_offset(-1).with_timestamp(-1)
                } else if broker.leadership(&name, partition.partition_index).is_err() {
                    response.with_error_code(error_code::NOT_LEADER_OR_FOLLOWER).with_offset(-1).with_timestamp(-1)
                } else if let Some(code) =
                    epoch_error(partition.current_leader_epoch, broker.leader_epoch(&name, partition.partition_index))
                {
                    response.with_error_code(code).with_offset(-1).with_timestamp(-1)
                } else {
                    let tp = TopicPartition::new(name.clone(), partition.partition_index);
                    let epoch = broker.leader_epoch(&name, partition.partition_index).unwrap_or(0);
                    let committed = version >= 2 && list.isolation_level == 1;
                    match lookup(&broker, tp, partition.timestamp, committed).await {
                        Ok((offset, timestamp)) => response
                            .with_error_code(error_code::NONE)
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        Err(e) => response.with_error_code(e.kafka_error_code()).with_offset(-1).with_timestamp(-1),
                    }
                };
                partitions.push(response);
            }
            topics.push(ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions));
        }
        respond(ApiKey::ListOffsets, version, correlation_id, &ListOffsetsResponse::default().with_topics(topics))
    }))
}

/// (offset, timestamp) for one partition; -1s when no record qualifies.
async fn lookup(broker: &Broker, tp: TopicPartition, timestamp: i64, committed: bool) -> StorageResult<(i64, i64)> {
    let shard = &broker.shard;
    let found = match timestamp {
        latest => {
            let offsets = shard.offsets(&tp).await?;
            return Ok((if committed { offsets.last_stable_offset.0 } else { offsets.high_watermark.0 }, -1));
        }
        earliest | earliest_local => (shard.offsets(&tp).await?.log_start_offset.0, -1),
        latest_tiered => (-1, -1),
        max_timestamp => shard.max_timestamp(&tp).await?.map_or((-1, -1), |(offset, ts)| (offset.0, ts)),
        at => shard.offset_for_timestamp(&tp, at).await?.map_or((-1, -1), |(offset, ts)| (offset.0, ts)),
    };
    if committed && (timestamp == max_timestamp || timestamp >= 0) && found.0 >= 0 {
        // Only offsets a read_committed consumer could fetch.
        let lso = shard.offsets(&tp).await?.last_stable_offset.0;
        if found.0 >= lso {
            return Ok((-1, -1));
        }
    }
    Ok(found)
}

/// KIP-320: a request naming a leader epoch older than the partition's gets
/// FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH (-1: not checked).
pub fn epoch_error(current_leader_epoch: i32, epoch: Option<i32>) -> Option<i16> {
    let epoch = epoch?;
    if current_leader_epoch < 0 {
        return None;
    }
    match current_leader_epoch.cmp(&epoch) {
        std::cmp::Ordering::Less => Some(error_code::FENCED_LEADER_EPOCH),
        std::cmp::Ordering::Greater => Some(error_code::UNKNOWN_LEADER_EPOCH),
        std::cmp::Ordering::Equal => None,
    }
}
