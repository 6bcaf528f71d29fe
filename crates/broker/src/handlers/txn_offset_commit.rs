//! TxnOffsetCommit (key 28), v0–v5: offsets committed inside a producer's
//! transaction (consume-transform-produce). The group coordinator writes
//! them to the offsets log as part of the transaction and keeps them
//! pending; the transaction's COMMIT marker makes them the group's
//! committed offsets, an ABORT drops them. v3+ names the generation and
//! member, which are checked as for OffsetCommit.

use std::rc::Rc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::groups::coordinator::{CommitArgs, CommitOffset};
use ringstream_protocol::{decode_body, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::TxnOffsetCommit, min_version: 0, max_version: 5 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let commit: TxnOffsetCommitRequest = decode_body(&mut body, version, "TxnOffsetCommit request")?;
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
                    leader_epoch: if version >= 2 { p.committed_leader_epoch } else { -1 },
                    metadata: p.committed_metadata.as_ref().map(|m| m.as_str().to_owned()),
                })
            })
            .collect();
        let (generation, member_id) = if version >= 3 {
            (commit.generation_id, commit.member_id.as_str().to_owned())
        } else {
            (-1, String::new())
        };
        let args = CommitArgs {
            group_id: group_id.clone(),
            generation,
            member_id,
            instance_id: commit.group_instance_id.as_ref().map(|i| i.as_str().to_owned()),
            offsets,
            txn: Some((commit.producer_id.0, commit.producer_epoch)),
        };
        let results = crate::groups::commit_offsets(&shard, args).await;
        let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
        for (topic, partition, code) in results {
            let code = crate::txn::fenced_for(code, version, 3);
            if code != ringstream_protocol::error_code::NONE {
                tracing::debug!(group = %group_id, topic = %topic, partition, code, "transactional offset commit refused");
            }
            let row = TxnOffsetCommitResponsePartition::default().with_partition_index(partition).with_error_code(code);
            match topics.last_mut() {
                Some(last) if last.name.0.as_str() == topic => last.partitions.push(row),
                _ => topics.push(
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(TopicName(str_bytes(&topic)))
                        .with_partitions(vec![row]),
                ),
            }
        }
        let response = TxnOffsetCommitResponse::default().with_topics(topics);
        respond(ApiKey::TxnOffsetCommit, version, correlation_id, &response)
    }))
}
