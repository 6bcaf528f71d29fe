//! DescribeProducers (key 61), v0: per partition, the idempotent producers
//! its log remembers (`ProducerState`), read on the owning shard through the
//! router: producer id, epoch, last sequence and the max timestamp of its
//! newest acknowledged batch, and the first offset of its open transaction
//! (-1 outside one: what `ringstream transactions find-hanging` looks for).
//! The coordinator epoch is not kept per producer: -1. Unknown topics or partitions get
//! UNKNOWN_TOPIC_OR_PARTITION.

use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{ApiKey, DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::types::TopicPartition;
use ringstream_protocol::{decode_body, error_code, Request, WireError};
use ringstream_storage::StorageError;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeProducers, min_version: 0, max_version: 0 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let describe: DescribeProducersRequest = decode_body(&mut body, version, "DescribeProducers request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut topics = Vec::with_capacity(describe.topics.len());
        for topic in &describe.topics {
            let name = topic.name.as_str();
            let meta = broker.topic(name);
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for &index in &topic.partition_indexes {
                let response = PartitionResponse::default().with_partition_index(index);
                if !meta.as_ref().is_some_and(|t| (0..t.partitions).contains(&index)) {
                    partitions.push(
                        response
                            .with_error_code(error_code::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(str_bytes("This server does not host this topic-partition."))),
                    );
                    continue;
                }
                let tp = TopicPartition::new(name, index);
                let found = broker.shard.producers(&tp).await;
                partitions.push(match found {
                    Ok(producers) => response.with_error_code(error_code::NONE).with_active_producers(
                        producers
                            .into_iter()
                            .map(|(id, epoch, last_sequence, last_timestamp, txn_start)| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(id))
                                    .with_producer_epoch(i32::from(epoch))
                                    .with_last_sequence(last_sequence)
                                    .with_last_timestamp(last_timestamp)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(txn_start)
                            })
                            .collect(),
                    ),
                    Err(e) => {
                        let code = match &e {
                            StorageError::UnknownPartition(_) => error_code::UNKNOWN_TOPIC_OR_PARTITION,
                            e => e.kafka_error_code(),
                        };
                        response.with_error_code(code).with_error_message(Some(str_bytes(&e.to_string())))
                    }
                });
            }
            topics.push(TopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions));
        }
        respond(
            ApiKey::DescribeProducers,
            version,
            correlation_id,
            &DescribeProducersResponse::default().with_topics(topics),
        )
    }))
}
