//! Fetch (key 1), v4–v12: whole batches from each requested partition, up
//! to `partition_max_bytes` each and `max_bytes` in all (the first batch is
//! always returned whole, KIP-74), below the high watermark. When fewer than
//! `min_bytes` are available, the request waits up to `max_wait_ms` for an
//! append to any of its partitions: the owning shards wake it, no polling.
//!
//! Fetch sessions (KIP-227), full and incremental: see
//! `broker::fetch_sessions`.
//! Isolation: there are no transactions yet, so the last stable offset is
//! the high watermark and READ_COMMITTED reads the same as READ_UNCOMMITTED.

use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};

use super::{respond, str_bytes, ApiSpec, FetchBatch, Pending, Response};
use crate::protocol::fetch_response::{self, FetchOut, PartitionOut, TopicOut};
use crate::shard::RoutedRead;
use crate::broker::fetch_sessions::{has_news, SessionPartition, SessionRequest};
use crate::broker::Broker;
use crate::limits;
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
    /// Named in this request (always reported in an incremental response).
    mentioned: bool,
}

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let fetch: FetchRequest = decode_body(&mut body, version, "Fetch request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    let mut requested = Vec::new();
    for topic in &fetch.topics {
        for partition in &topic.partitions {
            if requested.len() >= fetch_partitions_max {
                return Err(WireError::Malformed { what: "Fetch request", reason: "too many partitions".into() });
            }
            requested.push((
                (topic.topic.0.as_str().to_owned(), partition.partition),
                partition.fetch_offset,
                partition.partition_max_bytes,
            ));
        }
    }
    let forgotten: Vec<(String, i32)> = fetch
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.as_str().to_owned(), *p)))
        .take(fetch_partitions_max)
        .collect();

    // KIP-227: which partitions this fetch covers, and in which session.
    let now = Instant::now();
    let mode = SessionRequest::of(version, fetch.session_id, fetch.session_epoch);
    let mentioned: std::collections::HashSet<(String, i32)> = requested.iter().map(|(key, _, _)| key.clone()).collect();
    let (positions, session_id) = {
        let mut sessions = broker.fetch_sessions.borrow_mut();
        match mode {
            SessionRequest::Sessionless => (requested.clone(), 0),
            SessionRequest::Close { id } => {
                sessions.close(id);
                (requested.clone(), 0)
            }
            SessionRequest::Open => {
                let partitions = requested
                    .iter()
                    .map(|(key, offset, max)| {
                        (key.clone(), SessionPartition { fetch_offset: *offset, partition_max_bytes: *max, reported: None })
                    })
                    .collect();
                (requested.clone(), sessions.open(partitions, now).unwrap_or(0))
            }
            SessionRequest::Incremental { id, epoch } => match sessions.update(id, epoch, requested.clone(), forgotten, now) {
                Ok(session) => {
                    let positions = session
                        .order
                        .iter()
                        .map(|key| {
                            let p = &session.partitions[key];
                            (key.clone(), p.fetch_offset, p.partition_max_bytes)
                        })
                        .collect();
                    (positions, id)
                }
                Err(code) => {
                    let response = FetchResponse::default().with_error_code(code).with_session_id(0);
                    return Ok(Box::pin(async move { respond(ApiKey::Fetch, version, correlation_id, &response) }));
                }
            },
        }
    };
    let incremental = matches!(mode, SessionRequest::Incremental { .. });
    tracing::trace!(?mode, session_id, partitions = positions_len(&requested), "fetch");
    let wanted: Vec<Wanted> = positions
        .into_iter()
        .map(|((topic, partition), offset, partition_max_bytes)| {
            let known = broker.topic(&topic).is_some_and(|m| (0..m.partitions).contains(&partition));
            let mentioned = mentioned.contains(&(topic.clone(), partition));
            Wanted { topic: TopicName(str_bytes(&topic)), partition, offset, partition_max_bytes, known, mentioned }
        })
        .collect();
    Ok(Box::pin(async move {
        let max_wait = Duration::from_millis(fetch.max_wait_ms.clamp(0, fetch_wait_ms_max) as u64);
        let deadline = Instant::now() + max_wait;
        let min_bytes = fetch.min_bytes.max(0) as usize;
        // Capped like Kafka's broker `fetch.max.bytes`, whatever the client asks.
        let max_bytes = if fetch.max_bytes <= 0 {
            limits::fetch_response_bytes_max
        } else {
            (fetch.max_bytes as usize).min(limits::fetch_response_bytes_max)
        };
        loop {
            let (partitions, total) = read_all(&broker, &wanted, max_bytes).await;
            let now = Instant::now();
            let any_ok = partitions.iter().any(|p| p.1.error_code == error_code::NONE);
            if total >= min_bytes.max(1) || now >= deadline || !any_ok {
                let mut partitions = report(&broker, session_id, incremental, &wanted, partitions);
                count_out(&broker, &partitions);
                if version < 5 {
                    for (_, p) in &mut partitions {
                        p.log_start_offset = -1;
                    }
                }
                let pieces = fetch_response::encode(version, correlation_id, &response(session_id, partitions));
                return Some(Response::Pieces(pieces));
            }
            wait_for_data(&broker, &wanted, deadline - now).await;
        }
    }))
}

