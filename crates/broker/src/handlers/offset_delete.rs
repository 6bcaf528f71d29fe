//! OffsetDelete (key 47), v0: deletes a group's committed offsets for
//! partitions of topics no member subscribes to (GROUP_SUBSCRIBED_TO_TOPIC
//! otherwise); an unknown group is GROUP_ID_NOT_FOUND.

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse};

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::on_coordinator;
use ringstream_protocol::{decode_body, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::OffsetDelete, min_version: 0, max_version: 0 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let delete: OffsetDeleteRequest = decode_body(&mut body, version, "OffsetDelete request")?;
    let correlation_id = request.header.correlation_id;
    let shard = broker.shard.clone();
    Ok(Box::pin(async move {
        let group_id = delete.group_id.0.as_str().to_owned();
        let partitions: Vec<(String, i32)> = delete
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.as_str().to_owned(), p.partition_index)))
            .collect();
        let id = group_id.clone();
        let asked = partitions.clone();
        let outcome =
            on_coordinator(&shard, &group_id, move |c| async move { c.delete_offsets(&id, partitions).await })
                .await
                .unwrap_or_else(|| Err(crate::groups::no_coordinator_error(&group_id)));
        let response = match outcome {
            Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
            Ok(codes) => {
                let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
                for ((topic, partition), code) in asked.into_iter().zip(codes) {
                    let row =
                        OffsetDeleteResponsePartition::default().with_partition_index(partition).with_error_code(code);
                    match topics.last_mut() {
                        Some(last) if last.name.0.as_str() == topic => last.partitions.push(row),
                        _ => topics.push(
                            OffsetDeleteResponseTopic::default()
                                .with_name(kafka_protocol::messages::TopicName(super::str_bytes(&topic)))
                                .with_partitions(vec![row]),
                        ),
                    }
                }
                OffsetDeleteResponse::default().with_topics(topics)
            }
        };
        respond(ApiKey::OffsetDelete, version, correlation_id, &response)
    }))
}
