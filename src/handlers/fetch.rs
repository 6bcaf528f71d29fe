//! Fetch (key 1), v4–v12: whole batches from each requested partition, up
//! to `partition_max_bytes` each and `max_bytes` in all (the first batch is
//! always returned whole, KIP-74), below the high watermark. When fewer than
//! `min_bytes` are available, the request waits up to `max_wait_ms` for an
//! append to any of its partitions: the owning shards wake it, no polling.
//!
//! Fetch sessions (KIP-227): this broker answers every fetch as sessionless
//! (session id 0), which KIP-227 allows; clients then send full fetches.
//! Isolation: there are no transactions yet, so the last stable offset is
//! the high watermark and READ_COMMITTED reads the same as READ_UNCOMMITTED.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::channels::local_channel;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use crate::protocol::{decode_body, error_code, Request, WireError};
use crate::types::{Offset, TopicPartition};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Fetch, min_version: 4, max_version: 12 };

/// Longest a fetch may wait, whatever the client asks.
pub const fetch_wait_ms_max: i32 = 30_000;
/// Partitions one fetch may name.
pub const fetch_partitions_max: usize = 10_000;

struct Wanted {
    topic: TopicName,
    partition: i32,
    offset: i64,
    partition_max_bytes: i32,
    known: bool,
}

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let fetch: FetchRequest = decode_body(&mut body, version, "Fetch request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    let mut wanted = Vec::new();
    for topic in &fetch.topics {
        let meta = broker.topic(topic.topic.0.as_str());
        for partition in &topic.partitions {
            if wanted.len() >= fetch_partitions_max {
                return Err(WireError::Malformed { what: "Fetch request", reason: "too many partitions".into() });
            }
            wanted.push(Wanted {
                topic: topic.topic.clone(),
                partition: partition.partition,
                offset: partition.fetch_offset,
                partition_max_bytes: partition.partition_max_bytes,
                known: meta.as_ref().is_some_and(|m| (0..m.partitions).contains(&partition.partition)),
            });
        }
    }
    Ok(Box::pin(async move {
        let max_wait = Duration::from_millis(fetch.max_wait_ms.clamp(0, fetch_wait_ms_max) as u64);
        let deadline = Instant::now() + max_wait;
        let min_bytes = fetch.min_bytes.max(0) as usize;
        let max_bytes = if fetch.max_bytes <= 0 { usize::MAX } else { fetch.max_bytes as usize };
        loop {
            let (partitions, total) = read_all(&broker, &wanted, max_bytes, version).await;
            let now = Instant::now();
            if total >= min_bytes.max(1) || now >= deadline || !partitions.iter().any(|p| p.1.error_code == error_code::NONE) {
                return respond(ApiKey::Fetch, version, correlation_id, &response(partitions));
            }
            wait_for_data(&broker, &wanted, deadline - now).await;
        }
    }))
}

async fn read_all(
    broker: &Broker,
    wanted: &[Wanted],
    max_bytes: usize,
    version: i16,
) -> (Vec<(TopicName, PartitionData)>, usize) {
    let mut out = Vec::with_capacity(wanted.len());
    let mut total = 0usize;
    for w in wanted {
        let data = PartitionData::default()
            .with_partition_index(w.partition)
            .with_preferred_read_replica(BrokerId(-1))
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1);
        if !w.known {
            out.push((w.topic.clone(), data.with_error_code(error_code::UNKNOWN_TOPIC_OR_PARTITION)));
            continue;
        }
        let tp = TopicPartition::new(w.topic.0.as_str(), w.partition);
        let budget = if total >= max_bytes { 0 } else { (max_bytes - total).min(w.partition_max_bytes.max(0) as usize) };
        // The first batch of the response is returned whole even when it
        // exceeds the limits; later partitions get nothing once they are spent.
        let read_max = if total == 0 { budget.max(1) } else { budget };
        let result = if read_max == 0 {
            broker.shard.offsets(&tp).await.map(|o| (Vec::new(), o.high_watermark, o.log_start_offset))
        } else {
            broker.shard.read(&tp, Offset(w.offset), read_max).await.map(|read| {
                let hw = read.high_watermark();
                let start = match &read {
                    crate::shard::RoutedRead::Local(r) => r.log_start_offset,
                    crate::shard::RoutedRead::Remote(r) => r.log_start_offset,
                };
                (read.batches().into_iter().map(Bytes::copy_from_slice).collect::<Vec<_>>(), hw, start)
            })
        };
        let data = match result {
            Ok((batches, hw, start)) => {
                let bytes: usize = batches.iter().map(Bytes::len).sum();
                total += bytes;
                let mut records = BytesMut::with_capacity(bytes);
                for batch in &batches {
                    records.extend_from_slice(batch);
                }
                data.with_error_code(error_code::NONE)
                    .with_high_watermark(hw.0)
                    .with_last_stable_offset(hw.0)
                    .with_log_start_offset(if version >= 5 { start.0 } else { -1 })
                    .with_records(Some(records.freeze()))
            }
            Err(e) => data.with_error_code(error_code::from_name(e.kafka_error_name())),
        };
        out.push((w.topic.clone(), data));
    }
    (out, total)
}

fn response(partitions: Vec<(TopicName, PartitionData)>) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (topic, data) in partitions {
        match topics.last_mut() {
            Some(last) if last.topic == topic => last.partitions.push(data),
            _ => topics.push(FetchableTopicResponse::default().with_topic(topic).with_partitions(vec![data])),
        }
    }
    FetchResponse::default().with_error_code(error_code::NONE).with_session_id(0).with_responses(topics)
}

/// Waits until any wanted partition has data past its fetch offset, or the
/// timeout. Each owner shard wakes its waiter when an append commits.
async fn wait_for_data(broker: &Broker, wanted: &[Wanted], timeout: Duration) {
    let (wake, woken) = local_channel::new_bounded::<()>(1);
    let wake = Rc::new(wake);
    for w in wanted.iter().filter(|w| w.known) {
        let tp = TopicPartition::new(w.topic.0.as_str(), w.partition);
        let offset = Offset(w.offset);
        let shard = broker.shard.clone();
        let wake = wake.clone();
        glommio::spawn_local(async move {
            let result = shard
                .with_owner(&tp, move |storage, tp| async move { storage.wait_for_data(&tp, offset, timeout).await })
                .await;
            if matches!(result, Ok(Ok(true))) {
                let _ = wake.try_send(());
            }
        })
        .detach();
    }
    drop(wake);
    let _ = futures_lite::future::or(async { woken.recv().await.is_some() }, async {
        glommio::timer::sleep(timeout).await;
        false
    })
    .await;
}
