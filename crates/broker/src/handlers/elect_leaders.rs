//! ElectLeaders (key 43), v0–v2, answered as Kafka's controller answers
//! with one broker: this node leads every partition and is its preferred
//! (only) replica, so no election is ever needed.
//!
//! - A named, existing partition: ELECTION_NOT_NEEDED ("Leader election not
//!   needed for topic partition."), for preferred and unclean elections alike.
//! - An unknown topic: UNKNOWN_TOPIC_OR_PARTITION "No such topic as T"; an
//!   unknown partition: "No such partition as T-P".
//! - Null topic partitions (every partition): partitions that need no
//!   election are left out, so the result list is empty.
//! - An election type other than preferred (0) or unclean (1): INVALID_REQUEST
//!   for the whole request (v1+ has a top-level error code).

use std::rc::Rc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ElectLeaders, min_version: 0, max_version: 2 };

/// ELECTION_NOT_NEEDED (not in `error_code`).
pub const ELECTION_NOT_NEEDED: i16 = 84;

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
        for topic in elect.topic_partitions.iter().flatten() {
            let name = topic.topic.as_str();
            let meta = broker.topic(name);
            let partition_result = topic
                .partitions
                .iter()
                .map(|&p| {
                    let (code, message) = match &meta {
                        None => (error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("No such topic as {name}")),
                        Some(t) if !(0..t.partitions).contains(&p) => {
                            (error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("No such partition as {name}-{p}"))
                        }
                        Some(_) => (ELECTION_NOT_NEEDED, "Leader election not needed for topic partition.".to_owned()),
                    };
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(&message)))
                })
                .collect();
            response.replica_election_results.push(
                ReplicaElectionResult::default()
                    .with_topic(topic.topic.clone())
                    .with_partition_result(partition_result),
            );
        }
        respond(ApiKey::ElectLeaders, version, correlation_id, &response)
    }))
}
