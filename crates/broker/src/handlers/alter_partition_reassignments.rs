//! AlterPartitionReassignments (key 45), v0–v1, answered as Kafka's
//! controller answers with one broker (this node, the only replica of
//! every partition):
//!
//! - Unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION.
//! - A null replica list (cancel): NO_REASSIGNMENT_IN_PROGRESS, as none ever is.
//! - A replica list that is empty, repeats a broker, or names a broker other
//!   than this node: INVALID_REPLICA_ASSIGNMENT.
//! - With v1's `allow_replication_factor_change` false, a list of another
//!   length than the current one (1): INVALID_REPLICATION_FACTOR.
//! - Otherwise the list is this node alone, the current assignment: a no-op
//!   success.

use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::AlterPartitionReassignments, min_version: 0, max_version: 1 };

/// Kafka error codes not in `error_code`.
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let alter: AlterPartitionReassignmentsRequest =
        decode_body(&mut body, version, "AlterPartitionReassignments request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let node = broker.config.node_id;
        let allow_rf_change = version < 1 || alter.allow_replication_factor_change;
        let responses = alter
            .topics
            .iter()
            .map(|topic| {
                let name = topic.name.as_str();
                let meta = broker.topic(name);
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let known = meta.as_ref().is_some_and(|t| (0..t.partitions).contains(&p.partition_index));
                        let outcome = if !known {
                            Err((
                                error_code::UNKNOWN_TOPIC_OR_PARTITION,
                                "This server does not host this topic-partition.".to_owned(),
                            ))
                        } else {
                            check_replicas(p.replicas.as_deref(), node, allow_rf_change)
                        };
                        let response = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
                        match outcome {
                            Ok(()) => response.with_error_code(error_code::NONE).with_error_message(None),
                            Err((code, message)) => {
                                response.with_error_code(code).with_error_message(Some(str_bytes(&message)))
                            }
                        }
                    })
                    .collect();
                ReassignableTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions)
            })
            .collect();
        let mut response = AlterPartitionReassignmentsResponse::default()
            .with_error_code(error_code::NONE)
            .with_error_message(None)
            .with_responses(responses);
        if version >= 1 {
            response.allow_replication_factor_change = alter.allow_replication_factor_change;
        }
        respond(ApiKey::AlterPartitionReassignments, version, correlation_id, &response)
    }))
}

/// Checks a target replica list for a partition whose only replica is `node`.
fn check_replicas(replicas: Option<&[BrokerId]>, node: i32, allow_rf_change: bool) -> Result<(), (i16, String)> {
    let Some(replicas) = replicas else {
        return Err((NO_REASSIGNMENT_IN_PROGRESS, "No partition reassignment is in progress.".to_owned()));
    };
    let invalid = |message: String| Err((INVALID_REPLICA_ASSIGNMENT, message));
    if replicas.is_empty() {
        return invalid("The manual partition assignment includes an empty replica list.".to_owned());
    }
    for (i, replica) in replicas.iter().enumerate() {
        if replicas[..i].contains(replica) {
            return invalid(format!(
                "The manual partition assignment includes the broker {} more than once.",
                replica.0
            ));
        }
        if replica.0 != node {
            return invalid(format!(
                "The manual partition assignment includes broker {}, but no such broker is registered.",
                replica.0
            ));
        }
    }
    if !allow_rf_change && replicas.len() != 1 {
        return Err((
            error_code::INVALID_REPLICATION_FACTOR,
            "The replication factor is changed from 1 to ".to_owned() + &replicas.len().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_lists_are_checked_against_the_one_broker() {
        let ids = |v: &[i32]| v.iter().map(|&i| BrokerId(i)).collect::<Vec<_>>();
        assert!(check_replicas(Some(&ids(&[0])), 0, true).is_ok());
        assert_eq!(check_replicas(None, 0, true).unwrap_err().0, NO_REASSIGNMENT_IN_PROGRESS);
        for bad in [&[][..], &[1], &[0, 1], &[0, 0]] {
            assert_eq!(check_replicas(Some(&ids(bad)), 0, true).unwrap_err().0, INVALID_REPLICA_ASSIGNMENT, "{bad:?}");
        }
        assert!(check_replicas(Some(&ids(&[3])), 3, false).is_ok());
    }
}
