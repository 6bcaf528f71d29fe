//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete, offset
//! expiry, and the offsets of a deleted topic. A commit is durable in the
//! offsets log before it is visible or answered.

use std::collections::BTreeSet;
use std::rc::Rc;

use tracing::{info, warn};

use super::GroupError;
use super::{CommitArgs, CommitResult, Coordinator, FetchedOffset, Group, GroupState};
use crate::groups::store::{OffsetValue, RecordKey, RecordValue};
use ringstream_core::clock::now_ms;
use ringstream_core::limits;
use ringstream_protocol::error_code::*;

impl Coordinator {
    /// Kafka's offset expiry: an empty consumer group's offsets expire
    /// `offsets.retention.minutes` after it became empty; offsets of a group
    /// that only stores offsets, and of topics a stable group no longer
    /// subscribes to, expire that long after their commit. A group left
    /// empty with no offsets is deleted.
    pub async fn expire_offsets(self: &Rc<Self>, now: i64) {
        let retention = self.config.offsets_retention_ms;
        // (group, offsets that expire, whether the group goes too)
        type Plan = Vec<(String, Vec<(String, i32)>, bool)>;
        let plan: Plan = {
            let groups = self.groups.borrow();
            groups
                .values()
                .filter_map(|g| {
                    let expired: Vec<(String, i32)> = match g.state {
                        GroupState::Empty if g.protocol_type.is_some() => {
                            if now - g.state_since_ms >= retention {
                                g.offsets.keys().cloned().collect()
                            } else {
                                Vec::new()
                            }
                        }
                        GroupState::Empty => g
                            .offsets
                            .iter()
                            .filter(|(_, v)| now - v.commit_timestamp_ms >= retention)
                            .map(|(k, _)| k.clone())
                            .collect(),
                        GroupState::Stable if g.protocol_type.as_deref() == Some("consumer") => {
                            match g.subscribed_topics() {
                                Some(subscribed) => g
                                    .offsets
                                    .iter()
                                    .filter(|((t, _), v)| {
                                        !subscribed.contains(t) && now - v.commit_timestamp_ms >= retention
                                    })
                                    .map(|(k, _)| k.clone())
                                    .collect(),
                                None => Vec::new(),
                            }
                        }
                        _ => Vec::new(),
                    };
                    let delete_group =
                        g.state == GroupState::Empty && g.offsets.len() == expired.len() && g.pending.is_empty();
                    (!expired.is_empty() || delete_group).then(|| (g.id.clone(), expired, delete_group))
                })
                .collect()
        };
        for (group_id, expired, delete_group) in plan {
            let mut records: Vec<(RecordKey, Option<RecordValue>)> = expired
                .iter()
                .map(|(t, p)| (RecordKey::Offset { group: group_id.clone(), topic: t.clone(), partition: *p }, None))
                .collect();
            if delete_group {
                records.push((RecordKey::Group { group: group_id.clone() }, None));
            }
            let Ok(_permit) = self.write(&group_id, records).await else { continue };
            let mut groups = self.groups.borrow_mut();
            if let Some(g) = groups.get_mut(&group_id) {
                for k in &expired {
                    g.offsets.remove(k);
                }
                if delete_group && g.state == GroupState::Empty && g.offsets.is_empty() {
                    groups.remove(&group_id);
                }
            }
            info!(group = %group_id, offsets = expired.len(), deleted = delete_group, "expired committed offsets");
        }
    }

