//! One shard's transaction coordinator: the transactional ids of the
//! transaction-log partitions this shard owns and this broker leads.
//!
//! Every state change is written to `__transaction_state` and waits for
//! the partition's ISR (the high watermark) before it is applied or acted
//! on, so a new leader reloads exactly what was acknowledged. A partition
//! is loaded once per leader epoch (`ensure_loaded`); while it loads,
//! requests get COORDINATOR_LOAD_IN_PROGRESS. After a load, transactions
//! found preparing get their markers written and complete; transactions
//! found open are aborted at their timeout by the ticker.
//!
//! One transition per transactional id at a time (`busy`): a request that
//! finds its id busy gets CONCURRENT_TRANSACTIONS, which clients retry.
//! EndTxn is answered once PrepareCommit/PrepareAbort is durable; the
//! markers follow (`complete`), retried until every partition has one or
//! this broker stops coordinating the id.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::net::TcpStream;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, error, info, warn};

use super::state::{self, EndPlan, InitPlan, TxnMeta, TxnState};
use super::{txn_log_partition, TxnConfig, TXN_TOPIC};
use ringstream_core::batch::{self, BatchBuilder, Record};
use ringstream_core::clock::now_ms;
use ringstream_core::error_code;
use ringstream_core::limits;
use ringstream_shard::Shard;

thread_local! {
    static COORDINATOR: RefCell<Option<Rc<TxnCoordinator>>> = const { RefCell::new(None) };
}

/// The transaction coordinator of the shard running on this thread.
pub fn local() -> Rc<TxnCoordinator> {
    COORDINATOR.with(|c| c.borrow().clone()).expect("transaction coordinator installed on this shard")
}

/// How long a state write waits for the ISR.
const write_timeout_ms: u64 = 5_000;
/// The transaction log is compacted once this much was written since the
/// last rewrite of its live state (and at least that rewrite's size).
const compact_bytes: u64 = 8 * 1024 * 1024;
/// Marker retries back off up to this.
const marker_backoff_max_ms: u64 = 1_000;
/// How long one WriteTxnMarkers call to another broker may take.
const marker_call_timeout_ms: u64 = 30_000;
/// Responses from peers are small; anything larger is refused.
const marker_response_bytes_max: usize = 1 << 20;

/// One id's entry: its transaction-log partition and state.
#[derive(Clone, Debug)]
pub struct Entry {
    pub partition: i32,
    pub meta: TxnMeta,
}

struct TxnLog {
    /// Writers hold one permit; compaction takes them all.
    gate: Rc<glommio::sync::Semaphore>,
    bytes_since_rewrite: Cell<u64>,
    rewrite_bytes: Cell<u64>,
    compacting: Cell<bool>,
}

const gate_permits: u64 = 1 << 20;

pub struct TxnCoordinator {
    shard: Rc<Shard>,
    config: TxnConfig,
    txns: RefCell<HashMap<String, Entry>>,
    busy: RefCell<HashSet<String>>,
    /// Partition → the leader epoch its ids were loaded in.
    loaded: RefCell<HashMap<i32, i32>>,
    loading: RefCell<HashSet<i32>>,
    logs: RefCell<HashMap<i32, Rc<TxnLog>>>,
    /// One connection per peer broker, for WriteTxnMarkers.
    peers: RefCell<HashMap<i32, TcpStream>>,
    correlation: Cell<i32>,
}

/// Marks an id busy until dropped.
struct Busy {
    coordinator: Rc<TxnCoordinator>,
    id: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.coordinator.busy.borrow_mut().remove(&self.id);
    }
}

impl TxnCoordinator {
    pub fn install(shard: Rc<Shard>, config: TxnConfig) -> Rc<TxnCoordinator> {
        let coordinator = Rc::new(TxnCoordinator {
            shard,
            config,
            txns: RefCell::new(HashMap::new()),
            busy: RefCell::new(HashSet::new()),
            loaded: RefCell::new(HashMap::new()),
            loading: RefCell::new(HashSet::new()),
            logs: RefCell::new(HashMap::new()),
            peers: RefCell::new(HashMap::new()),
            correlation: Cell::new(0),
        });
        COORDINATOR.with(|c| *c.borrow_mut() = Some(coordinator.clone()));
        let ticker = coordinator.clone();
        glommio::spawn_local(async move { ticker.tick_loop().await }).detach();
        coordinator
    }

