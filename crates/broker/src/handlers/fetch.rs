//! Fetch (key 1), v4–v17: whole batches from each requested partition, up
//! to `partition_max_bytes` each and `max_bytes` in all, below the high
//! watermark. KIP-74: the first batch of the first non-empty partition is
//! returned whole even when it is larger than either limit, so consumers
//! always progress; every later partition gets only batches that fit.
//! From v13 topics are named by id (KIP-516); an unknown id gets
//! UNKNOWN_TOPIC_ID. v15's replica state and v17's directory id concern
//! followers, which a single node has none of; v16's leader hints (KIP-951)
//! accompany NOT_LEADER_OR_FOLLOWER only, which a single node never sends. When fewer than
//! `min_bytes` are available, the request waits up to `max_wait_ms` for an
//! append to any of its partitions: the owning shards wake it, no polling.
//!
//! Fetch sessions (KIP-227), full and incremental: see
//! `broker::fetch_sessions`.
//! Isolation (v4+): READ_COMMITTED reads up to each partition's last stable
//! offset and gets the aborted transactions of what it read, so the client
//! drops their records; READ_UNCOMMITTED reads up to the high watermark.
//! Control batches (markers) go out as stored: clients skip them.

use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};

use super::{respond, str_bytes, ApiSpec, FetchBatch, Pending, Response};
use crate::broker::fetch_sessions::{has_news, SessionPartition, SessionRequest};
use crate::broker::Broker;
use ringstream_core::limits;
use ringstream_core::limits::fetch_partitions_max;
use ringstream_core::limits::fetch_wait_ms_max;
use ringstream_core::types::{LeaderEpoch, Offset, TopicPartition};
use ringstream_protocol::fetch_response::{self, FetchOut, PartitionOut, TopicOut};
use ringstream_protocol::{decode_body, error_code, Request, WireError};
use ringstream_shard::router::{ManyRead, ReadRequest};
use ringstream_storage::StorageError;

/// KIP-392: the fetch offset is past what this follower has yet.
const OFFSET_NOT_AVAILABLE: i16 = 78;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Fetch, min_version: 4, max_version: 17 };