    pub async fn commit(self: &Rc<Self>, args: CommitArgs) -> CommitResult {
        let now = now_ms();
        let all =
            |code: i16| -> CommitResult { args.offsets.iter().map(|o| (o.topic.clone(), o.partition, code)).collect() };
        // An empty group id is valid here, as in Kafka (only JoinGroup refuses it).
        // TxnOffsetCommit before v3 names no generation or member: not checked.
        let unchecked_txn = args.txn.is_some() && args.generation < 0 && args.member_id.is_empty();
        if unchecked_txn {
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(&args.group_id) {
                if groups.len() >= limits::shard_groups_max {
                    return all(COORDINATOR_NOT_AVAILABLE);
                }
                groups.insert(args.group_id.clone(), Group::new(args.group_id.clone(), now));
            }
        } else {
            let mut groups = self.groups.borrow_mut();
            match groups.get_mut(&args.group_id) {
                None if args.generation < 0 => {
                    if groups.len() >= limits::shard_groups_max {
                        warn!(group = %args.group_id, "refusing a new group: this shard coordinates shard_groups_max groups");
                        return all(COORDINATOR_NOT_AVAILABLE);
                    }
                    // A group that only stores offsets (assign() consumers, tools).
                    groups.insert(args.group_id.clone(), Group::new(args.group_id.clone(), now));
                }
                None => return all(ILLEGAL_GENERATION),
                Some(g) if g.modern.is_some() => {
                    let modern = g.modern.as_ref().expect("checked");
                    let error = match modern.members.get(&args.member_id) {
                        None if args.generation < 0 && args.member_id.is_empty() && modern.members.is_empty() => NONE,
                        None => UNKNOWN_MEMBER_ID,
                        Some(m) if args.generation > m.epoch => FENCED_MEMBER_EPOCH,
                        Some(m) if args.generation < m.epoch => STALE_MEMBER_EPOCH,
                        Some(_) => NONE,
                    };
                    if error != NONE {
                        return all(error);
                    }
                }
                Some(g) => {
                    let error = if g.fenced(&args.member_id, args.instance_id.as_deref()) {
                        FENCED_INSTANCE_ID
                    } else if g.state == GroupState::Dead {
                        COORDINATOR_NOT_AVAILABLE
                    } else if args.generation < 0 && g.state == GroupState::Empty {
                        NONE
                    } else if g.state == GroupState::CompletingRebalance {
                        REBALANCE_IN_PROGRESS
                    } else if g.member(&args.member_id).is_none() {
                        UNKNOWN_MEMBER_ID
                    } else if args.generation != g.generation {
                        ILLEGAL_GENERATION
                    } else {
                        NONE
                    };
                    if error != NONE {
                        return all(error);
                    }
                    if let Some(m) = g.member_mut(&args.member_id) {
                        m.heartbeat_deadline_ms = now + i64::from(m.session_timeout_ms);
                    }
                }
            }
        }
        let mut results = Vec::with_capacity(args.offsets.len());
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for o in args.offsets {
            let known = self.topics.partitions(&o.topic).is_some_and(|count| o.partition >= 0 && o.partition < count);
            let code = if !known {
                UNKNOWN_TOPIC_OR_PARTITION
            } else if o.metadata.as_ref().is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes) {
                OFFSET_METADATA_TOO_LARGE
            } else {
                NONE
            };
            results.push((o.topic.clone(), o.partition, code));
            if code == NONE {
                let value = OffsetValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata,
                    commit_timestamp_ms: now,
                };
                let key =
                    RecordKey::Offset { group: args.group_id.clone(), topic: o.topic.clone(), partition: o.partition };
                records.push((key, Some(RecordValue::Offset(value.clone()))));
                accepted.push(((o.topic, o.partition), value));
            }
        }
        if records.is_empty() {
            return results;
        }
        if let Some((producer_id, producer_epoch)) = args.txn {
            // Pending until the transaction's marker (`complete_txn`).
            match self.write_txn(&args.group_id, records, Some((producer_id, producer_epoch))).await {
                Ok(_permit) => {
                    let partition = self.partition_of(&args.group_id);
                    let mut pending = self.txn_offsets.borrow_mut();
                    let entry = pending.entry((partition, producer_id)).or_insert_with(|| (producer_epoch, Vec::new()));
                    entry.0 = entry.0.max(producer_epoch);
                    for ((topic, p), value) in accepted {
                        entry.1.push((args.group_id.clone(), topic, p, value));
                    }
                }
                Err(error) => {
                    for r in &mut results {
                        if r.2 == NONE {
                            r.2 = error.code();
                        }
                    }
                }
            }
            return results;
        }
        match self.write(&args.group_id, records).await {
            Ok(_permit) => {
                let mut groups = self.groups.borrow_mut();
                match groups.get_mut(&args.group_id) {
                    Some(g) if g.state != GroupState::Dead => g.offsets.extend(accepted),
                    _ => {
                        // Deleted while the write ran: the deletion's tombstones came after.
                        for r in &mut results {
                            if r.2 == NONE {
                                r.2 = COORDINATOR_NOT_AVAILABLE;
                            }
                        }
                    }
                }
            }
            Err(error) => {
                for r in &mut results {
                    if r.2 == NONE {
                        r.2 = error.code();
                    }
                }
            }
        }
        results
    }

    /// A transaction marker reached offsets-log partition `partition`: the
    /// producer's pending offsets become committed, or are dropped.
    pub fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool) {
        let Some((_, pending)) = self.txn_offsets.borrow_mut().remove(&(partition, producer_id)) else { return };
        if !commit {
            return;
        }
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        for (group, topic, p, value) in pending {
            groups.entry(group.clone()).or_insert_with(|| Group::new(group, now)).offsets.insert((topic, p), value);
        }
    }

    /// Whether `group` has transactional offsets waiting for a marker on
    /// `topic`/`partition` (OffsetFetch's require_stable: UNSTABLE_OFFSET_COMMIT).
    pub fn has_pending_txn_offsets(&self, group: &str, topic: &str, partition: i32) -> bool {
        let group_partition = self.partition_of(group);
        self.txn_offsets.borrow().iter().any(|((p, _), (_, offsets))| {
            *p == group_partition && offsets.iter().any(|(g, t, i, _)| g == group && t == topic && *i == partition)
        })
    }

    /// OffsetFetch for one group. `topics` None: every committed offset.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        let mut rows = self.committed_offsets(group_id, topics);
        if require_stable {
            for (topic, partitions) in &mut rows {
                for row in partitions.iter_mut() {
                    if self.has_pending_txn_offsets(group_id, topic, row.partition) {
                        row.error = UNSTABLE_OFFSET_COMMIT;
                    }
                }
            }
        }
        rows
    }

    fn committed_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        let groups = self.groups.borrow();
        let g = groups.get(group_id).filter(|g| g.state != GroupState::Dead);
        let unknown = |partition: i32| FetchedOffset {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: Some(String::new()),
            error: NONE,
        };
        let found = |partition: i32, v: &OffsetValue| FetchedOffset {
            partition,
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: Some(v.metadata.clone().unwrap_or_default()),
            error: NONE,
        };
        match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let rows = partitions
                        .into_iter()
                        .map(|p| match g.and_then(|g| g.offsets.get(&(topic.clone(), p))) {
                            Some(v) => found(p, v),
                            None => unknown(p),
                        })
                        .collect();
                    (topic, rows)
                })
                .collect(),
            None => {
                let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
                if let Some(g) = g {
                    for ((topic, p), v) in &g.offsets {
                        match out.last_mut() {
                            Some((t, rows)) if t == topic => rows.push(found(*p, v)),
                            _ => out.push((topic.clone(), vec![found(*p, v)])),
                        }
                    }
                }
                out
            }
        }
    }

    /// OffsetDelete: Err is a group-level error; Ok has one per partition.
    pub async fn delete_offsets(
        self: &Rc<Self>,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<i16>, GroupError> {
        let (codes, records) = {
            let groups = self.groups.borrow();
            let Some(g) = groups.get(group_id).filter(|g| g.state != GroupState::Dead) else {
                return Err(GroupError::GroupIdNotFound);
            };
            let subscribed = if g.state == GroupState::Empty {
                Some(BTreeSet::new())
            } else if g.protocol_type.as_deref() == Some("consumer") {
                g.subscribed_topics()
            } else {
                return Err(GroupError::NonEmptyGroup);
            };
            let mut codes = Vec::with_capacity(partitions.len());
            let mut records = Vec::new();
            for (topic, p) in &partitions {
                let busy = !subscribed.as_ref().is_some_and(|s| !s.contains(topic));
                if busy {
                    codes.push(GROUP_SUBSCRIBED_TO_TOPIC);
                } else {
                    codes.push(NONE);
                    if g.offsets.contains_key(&(topic.clone(), *p)) {
                        records.push((
                            RecordKey::Offset { group: group_id.to_owned(), topic: topic.clone(), partition: *p },
                            None,
                        ));
                    }
                }
            }
            (codes, records)
        };
        if records.is_empty() {
            return Ok(codes);
        }
        let keys: Vec<(String, i32)> = records
            .iter()
            .filter_map(|(k, _)| match k {
                RecordKey::Offset { topic, partition, .. } => Some((topic.clone(), *partition)),
                RecordKey::Group { .. } => None,
            })
            .collect();
        let _permit = self.write(group_id, records).await?;
        if let Some(g) = self.groups.borrow_mut().get_mut(group_id) {
            for k in &keys {
                g.offsets.remove(k);
            }
        }
        Ok(codes)
    }

    /// A topic was deleted: its committed offsets go too.
    pub async fn topic_deleted(self: &Rc<Self>, topic: &str) {
        let plan: Vec<(String, Vec<i32>)> = self
            .groups
            .borrow()
            .values()
            .filter_map(|g| {
                let parts: Vec<i32> = g.offsets.keys().filter(|(t, _)| t == topic).map(|(_, p)| *p).collect();
                (!parts.is_empty()).then(|| (g.id.clone(), parts))
            })
            .collect();
        for (group_id, parts) in plan {
            let records = parts
                .iter()
                .map(|p| (RecordKey::Offset { group: group_id.clone(), topic: topic.to_owned(), partition: *p }, None))
                .collect();
            match self.write(&group_id, records).await {
                Ok(_permit) => {
                    if let Some(g) = self.groups.borrow_mut().get_mut(&group_id) {
                        g.offsets.retain(|(t, _), _| t != topic);
                    }
                }
                Err(error) => {
                    warn!(group = %group_id, topic, %error, "could not remove the offsets of a deleted topic")
                }
            }
        }
    }
}
