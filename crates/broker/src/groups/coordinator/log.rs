//! The offsets log (`__consumer_offsets`): replay at startup, durable
//! writes behind a per-partition gate, and compaction (a snapshot of the
//! live records, then the segments before it are deleted).

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use tracing::{error, info, warn};

use super::GroupError;
use super::{offsets_compact_bytes, Coordinator, Group, GroupState, Member};
use crate::groups::consumer;
use crate::groups::offsets_partition;
use crate::groups::store::{self, RecordKey, RecordValue};
use ringstream_core::batch::{self, BatchBuilder, Record};
use ringstream_core::clock::now_ms;
use ringstream_core::limits;
use ringstream_core::types::TopicPartition;
use ringstream_storage::log::LogConfig;
use ringstream_storage::StorageError;

/// Per offsets-log partition: its write gate and compaction bookkeeping.
pub(super) struct LogState {
    /// Writers hold one permit from write until their state change is
    /// applied; compaction takes them all, so a snapshot misses nothing.
    gate: Rc<glommio::sync::Semaphore>,
    bytes_since_snapshot: Cell<u64>,
    snapshot_bytes: Cell<u64>,
    compacting: Cell<bool>,
}

const gate_permits: u64 = 1 << 20;

/// How long a group write waits for the ISR (Kafka's `offsets.commit.timeout.ms`).
const offsets_commit_timeout_ms: u64 = 5_000;

/// A permit on a partition's write gate, held while a write is applied.
type GatePermit = glommio::sync::StaticPermit;

