//! ConsumerGroupHeartbeat (key 68), v0–v1: the KIP-848 consumer protocol
//! (`group.protocol=consumer`). Members join (epoch 0), heartbeat with
//! their epoch and owned partitions, and get their assignment from the
//! broker's assignor ("uniform", the default, or "range"); epoch -1 leaves.
//! v1 members bring their own member id. A SubscribedTopicRegex (RE2
//! syntax, whole-name match, as Kafka's RE2J) subscribes to every matching
//! topic, re-evaluated as topics come and go.

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use uuid::Uuid;

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::consumer::{HeartbeatArgs, HeartbeatResult, Tp};
use crate::groups::on_coordinator;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ConsumerGroupHeartbeat, min_version: 0, max_version: 1 };

pub fn handle(broker: &Rc<Broker>, request: Request, peer: Option<std::net::SocketAddr>) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let beat: ConsumerGroupHeartbeatRequest = decode_body(&mut body, version, "ConsumerGroupHeartbeat request")?;
    let correlation_id = request.header.correlation_id;
    let client_id = request.header.client_id.as_ref().map_or("", |c| c.as_str()).to_owned();
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let group_id = beat.group_id.0.as_str().to_owned();
        let member_id = beat.member_id.as_str().to_owned();
        let mut interval = broker.config.groups.consumer_heartbeat_interval_ms;
        let invalid = |message: &str| Some(HeartbeatResult::error(error_code::INVALID_REQUEST, message, &member_id));
        let refused = if group_id.is_empty() {
            invalid("GroupId can't be empty.")
        } else if member_id.is_empty() && (version >= 1 || beat.member_epoch != 0) {
            // v1 members choose their id; in v0 only a joining member has none.
            invalid("MemberId can't be empty.")
        } else if beat.member_epoch < -2 {
            invalid("MemberEpoch is invalid.")
        } else if beat.member_epoch == 0
            && beat.subscribed_topic_names.is_none()
            && !beat.subscribed_topic_regex.as_ref().is_some_and(|r| !r.is_empty())
        {
            invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
        } else {
            None
        };
        let result = match refused {
            Some(refused) => {
                tracing::debug!(group = %group_id, member = %member_id, epoch = beat.member_epoch, regex = ?beat.subscribed_topic_regex, topics = ?beat.subscribed_topic_names, reason = ?refused.message, "ConsumerGroupHeartbeat refused");
                refused
            }
            None => {
                let owned: Option<Vec<Tp>> = beat.topic_partitions.as_ref().map(|topics| {
                    topics
                        .iter()
                        .filter_map(|t| {
                            broker.topic_by_id(t.topic_id.as_bytes()).map(|meta| (meta.name, &t.partitions))
                        })
                        .flat_map(|(name, partitions)| partitions.iter().map(move |p| (name.clone(), *p)))
                        .collect()
                });
                let args = HeartbeatArgs {
                    member_id: member_id.clone(),
                    epoch: beat.member_epoch,
                    instance_id: beat.instance_id.as_ref().map(|i| i.as_str().to_owned()),
                    rack_id: beat.rack_id.as_ref().map(|r| r.as_str().to_owned()),
                    rebalance_timeout_ms: beat.rebalance_timeout_ms,
                    subscribed: beat
                        .subscribed_topic_names
                        .as_ref()
                        .map(|names| names.iter().map(|n| n.0.as_str().to_owned()).collect()),
                    regex: beat.subscribed_topic_regex.as_ref().map(|r| r.as_str().to_owned()),
                    assignor: beat.server_assignor.as_ref().map(|a| a.as_str().to_owned()),
                    owned,
                    client_id,
                    client_host: peer.map_or_else(String::new, |p| format!("/{}", p.ip())),
                };
                let group = group_id.clone();
                match on_coordinator(
                    &broker.shard,
                    &group_id,
                    move |c| async move { c.consumer_heartbeat(&group, args) },
                )
                .await
                {
                    Some((result, given)) => {
                        interval = given;
                        result
                    }
                    None => HeartbeatResult::error(
                        crate::groups::no_coordinator_code(&group_id),
                        "coordinator unavailable",
                        &member_id,
                    ),
                }
            }
        };
        let assignment = result.assignment.map(|tps| {
            let mut topics: Vec<TopicPartitions> = Vec::new();
            for (topic, partition) in tps {
                let Some(meta) = broker.topic(&topic) else { continue };
                let id = Uuid::from_bytes(meta.id);
                match topics.last_mut() {
                    Some(last) if last.topic_id == id => last.partitions.push(partition),
                    _ => topics.push(TopicPartitions::default().with_topic_id(id).with_partitions(vec![partition])),
                }
            }
            Assignment::default().with_topic_partitions(topics)
        });
        let response = ConsumerGroupHeartbeatResponse::default()
            .with_error_code(result.error)
            .with_error_message(result.message.as_deref().map(str_bytes))
            .with_member_id((!result.member_id.is_empty()).then(|| str_bytes(&result.member_id)))
            .with_member_epoch(result.epoch)
            .with_heartbeat_interval_ms(interval)
            .with_assignment(assignment);
        respond(ApiKey::ConsumerGroupHeartbeat, version, correlation_id, &response)
    }))
}
