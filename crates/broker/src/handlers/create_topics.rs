//! CreateTopics (key 19), v2–v7: with topic configs and `validate_only`.
//! Replication factor must be 1 (or -1 for the default) on one broker.
//! Manual replica assignments are checked as Kafka's controller checks
//! them: partitions 0..n-1 each once, a non-empty replica list without
//! duplicates naming live brokers only (on one node: this broker), the same
//! replica count everywhere, and no partition count or replication factor
//! beside them. A success carries a null error message, as Kafka's does.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};
use uuid::Uuid;

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::CreateTopics, min_version: 2, max_version: 7 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let create: CreateTopicsRequest = decode_body(&mut body, version, "CreateTopics request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut results = Vec::with_capacity(create.topics.len());
        for topic in create.topics {
            let name = topic.name.0.as_str().to_owned();
            let result = CreatableTopicResult::default().with_name(topic.name.clone());
            let mut configs = BTreeMap::new();
            let mut null_config = None;
            for config in &topic.configs {
                match &config.value {
                    Some(value) => {
                        configs.insert(config.name.as_str().to_owned(), value.as_str().to_owned());
                    }
                    None => null_config = Some(config.name.as_str().to_owned()),
                }
            }
            let outcome = if let Some(key) = null_config {
                Err(crate::broker::TopicError {
                    code: error_code::INVALID_CONFIG,
                    message: format!("null value for {key}"),
                })
            } else if !topic.assignments.is_empty() {
                let assignments: Vec<(i32, Vec<i32>)> = topic
                    .assignments
                    .iter()
                    .map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect()))
                    .collect();
                // The registered brokers; the controller checks they are live.
                let brokers: Vec<i32> =
                    broker.cluster().map_or(vec![broker.config.node_id], |v| v.image.brokers.keys().copied().collect());
                match check_assignments(&assignments, topic.num_partitions, topic.replication_factor, &brokers) {
                    Ok((partitions, replication)) => {
                        let mut ordered = assignments.clone();
                        ordered.sort_by_key(|(p, _)| *p);
                        let replicas = ordered.into_iter().map(|(_, r)| r).collect();
                        broker
                            .create_topic_assigned(
                                name,
                                partitions,
                                replication,
                                configs,
                                create.validate_only,
                                Some(replicas),
                            )
                            .await
                    }
                    Err(e) => Err(e),
                }
            } else {
                broker
                    .create_topic(name, topic.num_partitions, topic.replication_factor, configs, create.validate_only)
                    .await
            };
            results.push(match outcome {
                Ok(meta) => {
                    let mut result = result.with_error_code(error_code::NONE).with_error_message(None);
                    if version >= 5 {
                        result.num_partitions = meta.partitions;
                        result.replication_factor = broker
                            .cluster()
                            .and_then(|v| {
                                v.image
                                    .topics
                                    .get(&meta.name)
                                    .and_then(|t| t.partitions.first())
                                    .map(|p| p.replicas.len() as i16)
                            })
                            .unwrap_or(1);
                    }
                    if version >= 7 {
                        result.topic_id = Uuid::from_bytes(meta.id);
                    }
                    result
                }
                Err(e) => result.with_error_code(e.code).with_error_message(Some(str_bytes(&e.message))),
            });
        }
        respond(ApiKey::CreateTopics, version, correlation_id, &CreateTopicsResponse::default().with_topics(results))
    }))
}

/// Checks a manual replica assignment, (partition, replica broker ids) per
/// partition, against the live brokers; returns the partition count and
/// replication factor it implies. Kafka's rules and codes.
pub fn check_assignments(
    assignments: &[(i32, Vec<i32>)],
    num_partitions: i32,
    replication_factor: i16,
    live_brokers: &[i32],
) -> Result<(i32, i16), crate::broker::TopicError> {
    let invalid = |message: String| crate::broker::TopicError { code: error_code::INVALID_REPLICA_ASSIGNMENT, message };
    if num_partitions != -1 || replication_factor != -1 {
        return Err(crate::broker::TopicError {
            code: error_code::INVALID_REQUEST,
            message: "a replica assignment cannot be given with a partition count or replication factor".into(),
        });
    }
    let count = assignments.len();
    let mut seen = vec![false; count];
    for (partition, replicas) in assignments {
        let Some(slot) = usize::try_from(*partition).ok().filter(|&p| p < count) else {
            return Err(invalid(format!("partitions must be numbered 0 to {}; got {partition}", count - 1)));
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(invalid(format!("partition {partition} is assigned twice")));
        }
        if replicas.is_empty() {
            return Err(invalid(format!("partition {partition} has no replicas")));
        }
        let mut sorted = replicas.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid(format!("partition {partition} names a broker twice: {replicas:?}")));
        }
        if let Some(unknown) = replicas.iter().find(|b| !live_brokers.contains(b)) {
            return Err(invalid(format!("partition {partition} names broker {unknown}, which is not a live broker")));
        }
        if replicas.len() != assignments[0].1.len() {
            return Err(invalid("every partition must have the same number of replicas".into()));
        }
    }
    let partitions = i32::try_from(count).map_err(|_| invalid("too many partitions".into()))?;
    let replication = i16::try_from(assignments[0].1.len()).map_err(|_| invalid("too many replicas".into()))?;
    Ok((partitions, replication))
}

#[cfg(test)]
mod tests {
    use super::check_assignments;
    use ringstream_protocol::error_code;

    /// Regression (create_topics_manual_assignment): assignments naming live
    /// brokers create the topic; others get INVALID_REPLICA_ASSIGNMENT.
    #[test]
    fn create_topics_manual_assignment() {
        let live = [0];
        assert_eq!(check_assignments(&[(0, vec![0]), (1, vec![0])], -1, -1, &live).unwrap(), (2, 1));
        let code = |a: &[(i32, Vec<i32>)], n, r| check_assignments(a, n, r, &live).unwrap_err().code;
        assert_eq!(code(&[(0, vec![1])], -1, -1), error_code::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(code(&[(0, vec![0, 0])], -1, -1), error_code::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(code(&[(0, vec![])], -1, -1), error_code::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(code(&[(1, vec![0])], -1, -1), error_code::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(code(&[(0, vec![0]), (0, vec![0])], -1, -1), error_code::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(code(&[(0, vec![0])], 1, -1), error_code::INVALID_REQUEST);
        let three = [1, 2, 3];
        assert!(check_assignments(&[(0, vec![1, 2]), (1, vec![2, 3])], -1, -1, &three).is_ok());
        assert_eq!(
            check_assignments(&[(0, vec![1, 2]), (1, vec![3])], -1, -1, &three).unwrap_err().code,
            error_code::INVALID_REPLICA_ASSIGNMENT
        );
    }
}