struct Wanted {
    topic: TopicName,
    topic_id: [u8; 16],
    partition: i32,
    offset: i64,
    partition_max_bytes: i32,
    known: bool,
    /// Where the partition is led when this broker may not serve it
    /// (NOT_LEADER_OR_FOLLOWER; KIP-951's hint); None: served here.
    not_led: Option<crate::broker::LeaderHint>,
    /// Named in this request (always reported in an incremental response).
    mentioned: bool,
    /// KIP-320: the leader epoch the fetcher believes current (-1: none)
    /// and, from a follower, the epoch of the last batch it has.
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    /// KIP-392: a consumer's fetch this follower serves (below its high
    /// watermark).
    follower_read: bool,
    /// KIP-392: the in-sync replica in the consumer's rack, which the
    /// leader names instead of answering with records (-1: none).
    preferred_read_replica: i32,
}

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let fetch: FetchRequest = decode_body(&mut body, version, "Fetch request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    let by_id = version >= 13;
    // A follower names itself (v15+ in ReplicaState); consumers send -1.
    let replica_id = if version >= 15 { fetch.replica_state.replica_id.0 } else { fetch.replica_id.0 };
    let replica = (replica_id >= 0).then_some(replica_id);
    // isolation.level=read_committed (v4+): up to the last stable offset.
    let committed = replica.is_none() && version >= 4 && fetch.isolation_level == 1;
    let mut epochs: std::collections::HashMap<(String, i32), (i32, i32)> = std::collections::HashMap::new();
    let mut requested = Vec::new();
    // v13+: partitions of topic ids this broker does not know; each gets
    // UNKNOWN_TOPIC_ID and is never cached in a session.
    let mut unknown_ids: Vec<([u8; 16], i32)> = Vec::new();
    for topic in &fetch.topics {
        let name = if by_id {
            broker.topic_by_id(topic.topic_id.as_bytes()).map(|meta| meta.name)
        } else {
            Some(topic.topic.0.as_str().to_owned())
        };
        for partition in &topic.partitions {
            if requested.len() + unknown_ids.len() >= fetch_partitions_max {
                return Err(WireError::Malformed { what: "Fetch request", reason: "too many partitions".into() });
            }
            if let Some(name) = &name {
                epochs.insert(
                    (name.clone(), partition.partition),
                    (partition.current_leader_epoch, partition.last_fetched_epoch),
                );
            }
            match &name {
                Some(name) => requested.push((
                    (name.clone(), partition.partition),
                    partition.fetch_offset,
                    partition.partition_max_bytes,
                )),
                None => unknown_ids.push((*topic.topic_id.as_bytes(), partition.partition)),
            }
        }
    }
    let forgotten: Vec<(String, i32)> = fetch
        .forgotten_topics_data
        .iter()
        .filter_map(|t| {
            let name = if by_id {
                broker.topic_by_id(t.topic_id.as_bytes()).map(|meta| meta.name)
            } else {
                Some(t.topic.0.as_str().to_owned())
            };
            name.map(|name| t.partitions.iter().map(move |p| (name.clone(), *p)))
        })
        .flatten()
        .take(fetch_partitions_max)
        .collect();

    // KIP-227: which partitions this fetch covers, and in which session.
    let now = Instant::now();
    let mode = SessionRequest::of(version, fetch.session_id, fetch.session_epoch);
    let mentioned: std::collections::HashSet<(String, i32)> = requested.iter().map(|(key, _, _)| key.clone()).collect();
    let (positions, session_id) = {
        let mut sessions = broker.fetch_sessions.borrow_mut();
        let open = |sessions: &mut crate::broker::fetch_sessions::FetchSessionCache| {
            let partitions = requested
                .iter()
                .map(|(key, offset, max)| {
                    (key.clone(), SessionPartition { fetch_offset: *offset, partition_max_bytes: *max, reported: None })
                })
                .collect();
            (requested.clone(), sessions.open(partitions, now).unwrap_or(0))
        };
        match mode {
            SessionRequest::Sessionless => (requested.clone(), 0),
            SessionRequest::Close { id } => {
                sessions.close(id);
                (requested.clone(), 0)
            }
            SessionRequest::Open => open(&mut sessions),
            // A full fetch that names a session closes it and opens a new
            // one (Kafka's FetchManager). franz-go recovers from a session
            // error with exactly this request.
            SessionRequest::Reopen { id } => {
                sessions.close(id);
                open(&mut sessions)
            }
            SessionRequest::Incremental { id, epoch } => {
                match sessions.update(id, epoch, requested.clone(), forgotten, now) {
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
                        tracing::debug!(session = id, epoch, code, "fetch session error");
                        let response = FetchResponse::default().with_error_code(code).with_session_id(0);
                        return Ok(Box::pin(async move { respond(ApiKey::Fetch, version, correlation_id, &response) }));
                    }
                }
            }
        }
    };
    let incremental = matches!(mode, SessionRequest::Incremental { .. });
    tracing::trace!(?mode, session_id, partitions = positions_len(&requested), "fetch");
    let wanted: Vec<Wanted> = positions
        .into_iter()
        .map(|((topic, partition), offset, partition_max_bytes)| {
            // The offsets topic is not in the topic table, but followers
            // fetch it (and Kafka lets consumers read it).
            let meta = broker.topic_or_internal(&topic);
            let known = meta.as_ref().is_some_and(|m| (0..m.partitions).contains(&partition));
            let mut not_led = if known { broker.leadership(&topic, partition).err() } else { None };
            // KIP-392: a follower serves consumers (v11+) that fetch from it.
            let follower_read =
                not_led.is_some() && replica.is_none() && version >= 11 && broker.holds_replica(&topic, partition);
            if follower_read {
                not_led = None;
            }
            let preferred_read_replica =
                if known && !follower_read && not_led.is_none() && replica.is_none() && version >= 11 {
                    broker.preferred_read_replica(&topic, partition, fetch.rack_id.as_str())
                } else {
                    -1
                };
            let topic_id = meta.map_or([0; 16], |m| m.id);
            let mentioned = mentioned.contains(&(topic.clone(), partition));
            let (current_leader_epoch, last_fetched_epoch) =
                epochs.get(&(topic.clone(), partition)).copied().unwrap_or((-1, -1));
            Wanted {
                topic: TopicName(str_bytes(&topic)),
                topic_id,
                partition,
                offset,
                partition_max_bytes,
                known,
                not_led,
                mentioned,
                current_leader_epoch,
                last_fetched_epoch,
                follower_read,
                preferred_read_replica,
            }
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
            let (partitions, total, woken) = read_all(&broker, &wanted, max_bytes, replica, committed).await;
            let now = Instant::now();
            let any_ok = partitions.iter().any(|p| p.1.error_code == error_code::NONE);
            if total >= min_bytes.max(1) || now >= deadline || !any_ok {
                let mut partitions = report(&broker, session_id, incremental, &wanted, partitions);
                count_out(&broker, &partitions);
                for (topic_id, partition) in &unknown_ids {
                    partitions.push((TopicKey { name: String::new(), id: *topic_id }, unknown_topic_id(*partition)));
                }
                if version < 5 {
                    for (_, p) in &mut partitions {
                        p.log_start_offset = -1;
                    }
                }
                let mut out = response(session_id, partitions);
                out.node_endpoints = leader_endpoints(&broker, &out);
                let pieces = fetch_response::encode(version, correlation_id, &out);
                return Some(Response::Pieces(pieces));
            }
            wait_for_data(woken, deadline - now).await;
        }
    }))
}