impl Coordinator {
    pub(crate) fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.config.offsets_segment_bytes,
            retention_ms: -1,
            retention_bytes: -1,
            max_message_bytes: limits::batch_bytes_max,
            ..LogConfig::default()
        }
    }

    pub(super) async fn replay(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let bytes = self
            .shard
            .storage
            .replay_to_log_end(tp, |batch_bytes| {
                let Some(header) = batch::BatchHeader::ref_from_prefix(batch_bytes) else { return };
                if header.is_control() {
                    // A transaction's marker: its pending offsets commit or go.
                    let commit = batch::control_type(batch_bytes) == Some(batch::CONTROL_COMMIT);
                    self.complete_txn(tp.partition.0, header.producer_id(), commit);
                    return;
                }
                let txn = header.is_transactional().then(|| (header.producer_id(), header.producer_epoch()));
                match batch::records(batch_bytes) {
                    Ok(records) => {
                        for record in records {
                            match txn {
                                Some(producer) => {
                                    self.apply_txn_record(tp.partition.0, producer, record.key, record.value)
                                }
                                None => self.apply_record(record.key, record.value),
                            }
                        }
                    }
                    Err(e) => error!(partition = %tp, "skipping an unreadable offsets-log batch: {e}"),
                }
            })
            .await?;
        let state = self.log_state(tp.partition.0);
        state.bytes_since_snapshot.set(bytes);
        Ok(())
    }

    /// Applies one replayed record. A group's state is restored as recorded
    /// (set directly: a restore, not one of the state machine's transitions).
    fn apply_record(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(key) = key else { return };
        let key = match store::decode_key(key) {
            Ok(key) => key,
            Err(e) => return error!("skipping an offsets-log record: {e}"),
        };
        let value = match value.map(|v| store::decode_value(&key, v)).transpose() {
            Ok(value) => value,
            Err(e) => return error!(group = key.group(), "skipping an offsets-log record: {e}"),
        };
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        match (key, value) {
            (RecordKey::Offset { group, topic, partition }, Some(RecordValue::Offset(v))) => {
                groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now))
                    .offsets
                    .insert((topic, partition), v);
            }
            (RecordKey::Offset { group, topic, partition }, None) => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            (RecordKey::Group { group }, Some(RecordValue::ConsumerGroup(v))) => {
                let g = groups.entry(group.clone()).or_insert_with(|| Group::new(group, now));
                let modern = consumer::ConsumerGroup::restore(v, now, self.config.consumer_session_timeout_ms);
                g.state = if modern.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
                g.modern = Some(Box::new(modern));
                g.protocol_type = Some("consumer".to_owned());
                g.protocol = None;
                g.members.clear();
                g.static_members.clear();
            }
            (RecordKey::Group { group }, Some(RecordValue::Group(v))) => {
                let g = groups.entry(group.clone()).or_insert_with(|| Group::new(group, now));
                g.modern = None;
                g.protocol_type = v.protocol_type;
                g.generation = v.generation;
                g.protocol = v.protocol.clone();
                g.leader = v.leader;
                g.state_since_ms = v.state_timestamp_ms;
                g.static_members.clear();
                g.members = v
                    .members
                    .into_iter()
                    .map(|m| {
                        if let Some(instance) = &m.instance_id {
                            g.static_members.insert(instance.clone(), m.member_id.clone());
                        }
                        Member {
                            id: m.member_id,
                            instance_id: m.instance_id,
                            client_id: m.client_id,
                            client_host: m.client_host,
                            session_timeout_ms: m.session_timeout_ms,
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            protocols: vec![(v.protocol.clone().unwrap_or_default(), m.subscription)],
                            assignment: m.assignment,
                            join_waiter: None,
                            sync_waiter: None,
                            heartbeat_deadline_ms: 0,
                        }
                    })
                    .collect();
                g.state = if g.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
            }
            (RecordKey::Group { group }, None) => {
                groups.remove(&group);
            }
            (key, Some(_)) => error!(group = key.group(), "offsets-log record value does not match its key"),
        }
    }

    /// A replayed offset record of an undecided transaction: pending.
    fn apply_txn_record(&self, partition: i32, producer: (i64, i16), key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(key) = key.and_then(|k| store::decode_key(k).ok()) else { return };
        let value = value.and_then(|v| store::decode_value(&key, v).ok());
        if let (RecordKey::Offset { group, topic, partition: p }, Some(RecordValue::Offset(v))) = (key, value) {
            let mut pending = self.txn_offsets.borrow_mut();
            let entry = pending.entry((partition, producer.0)).or_insert_with(|| (producer.1, Vec::new()));
            entry.0 = entry.0.max(producer.1);
            entry.1.push((group, topic, p, v));
        }
    }

    fn log_state(&self, partition: i32) -> Rc<LogState> {
        self.logs
            .borrow_mut()
            .entry(partition)
            .or_insert_with(|| {
                Rc::new(LogState {
                    gate: Rc::new(glommio::sync::Semaphore::new(gate_permits)),
                    bytes_since_snapshot: Cell::new(0),
                    snapshot_bytes: Cell::new(0),
                    compacting: Cell::new(false),
                })
            })
            .clone()
    }

    /// Creates the offsets-log partition on first use.
    async fn ensure_partition(&self, tp: &TopicPartition) -> Result<(), GroupError> {
        if self.shard.storage.owns(tp) {
            return Ok(());
        }
        let _lock =
            self.create_lock.clone().acquire_static_permit(1).await.map_err(|_| GroupError::CoordinatorNotAvailable)?;
        if self.shard.storage.owns(tp) {
            return Ok(());
        }
        match self.shard.create_partition(tp, self.log_config()).await {
            Ok(owner) if owner == self.shard.id => Ok(()),
            Ok(owner) => {
                error!(partition = %tp, %owner, "offsets-log partition was placed on another shard");
                Err(GroupError::NotCoordinator)
            }
            Err(StorageError::PartitionExists(_)) if self.shard.storage.owns(tp) => Ok(()),
            Err(e) => {
                error!(partition = %tp, "could not create the offsets-log partition: {e}");
                Err(GroupError::CoordinatorNotAvailable)
            }
        }
    }

    /// Appends `records` to the group's offsets-log partition and waits
    /// until they are durable. The returned permit holds off compaction
    /// until the caller has applied the change in memory.
    pub(super) async fn write(
        self: &Rc<Self>,
        group_id: &str,
        records: Vec<(RecordKey, Option<RecordValue>)>,
    ) -> Result<GatePermit, GroupError> {
        self.write_txn(group_id, records, None).await
    }

    /// `write`, in a transactional producer's transaction when `producer`
    /// is given (TxnOffsetCommit): its batches carry the producer's id and
    /// epoch, so its marker decides them.
    pub(super) async fn write_txn(
        self: &Rc<Self>,
        group_id: &str,
        records: Vec<(RecordKey, Option<RecordValue>)>,
        producer: Option<(i64, i16)>,
    ) -> Result<GatePermit, GroupError> {
        let partition = self.partition_of(group_id);
        let tp = offsets_partition(partition);
        if !self.topics.coordinates(partition) {
            return Err(GroupError::NotCoordinator);
        }
        self.ensure_partition(&tp).await?;
        let state = self.log_state(partition);
        let permit =
            state.gate.clone().acquire_static_permit(1).await.map_err(|_| GroupError::CoordinatorNotAvailable)?;
        let batches = build_batches(&records, producer).map_err(|bytes| {
            error!(group = group_id, bytes, "a group record is too large to store (Kafka: UNKNOWN_SERVER_ERROR)");
            GroupError::RecordTooLarge
        })?;
        let mut tickets = Vec::with_capacity(batches.len());
        let mut bytes = 0u64;
        for batch in batches {
            bytes += batch.len() as u64;
            match self.shard.storage.submit(&tp, Bytes::from(batch)).await {
                Ok(ticket) => tickets.push(ticket),
                Err(e) => {
                    error!(partition = %tp, group = group_id, "offsets-log write failed: {e}");
                    return Err(GroupError::CoordinatorNotAvailable);
                }
            }
        }
        let mut last = None;
        for ticket in tickets {
            match ticket.wait().await {
                Ok(info) => last = Some(info.last_offset),
                Err(e) => {
                    error!(partition = %tp, group = group_id, "offsets-log write failed: {e}");
                    return Err(GroupError::CoordinatorNotAvailable);
                }
            }
        }
        // Like Kafka's coordinator (acks=all): answered once every ISR
        // replica has it, so a coordinator failover keeps it.
        if let Some(last) = last {
            let timeout = std::time::Duration::from_millis(offsets_commit_timeout_ms);
            match self.shard.storage.wait_for_high_watermark(&tp, last, timeout).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(partition = %tp, group = group_id, "offsets-log write not replicated in time");
                    return Err(GroupError::CoordinatorNotAvailable);
                }
                Err(e) => {
                    error!(partition = %tp, group = group_id, "offsets-log write failed: {e}");
                    return Err(GroupError::CoordinatorNotAvailable);
                }
            }
        }
        state.bytes_since_snapshot.set(state.bytes_since_snapshot.get() + bytes);
        let threshold =
            (2 * self.config.offsets_segment_bytes).min(offsets_compact_bytes).max(state.snapshot_bytes.get());
        if state.bytes_since_snapshot.get() >= threshold && !state.compacting.get() {
            state.compacting.set(true);
            let this = self.clone();
            glommio::spawn_local(async move {
                if let Err(e) = this.compact(partition).await {
                    error!(partition, "offsets-log compaction failed: {e}");
                }
                this.log_state(partition).compacting.set(false);
            })
            .detach();
        }
        Ok(permit)
    }

    /// Rewrites partition `partition`'s live records after a roll and
    /// deletes the segments before them.
    async fn compact(&self, partition: i32) -> Result<(), StorageError> {
        let tp = offsets_partition(partition);
        let state = self.log_state(partition);
        let _all =
            state.gate.clone().acquire_static_permit(gate_permits).await.map_err(|_| StorageError::ShuttingDown)?;
        self.shard.storage.roll(&tp).await?;
        let start = self.shard.storage.offsets(&tp)?.log_end_offset;
        let records: Vec<(RecordKey, Option<RecordValue>)> = {
            let groups = self.groups.borrow();
            let mut records = Vec::new();
            for g in groups.values().filter(|g| self.partition_of(&g.id) == partition) {
                records.push((RecordKey::Group { group: g.id.clone() }, Some(g.record_value())));
                for ((topic, p), v) in &g.offsets {
                    let key = RecordKey::Offset { group: g.id.clone(), topic: topic.clone(), partition: *p };
                    records.push((key, Some(RecordValue::Offset(v.clone()))));
                }
            }
            records
        };
        let mut bytes = 0u64;
        let batches = build_batches(&records, None)
            .map_err(|size| StorageError::Config(format!("a group record of {size} bytes is too large to store")))?;
        for batch in batches {
            bytes += batch.len() as u64;
            self.shard.storage.append(&tp, Bytes::from(batch)).await?;
        }
        // Offsets of undecided transactions go along, in their producers'
        // transactions, so the marker still decides them after a replay.
        type Records = Vec<(RecordKey, Option<RecordValue>)>;
        let pending: Vec<((i64, i16), Records)> = self
            .txn_offsets
            .borrow()
            .iter()
            .filter(|((p, _), _)| *p == partition)
            .map(|((_, producer_id), (epoch, offsets))| {
                let records = offsets
                    .iter()
                    .map(|(group, topic, p, v)| {
                        let key = RecordKey::Offset { group: group.clone(), topic: topic.clone(), partition: *p };
                        (key, Some(RecordValue::Offset(v.clone())))
                    })
                    .collect();
                ((*producer_id, *epoch), records)
            })
            .collect();
        for (producer, records) in pending {
            let batches = build_batches(&records, Some(producer)).map_err(|size| {
                StorageError::Config(format!("a group record of {size} bytes is too large to store"))
            })?;
            for batch in batches {
                bytes += batch.len() as u64;
                self.shard.storage.append(&tp, Bytes::from(batch)).await?;
            }
        }
        let deleted = self.shard.storage.delete_segments_before(&tp, start).await?;
        state.snapshot_bytes.set(bytes);
        state.bytes_since_snapshot.set(bytes);
        info!(partition = %tp, records = records.len(), bytes, segments_deleted = deleted, "offsets log compacted");
        Ok(())
    }

    /// Writes the group's metadata if it changed (spawned: callers do not wait).
    pub(super) fn persist_if_dirty(self: &Rc<Self>, group_id: &str) {
        let value = {
            let mut groups = self.groups.borrow_mut();
            let Some(g) = groups.get_mut(group_id) else { return };
            if !std::mem::take(&mut g.dirty) {
                return;
            }
            g.record_value()
        };
        let this = self.clone();
        let group_id = group_id.to_owned();
        glommio::spawn_local(async move {
            let key = RecordKey::Group { group: group_id.clone() };
            if let Err(error) = this.write(&group_id, vec![(key, Some(value))]).await {
                warn!(group = %group_id, %error, "could not write group metadata; it is kept in memory");
            }
        })
        .detach();
    }
}

