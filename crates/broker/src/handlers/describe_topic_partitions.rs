//! DescribeTopicPartitions (key 75), v0 (KIP-966): topics and their
//! partitions, paginated by partition count, as Kafka's
//! DescribeTopicPartitionsRequestHandler does:
//!
//! - No topics named: every topic (as Metadata lists them); else the named
//!   ones (duplicates once). Either way sorted by name, from the cursor's
//!   topic on; a named topic that does not exist gets
//!   UNKNOWN_TOPIC_OR_PARTITION and no partitions.
//! - At most `response_partition_limit` partitions, capped at (and, when
//!   below 1, raised to) `describe_topic_partitions_max` (Kafka's
//!   `max.request.partition.size.limit`, 2000); the cursor's partition is
//!   where its topic starts.
//! - When partitions are left, `next_cursor` names the first one not sent:
//!   in the topic cut short, or partition 0 of the next topic when the
//!   limit ran out exactly at a topic's end.
//! - A cursor whose topic is not among the named topics, or with a negative
//!   partition, is an invalid request: every named topic gets INVALID_REQUEST.

use std::collections::BTreeSet;
use std::rc::Rc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use uuid::Uuid;

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::limits::describe_topic_partitions_max;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeTopicPartitions, min_version: 0, max_version: 0 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let describe: DescribeTopicPartitionsRequest = decode_body(&mut body, version, "DescribeTopicPartitions request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let response = describe_topics(&broker, &describe);
        respond(ApiKey::DescribeTopicPartitions, version, correlation_id, &response)
    }))
}

fn describe_topics(broker: &Broker, describe: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let named: BTreeSet<&str> = describe.topics.iter().map(|t| t.name.as_str()).collect();
    let (cursor_topic, cursor_partition) = match &describe.cursor {
        Some(cursor) => (cursor.topic_name.as_str(), cursor.partition_index),
        None => ("", 0),
    };
    let cursor_invalid =
        describe.cursor.is_some() && (cursor_partition < 0 || (!named.is_empty() && !named.contains(cursor_topic)));
    if cursor_invalid {
        let topics = describe
            .topics
            .iter()
            .map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(error_code::INVALID_REQUEST)
                    .with_name(Some(t.name.clone()))
                    .with_topic_id(Uuid::nil())
                    .with_topic_authorized_operations(i32::MIN)
            })
            .collect();
        return DescribeTopicPartitionsResponse::default().with_topics(topics);
    }
    let names: Vec<String> = if named.is_empty() {
        let mut all: Vec<String> = broker.topics().into_iter().map(|t| t.name).collect();
        all.sort();
        all
    } else {
        named.iter().map(|s| s.to_string()).collect()
    };
    let limit = describe.response_partition_limit.clamp(1, describe_topic_partitions_max);
    let mut left = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    let node = BrokerId(broker.config.node_id);
    for name in names.iter().filter(|name| name.as_str() >= cursor_topic) {
        let Some(topic) = broker.topic(name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(error_code::UNKNOWN_TOPIC_OR_PARTITION)
                    .with_name(Some(TopicName(str_bytes(name))))
                    .with_topic_id(Uuid::nil())
                    .with_topic_authorized_operations(i32::MIN),
            );
            continue;
        };
        if left == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(TopicName(str_bytes(name))).with_partition_index(0));
            break;
        }
        let first = if name.as_str() == cursor_topic { cursor_partition } else { 0 };
        let end = topic.partitions.min(first.saturating_add(left));
        let partitions: Vec<_> = (first..end)
            .map(|p| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(error_code::NONE)
                    .with_partition_index(p)
                    .with_leader_id(node)
                    .with_leader_epoch(0)
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(Vec::new())
            })
            .collect();
        left -= partitions.len() as i32;
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(error_code::NONE)
                .with_name(Some(TopicName(str_bytes(name))))
                .with_topic_id(Uuid::from_bytes(topic.id))
                .with_is_internal(false)
                .with_partitions(partitions)
                .with_topic_authorized_operations(i32::MIN),
        );
        if end < topic.partitions {
            next_cursor = Some(Cursor::default().with_topic_name(TopicName(str_bytes(name))).with_partition_index(end));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}
