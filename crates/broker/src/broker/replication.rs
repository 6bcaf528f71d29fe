//! Replication, per shard: the replica fetchers of the partitions this
//! shard follows, and the ISR changes of the partitions it leads.
//!
//! - **Fetchers.** One task per leader broker this shard follows
//!   partitions of, holding one connection to that broker's Kafka
//!   listener. It sends Fetch v12 as a replica (`replica_id` = this node),
//!   with each partition's log end, the leader epoch it follows and its
//!   last fetched epoch (KIP-320). The leader answers from the same
//!   zero-copy path as consumers; the follower appends the batches as they
//!   are (`ShardStorage::submit_replica`: offsets, epochs and producer ids
//!   kept), waits until they are durable, and only then fetches again, so
//!   the log end the leader sees in the next fetch is on disk. A
//!   diverging epoch in the answer truncates the log there first.
//! - **ISR.** Every `isr_check_ms` each leader partition's followers are
//!   checked (`LeaderState::isr_change`): those not caught up for
//!   `replica.lag.time.max.ms` leave, caught-up ones join. Changes go to
//!   the controller as AlterIsr (Kafka's AlterPartition) and take effect
//!   when the metadata comes back.
//! - The high watermarks of replicated partitions are checkpointed every
//!   `checkpoint_interval_ms`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info, warn};

use super::Broker;
use ringstream_core::error_code;
use ringstream_core::limits;
use ringstream_core::types::{Offset, TopicPartition};
use ringstream_storage::replica::ReplicaId;
use ringstream_storage::shard_storage::FollowedPartition;

/// How often leaders look at their followers for ISR changes.
const isr_check_ms: u64 = 250;
/// How often the high watermark checkpoint is written.
const checkpoint_interval_ms: u64 = 1_000;
/// How often the set of leaders to fetch from is looked at again.
const fetcher_scan_ms: u64 = 100;
/// A fetcher's pause after an error (no leader, connection refused, ...).
const fetch_backoff_ms: u64 = 100;
/// How long past `replica.fetch.wait.max.ms` a fetch may take before the
/// fetcher gives up on the connection.
const replica_fetch_slack_ms: u64 = 5_000;
/// The Fetch version followers send: flexible, names topics, carries
/// LastFetchedEpoch and gets DivergingEpoch back.
const replica_fetch_version: i16 = 12;

/// Starts this shard's replication tasks.
pub fn start(broker: Rc<Broker>) {
    let fetchers = Rc::new(RefCell::new(BTreeSet::new()));
    glommio::spawn_local(fetcher_scan_loop(broker.clone(), fetchers)).detach();
    glommio::spawn_local(isr_loop(broker)).detach();
}

async fn isr_loop(broker: Rc<Broker>) {
    let lag_ms = broker.config.cluster.replica_lag_time_max_ms;
    let mut since_checkpoint = 0;
    loop {
        glommio::timer::sleep(Duration::from_millis(isr_check_ms)).await;
        for (tp, change) in broker.shard.storage.isr_changes(lag_ms, limits::isr_change_retry_ms) {
            info!(partition = %tp, isr = ?change.isr, "asking the controller to change the ISR");
            if let Err(e) = broker.alter_isr(&tp, &change).await {
                // Retried after isr_change_retry_ms if still due (the
                // metadata may simply have moved on).
                debug!(partition = %tp, "ISR change refused: {}", e.message);
            }
        }
        since_checkpoint += isr_check_ms;
        if since_checkpoint >= checkpoint_interval_ms {
            since_checkpoint = 0;
            broker.shard.storage.checkpoint_high_watermarks().await;
        }
    }
}

/// Keeps one fetcher per leader this shard follows partitions of.
async fn fetcher_scan_loop(broker: Rc<Broker>, fetchers: Rc<RefCell<BTreeSet<ReplicaId>>>) {
    let me = broker.config.node_id;
    loop {
        let leaders: BTreeSet<ReplicaId> =
            broker.shard.storage.followed().into_iter().map(|p| p.leader).filter(|&l| l >= 0 && l != me).collect();
        for leader in leaders {
            let mut running = fetchers.borrow_mut();
            if running.len() >= limits::replica_fetchers_max || !running.insert(leader) {
                continue;
            }
            let (broker, fetchers) = (broker.clone(), fetchers.clone());
            glommio::spawn_local(async move {
                fetcher(&broker, leader).await;
                fetchers.borrow_mut().remove(&leader);
            })
            .detach();
        }
        glommio::timer::sleep(Duration::from_millis(fetcher_scan_ms)).await;
    }
}

