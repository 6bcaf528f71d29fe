//! DescribeQuorum (key 55), v0–v2: the metadata quorum's leader, epoch
//! (the Raft term), high watermark (the commit index), and each voter's log
//! end offset and when it was last heard from, as
//! `kafka-metadata-quorum.sh describe --status --replication` shows them.
//! Any broker answers: it asks the quorum leader (KIP-590 forwarding).
//! Registered brokers without the controller role are listed as observers.
//! Only the topic `__cluster_metadata`, partition 0, exists; others get
//! UNKNOWN_TOPIC_OR_PARTITION (Kafka's INVALID_REQUEST for a wrong
//! partition count is kept for an empty request).

use std::rc::Rc;

use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeQuorum, min_version: 0, max_version: 2 };

const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let describe: DescribeQuorumRequest = decode_body(&mut body, version, "DescribeQuorum request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let wanted = describe
            .topics
            .iter()
            .any(|t| t.topic_name.as_str() == METADATA_TOPIC && t.partitions.iter().any(|p| p.partition_index == 0));
        let mut response = DescribeQuorumResponse::default();
        if !wanted {
            response.error_code = error_code::INVALID_REQUEST;
            if version >= 2 {
                response.error_message = Some(str_bytes("only __cluster_metadata-0 is described"));
            }
            return respond(ApiKey::DescribeQuorum, version, correlation_id, &response);
        }
        let partition = match broker.describe_quorum().await {
            Ok((state, observers, voters)) => {
                let now = ringstream_core::clock::now_ms();
                let replica = |id: i32, leo: i64, heard_ms_ago: i64| {
                    let mut r = ReplicaState::default().with_replica_id(BrokerId(id)).with_log_end_offset(leo);
                    if version >= 1 {
                        let at = if heard_ms_ago >= 0 { now - heard_ms_ago } else { -1 };
                        r.last_fetch_timestamp = at;
                        r.last_caught_up_timestamp = if leo >= state.high_watermark as i64 { at } else { -1 };
                    }
                    r
                };
                if version >= 2 {
                    response.nodes = voters
                        .iter()
                        .map(|v| {
                            Node::default().with_node_id(BrokerId(v.id)).with_listeners(vec![Listener::default()
                                .with_name(str_bytes("CONTROLLER"))
                                .with_host(str_bytes(&v.host))
                                .with_port(v.port)])
                        })
                        .collect();
                }
                let mut p = PartitionData::default()
                    .with_partition_index(0)
                    .with_error_code(error_code::NONE)
                    .with_leader_id(BrokerId(state.leader))
                    .with_leader_epoch(state.term as i32)
                    .with_high_watermark(state.high_watermark as i64);
                p.current_voters = state.voters.iter().map(|(id, leo, heard)| replica(*id, *leo, *heard)).collect();
                p.observers = observers.iter().map(|id| replica(*id, -1, -1)).collect();
                p
            }
            Err(e) => {
                let mut p = PartitionData::default().with_partition_index(0).with_error_code(e.code);
                if version >= 2 {
                    p.error_message = Some(str_bytes(&e.message));
                }
                p.leader_id = BrokerId(-1);
                p
            }
        };
        response.error_code = error_code::NONE;
        response.topics = vec![TopicData::default()
            .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
            .with_partitions(vec![partition])];
        respond(ApiKey::DescribeQuorum, version, correlation_id, &response)
    }))
}
