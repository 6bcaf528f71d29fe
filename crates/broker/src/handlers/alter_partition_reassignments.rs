//! AlterPartitionReassignments (key 45), v0–v1 (KIP-455), decided by the
//! active controller (`controller::reassign`):
//!
//! - A target replica list: the new replicas join as followers and catch
//!   up; once every target replica is in the ISR the others leave (and
//!   delete their copies), and a leader that is no longer a replica hands
//!   over to an ISR member. A list equal to the current one is a no-op.
//! - A null list cancels the reassignment in progress:
//!   NO_REASSIGNMENT_IN_PROGRESS when there is none.
//! - A list that is empty, repeats a broker, or names an unregistered
//!   broker: INVALID_REPLICA_ASSIGNMENT. With v1's
//!   `allow_replication_factor_change` false, a list of another length than
//!   the current replica set: INVALID_REPLICATION_FACTOR.
//! - An unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION.

use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, TopicName,
};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::limits;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::AlterPartitionReassignments, min_version: 0, max_version: 1 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let alter: AlterPartitionReassignmentsRequest =
        decode_body(&mut body, version, "AlterPartitionReassignments request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let allow_rf_change = version < 1 || alter.allow_replication_factor_change;
        let asked: Vec<(String, i32, Option<Vec<i32>>)> = alter
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    let target = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                    (t.name.as_str().to_owned(), p.partition_index, target)
                })
            })
            .take(limits::fetch_partitions_max)
            .collect();
        let mut response = AlterPartitionReassignmentsResponse::default().with_error_message(None);
        let results = match broker.reassign(asked, allow_rf_change).await {
            Ok(results) => results,
            Err(e) => {
                response.error_code = e.code;
                response.error_message = Some(str_bytes(&e.message));
                Vec::new()
            }
        };
        let mut topics: Vec<ReassignableTopicResponse> = Vec::new();
        for (topic, partition, code, message) in results {
            let result = ReassignablePartitionResponse::default()
                .with_partition_index(partition)
                .with_error_code(code)
                .with_error_message((code != error_code::NONE).then(|| str_bytes(&message)));
            match topics.iter_mut().find(|t| t.name.as_str() == topic) {
                Some(t) => t.partitions.push(result),
                None => topics.push(
                    ReassignableTopicResponse::default()
                        .with_name(TopicName(str_bytes(&topic)))
                        .with_partitions(vec![result]),
                ),
            }
        }
        response.responses = topics;
        if version >= 1 {
            response.allow_replication_factor_change = alter.allow_replication_factor_change;
        }
        respond(ApiKey::AlterPartitionReassignments, version, correlation_id, &response)
    }))
}