    /// The leader epoch of `partition` when this broker leads it.
    fn led_epoch(&self, partition: i32) -> Option<i32> {
        let broker = crate::broker::local();
        broker.leadership(TXN_TOPIC, partition).ok()?;
        Some(broker.leader_epoch(TXN_TOPIC, partition).unwrap_or(0))
    }

    /// Whether `partition` is loaded here in the epoch this broker leads it in.
    fn serves(&self, partition: i32) -> Option<i32> {
        let epoch = self.led_epoch(partition)?;
        (self.loaded.borrow().get(&partition) == Some(&epoch)).then_some(epoch)
    }

    /// Loads `partition`'s ids if this broker leads it and has not loaded
    /// them in this leader epoch. Concurrent callers get
    /// COORDINATOR_LOAD_IN_PROGRESS while one loads.
    pub async fn ensure_loaded(self: &Rc<Self>, partition: i32) -> Result<(), i16> {
        let epoch = self.led_epoch(partition).ok_or(error_code::NOT_COORDINATOR)?;
        if self.loaded.borrow().get(&partition) == Some(&epoch) {
            return Ok(());
        }
        if !self.loading.borrow_mut().insert(partition) {
            return Err(error_code::COORDINATOR_LOAD_IN_PROGRESS);
        }
        let result = self.load(partition, epoch).await;
        self.loading.borrow_mut().remove(&partition);
        result
    }

