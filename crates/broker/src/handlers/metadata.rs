//! Metadata (key 3), v0–v13: brokers (this one), the cluster id, and the
//! requested topics with their partitions, all led by this broker. Topic ids
//! are returned from v10. v13's top-level error code (KIP-1102) is always
//! NONE here. The internal `__consumer_offsets` is listed with
//! `is_internal`, as Kafka lists it, in a request for all topics or by name. Unknown topics are auto-created when
//! `auto.create.topics.enable` is set and the request allows it (always
//! before v4, `allow_auto_topic_creation` from v4).

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::topics::TopicMeta;
use crate::broker::Broker;
use ringstream_core::limits::metadata_topics_max;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Metadata, min_version: 0, max_version: 13 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let metadata: MetadataRequest = decode_body(&mut body, version, "Metadata request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let allow_create = version < 4 || metadata.allow_auto_topic_creation;
        let all = match &metadata.topics {
            None => true,
            Some(topics) => version == 0 && topics.is_empty(),
        };
        let mut topics = Vec::new();
        if all {
            for topic in broker.topics() {
                topics.push(describe(&broker, &topic, version));
            }
            // In a cluster the offsets topic exists once the controller
            // has placed it (on the first FindCoordinator).
            let offsets_placed =
                broker.cluster().map_or(true, |view| view.image.topics.contains_key(crate::groups::OFFSETS_TOPIC));
            if offsets_placed {
                topics.push(describe(&broker, &broker.offsets_topic(), version));
            }
            if broker.cluster().is_some_and(|view| view.image.topics.contains_key(crate::txn::TXN_TOPIC)) {
                topics.push(describe(&broker, &broker.internal_topic(crate::txn::TXN_TOPIC), version));
            }
        } else {
            for requested in metadata.topics.iter().flatten().take(metadata_topics_max) {
                let offsets = broker.offsets_topic();
                let response = match &requested.name {
                    Some(name) if name.as_str() == offsets.name => describe(&broker, &offsets, version),
                    Some(name)
                        if name.as_str() == crate::txn::TXN_TOPIC
                            && broker.cluster().is_some_and(|v| v.image.topics.contains_key(crate::txn::TXN_TOPIC)) =>
                    {
                        describe(&broker, &broker.internal_topic(crate::txn::TXN_TOPIC), version)
                    }
                    None if requested.topic_id.as_bytes() == &offsets.id => describe(&broker, &offsets, version),
                    Some(name) => match broker.topic_or_create(name.as_str(), allow_create).await {
                        Ok(topic) => describe(&broker, &topic, version),
                        Err(e) => MetadataResponseTopic::default()
                            .with_name(Some(name.clone()))
                            .with_error_code(e.code)
                            .with_topic_authorized_operations(i32::MIN),
                    },
                    None => match broker.topic_by_id(requested.topic_id.as_bytes()) {
                        Some(topic) => describe(&broker, &topic, version),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(requested.topic_id)
                            .with_error_code(error_code::UNKNOWN_TOPIC_ID)
                            .with_topic_authorized_operations(i32::MIN),
                    },
                };
                topics.push(response);
            }
        }
        let config = &broker.config;
        // Fields a version lacks stay at their defaults: the codec refuses
        // to encode anything else.
        let cluster = broker.cluster();
        let brokers = match &cluster {
            // Unfenced brokers, as Kafka lists them.
            Some(view) => view
                .image
                .unfenced()
                .map(|b| {
                    let mut out = MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port);
                    if version >= 1 {
                        out.rack = b.rack.as_deref().map(str_bytes);
                    }
                    out
                })
                .collect(),
            None => vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(config.node_id))
                .with_host(str_bytes(&config.advertised_host))
                .with_port(config.advertised_port)],
        };
        let mut response = MetadataResponse::default().with_brokers(brokers).with_topics(topics);
        if version >= 1 {
            response.controller_id = BrokerId(cluster.as_ref().map_or(config.node_id, |v| v.controller));
        }
        if version >= 2 {
            response.cluster_id = Some(str_bytes(&config.cluster_id));
        }
        respond(ApiKey::Metadata, version, correlation_id, &response)
    }))
}

fn describe(broker: &Broker, topic: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let partitions = match broker.cluster() {
        // In a cluster: leader, epoch, replicas and ISR from the image; a
        // partition whose leader is fenced is offline (LEADER_NOT_AVAILABLE).
        Some(view) => {
            let info = view.image.topics.get(&topic.name);
            (0..topic.partitions)
                .map(|p| {
                    let part = info.and_then(|t| t.partitions.get(p as usize));
                    let mut out = MetadataResponsePartition::default().with_partition_index(p);
                    match part {
                        Some(part) => {
                            let ids = |v: &[i32]| v.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
                            out.error_code =
                                if part.leader < 0 { error_code::LEADER_NOT_AVAILABLE } else { error_code::NONE };
                            out.leader_id = BrokerId(part.leader);
                            out.leader_epoch = if version >= 7 { part.leader_epoch } else { -1 };
                            out.replica_nodes = ids(&part.replicas);
                            out.isr_nodes = ids(&part.isr);
                            if version >= 5 {
                                out.offline_replicas = part
                                    .replicas
                                    .iter()
                                    .filter(|r| view.image.brokers.get(r).map_or(true, |b| b.fenced))
                                    .map(|r| BrokerId(*r))
                                    .collect();
                            }
                        }
                        None => {
                            out.error_code = error_code::LEADER_NOT_AVAILABLE;
                            out.leader_id = BrokerId(-1);
                        }
                    }
                    out
                })
                .collect()
        }
        None => (0..topic.partitions)
            .map(|p| {
                MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(node)
                    .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
            })
            .collect(),
    };
    let mut response = MetadataResponseTopic::default()
        .with_error_code(error_code::NONE)
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_is_internal(Broker::is_internal(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN);
    if version >= 10 {
        response.topic_id = Uuid::from_bytes(topic.id);
    }
    response
}