/// Adds the record batches a response carries to this shard's bytes and
/// records out (one header read per batch).
fn count_out(broker: &Broker, partitions: &[(String, PartitionOut<FetchBatch>)]) {
    let (mut bytes, mut records) = (0u64, 0u64);
    for batch in partitions.iter().filter_map(|(_, p)| p.batches.as_ref()).flatten() {
        let batch = batch.as_ref();
        bytes += batch.len() as u64;
        if let Some(header) = crate::storage::batch::BatchHeader::ref_from_prefix(batch) {
            records += u64::try_from(header.records_count()).unwrap_or(0);
        }
    }
    broker.metrics.bytes_out.add(bytes);
    broker.metrics.records_out.add(records);
}

fn positions_len<T>(requested: &[T]) -> usize {
    requested.len()
}

/// Records what a session's response reports, and keeps only partitions
/// with news in an incremental response.
fn report(
    broker: &Broker,
    session_id: i32,
    incremental: bool,
    wanted: &[Wanted],
    partitions: Vec<(String, PartitionOut<FetchBatch>)>,
) -> Vec<(String, PartitionOut<FetchBatch>)> {
    if session_id == 0 {
        return partitions;
    }
    let mut sessions = broker.fetch_sessions.borrow_mut();
    let Some(session) = sessions.get_mut(session_id) else { return partitions };
    partitions
        .into_iter()
        .zip(wanted)
        .filter_map(|((topic, data), w)| {
            let key = (topic.clone(), data.partition_index);
            let now = (data.high_watermark, data.log_start_offset);
            let records = data.batches.as_ref().is_some_and(|b| !b.is_empty());
            let entry = session.partitions.get_mut(&key)?;
            let news = has_news(w.mentioned, records, data.error_code != error_code::NONE, entry.reported, now);
            entry.reported = Some(now);
            (!incremental || news).then_some((topic, data))
        })
        .collect()
}

async fn read_all(broker: &Broker, wanted: &[Wanted], max_bytes: usize) -> (Vec<(String, PartitionOut<FetchBatch>)>, usize) {
    let mut out = Vec::with_capacity(wanted.len());
    let mut total = 0usize;
    for w in wanted {
        let mut data = PartitionOut {
            partition_index: w.partition,
            error_code: error_code::NONE,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            batches: None,
        };
        let topic = w.topic.0.as_str().to_owned();
        if !w.known {
            data.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION;
            out.push((topic, data));
            continue;
        }
        let tp = TopicPartition::new(topic.clone(), w.partition);
        let budget = if total >= max_bytes { 0 } else { (max_bytes - total).min(w.partition_max_bytes.max(0) as usize) };
        // The first batch of the response is returned whole even when it
        // exceeds the limits; later partitions get nothing once they are spent.
        let read_max = if total == 0 { budget.max(1) } else { budget };
        let result = if read_max == 0 {
            broker.shard.offsets(&tp).await.map(|o| (Vec::new(), o.high_watermark, o.log_start_offset))
        } else {
            broker.shard.read(&tp, Offset(w.offset), read_max).await.map(|read| match read {
                // Zero-copy: slices of the batch cache or of the DMA reads.
                RoutedRead::Local(r) => {
                    (r.batches.into_iter().map(FetchBatch::Local).collect::<Vec<_>>(), r.high_watermark, r.log_start_offset)
                }
                RoutedRead::Remote(r) => {
                    let (hw, start) = (r.high_watermark, r.log_start_offset);
                    let lent = Rc::new(r);
                    ((0..lent.batches.len()).map(|i| FetchBatch::Lent(lent.clone(), i)).collect(), hw, start)
                }
            })
        };
        match result {
            Ok((batches, hw, start)) => {
                total += batches.iter().map(|b| b.as_ref().len()).sum::<usize>();
                data.high_watermark = hw.0;
                data.last_stable_offset = hw.0;
                data.log_start_offset = start.0;
                data.batches = Some(batches);
            }
            Err(e) => data.error_code = error_code::from_name(e.kafka_error_name()),
        }
        out.push((topic, data));
    }
    (out, total)
}

/// Groups partitions by topic, in first-seen order.
fn response(session_id: i32, partitions: Vec<(String, PartitionOut<FetchBatch>)>) -> FetchOut<FetchBatch> {
    let mut topics: Vec<TopicOut<FetchBatch>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (topic, data) in partitions {
        match index.get(&topic) {
            Some(&i) => topics[i].partitions.push(data),
            None => {
                index.insert(topic.clone(), topics.len());
                topics.push(TopicOut { name: topic, partitions: vec![data] });
            }
        }
    }
    FetchOut { throttle_time_ms: 0, error_code: error_code::NONE, session_id, topics }
}

/// Waits until any wanted partition has data past its fetch offset, or the
/// timeout: one oneshot parked with each partition's owner (woken by its
/// next commit) and one timer for the whole fetch.
async fn wait_for_data(broker: &Broker, wanted: &[Wanted], timeout: Duration) {
    let mut woken = Vec::new();
    for w in wanted.iter().filter(|w| w.known) {
        let (waiter, receiver) = futures_channel::oneshot::channel();
        let tp = TopicPartition::new(w.topic.0.as_str(), w.partition);
        if broker.shard.park_data_waiter(&tp, Offset(w.offset), waiter).await.is_ok() {
            woken.push(receiver);
        }
    }
    if woken.is_empty() {
        glommio::timer::sleep(timeout).await;
        return;
    }
    let _ = futures_lite::future::or(
        async {
            let _ = futures_util::future::select_all(woken).await;
        },
        glommio::timer::sleep(timeout),
    )
    .await;
}
