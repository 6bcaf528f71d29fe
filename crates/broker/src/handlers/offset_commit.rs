//! OffsetCommit (key 8), v2–v9: stores committed offsets, durable (in the
//! offsets log, fdatasync'd per the flush policy) before the answer. A
//! commit with generation -1 stores offsets for a group that does not use
//! the coordinator (assign() consumers, admin tools) while it has no members.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse, TopicName};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::coordinator::{CommitArgs, CommitOffset};
use ringstream_protocol::{decode_body, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::OffsetCommit, min_version: 2, max_version: 9 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let commit: OffsetCommitRequest = decode_body(&mut body, version, "OffsetCommit request")?;
    let correlation_id = request.header.correlation_id;
    let shard = broker.shard.clone();
    Ok(Box::pin(async move {
        let group_id = commit.group_id.0.as_str().to_owned();
        let offsets: Vec<CommitOffset> = commit
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| CommitOffset {
                    topic: t.name.0.as_str().to_owned(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 { p.committed_leader_epoch } else { -1 },
                    metadata: p.committed_metadata.as_ref().map(|m| m.as_str().to_owned()),
                })
            })
            .collect();
        let args = CommitArgs {
            group_id,
            generation: commit.generation_id_or_member_epoch,
            member_id: commit.member_id.as_str().to_owned(),
            instance_id: commit.group_instance_id.as_ref().map(|i| i.as_str().to_owned()),
            offsets,
            txn: None,
        };
        let results = crate::groups::commit_offsets(&shard, args).await;
        let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
        for (topic, partition, code) in results {
            let row = OffsetCommitResponsePartition::default().with_partition_index(partition).with_error_code(code);
            match topics.last_mut() {
                Some(last) if last.name.0.as_str() == topic => last.partitions.push(row),
                _ => topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(TopicName(str_bytes(&topic)))
                        .with_partitions(vec![row]),
                ),
            }
        }
        respond(ApiKey::OffsetCommit, version, correlation_id, &OffsetCommitResponse::default().with_topics(topics))
    }))
}
