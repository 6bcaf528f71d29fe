//! CreatePartitions (key 37), v0–v3: raises a topic's partition count to
//! `count`, with `validate_only`.
//!
//! Errors and messages as Kafka's controller: the same count or fewer is
//! INVALID_PARTITIONS; manual assignments are accepted when they are valid on
//! this one broker (one assignment per new partition, each exactly this
//! node), else INVALID_REPLICA_ASSIGNMENT; a topic named twice is
//! INVALID_REQUEST (answered once).

use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::{Broker, TopicError};
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::CreatePartitions, min_version: 0, max_version: 3 };

use ringstream_protocol::error_code::INVALID_REPLICA_ASSIGNMENT;

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let create: CreatePartitionsRequest = decode_body(&mut body, version, "CreatePartitions request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for topic in &create.topics {
            *counts.entry(topic.name.0.as_str()).or_default() += 1;
        }
        let mut answered = std::collections::HashSet::new();
        let mut results = Vec::with_capacity(create.topics.len());
        for topic in &create.topics {
            let name = topic.name.0.as_str();
            if !answered.insert(name) {
                continue;
            }
            let outcome = if counts[name] > 1 {
                Err(TopicError { code: error_code::INVALID_REQUEST, message: "Duplicate topic name.".into() })
            } else {
                grow(&broker, topic, create.validate_only).await
            };
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            results.push(match outcome {
                Ok(()) => result.with_error_code(error_code::NONE),
                Err(e) => result.with_error_code(e.code).with_error_message(Some(str_bytes(&e.message))),
            });
        }
        respond(
            ApiKey::CreatePartitions,
            version,
            correlation_id,
            &CreatePartitionsResponse::default().with_results(results),
        )
    }))
}

async fn grow(broker: &Broker, topic: &CreatePartitionsTopic, validate_only: bool) -> Result<(), TopicError> {
    let name = topic.name.0.as_str();
    let Some(meta) = broker.topic(name) else {
        return Err(TopicError {
            code: error_code::UNKNOWN_TOPIC_OR_PARTITION,
            message: format!("The topic '{name}' does not exist."),
        });
    };
    let invalid_partitions = |message: String| TopicError { code: error_code::INVALID_PARTITIONS, message };
    if topic.count == meta.partitions {
        return Err(invalid_partitions(format!("Topic already has {} partition(s).", meta.partitions)));
    }
    if topic.count < meta.partitions {
        return Err(invalid_partitions(format!(
            "The topic {name} currently has {} partition(s); {} would not be an increase.",
            meta.partitions, topic.count
        )));
    }
    if let Some(assignments) = &topic.assignments {
        check_assignments(assignments, topic.count - meta.partitions, broker.config.node_id)?;
    }
    broker.add_partitions(name.to_owned(), topic.count, validate_only).await
}

/// Manual assignments for `additional` new partitions on a one-broker
/// cluster whose partitions all have the one replica `node_id`.
fn check_assignments(
    assignments: &[CreatePartitionsAssignment],
    additional: i32,
    node_id: i32,
) -> Result<(), TopicError> {
    let invalid = |message: String| TopicError { code: INVALID_REPLICA_ASSIGNMENT, message };
    if assignments.len() as i64 != i64::from(additional) {
        return Err(invalid(format!(
            "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
            assignments.len()
        )));
    }
    for assignment in assignments {
        let brokers = &assignment.broker_ids;
        if brokers.is_empty() {
            return Err(invalid("The manual partition assignment includes an empty replica list.".into()));
        }
        for (i, id) in brokers.iter().enumerate() {
            if brokers[..i].contains(id) {
                return Err(invalid(format!(
                    "The manual partition assignment includes the broker {} more than once.",
                    id.0
                )));
            }
            if id.0 != node_id {
                return Err(invalid(format!(
                    "The manual partition assignment includes broker {}, but no such broker is registered.",
                    id.0
                )));
            }
        }
        if brokers.len() != 1 {
            return Err(invalid(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have 1 replica(s).",
                brokers.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::BrokerId;

    fn assignment(ids: &[i32]) -> CreatePartitionsAssignment {
        CreatePartitionsAssignment::default().with_broker_ids(ids.iter().map(|&id| BrokerId(id)).collect())
    }

    #[test]
    fn assignments_must_fit_the_one_broker() {
        assert!(check_assignments(&[assignment(&[0]), assignment(&[0])], 2, 0).is_ok());
        for (assignments, additional) in [
            (vec![assignment(&[0])], 2),
            (vec![assignment(&[])], 1),
            (vec![assignment(&[1])], 1),
            (vec![assignment(&[0, 0])], 1),
        ] {
            let e = check_assignments(&assignments, additional, 0).unwrap_err();
            assert_eq!(e.code, INVALID_REPLICA_ASSIGNMENT, "{}", e.message);
        }
    }
}