/// A response topic: its name, and its id for v13+ responses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TopicKey {
    name: String,
    id: [u8; 16],
}

type PartitionsOut = Vec<(TopicKey, PartitionOut<FetchBatch>)>;

fn unknown_topic_id(partition: i32) -> PartitionOut<FetchBatch> {
    PartitionOut {
        partition_index: partition,
        error_code: error_code::UNKNOWN_TOPIC_ID,
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        batches: Vec::new(),
        current_leader: None,
        diverging_epoch: None,
        preferred_read_replica: -1,
        aborted_transactions: None,
    }
}

/// Adds the record batches a response carries to this shard's bytes and
/// records out (one header read per batch).
fn count_out(broker: &Broker, partitions: &PartitionsOut) {
    let (mut bytes, mut records) = (0u64, 0u64);
    for batch in partitions.iter().flat_map(|(_, p)| p.batches.iter()) {
        let batch = batch.as_ref();
        bytes += batch.len() as u64;
        if let Some(header) = ringstream_core::batch::BatchHeader::ref_from_prefix(batch) {
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
    partitions: PartitionsOut,
) -> PartitionsOut {
    if session_id == 0 {
        return partitions;
    }
    let mut sessions = broker.fetch_sessions.borrow_mut();
    let Some(session) = sessions.get_mut(session_id) else { return partitions };
    partitions
        .into_iter()
        .zip(wanted)
        .filter_map(|((topic, data), w)| {
            let key = (topic.name.clone(), data.partition_index);
            let now = (data.high_watermark, data.log_start_offset, data.last_stable_offset);
            let records = !data.batches.is_empty();
            let entry = session.partitions.get_mut(&key)?;
            let news = has_news(w.mentioned, records, data.error_code != error_code::NONE, entry.reported, now);
            entry.reported = Some(now);
            (!incremental || news).then_some((topic, data))
        })
        .collect()
}

/// How much of a partition's read a response may carry: every batch while
/// the response is still empty up to the budget, the first batch whole
/// (KIP-74); after that only whole batches that fit the budget.
fn fit_budget<B: AsRef<[u8]>>(batches: &mut Vec<B>, budget: usize, first_non_empty: bool) {
    let mut used = 0usize;
    let keep = batches
        .iter()
        .take_while(|batch| {
            let len = batch.as_ref().len();
            let fits = used + len <= budget || (first_non_empty && used == 0);
            if fits {
                used += len;
            }
            fits
        })
        .count();
    batches.truncate(keep);
}

/// Reads every wanted partition, then fits them to the response's budget
/// in request order.
///
/// All reads go out at once, one message per owner shard (`read_many`), so
/// a fetch of many partitions costs each other shard one wake-up, not one
/// round trip per partition. Each partition reads up to its own limit
/// (`partition_max_bytes`, at most `max_bytes`); `fit_budget` then keeps
/// what Kafka's sequential rule keeps (KIP-74): the first non-empty
/// partition's first batch whole, and later partitions only what still
/// fits. Reading a later partition's limit before knowing what is left can
/// read more than is sent, bounded by the sum of the partitions' limits.
///
/// Each read also parks a long-poll waiter with the partition's owner, at
/// the high watermark it saw; their receivers come back with the result.
/// If the response is not ready yet, the fetch waits on them
/// (`wait_for_data`) with no further message; if it is, they are dropped
/// and the owner's next commit discards the senders.
async fn read_all(
    broker: &Broker,
    wanted: &[Wanted],
    max_bytes: usize,
    replica: Option<i32>,
    committed: bool,
) -> (PartitionsOut, usize, Vec<DataWoken>) {
    let limit = |w: &Wanted| max_bytes.min(w.partition_max_bytes.max(0) as usize);
    let epoch_error = |w: &Wanted| epoch_error(broker, w);
    let mut woken = Vec::new();
    // Known partitions led here in the epoch the fetcher names, with room
    // to read, in request order.
    let reads: Vec<ReadRequest> = wanted
        .iter()
        .filter(|w| w.known && w.not_led.is_none() && epoch_error(w).is_none() && limit(w) > 0)
        .filter(|w| w.preferred_read_replica < 0)
        .map(|w| {
            let (waiter, receiver) = futures_channel::oneshot::channel();
            woken.push(receiver);
            ReadRequest {
                tp: TopicPartition::new(w.topic.0.as_str(), w.partition),
                offset: Offset(w.offset),
                max_bytes: limit(w),
                waiter: Some(waiter),
                replica: replica.map(|id| (id, LeaderEpoch(w.last_fetched_epoch))),
                committed,
            }
        })
        .collect();
    let mut results = broker.shard.read_many(reads).await.into_iter();

    let mut out = Vec::with_capacity(wanted.len());
    let mut total = 0usize;
    for w in wanted {
        let mut data = PartitionOut {
            partition_index: w.partition,
            error_code: error_code::NONE,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            batches: Vec::new(),
            current_leader: None,
            diverging_epoch: None,
            preferred_read_replica: -1,
            aborted_transactions: None,
        };
        let topic = TopicKey { name: w.topic.0.as_str().to_owned(), id: w.topic_id };
        if !w.known {
            data.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION;
            out.push((topic, data));
            continue;
        }
        if let Some(hint) = &w.not_led {
            data.error_code = error_code::NOT_LEADER_OR_FOLLOWER;
            data.current_leader = (hint.leader >= 0).then_some((hint.leader, hint.leader_epoch));
            out.push((topic, data));
            continue;
        }
        if let Some(code) = epoch_error(w) {
            data.error_code = code;
            out.push((topic, data));
            continue;
        }
        let budget = max_bytes.saturating_sub(total).min(w.partition_max_bytes.max(0) as usize);
        let first_non_empty = total == 0;
        data.preferred_read_replica = w.preferred_read_replica;
        if w.follower_read {
            broker.note_follower_read(w.topic.0.as_str(), w.partition);
        }
        let result = if limit(w) == 0 || w.preferred_read_replica >= 0 {
            let tp = TopicPartition::new(topic.name.clone(), w.partition);
            broker
                .shard
                .offsets(&tp)
                .await
                .map(|o| (Vec::new(), o.high_watermark, o.log_start_offset, o.last_stable_offset, Vec::new()))
        } else {
            results.next().expect("one result per read").map(|read| match read {
                // Zero-copy: slices of the batch cache or of the DMA reads.
                ManyRead::Local(r) => {
                    data.diverging_epoch = r.diverging.map(|(e, o)| (e.0, o.0));
                    (
                        r.batches.into_iter().map(FetchBatch::Local).collect::<Vec<_>>(),
                        r.high_watermark,
                        r.log_start_offset,
                        r.last_stable_offset,
                        r.aborted,
                    )
                }
                ManyRead::Remote { lent, part } => {
                    data.diverging_epoch = part.diverging.map(|(e, o)| (e.0, o.0));
                    let batches = part.batches.clone().map(|i| FetchBatch::Lent(lent.clone(), i)).collect();
                    (batches, part.high_watermark, part.log_start_offset, part.last_stable_offset, part.aborted)
                }
            })
        };
        match result {
            Ok((mut batches, hw, start, lso, aborted)) => {
                fit_budget(&mut batches, budget, first_non_empty);
                total += batches.iter().map(|b| b.as_ref().len()).sum::<usize>();
                data.high_watermark = hw.0;
                data.last_stable_offset = lso.0;
                if committed {
                    data.aborted_transactions = Some(aborted.into_iter().map(|(p, o)| (p, o.0)).collect());
                }
                data.log_start_offset = start.0;
                data.batches = batches;
            }
            // A follower behind the consumer (its log end short of the
            // leader's): OFFSET_NOT_AVAILABLE, retriable, not a reset.
            Err(StorageError::OffsetOutOfRange { offset, log_start, .. }) if w.follower_read && offset >= log_start => {
                data.error_code = OFFSET_NOT_AVAILABLE
            }
            // Out of range: the log's bounds go with the error, so a
            // follower behind the log start restarts its log there.
            Err(StorageError::OffsetOutOfRange { log_start, high_watermark, .. }) => {
                data.error_code = error_code::OFFSET_OUT_OF_RANGE;
                data.log_start_offset = log_start.0;
                data.high_watermark = high_watermark.0;
            }
            Err(e) => data.error_code = e.kafka_error_code(),
        }
        out.push((topic, data));
    }
    (out, total, woken)
}

/// KIP-320: a fetch naming a leader epoch other than this leader's gets
/// FENCED_LEADER_EPOCH (older: the fetcher refreshes its metadata) or
/// UNKNOWN_LEADER_EPOCH (newer: this broker has not caught up yet).
fn epoch_error(broker: &Broker, w: &Wanted) -> Option<i16> {
    super::list_offsets::epoch_error(w.current_leader_epoch, broker.leader_epoch(w.topic.0.as_str(), w.partition))
}

/// Fires when a partition's owner commits past what the read saw (or when
/// the waiter could not be parked: the fetch then reads again).
type DataWoken = futures_channel::oneshot::Receiver<()>;

/// Groups partitions by topic, in first-seen order.
fn response(session_id: i32, partitions: PartitionsOut) -> FetchOut<FetchBatch> {
    let mut topics: Vec<TopicOut<FetchBatch>> = Vec::new();
    let mut index: std::collections::HashMap<TopicKey, usize> = std::collections::HashMap::new();
    for (topic, data) in partitions {
        match index.get(&topic) {
            Some(&i) => topics[i].partitions.push(data),
            None => {
                index.insert(topic.clone(), topics.len());
                topics.push(TopicOut { name: topic.name, topic_id: topic.id, partitions: vec![data] });
            }
        }
    }
    FetchOut { throttle_time_ms: 0, error_code: error_code::NONE, session_id, topics, node_endpoints: Vec::new() }
}

/// KIP-951: the endpoints of the leaders this response names.
fn leader_endpoints(broker: &Broker, out: &FetchOut<FetchBatch>) -> Vec<fetch_response::NodeEndpointOut> {
    let Some(view) = broker.cluster() else { return Vec::new() };
    let named: std::collections::BTreeSet<i32> =
        out.topics.iter().flat_map(|t| &t.partitions).filter_map(|p| p.current_leader.map(|(id, _)| id)).collect();
    named
        .into_iter()
        .filter_map(|id| view.image.brokers.get(&id))
        .map(|b| fetch_response::NodeEndpointOut {
            node_id: b.id,
            host: b.host.clone(),
            port: b.port,
            rack: b.rack.clone(),
        })
        .collect()
}

/// Waits until any read partition has data past what its read saw, or the
/// timeout: the waiters `read_all` parked with each partition's owner (woken
/// by its next commit) and one timer for the whole fetch. With nothing
/// parked (no partition to read), the timeout.
async fn wait_for_data(woken: Vec<DataWoken>, timeout: Duration) {
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

#[cfg(test)]
mod tests {
    use super::fit_budget;

    fn sizes(batches: &[Vec<u8>]) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    /// Regression (fetch_max_bytes_is_honoured): storage returns a read's
    /// first batch whole, which only the response's first non-empty
    /// partition may keep.
    #[test]
    fn fetch_max_bytes_is_honoured() {
        let read = || vec![vec![0u8; 600], vec![0u8; 300], vec![0u8; 300]];
        let mut first = read();
        fit_budget(&mut first, 500, true);
        assert_eq!(sizes(&first), vec![600], "the first batch whole, nothing past the budget");
        let mut first = read();
        fit_budget(&mut first, 1000, true);
        assert_eq!(sizes(&first), vec![600, 300]);
        let mut later = read();
        fit_budget(&mut later, 500, false);
        assert!(later.is_empty(), "a later partition gets no batch larger than what is left");
        let mut later = read();
        fit_budget(&mut later, 1200, false);
        assert_eq!(sizes(&later), vec![600, 300, 300]);
    }
}
