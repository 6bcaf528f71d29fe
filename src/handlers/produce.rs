//! Produce (key 0), v3–v9: one record batch per partition (as Kafka requires
//! from v3), appended on the partition's owner with acks 0, 1 or -1. On one
//! node acks=1 and acks=-1 are the same: the append is acknowledged once it
//! is durable under the flush policy. Errors are per partition.
//!
//! The ordered part runs in `start`: every partition's batch is queued (its
//! offsets assigned) before the connection reads its next request, so
//! pipelined produce requests land in order.

use std::rc::Rc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use crate::limits;
use crate::protocol::{decode_body, error_code, Request, WireError};
use crate::shard::router::RoutedTicket;
use crate::storage::batch;
use crate::types::TopicPartition;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Produce, min_version: 3, max_version: 9 };

/// What ApiVersions reports as Produce's oldest version. librdkafka before
/// 2.10 (Debian's kcat has 2.0.2) only compresses with gzip or snappy when
/// the broker lists Produce v0, so, like Kafka 4.0 (KAFKA-18659), we list it;
/// a request older than v3 still closes its connection, and librdkafka never
/// sends one when v3+ is on offer.
pub const advertised_min_version: i16 = 0;

enum Outcome {
    Queued(RoutedTicket),
    Failed(i16),
}

pub async fn start(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let correlation_id = request.header.correlation_id;
    let mut body = request.body;
    let produce: ProduceRequest = decode_body(&mut body, version, "Produce request")?;
    let acks = produce.acks;
    let acks_valid = matches!(acks, 0 | 1 | -1);
    let mut topics = Vec::with_capacity(produce.topic_data.len());
    for topic_data in produce.topic_data {
        let name = topic_data.name.0.as_str().to_owned();
        let topic = if acks_valid { Some(broker.topic_or_create(&name, true).await) } else { None };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for partition in topic_data.partition_data {
            let outcome = match &topic {
                None => Outcome::Failed(error_code::INVALID_REQUIRED_ACKS),
                Some(Err(e)) => Outcome::Failed(e.code),
                Some(Ok(meta)) if partition.index < 0 || partition.index >= meta.partitions => {
                    Outcome::Failed(error_code::UNKNOWN_TOPIC_OR_PARTITION)
                }
                Some(Ok(_)) => queue(broker, &name, partition.index, partition.records).await,
            };
            partitions.push((partition.index, outcome));
        }
        topics.push((topic_data.name, partitions));
    }
    Ok(Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let mut partition_responses = Vec::with_capacity(partitions.len());
            for (index, outcome) in partitions {
                let response = PartitionProduceResponse::default().with_index(index).with_log_append_time_ms(-1);
                let response = match outcome {
                    Outcome::Failed(code) => response.with_error_code(code).with_base_offset(-1).with_log_start_offset(-1),
                    Outcome::Queued(ticket) => match ticket.wait().await {
                        Ok(info) => response
                            .with_error_code(error_code::NONE)
                            .with_log_append_time_ms(info.log_append_time_ms)
                            .with_base_offset(info.base_offset.0)
                            .with_log_start_offset(if version >= 5 { info.log_start_offset.0 } else { -1 }),
                        Err(e) => response
                            .with_error_code(error_code::from_name(e.kafka_error_name()))
                            .with_base_offset(-1)
                            .with_log_start_offset(-1),
                    },
                };
                partition_responses.push(response);
            }
            responses.push(TopicProduceResponse::default().with_name(name).with_partition_responses(partition_responses));
        }
        if acks == 0 {
            return None; // the client expects no response
        }
        respond(ApiKey::Produce, version, correlation_id, &ProduceResponse::default().with_responses(responses))
    }))
}

async fn queue(broker: &Broker, topic: &str, partition: i32, records: Option<bytes::Bytes>) -> Outcome {
    let Some(records) = records else { return Outcome::Failed(error_code::CORRUPT_MESSAGE) };
    // From v3 a partition's records are exactly one batch.
    let mut batches = batch::split_batches(&records, limits::batch_bytes_max);
    match (batches.next(), batches.next()) {
        (Some(Ok(one)), None) if one.len() == records.len() => {}
        (Some(Ok(_)), Some(_)) => return Outcome::Failed(error_code::INVALID_RECORD),
        _ => return Outcome::Failed(error_code::CORRUPT_MESSAGE),
    }
    let tp = TopicPartition::new(topic, partition);
    match broker.shard.submit(&tp, records).await {
        Ok(ticket) => Outcome::Queued(ticket),
        Err(e) => Outcome::Failed(error_code::from_name(e.kafka_error_name())),
    }
}