    async fn load(self: &Rc<Self>, partition: i32, epoch: i32) -> Result<(), i16> {
        let tp = txn_log_partition(partition);
        self.txns.borrow_mut().retain(|_, e| e.partition != partition);
        let replayed = self
            .shard
            .storage
            .replay_to_log_end(&tp, |batch_bytes| match batch::records(batch_bytes) {
                Ok(records) => {
                    for record in records {
                        self.apply_record(partition, record.key, record.value);
                    }
                }
                Err(e) => error!(partition = %tp, "skipping an unreadable transaction-log batch: {e}"),
            })
            .await;
        let bytes = replayed.map_err(|e| {
            error!(partition = %tp, "loading transactions failed: {e}");
            error_code::COORDINATOR_NOT_AVAILABLE
        })?;
        self.log(partition).bytes_since_rewrite.set(bytes);
        self.loaded.borrow_mut().insert(partition, epoch);
        // Transactions that were deciding when the last coordinator stopped
        // get their markers now.
        let preparing: Vec<String> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, e)| e.partition == partition && e.meta.state.preparing())
            .map(|(id, _)| id.clone())
            .collect();
        let count = self.txns.borrow().values().filter(|e| e.partition == partition).count();
        if count > 0 {
            info!(partition, leader_epoch = epoch, ids = count, completing = preparing.len(), "transactions loaded");
        }
        for id in preparing {
            if let Some(busy) = self.try_busy(&id) {
                let this = self.clone();
                glommio::spawn_local(async move { this.complete(busy).await }).detach();
            }
        }
        Ok(())
    }

    fn apply_record(&self, partition: i32, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(id) = key.and_then(state::decode_key) else {
            return error!(partition, "skipping a transaction-log record with an unreadable key");
        };
        match value.map(serde_json::from_slice::<TxnMeta>) {
            None => {
                self.txns.borrow_mut().remove(&id);
            }
            Some(Ok(meta)) => {
                self.txns.borrow_mut().insert(id, Entry { partition, meta });
            }
            Some(Err(e)) => error!(partition, transactional_id = %id, "skipping a transaction-log record: {e}"),
        }
    }

    fn log(&self, partition: i32) -> Rc<TxnLog> {
        self.logs
            .borrow_mut()
            .entry(partition)
            .or_insert_with(|| {
                Rc::new(TxnLog {
                    gate: Rc::new(glommio::sync::Semaphore::new(gate_permits)),
                    bytes_since_rewrite: Cell::new(0),
                    rewrite_bytes: Cell::new(0),
                    compacting: Cell::new(false),
                })
            })
            .clone()
    }

    fn try_busy(self: &Rc<Self>, id: &str) -> Option<Busy> {
        self.busy.borrow_mut().insert(id.to_owned()).then(|| Busy { coordinator: self.clone(), id: id.to_owned() })
    }

    fn meta(&self, id: &str) -> Option<TxnMeta> {
        self.txns.borrow().get(id).map(|e| e.meta.clone())
    }

    /// Writes `id`'s new state (None: removes it) and waits for the ISR;
    /// then applies it in memory. Err: the code to answer with.
    async fn write(self: &Rc<Self>, partition: i32, id: &str, meta: Option<TxnMeta>) -> Result<(), i16> {
        self.write_as(partition, id, meta, true).await
    }

    /// `write`; with `durable` false it returns once the record is queued
    /// in the log, applied in memory. Only for a completion
    /// (CompleteCommit/CompleteAbort): any later record of the id is
    /// appended after it in the same log, so whatever a client is told next
    /// is durable only once the completion is; and a completion that is
    /// lost leaves the id preparing, whose markers the next coordinator
    /// writes again (a second marker for a closed transaction changes
    /// nothing). The next transaction of the id need not wait for it.
    async fn write_as(
        self: &Rc<Self>,
        partition: i32,
        id: &str,
        meta: Option<TxnMeta>,
        durable: bool,
    ) -> Result<(), i16> {
        let epoch = self.serves(partition).ok_or(error_code::NOT_COORDINATOR)?;
        let tp = txn_log_partition(partition);
        let log = self.log(partition);
        let _permit =
            log.gate.clone().acquire_static_permit(1).await.map_err(|_| error_code::COORDINATOR_NOT_AVAILABLE)?;
        let key = state::encode_key(id);
        let value = match &meta {
            Some(meta) => Some(serde_json::to_vec(meta).map_err(|_| error_code::UNKNOWN_SERVER_ERROR)?),
            None => None,
        };
        let mut builder = BatchBuilder::new(now_ms());
        builder.push(&Record { key: Some(&key), value: value.as_deref(), headers: &[], timestamp_delta: 0 });
        let batch = builder.build();
        let bytes = batch.len() as u64;
        let failed = |e: ringstream_storage::StorageError| {
            warn!(partition = %tp, transactional_id = id, "transaction-log write failed: {e}");
            match e {
                ringstream_storage::StorageError::NotLeader(_) => error_code::NOT_COORDINATOR,
                _ => error_code::COORDINATOR_NOT_AVAILABLE,
            }
        };
        let ticket = self.shard.storage.submit(&tp, Bytes::from(batch)).await.map_err(failed)?;
        if durable {
            let info = ticket.wait().await.map_err(failed)?;
            let timeout = Duration::from_millis(write_timeout_ms);
            match self.shard.storage.wait_for_high_watermark(&tp, info.last_offset, timeout).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(partition = %tp, transactional_id = id, "transaction-log write not replicated in time");
                    return Err(error_code::COORDINATOR_NOT_AVAILABLE);
                }
                Err(e) => return Err(failed(e)),
            }
        } else {
            let id = id.to_owned();
            glommio::spawn_local(async move {
                if let Err(e) = ticket.wait().await {
                    warn!(transactional_id = %id, "a transaction's completion was not written: {e}");
                }
            })
            .detach();
        }
        if self.serves(partition) != Some(epoch) {
            return Err(error_code::NOT_COORDINATOR);
        }
        match meta {
            Some(meta) => {
                let mut txns = self.txns.borrow_mut();
                if !txns.contains_key(id) && txns.len() >= limits::transactional_ids_max {
                    return Err(error_code::COORDINATOR_NOT_AVAILABLE);
                }
                txns.insert(id.to_owned(), Entry { partition, meta });
            }
            None => {
                self.txns.borrow_mut().remove(id);
            }
        }
        log.bytes_since_rewrite.set(log.bytes_since_rewrite.get() + bytes);
        let threshold = (2 * self.config.segment_bytes).min(compact_bytes).max(log.rewrite_bytes.get());
        if log.bytes_since_rewrite.get() >= threshold && !log.compacting.get() {
            log.compacting.set(true);
            let this = self.clone();
            glommio::spawn_local(async move {
                if let Err(e) = this.compact(partition).await {
                    error!(partition, "transaction-log compaction failed: {e}");
                }
                this.log(partition).compacting.set(false);
            })
            .detach();
        }
        Ok(())
    }

    /// Rewrites `partition`'s live ids after a roll and deletes the
    /// segments before them.
    async fn compact(&self, partition: i32) -> Result<(), ringstream_storage::StorageError> {
        use ringstream_storage::StorageError;
        let tp = txn_log_partition(partition);
        let log = self.log(partition);
        let _all =
            log.gate.clone().acquire_static_permit(gate_permits).await.map_err(|_| StorageError::ShuttingDown)?;
        self.shard.storage.roll(&tp).await?;
        let start = self.shard.storage.offsets(&tp)?.log_end_offset;
        let live: Vec<(Vec<u8>, Vec<u8>)> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, e)| e.partition == partition)
            .filter_map(|(id, e)| Some((state::encode_key(id), serde_json::to_vec(&e.meta).ok()?)))
            .collect();
        let mut bytes = 0u64;
        for chunk in live.chunks(64) {
            let mut builder = BatchBuilder::new(now_ms());
            for (key, value) in chunk {
                builder.push(&Record { key: Some(key), value: Some(value), headers: &[], timestamp_delta: 0 });
            }
            let batch = builder.build();
            bytes += batch.len() as u64;
            self.shard.storage.append(&tp, Bytes::from(batch)).await?;
        }
        let deleted = self.shard.storage.delete_segments_before(&tp, start).await?;
        log.rewrite_bytes.set(bytes);
        log.bytes_since_rewrite.set(bytes);
        info!(partition = %tp, ids = live.len(), bytes, segments_deleted = deleted, "transaction log compacted");
        Ok(())
    }

    /// InitProducerId with a transactional id: (producer id, epoch).
    pub async fn init_producer_id(
        self: &Rc<Self>,
        id: &str,
        partition: i32,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), i16> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(error_code::INVALID_TRANSACTION_TIMEOUT);
        }
        let busy = self.try_busy(id).ok_or(error_code::CONCURRENT_TRANSACTIONS)?;
        let current = self.meta(id);
        let now = now_ms();
        let next = match state::plan_init(current.as_ref(), expected)? {
            InitPlan::Current => {
                let meta = current.expect("a retry has state");
                return Ok((meta.producer_id, meta.producer_epoch));
            }
            InitPlan::FenceOngoing => {
                let meta = current.expect("an open transaction has state");
                let fenced = state::plan_fence_abort(&meta, now).ok_or(error_code::CONCURRENT_TRANSACTIONS)?;
                self.write(partition, id, Some(fenced)).await?;
                info!(transactional_id = id, "aborting the open transaction of a fenced producer");
                let this = self.clone();
                glommio::spawn_local(async move { this.complete(busy).await }).detach();
                return Err(error_code::CONCURRENT_TRANSACTIONS);
            }
            InitPlan::Fresh => TxnMeta {
                producer_id: self.new_producer_id().await?,
                producer_epoch: 0,
                last_producer_epoch: -1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: Default::default(),
                start_ms: -1,
                update_ms: now,
            },
            InitPlan::Bump => {
                let meta = current.expect("a bump has state");
                let (producer_id, epoch, last) = if meta.producer_epoch >= i16::MAX - 1 {
                    (self.new_producer_id().await?, 0, -1)
                } else {
                    (meta.producer_id, meta.producer_epoch + 1, meta.producer_epoch)
                };
                TxnMeta {
                    producer_id,
                    producer_epoch: epoch,
                    last_producer_epoch: last,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: Default::default(),
                    start_ms: -1,
                    update_ms: now,
                }
            }
        };
        let answer = (next.producer_id, next.producer_epoch);
        self.write(partition, id, Some(next)).await?;
        drop(busy);
        Ok(answer)
    }

    async fn new_producer_id(&self) -> Result<i64, i16> {
        crate::broker::local().allocate_producer_id().await.map_err(|e| e.code)
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn.
    pub async fn add_partitions(
        self: &Rc<Self>,
        id: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), i16> {
        let busy = self.try_busy(id).ok_or(error_code::CONCURRENT_TRANSACTIONS)?;
        let current = self.meta(id);
        if let Some(next) = state::plan_add(current.as_ref(), producer_id, epoch, partitions, now_ms())? {
            self.write(partition, id, Some(next)).await?;
        }
        drop(busy);
        Ok(())
    }

    /// AddPartitionsToTxn v4+ `verify_only`: whether each partition is in
    /// the producer's open transaction (KIP-890 part 1).
    pub fn verify_partitions(&self, id: &str, producer_id: i64, epoch: i16, partitions: &[(String, i32)]) -> Vec<i16> {
        let meta = self.meta(id);
        match state::check_producer(meta.as_ref(), producer_id, epoch) {
            Err(code) => vec![code; partitions.len()],
            Ok(meta) => partitions
                .iter()
                .map(|p| {
                    if meta.state == TxnState::Ongoing && meta.partitions.contains(p) {
                        error_code::NONE
                    } else {
                        error_code::INVALID_TXN_STATE
                    }
                })
                .collect(),
        }
    }

    /// EndTxn: answered once the decision is durable; markers follow.
    pub async fn end_txn(
        self: &Rc<Self>,
        id: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(i64, i16), i16> {
        let busy = self.try_busy(id).ok_or(error_code::CONCURRENT_TRANSACTIONS)?;
        let current = self.meta(id);
        match state::plan_end(current.as_ref(), producer_id, epoch, commit, now_ms())? {
            EndPlan::Done => Ok((producer_id, epoch)),
            EndPlan::Prepare(next) => {
                self.write(partition, id, Some(next)).await?;
                let this = self.clone();
                glommio::spawn_local(async move { this.complete(busy).await }).detach();
                Ok((producer_id, epoch))
            }
        }
    }

    /// Writes the markers of a preparing transaction on every partition,
    /// then its completion. Gives up (leaving it to the next coordinator)
    /// when this broker stops coordinating it.
    async fn complete(self: Rc<Self>, busy: Busy) {
        let id = busy.id.clone();
        let Some(Entry { partition, meta }) = self.txns.borrow().get(&id).cloned() else { return };
        if !meta.state.preparing() {
            return;
        }
        let commit = meta.state == TxnState::PrepareCommit;
        let mut remaining = meta.partitions.clone();
        let mut backoff_ms = 50u64;
        while !remaining.is_empty() {
            let Some(coordinator_epoch) = self.serves(partition) else {
                debug!(transactional_id = %id, "no longer coordinating; the new coordinator completes it");
                return;
            };
            let broker = crate::broker::local();
            let me = broker.config.node_id;
            let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
            for (topic, p) in remaining.clone() {
                match broker.cluster() {
                    None => by_leader.entry(me).or_default().push((topic, p)),
                    Some(view) => match view.image.partition(&topic, p) {
                        // A deleted topic needs no marker.
                        None if !view.image.topics.contains_key(&topic) => {
                            remaining.remove(&(topic, p));
                        }
                        None => {}
                        Some(info) => by_leader.entry(info.leader).or_default().push((topic, p)),
                    },
                }
            }
            for (leader, partitions) in by_leader {
                if leader < 0 {
                    continue; // offline: retried
                }
                let results = if leader == me {
                    super::markers::write_local(
                        &broker,
                        meta.producer_id,
                        meta.producer_epoch,
                        commit,
                        coordinator_epoch,
                        partitions,
                    )
                    .await
                } else {
                    self.send_markers(leader, &meta, commit, coordinator_epoch, partitions).await
                };
                for (tp, code) in results {
                    match code {
                        error_code::NONE | error_code::UNKNOWN_TOPIC_OR_PARTITION => {
                            remaining.remove(&tp);
                        }
                        code => {
                            debug!(transactional_id = %id, partition = ?tp, code, "marker not written yet; retrying")
                        }
                    }
                }
            }
            if !remaining.is_empty() {
                glommio::timer::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(marker_backoff_max_ms);
            }
        }
        let done = state::completed(&meta, now_ms());
        match self.write_as(partition, &id, Some(done), false).await {
            Ok(()) => debug!(transactional_id = %id, commit, "transaction completed"),
            // Still preparing: the ticker (or the next coordinator) retries.
            Err(code) => warn!(transactional_id = %id, code, "could not record the transaction's completion"),
        }
        drop(busy);
    }

    /// WriteTxnMarkers to another broker; every partition gets the
    /// connection's error when the call fails.
    async fn send_markers(
        &self,
        leader: i32,
        meta: &TxnMeta,
        commit: bool,
        coordinator_epoch: i32,
        partitions: Vec<(String, i32)>,
    ) -> Vec<((String, i32), i16)> {
        let failed = |partitions: Vec<(String, i32)>| {
            partitions.into_iter().map(|tp| (tp, error_code::COORDINATOR_NOT_AVAILABLE)).collect::<Vec<_>>()
        };
        let broker = crate::broker::local();
        let endpoint = broker.cluster().and_then(|view| {
            view.image.brokers.get(&leader).filter(|b| !b.fenced).map(|b| format!("{}:{}", b.host, b.port))
        });
        let Some(endpoint) = endpoint else { return failed(partitions) };
        let taken = self.peers.borrow_mut().remove(&leader);
        let mut stream = match taken {
            Some(stream) => stream,
            None => match crate::broker::peer::connect(&endpoint).await {
                Ok(stream) => stream,
                Err(e) => {
                    debug!(leader, "cannot connect to {endpoint} for markers: {e}");
                    return failed(partitions);
                }
            },
        };
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, p) in &partitions {
            topics.entry(topic.as_str()).or_default().push(*p);
        }
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(meta.producer_id))
            .with_producer_epoch(meta.producer_epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                            .with_partition_indexes(indexes)
                    })
                    .collect(),
            );
        let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
        self.correlation.set(self.correlation.get().wrapping_add(1));
        let response: Result<WriteTxnMarkersResponse, String> = crate::broker::peer::call(
            &mut stream,
            ApiKey::WriteTxnMarkers,
            1,
            self.correlation.get(),
            "ringstream-txn-coordinator",
            &request,
            Duration::from_millis(marker_call_timeout_ms),
            marker_response_bytes_max,
        )
        .await;
        match response {
            Ok(response) => {
                self.peers.borrow_mut().insert(leader, stream);
                let mut codes: HashMap<(String, i32), i16> = HashMap::new();
                for result in response.markers.iter().filter(|m| m.producer_id.0 == meta.producer_id) {
                    for topic in &result.topics {
                        for p in &topic.partitions {
                            codes.insert((topic.name.0.as_str().to_owned(), p.partition_index), p.error_code);
                        }
                    }
                }
                partitions
                    .into_iter()
                    .map(|tp| {
                        let code = codes.get(&tp).copied().unwrap_or(error_code::UNKNOWN_SERVER_ERROR);
                        (tp, code)
                    })
                    .collect()
            }
            Err(e) => {
                debug!(leader, "WriteTxnMarkers to {endpoint} failed: {e}");
                failed(partitions)
            }
        }
    }

    /// Every id this shard coordinates (ListTransactions).
    pub fn list(&self) -> Vec<(String, TxnMeta)> {
        self.txns
            .borrow()
            .iter()
            .filter(|(_, e)| self.serves(e.partition).is_some())
            .take(limits::txn_listing_max)
            .map(|(id, e)| (id.clone(), e.meta.clone()))
            .collect()
    }

    /// One id's state (DescribeTransactions).
    pub fn describe(&self, id: &str) -> Option<TxnMeta> {
        self.meta(id)
    }

    /// Open transactions here (the metric).
    pub fn open_count(&self) -> usize {
        self.txns.borrow().values().filter(|e| e.meta.state == TxnState::Ongoing).count()
    }

    /// The ticker: loads partitions this broker came to lead, aborts
    /// transactions past their timeout, retries stuck completions, and
    /// removes ids idle past `transactional.id.expiration.ms`.
    async fn tick_loop(self: Rc<Self>) {
        let interval = self.config.abort_check_interval_ms.clamp(10, 10_000);
        loop {
            glommio::timer::sleep(Duration::from_millis(interval)).await;
            let owned: Vec<i32> = self
                .shard
                .storage
                .partitions()
                .into_iter()
                .filter(|tp| tp.topic == TXN_TOPIC)
                .map(|tp| tp.partition.0)
                .collect();
            for partition in owned {
                let _ = self.ensure_loaded(partition).await;
            }
            let now = now_ms();
            let due: Vec<(String, i32, TxnMeta)> = self
                .txns
                .borrow()
                .iter()
                .filter(|(id, e)| self.serves(e.partition).is_some() && !self.busy.borrow().contains(*id))
                .filter(|(_, e)| match e.meta.state {
                    TxnState::Ongoing => now >= e.meta.start_ms + i64::from(e.meta.timeout_ms),
                    TxnState::PrepareCommit | TxnState::PrepareAbort => true,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                        now >= e.meta.update_ms + self.config.id_expiration_ms
                    }
                })
                .map(|(id, e)| (id.clone(), e.partition, e.meta.clone()))
                .collect();
            for (id, partition, meta) in due {
                let Some(busy) = self.try_busy(&id) else { continue };
                match meta.state {
                    TxnState::Ongoing => {
                        let Some(fenced) = state::plan_fence_abort(&meta, now) else { continue };
                        info!(transactional_id = %id, timeout_ms = meta.timeout_ms, "aborting a timed-out transaction");
                        if self.write(partition, &id, Some(fenced)).await.is_ok() {
                            let this = self.clone();
                            glommio::spawn_local(async move { this.complete(busy).await }).detach();
                        }
                    }
                    TxnState::PrepareCommit | TxnState::PrepareAbort => {
                        let this = self.clone();
                        glommio::spawn_local(async move { this.complete(busy).await }).detach();
                    }
                    _ => {
                        info!(transactional_id = %id, "transactional id expired");
                        let _ = self.write(partition, &id, None).await;
                    }
                }
            }
        }
    }
}
