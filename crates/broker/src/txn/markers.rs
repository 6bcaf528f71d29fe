//! Transaction markers on a partition leader: WriteTxnMarkers from a
//! coordinator on another broker, or this broker's own coordinator,
//! appends a COMMIT or ABORT control batch to each partition it leads,
//! and answers once the ISR has it (Kafka appends markers with acks=all).
//! A marker on an offsets-log partition also commits or drops the
//! transaction's pending offsets in the group coordinator.

use std::rc::Rc;

use bytes::Bytes;
use tracing::warn;

use crate::broker::Broker;
use ringstream_core::batch;
use ringstream_core::clock::now_ms;
use ringstream_core::error_code;
use ringstream_core::types::TopicPartition;

/// How long a marker waits for the ISR.
const marker_commit_timeout_ms: u64 = 30_000;

/// Writes one marker per partition; returns each partition's error code.
pub async fn write_local(
    broker: &Rc<Broker>,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), i16)> {
    let marker = Bytes::from(batch::build_marker(producer_id, producer_epoch, commit, coordinator_epoch, now_ms()));
    let mut submitted = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let known = if topic == crate::groups::OFFSETS_TOPIC {
            (0..broker.offsets_topic().partitions).contains(&partition)
        } else {
            broker.topic(&topic).is_some_and(|t| (0..t.partitions).contains(&partition))
        };
        if !known {
            submitted.push(((topic, partition), Err(error_code::UNKNOWN_TOPIC_OR_PARTITION)));
            continue;
        }
        if broker.leadership(&topic, partition).is_err() {
            submitted.push(((topic, partition), Err(error_code::NOT_LEADER_OR_FOLLOWER)));
            continue;
        }
        let tp = TopicPartition::new(topic.clone(), partition);
        if topic == crate::groups::OFFSETS_TOPIC && broker.shard.owner(&tp).is_none() {
            // An offsets-log partition opens on its first write (one
            // replica): never opened, it holds nothing of the transaction.
            submitted.push(((topic, partition), Err(error_code::NONE)));
            continue;
        }
        let ticket = broker.shard.submit(&tp, marker.clone()).await.map_err(|e| e.kafka_error_code());
        submitted.push(((topic, partition), ticket));
    }
    let mut results = Vec::with_capacity(submitted.len());
    let timeout = std::time::Duration::from_millis(marker_commit_timeout_ms);
    for ((topic, partition), ticket) in submitted {
        let code = match ticket {
            Err(code) => code,
            Ok(ticket) => match ticket.wait().await {
                Ok(info) => broker.committed(&topic, partition, info.last_offset, timeout).await,
                Err(e) => e.kafka_error_code(),
            },
        };
        if code == error_code::NONE && topic == crate::groups::OFFSETS_TOPIC {
            complete_offsets(broker, partition, producer_id, commit).await;
        }
        if code != error_code::NONE {
            warn!(topic = %topic, partition, producer_id, commit, code, "transaction marker not written");
        }
        results.push(((topic, partition), code));
    }
    results
}

/// The marker reached offsets-log partition `partition`: the group
/// coordinator owning it commits or drops the producer's pending offsets.
async fn complete_offsets(broker: &Rc<Broker>, partition: i32, producer_id: i64, commit: bool) {
    let tp = crate::groups::offsets_partition(partition);
    let Some(owner) = broker.shard.owner(&tp) else { return };
    // A closure (see `Shard::run_on`): the group coordinator lives above the router.
    let done = broker
        .shard
        .run_on(owner, move |_| async move {
            crate::groups::coordinator::local().complete_txn(partition, producer_id, commit)
        })
        .await;
    if done.is_err() {
        warn!(partition, producer_id, "could not complete the transaction's offsets");
    }
}
