//! OffsetForLeaderEpoch (key 23), v2–v4: for a leader epoch, the end offset
//! of that epoch in this log (the start of the next higher epoch, or the log
//! end for the latest), from the partition's epoch checkpoint on its owner.
//! Clients use it to detect log truncation after a leader change.

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::types::{LeaderEpoch, TopicPartition};
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::OffsetForLeaderEpoch, min_version: 2, max_version: 4 };

use ringstream_core::error_code::{FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH};

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let query: OffsetForLeaderEpochRequest = decode_body(&mut body, version, "OffsetForLeaderEpoch request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut topics = Vec::with_capacity(query.topics.len());
        for topic in query.topics {
            let name = topic.topic.0.as_str().to_owned();
            let meta = broker.topic(&name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let out =
                    EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
                if !meta.as_ref().is_some_and(|m| (0..m.partitions).contains(&p.partition)) {
                    partitions.push(out.with_error_code(error_code::UNKNOWN_TOPIC_OR_PARTITION));
                    continue;
                }
                if broker.leadership(&name, p.partition).is_err() {
                    partitions.push(out.with_error_code(error_code::NOT_LEADER_OR_FOLLOWER));
                    continue;
                }
                let tp = TopicPartition::new(name.clone(), p.partition);
                let requested = LeaderEpoch(p.leader_epoch);
                let answer = broker
                    .shard
                    .epochs(&tp)
                    .await
                    .map(|(offsets, epochs)| (offsets, epochs.end_offset_for(requested, offsets.log_end_offset)));
                partitions.push(match answer {
                    Err(e) => out.with_error_code(e.kafka_error_code()),
                    Ok((offsets, _))
                        if p.current_leader_epoch >= 0 && p.current_leader_epoch < offsets.leader_epoch.0 =>
                    {
                        out.with_error_code(FENCED_LEADER_EPOCH)
                    }
                    Ok((offsets, _)) if p.current_leader_epoch > offsets.leader_epoch.0 => {
                        out.with_error_code(UNKNOWN_LEADER_EPOCH)
                    }
                    Ok((_, Some((epoch, end)))) => {
                        out.with_error_code(error_code::NONE).with_leader_epoch(epoch.0).with_end_offset(end.0)
                    }
                    Ok((_, None)) => out.with_error_code(error_code::NONE),
                });
            }
            topics.push(OffsetForLeaderTopicResult::default().with_topic(topic.topic).with_partitions(partitions));
        }
        respond(
            ApiKey::OffsetForLeaderEpoch,
            version,
            correlation_id,
            &OffsetForLeaderEpochResponse::default().with_topics(topics),
        )
    }))
}
