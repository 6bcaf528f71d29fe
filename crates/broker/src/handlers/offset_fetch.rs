//! OffsetFetch (key 9), v1–v9: committed offsets of a group (v8+: of many
//! groups). Topics null (v2+) means every committed offset. A partition
//! with no committed offset, and any partition of an unknown group, gets
//! offset -1 and no error, as Kafka does. With require_stable (v7+, what
//! read_committed consumers send), a partition whose offsets wait for a
//! transaction's marker gets UNSTABLE_OFFSET_COMMIT, which clients retry.

use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{ApiKey, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::coordinator::FetchedOffset;
use crate::groups::on_coordinator;
use ringstream_protocol::{decode_body, error_code, Request, WireError};
use ringstream_shard::Shard;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::OffsetFetch, min_version: 1, max_version: 9 };

type Topics = Option<Vec<(String, Vec<i32>)>>;

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let fetch: OffsetFetchRequest = decode_body(&mut body, version, "OffsetFetch request")?;
    let require_stable = version >= 7 && fetch.require_stable;
    let correlation_id = request.header.correlation_id;
    let shard = broker.shard.clone();
    Ok(Box::pin(async move {
        if version >= 8 {
            let mut groups = Vec::with_capacity(fetch.groups.len());
            for group in &fetch.groups {
                let topics: Topics = group.topics.as_ref().map(|topics| {
                    topics.iter().map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone())).collect()
                });
                let group_id = group.group_id.0.as_str().to_owned();
                let (code, rows) = lookup(&shard, &group_id, topics, require_stable).await;
                let topics = rows
                    .into_iter()
                    .map(|(name, partitions)| {
                        let partitions = partitions
                            .into_iter()
                            .map(|p| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p.partition)
                                    .with_committed_offset(p.offset)
                                    .with_committed_leader_epoch(p.leader_epoch)
                                    .with_metadata(p.metadata.as_deref().map(str_bytes))
                                    .with_error_code(p.error)
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(&name)))
                            .with_partitions(partitions)
                    })
                    .collect();
                groups.push(
                    OffsetFetchResponseGroup::default()
                        .with_group_id(group.group_id.clone())
                        .with_topics(topics)
                        .with_error_code(code),
                );
            }
            return respond(
                ApiKey::OffsetFetch,
                version,
                correlation_id,
                &OffsetFetchResponse::default().with_groups(groups),
            );
        }
        let topics: Topics = fetch
            .topics
            .as_ref()
            .map(|topics| topics.iter().map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone())).collect());
        let group_id = fetch.group_id.0.as_str().to_owned();
        let (code, rows) = lookup(&shard, &group_id, topics, require_stable).await;
        let topics = rows
            .into_iter()
            .map(|(name, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|p| {
                        let row = OffsetFetchResponsePartition::default()
                            .with_partition_index(p.partition)
                            .with_committed_offset(p.offset)
                            .with_metadata(Some(
                                p.metadata.map_or_else(|| StrBytes::from_static_str(""), |m| str_bytes(&m)),
                            ))
                            .with_error_code(p.error);
                        if version >= 5 {
                            row.with_committed_leader_epoch(p.leader_epoch)
                        } else {
                            row
                        }
                    })
                    .collect();
                OffsetFetchResponseTopic::default().with_name(TopicName(str_bytes(&name))).with_partitions(partitions)
            })
            .collect();
        let mut response = OffsetFetchResponse::default().with_topics(topics);
        if version >= 2 {
            response.error_code = code;
        }
        respond(ApiKey::OffsetFetch, version, correlation_id, &response)
    }))
}

/// One group's offsets from its coordinator: (group error, rows).
async fn lookup(
    shard: &Rc<Shard>,
    group_id: &str,
    topics: Topics,
    require_stable: bool,
) -> (i16, Vec<(String, Vec<FetchedOffset>)>) {
    let id = group_id.to_owned();
    let asked = topics.clone();
    match on_coordinator(shard, group_id, move |c| async move { c.fetch_offsets(&id, topics, require_stable) }).await {
        Some(rows) => (error_code::NONE, rows),
        None => {
            let code = crate::groups::no_coordinator_code(group_id);
            let rows = asked
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    let rows = ps
                        .into_iter()
                        .map(|p| FetchedOffset {
                            partition: p,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: None,
                            error: code,
                        })
                        .collect();
                    (t, rows)
                })
                .collect();
            (code, rows)
        }
    }
}