/// Fetches from `leader` while this shard follows partitions it leads.
async fn fetcher(broker: &Rc<Broker>, leader: ReplicaId) {
    let mut connection: Option<TcpStream> = None;
    let mut correlation_id = 0i32;
    loop {
        let partitions: Vec<FollowedPartition> = broker
            .shard
            .storage
            .followed()
            .into_iter()
            .filter(|p| p.leader == leader)
            .take(limits::replica_fetch_partitions_max)
            .collect();
        if partitions.is_empty() {
            return;
        }
        let endpoint = broker.cluster().and_then(|view| {
            view.image.brokers.get(&leader).filter(|b| !b.fenced).map(|b| format!("{}:{}", b.host, b.port))
        });
        let Some(endpoint) = endpoint else {
            glommio::timer::sleep(Duration::from_millis(fetch_backoff_ms)).await;
            continue;
        };
        if connection.is_none() {
            match TcpStream::connect(endpoint.as_str()).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    connection = Some(stream);
                }
                Err(e) => {
                    debug!(leader, "replica fetcher cannot connect to {endpoint}: {e}");
                    glommio::timer::sleep(Duration::from_millis(fetch_backoff_ms)).await;
                    continue;
                }
            }
        }
        let stream = connection.as_mut().expect("connected above");
        correlation_id = correlation_id.wrapping_add(1);
        let request = fetch_request(broker, &partitions);
        let wait_ms = broker.config.cluster.replica_fetch_wait_max_ms as u64;
        let exchanged = exchange(stream, correlation_id, &request, wait_ms).await;
        let response = match exchanged {
            Ok(response) => response,
            Err(e) => {
                debug!(leader, "replica fetch from {endpoint} failed: {e}");
                connection = None;
                glommio::timer::sleep(Duration::from_millis(fetch_backoff_ms)).await;
                continue;
            }
        };
        let back_off = apply(broker, leader, &partitions, response).await;
        if back_off {
            glommio::timer::sleep(Duration::from_millis(fetch_backoff_ms)).await;
        }
    }
}

fn fetch_request(broker: &Broker, partitions: &[FollowedPartition]) -> FetchRequest {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for p in partitions {
        topics.entry(p.tp.topic.as_str()).or_default().push(
            FetchPartition::default()
                .with_partition(p.tp.partition.0)
                .with_current_leader_epoch(p.epoch.0)
                .with_fetch_offset(p.log_end.0)
                .with_last_fetched_epoch(p.last_epoch.0)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(limits::replica_partition_fetch_bytes_max as i32),
        );
    }
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_owned())))
                .with_partitions(partitions)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(broker.config.node_id))
        .with_max_wait_ms(broker.config.cluster.replica_fetch_wait_max_ms as i32)
        .with_min_bytes(1)
        .with_max_bytes(limits::replica_fetch_bytes_max as i32)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Sends one Fetch and reads its response, bounded in size and time.
async fn exchange(
    stream: &mut TcpStream,
    correlation_id: i32,
    request: &FetchRequest,
    wait_ms: u64,
) -> Result<FetchResponse, String> {
    // The leader waits up to replica.fetch.wait.max.ms; well past that the
    // leader is presumed dead or stopped, and the fetcher reconnects.
    let timeout = Duration::from_millis(wait_ms + replica_fetch_slack_ms);
    let response: FetchResponse = super::peer::call(
        stream,
        ApiKey::Fetch,
        replica_fetch_version,
        correlation_id,
        "ringstream-replica-fetcher",
        request,
        timeout,
        limits::replica_fetch_response_bytes_max,
    )
    .await?;
    if response.error_code != error_code::NONE {
        return Err(format!("fetch error {}", response.error_code));
    }
    Ok(response)
}

