//! ElectLeaders (key 43), v0–v2, decided by the active controller
//! (`controller::elect_leaders`), as Kafka's is:
//!
//! - Preferred (0): a partition goes to its first replica when that broker
//!   is live and in the ISR; ELECTION_NOT_NEEDED when it leads already,
//!   PREFERRED_LEADER_NOT_AVAILABLE when it cannot.
//! - Unclean (1): a partition without a leader goes to a live ISR member,
//!   else to any live replica (acknowledged records may be lost; logged);
//!   ELECTION_NOT_NEEDED when it has a leader, ELIGIBLE_LEADERS_NOT_AVAILABLE
//!   when no replica is live.
//! - An unknown partition: UNKNOWN_TOPIC_OR_PARTITION.
//! - Null topic partitions (every partition): partitions that need no
//!   election are left out.
//! - An election type other than preferred (0) or unclean (1): INVALID_REQUEST
//!   for the whole request (v1+ has a top-level error code).

use std::rc::Rc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::limits;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ElectLeaders, min_version: 0, max_version: 2 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let elect: ElectLeadersRequest = decode_body(&mut body, version, "ElectLeaders request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut response = ElectLeadersResponse::default();
        if version >= 1 && !(0..=1).contains(&elect.election_type) {
            response.error_code = error_code::INVALID_REQUEST;
            return respond(ApiKey::ElectLeaders, version, correlation_id, &response);
        }
        let partitions: Option<Vec<(String, i32)>> = elect.topic_partitions.as_ref().map(|topics| {
            topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.as_str().to_owned(), *p)))
                .take(limits::fetch_partitions_max)
                .collect()
        });
        let results = match broker.elect_leaders(partitions, elect.election_type == 1).await {
            Ok(results) => results,
            Err(e) => {
                // The whole request failed (no controller): every named
                // partition gets the error (v0 has no top-level code).
                response.error_code = if version >= 1 { e.code } else { error_code::NONE };
                let named = elect.topic_partitions.iter().flatten();
                named
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| (t.topic.as_str().to_owned(), *p, e.code, e.message.clone()))
                    })
                    .collect()
            }
        };
        let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
        for (topic, partition, code, message) in results {
            let result = PartitionResult::default()
                .with_partition_id(partition)
                .with_error_code(code)
                .with_error_message((code != error_code::NONE).then(|| str_bytes(&message)));
            match by_topic.iter_mut().find(|r| r.topic.as_str() == topic) {
                Some(r) => r.partition_result.push(result),
                None => by_topic.push(
                    ReplicaElectionResult::default()
                        .with_topic(TopicName(str_bytes(&topic)))
                        .with_partition_result(vec![result]),
                ),
            }
        }
        response.replica_election_results = by_topic;
        respond(ApiKey::ElectLeaders, version, correlation_id, &response)
    }))
}
