//! ListPartitionReassignments (key 46), v0: the partitions with a
//! reassignment in progress (KIP-455), from this broker's metadata image:
//! their replicas, and the replicas being added and removed. For every
//! topic, or the named partitions (Kafka's controller skips unknown topics
//! and partitions silently).

use std::rc::Rc;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ListPartitionReassignments, min_version: 0, max_version: 0 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let list: ListPartitionReassignmentsRequest =
        decode_body(&mut body, version, "ListPartitionReassignments request")?;
    let correlation_id = request.header.correlation_id;
    let view = broker.cluster();
    Ok(Box::pin(async move {
        let ids = |v: &[i32]| v.iter().map(|&r| BrokerId(r)).collect::<Vec<_>>();
        let mut topics = Vec::new();
        if let Some(view) = view {
            for topic in view.image.topics.values() {
                let named: Option<Vec<i32>> = match &list.topics {
                    None => None,
                    Some(wanted) => match wanted.iter().find(|t| t.name.as_str() == topic.name) {
                        Some(t) => Some(t.partition_indexes.clone()),
                        None => continue,
                    },
                };
                let partitions: Vec<OngoingPartitionReassignment> = topic
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(i, p)| p.reassigning() && named.as_ref().map_or(true, |n| n.contains(&(*i as i32))))
                    .map(|(i, p)| {
                        OngoingPartitionReassignment::default()
                            .with_partition_index(i as i32)
                            .with_replicas(ids(&p.replicas))
                            .with_adding_replicas(ids(&p.adding))
                            .with_removing_replicas(ids(&p.removing))
                    })
                    .collect();
                if !partitions.is_empty() {
                    topics.push(
                        OngoingTopicReassignment::default()
                            .with_name(TopicName(str_bytes(&topic.name)))
                            .with_partitions(partitions),
                    );
                }
            }
        }
        let response = ListPartitionReassignmentsResponse::default()
            .with_error_code(error_code::NONE)
            .with_error_message(None)
            .with_topics(topics);
        respond(ApiKey::ListPartitionReassignments, version, correlation_id, &response)
    }))
}
