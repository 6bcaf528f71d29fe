//! DeleteRecords (key 21), v0–v2: moves each partition's log start up to
//! the requested offset (-1: the high watermark) on the partition's owning
//! shard, through the router (`Shard::delete_records`), and answers with the
//! new log start as the low watermark (one replica: they are the same).
//!
//! As Kafka: an unknown topic or partition gets UNKNOWN_TOPIC_OR_PARTITION,
//! the internal offsets topic INVALID_TOPIC_EXCEPTION, an offset past the
//! high watermark (or negative other than -1) OFFSET_OUT_OF_RANGE; an offset
//! below the current log start changes nothing. The new start is durable
//! (checkpointed) before the answer; whole segments below it are deleted.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::limits::delete_records_in_flight_max;
use ringstream_core::types::TopicPartition;
use ringstream_protocol::{decode_body, error_code, Request, WireError};
use ringstream_storage::StorageError;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DeleteRecords, min_version: 0, max_version: 2 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let delete: DeleteRecordsRequest = decode_body(&mut body, version, "DeleteRecords request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut topics = Vec::with_capacity(delete.topics.len());
        for topic in &delete.topics {
            let name = topic.name.as_str();
            let meta = broker.topic(name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for chunk in topic.partitions.chunks(delete_records_in_flight_max) {
                let work = chunk.iter().map(|p| {
                    let broker = broker.clone();
                    let known = meta.as_ref().is_some_and(|t| (0..t.partitions).contains(&p.partition_index));
                    async move {
                        let result = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                        if Broker::is_internal(name) {
                            return result.with_low_watermark(-1).with_error_code(error_code::INVALID_TOPIC_EXCEPTION);
                        }
                        if !known {
                            return result
                                .with_low_watermark(-1)
                                .with_error_code(error_code::UNKNOWN_TOPIC_OR_PARTITION);
                        }
                        if broker.leadership(name, p.partition_index).is_err() {
                            return result.with_low_watermark(-1).with_error_code(error_code::NOT_LEADER_OR_FOLLOWER);
                        }
                        let tp = TopicPartition::new(name, p.partition_index);
                        match broker.shard.delete_records(&tp, p.offset).await {
                            Ok(start) => result.with_low_watermark(start.0).with_error_code(error_code::NONE),
                            Err(e) => result.with_low_watermark(-1).with_error_code(storage_error_code(&e)),
                        }
                    }
                });
                partitions.extend(futures_util::future::join_all(work).await);
            }
            topics.push(DeleteRecordsTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions));
        }
        respond(ApiKey::DeleteRecords, version, correlation_id, &DeleteRecordsResponse::default().with_topics(topics))
    }))
}

fn storage_error_code(e: &StorageError) -> i16 {
    match e {
        StorageError::UnknownPartition(_) => error_code::UNKNOWN_TOPIC_OR_PARTITION,
        e => e.kafka_error_code(),
    }
}