/// Applies one fetch response: truncations, appends (awaited until
/// durable), then the leader's high watermark. Returns whether the fetcher
/// should pause (nothing could be done).
async fn apply(broker: &Broker, leader: ReplicaId, asked: &[FollowedPartition], response: FetchResponse) -> bool {
    let storage = &broker.shard.storage;
    let mut progressed = false;
    let mut errors = 0usize;
    let asked: BTreeMap<&TopicPartition, &FollowedPartition> = asked.iter().map(|p| (&p.tp, p)).collect();
    // Where each partition stands now: a role change while the fetch was
    // out (a new leader or epoch, a truncation) voids its part of the answer.
    let current: BTreeMap<TopicPartition, FollowedPartition> =
        storage.followed().into_iter().map(|p| (p.tp.clone(), p)).collect();
    for topic in response.responses {
        let name = topic.topic.0.as_str().to_owned();
        for part in topic.partitions {
            let tp = TopicPartition::new(name.clone(), part.partition_index);
            let Some(asked) = asked.get(&tp).copied() else { continue };
            let still = current
                .get(&tp)
                .is_some_and(|c| c.leader == leader && c.epoch == asked.epoch && c.log_end == asked.log_end);
            if !still {
                continue;
            }
            if part.error_code == error_code::OFFSET_OUT_OF_RANGE && part.log_start_offset > asked.log_end.0 {
                // The leader's log now starts past all of this replica's.
                match storage.restart_log_at(&tp, Offset(part.log_start_offset)).await {
                    Ok(()) => progressed = true,
                    Err(e) => {
                        warn!(partition = %tp, "restarting the log at the leader's start failed: {e}");
                        errors += 1;
                    }
                }
                continue;
            }
            if part.error_code != error_code::NONE {
                errors += 1;
                if part.error_code == error_code::OFFSET_OUT_OF_RANGE {
                    warn!(
                        partition = %tp,
                        log_end = %asked.log_end,
                        last_epoch = asked.last_epoch.0,
                        leader_log_start = part.log_start_offset,
                        leader_hw = part.high_watermark,
                        "leader says this replica's log end is out of range"
                    );
                } else {
                    debug!(partition = %tp, code = part.error_code, "replica fetch error");
                }
                continue;
            }
            let diverging = &part.diverging_epoch;
            if diverging.end_offset >= 0 {
                let to = Offset(diverging.end_offset.min(asked.log_end.0));
                match storage.truncate_to(&tp, to).await {
                    Ok(_) => progressed = true,
                    Err(e) => {
                        warn!(partition = %tp, "truncation to the leader's log failed: {e}");
                        errors += 1;
                    }
                }
                continue;
            }
            let mut tickets = Vec::new();
            let mut failed = false;
            if let Some(records) = part.records {
                for batch in ringstream_core::batch::split_batches(&records, limits::batch_bytes_max) {
                    let Ok(batch) = batch else {
                        failed = true;
                        break;
                    };
                    match storage.submit_replica(&tp, records.slice_ref(batch)).await {
                        Ok(ticket) => tickets.push(ticket),
                        Err(e) => {
                            warn!(partition = %tp, "follower append failed: {e}");
                            failed = true;
                            break;
                        }
                    }
                }
            }
            for ticket in tickets {
                match ticket.wait().await {
                    Ok(_) => progressed = true,
                    Err(e) => {
                        warn!(partition = %tp, "follower append failed: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                errors += 1;
                continue;
            }
            if part.high_watermark >= 0 {
                let _ = storage.set_follower_high_watermark(&tp, Offset(part.high_watermark));
            }
            // The leader's log start (retention, DeleteRecords, the offsets
            // log's compaction) moves the follower's too, as in Kafka.
            let local = storage.offsets(&tp).ok();
            if local.is_some_and(|o| {
                part.log_start_offset > o.log_start_offset.0 && part.log_start_offset <= o.high_watermark.0
            }) {
                if let Err(e) = storage.delete_records(&tp, part.log_start_offset).await {
                    debug!(partition = %tp, "following the leader's log start failed: {e}");
                }
            }
        }
    }
    !progressed && errors > 0
}

impl Broker {
    /// Asks the controller to change a partition's ISR (AlterPartition),
    /// and waits until this node's shards have the result.
    pub(crate) async fn alter_isr(
        &self,
        tp: &TopicPartition,
        change: &ringstream_storage::replica::IsrChange,
    ) -> Result<(), super::TopicError> {
        use ringstream_cluster::wire::RequestBody;
        self.ask_controller(RequestBody::AlterIsr {
            broker: self.config.node_id,
            topic: tp.topic.clone(),
            partition: tp.partition.0,
            leader_epoch: change.leader_epoch.0,
            partition_epoch: change.partition_epoch,
            isr: change.isr.clone(),
        })
        .await
        .map(|_| ())
    }
}
