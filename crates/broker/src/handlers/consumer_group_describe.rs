//! ConsumerGroupDescribe (key 69), v0–v1: KIP-848 groups with their epochs,
//! assignor and members (current and target assignments). A group that is
//! unknown, or classic, is GROUP_ID_NOT_FOUND, as in Kafka.

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName};
use uuid::Uuid;

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::consumer::Tp;
use crate::groups::on_coordinator;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ConsumerGroupDescribe, min_version: 0, max_version: 1 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let describe: ConsumerGroupDescribeRequest = decode_body(&mut body, version, "ConsumerGroupDescribe request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut groups = Vec::with_capacity(describe.group_ids.len());
        for group in &describe.group_ids {
            let group_id = group.0.as_str().to_owned();
            let id = group_id.clone();
            let found =
                on_coordinator(&broker.shard, &group_id, move |c| async move { c.describe_consumer_group(&id) }).await;
            let base = DescribedGroup::default().with_group_id(group.clone());
            let described = match found {
                None => base.with_error_code(crate::groups::no_coordinator_code(&group_id)),
                Some(None) => base
                    .with_error_code(error_code::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(str_bytes(&format!("Group {group_id} not found.")))),
                Some(Some(d)) => {
                    let assignment = |tps: &[Tp]| {
                        let mut topics: Vec<TopicPartitions> = Vec::new();
                        for (topic, partition) in tps {
                            let id = broker.topic(topic).map_or(Uuid::nil(), |m| Uuid::from_bytes(m.id));
                            match topics.last_mut() {
                                Some(last) if last.topic_name.0.as_str() == topic => last.partitions.push(*partition),
                                _ => topics.push(
                                    TopicPartitions::default()
                                        .with_topic_id(id)
                                        .with_topic_name(TopicName(str_bytes(topic)))
                                        .with_partitions(vec![*partition]),
                                ),
                            }
                        }
                        Assignment::default().with_topic_partitions(topics)
                    };
                    let members = d
                        .members
                        .iter()
                        .map(|m| {
                            Member::default()
                                .with_member_id(str_bytes(&m.member_id))
                                .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                                .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                                .with_member_epoch(m.epoch)
                                .with_client_id(str_bytes(&m.client_id))
                                .with_client_host(str_bytes(&m.client_host))
                                .with_subscribed_topic_names(
                                    m.subscribed.iter().map(|t| TopicName(str_bytes(t))).collect(),
                                )
                                .with_assignment(assignment(&m.assigned))
                                .with_target_assignment(assignment(&m.target))
                        })
                        .collect();
                    base.with_group_state(str_bytes(d.state))
                        .with_group_epoch(d.epoch)
                        .with_assignment_epoch(d.assignment_epoch)
                        .with_assignor_name(str_bytes(&d.assignor))
                        .with_members(members)
                }
            };
            groups.push(described);
        }
        respond(
            ApiKey::ConsumerGroupDescribe,
            version,
            correlation_id,
            &ConsumerGroupDescribeResponse::default().with_groups(groups),
        )
    }))
}