/// Encodes records into uncompressed batches of at most
/// `offsets_log_batch_bytes_max` bytes of records each (a larger record
/// gets a batch of its own). Err: the size of a record no batch can hold.
fn build_batches(
    records: &[(RecordKey, Option<RecordValue>)],
    producer: Option<(i64, i16)>,
) -> Result<Vec<Vec<u8>>, usize> {
    let now = now_ms();
    let mut batches = Vec::new();
    let new_builder = || {
        let mut builder = BatchBuilder::new(now);
        if let Some((id, epoch)) = producer {
            // The coordinator's append: no sequence (Kafka's NO_SEQUENCE).
            builder.producer(id, epoch, -1).transactional();
        }
        builder
    };
    let mut builder = new_builder();
    let mut in_batch = 0usize;
    let mut bytes = 0usize;
    for (key, value) in records {
        let key = store::encode_key(key);
        let value = value.as_ref().map(store::encode_value);
        let size = key.len() + value.as_ref().map_or(0, Vec::len) + 32;
        if size > limits::offsets_log_record_bytes_max {
            return Err(size);
        }
        if in_batch > 0 && bytes + size > limits::offsets_log_batch_bytes_max {
            batches.push(builder.build());
            builder = new_builder();
            in_batch = 0;
            bytes = 0;
        }
        builder.push(&Record { key: Some(&key), value: value.as_deref(), headers: &[], timestamp_delta: 0 });
        in_batch += 1;
        bytes += size;
    }
    if in_batch > 0 {
        batches.push(builder.build());
    }
    Ok(batches)
}
