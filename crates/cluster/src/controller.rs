//! The active controller's decisions: pure functions from the image (and
//! the controller's in-memory heartbeat clock) to the records to propose.
//! The caller proposes them, waits for the commit and answers.
//!
//! One decision at a time: the caller holds its control lock from the
//! decision until the records are applied, so each decision sees the
//! previous one's result (two CreateTopics of one name cannot both pass).

use std::collections::BTreeMap;

use crate::placement;
use crate::records::{MetadataImage, MetadataRecord, PartitionInfo};
use crate::wire::NewTopic;
use crate::NodeId;
use ringstream_core::error_code;
use ringstream_core::limits;
use ringstream_core::types::is_valid_topic_name;

/// A refused request: Kafka error code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: i16,
    pub message: String,
}

fn refuse(code: i16, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

/// Producer ids handed to a broker per request.
pub const producer_id_block: i64 = 1000;

/// Heartbeat times of the brokers, as the active controller saw them.
/// Not in the log: a new controller starts everyone's clock afresh (a
/// broker gets one full session to reach it).
#[derive(Default)]
pub struct Liveness {
    last_heartbeat_ms: BTreeMap<NodeId, i64>,
}

impl Liveness {
    /// Forget everything (on becoming leader), starting every registered
    /// broker's session at `now_ms`.
    pub fn reset(&mut self, image: &MetadataImage, now_ms: i64) {
        self.last_heartbeat_ms = image.brokers.keys().map(|id| (*id, now_ms)).collect();
    }

    pub fn forget(&mut self, id: NodeId) {
        self.last_heartbeat_ms.remove(&id);
    }

    pub fn heard(&mut self, id: NodeId, now_ms: i64) {
        self.last_heartbeat_ms.insert(id, now_ms);
    }

    pub fn last_heard(&self, id: NodeId) -> Option<i64> {
        self.last_heartbeat_ms.get(&id).copied()
    }

    /// Whether `id` heartbeated within the session timeout.
    pub fn alive(&self, id: NodeId, now_ms: i64, session_timeout_ms: i64) -> bool {
        self.last_heartbeat_ms.get(&id).is_some_and(|t| now_ms - t <= session_timeout_ms)
    }
}

/// A broker (re-)registers: a new epoch. A second live process with the
/// same id (another incarnation, still heartbeating) is refused.
pub fn register(
    image: &MetadataImage,
    liveness: &Liveness,
    now_ms: i64,
    session_timeout_ms: i64,
    (id, incarnation, host, port, rack): (NodeId, u64, String, i32, Option<String>),
) -> Result<(Vec<MetadataRecord>, i64), Refusal> {
    if let Some(existing) = image.brokers.get(&id) {
        if existing.incarnation != incarnation && !existing.fenced && liveness.alive(id, now_ms, session_timeout_ms) {
            return Err(refuse(
                error_code::DUPLICATE_BROKER_REGISTRATION,
                format!(
                    "node.id {id} is already registered by a live broker at {}:{}; refusing a second one",
                    existing.host, existing.port
                ),
            ));
        }
    } else if image.brokers.len() >= limits::cluster_brokers_max {
        return Err(refuse(error_code::POLICY_VIOLATION, "too many brokers"));
    }
    let epoch = image.offset as i64 + 1;
    let mut records = Vec::new();
    if image.brokers.get(&id).is_some_and(|b| !b.fenced) {
        // A restart that the controller missed: its old epoch leads nothing.
        records.extend(fence(image, id));
    }
    records.push(MetadataRecord::RegisterBroker { id, incarnation, epoch, host, port, rack });
    Ok((records, epoch))
}

/// What a heartbeat changes: unfencing a registered broker, or fencing one
/// that asks to shut down (its partitions lose it as leader first).
pub fn heartbeat(
    image: &MetadataImage,
    id: NodeId,
    epoch: i64,
    shutting_down: bool,
) -> Result<Vec<MetadataRecord>, Refusal> {
    let Some(broker) = image.brokers.get(&id) else {
        return Err(refuse(error_code::BROKER_ID_NOT_REGISTERED, format!("broker {id} is not registered")));
    };
    if broker.epoch != epoch {
        return Err(refuse(
            error_code::STALE_BROKER_EPOCH,
            format!("broker {id} epoch {epoch} is not the registered {}", broker.epoch),
        ));
    }
    Ok(match (broker.fenced, shutting_down) {
        (true, false) => unfence(image, id),
        (false, true) => fence(image, id),
        _ => Vec::new(),
    })
}

/// Records that fence brokers whose session expired.
pub fn expire(image: &MetadataImage, liveness: &Liveness, now_ms: i64, session_timeout_ms: i64) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for broker in image.unfenced() {
        if !liveness.alive(broker.id, now_ms, session_timeout_ms) {
            records.extend(fence(image, broker.id));
        }
    }
    records
}

/// Fences `id`: it leaves the ISR of every partition (except as the last
/// member, which stays so that it can lead again: nobody else has all the
/// acknowledged records), and every partition it leads moves to another
/// unfenced ISR member, or goes offline (leader -1) when there is none.
/// With `unclean.leader.election.enable` on a topic, an offline partition
/// takes any unfenced replica instead (logged by the broker that applies it).
pub fn fence(image: &MetadataImage, id: NodeId) -> Vec<MetadataRecord> {
    let Some(broker) = image.brokers.get(&id) else { return Vec::new() };
    let mut records = vec![MetadataRecord::FenceBroker { id, epoch: broker.epoch }];
    let live = |r: &NodeId| *r != id && image.brokers.get(r).is_some_and(|b| !b.fenced);
    for topic in image.topics.values() {
        let unclean = topic.configs.get("unclean.leader.election.enable").is_some_and(|v| v == "true");
        for (p, info) in topic.partitions.iter().enumerate() {
            if info.leader != id && !info.isr.contains(&id) {
                continue;
            }
            let mut isr: Vec<NodeId> = info.isr.iter().copied().filter(|r| *r != id).collect();
            let mut next = info.clone();
            if info.leader == id {
                let mut leader = isr.iter().copied().find(|r| live(r)).unwrap_or(-1);
                if leader == -1 && unclean {
                    leader = info.replicas.iter().copied().find(|r| live(r)).unwrap_or(-1);
                    if leader != -1 {
                        isr = vec![leader];
                    }
                }
                next.leader = leader;
                next.leader_epoch += 1;
            }
            if isr.is_empty() {
                isr = vec![id];
            }
            next.isr = isr;
            next.partition_epoch += 1;
            records.push(MetadataRecord::Partition { topic: topic.name.clone(), partition: p as i32, info: next });
        }
    }
    records
}

/// One partition's answer to ElectLeaders: (topic, partition, code, message).
pub type ElectionResult = (String, i32, i16, String);

/// Kafka's ElectLeaders. A preferred election gives a partition to its
/// first replica when that broker is unfenced and in the ISR; an unclean
/// one gives a partition without a leader to a live ISR member, or else to
/// any live replica (the ISR becomes that replica alone). `partitions`
/// None means every partition; then only partitions an election was
/// attempted for are answered.
pub fn elect_leaders(
    image: &MetadataImage,
    partitions: Option<&[(String, i32)]>,
    unclean: bool,
) -> (Vec<MetadataRecord>, Vec<ElectionResult>) {
    let live = |r: &NodeId| image.brokers.get(r).is_some_and(|b| !b.fenced);
    let named: Vec<(String, i32)> = match partitions {
        Some(named) => named.to_vec(),
        None => image
            .topics
            .values()
            .flat_map(|t| (0..t.partitions.len() as i32).map(move |p| (t.name.clone(), p)))
            .collect(),
    };
    let mut records = Vec::new();
    let mut results = Vec::new();
    for (topic, p) in named {
        let Some(info) = image.partition(&topic, p) else {
            let message = format!("No such topic partition as {topic}-{p}");
            results.push((topic, p, error_code::UNKNOWN_TOPIC_OR_PARTITION, message));
            continue;
        };
        let choice: Result<(NodeId, Vec<NodeId>), (i16, &str)> = if unclean {
            if info.leader >= 0 {
                Err((error_code::ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."))
            } else if let Some(r) = info.isr.iter().copied().find(|r| live(r)) {
                Ok((r, info.isr.clone()))
            } else if let Some(r) = info.replicas.iter().copied().find(|r| live(r)) {
                Ok((r, vec![r]))
            } else {
                Err((error_code::ELIGIBLE_LEADERS_NOT_AVAILABLE, "No live replica can lead this partition."))
            }
        } else {
            let preferred = info.replicas[0];
            if info.leader == preferred {
                Err((error_code::ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."))
            } else if !live(&preferred) || !info.isr.contains(&preferred) {
                Err((error_code::PREFERRED_LEADER_NOT_AVAILABLE, "The preferred leader is not live or not in the ISR."))
            } else {
                Ok((preferred, info.isr.clone()))
            }
        };
        match choice {
            Ok((leader, isr)) => {
                let next = PartitionInfo {
                    leader,
                    isr,
                    leader_epoch: info.leader_epoch + 1,
                    partition_epoch: info.partition_epoch + 1,
                    ..info.clone()
                };
                records.push(MetadataRecord::Partition { topic: topic.clone(), partition: p, info: next });
                results.push((topic, p, error_code::NONE, String::new()));
            }
            Err((code, _)) if partitions.is_none() && code == error_code::ELECTION_NOT_NEEDED => {}
            Err((code, message)) => results.push((topic, p, code, message.to_owned())),
        }
    }
    (records, results)
}

/// Kafka's automatic leader rebalance: the brokers whose share of
/// partitions led by another replica, among those they are the preferred
/// leader of, exceeds `imbalance_percent` get their preferred partitions
/// back (where they are live and in the ISR).
pub fn rebalance_leaders(image: &MetadataImage, imbalance_percent: u64) -> Vec<MetadataRecord> {
    let mut preferred: BTreeMap<NodeId, (u64, u64)> = BTreeMap::new();
    for topic in image.topics.values() {
        for info in &topic.partitions {
            let entry = preferred.entry(info.replicas[0]).or_default();
            entry.0 += 1;
            if info.leader != info.replicas[0] {
                entry.1 += 1;
            }
        }
    }
    let imbalanced: Vec<NodeId> = preferred
        .into_iter()
        .filter(|(_, (total, elsewhere))| *elsewhere * 100 > *total * imbalance_percent)
        .map(|(id, _)| id)
        .collect();
    if imbalanced.is_empty() {
        return Vec::new();
    }
    let named: Vec<(String, i32)> = image
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| imbalanced.contains(&p.replicas[0]) && p.leader != p.replicas[0])
                .map(move |(i, _)| (t.name.clone(), i as i32))
        })
        .collect();
    elect_leaders(image, Some(&named), false).0
}

/// Kafka's AlterPartitionReassignments for one partition (KIP-455).
/// `target` None cancels a reassignment in progress (the replicas being
/// added go, the original ones stay). Otherwise the replica set becomes
/// the target plus the original replicas; the new ones catch up as
/// followers, and once every target replica is in the ISR the others are
/// removed (`complete_reassignment`, also run after every ISR change).
pub fn reassign(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: Option<&[NodeId]>,
    allow_rf_change: bool,
) -> Result<Vec<MetadataRecord>, Refusal> {
    let Some(info) = image.partition(topic, partition) else {
        return Err(refuse(
            error_code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("No such topic partition as {topic}-{partition}"),
        ));
    };
    let original: Vec<NodeId> = info.replicas.iter().copied().filter(|r| !info.adding.contains(r)).collect();
    let Some(target) = target else {
        if !info.reassigning() {
            return Err(refuse(error_code::NO_REASSIGNMENT_IN_PROGRESS, "No partition reassignment is in progress."));
        }
        let mut next =
            PartitionInfo { replicas: original.clone(), adding: Vec::new(), removing: Vec::new(), ..info.clone() };
        settle(&mut next, info, image);
        return Ok(vec![MetadataRecord::Partition { topic: topic.to_owned(), partition, info: next }]);
    };
    if target.is_empty() {
        return Err(refuse(
            error_code::INVALID_REPLICA_ASSIGNMENT,
            "The manual partition assignment includes an empty replica list.",
        ));
    }
    for (i, r) in target.iter().enumerate() {
        if target[..i].contains(r) {
            return Err(refuse(
                error_code::INVALID_REPLICA_ASSIGNMENT,
                format!("The manual partition assignment includes the broker {r} more than once."),
            ));
        }
        if !image.brokers.contains_key(r) {
            return Err(refuse(
                error_code::INVALID_REPLICA_ASSIGNMENT,
                format!("The manual partition assignment includes broker {r}, but no such broker is registered."),
            ));
        }
    }
    if !allow_rf_change && target.len() != original.len() {
        return Err(refuse(
            error_code::INVALID_REPLICATION_FACTOR,
            format!("The replication factor is changed from {} to {}", original.len(), target.len()),
        ));
    }
    let mut replicas: Vec<NodeId> = target.to_vec();
    replicas.extend(original.iter().copied().filter(|r| !target.contains(r)));
    let mut next = PartitionInfo {
        replicas,
        adding: target.iter().copied().filter(|r| !original.contains(r)).collect(),
        removing: original.iter().copied().filter(|r| !target.contains(r)).collect(),
        ..info.clone()
    };
    complete_reassignment(&mut next, image);
    settle(&mut next, info, image);
    if next == *info {
        return Ok(Vec::new()); // already so: nothing to do
    }
    Ok(vec![MetadataRecord::Partition { topic: topic.to_owned(), partition, info: next }])
}

/// Finishes a reassignment whose target replicas are all in the ISR: the
/// removed replicas leave the replica set and the ISR.
pub fn complete_reassignment(info: &mut PartitionInfo, image: &MetadataImage) {
    if !info.reassigning() {
        return;
    }
    let target = info.target();
    if !target.iter().all(|r| info.isr.contains(r)) {
        return;
    }
    let _ = image;
    info.isr.retain(|r| target.contains(r));
    info.replicas = target;
    info.adding.clear();
    info.removing.clear();
}

/// After a change to `next`'s replicas: the ISR keeps only replicas (never
/// empty: the old ISR's last member stays), a leader that is no longer a
/// replica hands over to a live ISR member, and the epochs move.
fn settle(next: &mut PartitionInfo, before: &PartitionInfo, image: &MetadataImage) {
    let live = |r: &NodeId| image.brokers.get(r).is_some_and(|b| !b.fenced);
    let kept: Vec<NodeId> = next.isr.iter().copied().filter(|r| next.replicas.contains(r)).collect();
    if !kept.is_empty() {
        next.isr = kept;
    }
    if !next.replicas.contains(&next.leader) {
        next.leader = next.isr.iter().copied().find(|r| next.replicas.contains(r) && live(r)).unwrap_or(-1);
    }
    if next.leader != before.leader {
        next.leader_epoch = before.leader_epoch + 1;
    }
    if *next != *before {
        next.partition_epoch = before.partition_epoch + 1;
    }
}

/// A partition leader's ISR change (Kafka's AlterPartition), checked
/// against the image: the requester leads the partition in the epochs it
/// names, the new ISR holds the leader and only assigned replicas, and
/// every replica it adds is an unfenced broker.
pub fn alter_isr(
    image: &MetadataImage,
    broker: NodeId,
    topic: &str,
    partition: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: &[NodeId],
) -> Result<Vec<MetadataRecord>, Refusal> {
    let Some(info) = image.partition(topic, partition) else {
        return Err(refuse(error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown partition {topic}-{partition}")));
    };
    if info.leader != broker {
        return Err(refuse(
            error_code::NOT_LEADER_OR_FOLLOWER,
            format!("broker {broker} does not lead {topic}-{partition}"),
        ));
    }
    if leader_epoch != info.leader_epoch {
        return Err(refuse(
            error_code::FENCED_LEADER_EPOCH,
            format!("leader epoch {leader_epoch} is not {}", info.leader_epoch),
        ));
    }
    if partition_epoch != info.partition_epoch {
        return Err(refuse(
            error_code::INVALID_UPDATE_VERSION,
            format!("partition epoch {partition_epoch} is not {}", info.partition_epoch),
        ));
    }
    let mut unique = isr.to_vec();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != isr.len() || !isr.contains(&broker) || isr.iter().any(|r| !info.replicas.contains(r)) {
        return Err(refuse(
            error_code::INVALID_REQUEST,
            format!("ISR {isr:?} does not fit replicas {:?}", info.replicas),
        ));
    }
    let added_fenced = isr.iter().any(|r| !info.isr.contains(r) && image.brokers.get(r).map_or(true, |b| b.fenced));
    if added_fenced {
        return Err(refuse(error_code::INELIGIBLE_REPLICA, "a fenced broker cannot join the ISR"));
    }
    let mut next = PartitionInfo { isr: isr.to_vec(), ..info.clone() };
    // A reassignment completes once its target replicas are all in the ISR.
    complete_reassignment(&mut next, image);
    settle(&mut next, info, image);
    next.partition_epoch = info.partition_epoch + 1;
    Ok(vec![MetadataRecord::Partition { topic: topic.to_owned(), partition, info: next }])
}

/// Unfences `id`: partitions that are offline and have it in the ISR get
/// it back as leader.
pub fn unfence(image: &MetadataImage, id: NodeId) -> Vec<MetadataRecord> {
    let Some(broker) = image.brokers.get(&id) else { return Vec::new() };
    let mut records = vec![MetadataRecord::UnfenceBroker { id, epoch: broker.epoch }];
    records.extend(change_leaders(image, |info| (info.leader == -1 && info.isr.contains(&id)).then_some(id)));
    records
}

/// A Partition record, with both epochs bumped, for every partition to
/// which `new_leader` gives a (new) leader.
fn change_leaders(image: &MetadataImage, new_leader: impl Fn(&PartitionInfo) -> Option<NodeId>) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for (p, info) in topic.partitions.iter().enumerate() {
            if let Some(leader) = new_leader(info) {
                records.push(MetadataRecord::Partition {
                    topic: topic.name.clone(),
                    partition: p as i32,
                    info: PartitionInfo {
                        leader,
                        leader_epoch: info.leader_epoch + 1,
                        partition_epoch: info.partition_epoch + 1,
                        ..info.clone()
                    },
                });
            }
        }
    }
    records
}

/// A new topic, placed across unfenced brokers. `new_id` is used unless the
/// request brings one.
pub fn create_topic(image: &MetadataImage, topic: &NewTopic, new_id: [u8; 16]) -> Result<Vec<MetadataRecord>, Refusal> {
    if !is_valid_topic_name(&topic.name) {
        return Err(refuse(error_code::INVALID_TOPIC_EXCEPTION, format!("invalid topic name {:?}", topic.name)));
    }
    if image.topics.contains_key(&topic.name) {
        return Err(refuse(error_code::TOPIC_ALREADY_EXISTS, format!("topic {:?} already exists", topic.name)));
    }
    if image.topics.len() >= limits::topics_max {
        return Err(refuse(error_code::POLICY_VIOLATION, "too many topics"));
    }
    if !(1..=limits::topic_partitions_max).contains(&topic.partitions) {
        return Err(refuse(
            error_code::INVALID_PARTITIONS,
            format!("partition count {} out of range", topic.partitions),
        ));
    }
    let id = topic.id.unwrap_or(new_id);
    if image.topic_by_id(&id).is_some() {
        return Err(refuse(error_code::TOPIC_ALREADY_EXISTS, "a topic with this id exists"));
    }
    let assignments = match (&topic.assignment, &topic.replicas) {
        (Some(assignment), _) => {
            if assignment.len() != topic.partitions as usize {
                return Err(refuse(error_code::INVALID_REPLICA_ASSIGNMENT, "one replica list per partition"));
            }
            for (p, replicas) in assignment.iter().enumerate() {
                let live = |r: &NodeId| image.brokers.get(r).is_some_and(|b| !b.fenced);
                if replicas.is_empty() {
                    return Err(refuse(
                        error_code::INVALID_REPLICA_ASSIGNMENT,
                        format!("partition {p} has no replicas"),
                    ));
                }
                if let Some(r) = replicas.iter().find(|r| !live(r)) {
                    return Err(refuse(
                        error_code::INVALID_REPLICA_ASSIGNMENT,
                        format!("partition {p} names broker {r}, which is not a live broker"),
                    ));
                }
            }
            assignment.iter().map(|replicas| PartitionInfo::new(replicas.clone())).collect()
        }
        (None, Some(replicas)) if !replicas.is_empty() => {
            (0..topic.partitions).map(|_| PartitionInfo::new(replicas.clone())).collect()
        }
        (None, _) => {
            let rf = usize::try_from(topic.replication_factor).unwrap_or(0);
            placement::assign(image, topic.partitions, rf)
                .map_err(|e| refuse(error_code::INVALID_REPLICATION_FACTOR, e))?
        }
    };
    let mut records = vec![MetadataRecord::Topic { name: topic.name.clone(), id, configs: topic.configs.clone() }];
    for (p, info) in assignments.into_iter().enumerate() {
        records.push(MetadataRecord::Partition { topic: topic.name.clone(), partition: p as i32, info });
    }
    Ok(records)
}

pub fn delete_topic(image: &MetadataImage, name: &str) -> Result<Vec<MetadataRecord>, Refusal> {
    if !image.topics.contains_key(name) {
        return Err(refuse(error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown topic {name:?}")));
    }
    Ok(vec![MetadataRecord::RemoveTopic { name: name.to_owned() }])
}

/// Grows a topic to `count` partitions, placing the new ones with the
/// topic's replication factor.
pub fn create_partitions(image: &MetadataImage, name: &str, count: i32) -> Result<Vec<MetadataRecord>, Refusal> {
    let Some(topic) = image.topics.get(name) else {
        return Err(refuse(error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown topic {name:?}")));
    };
    let have = topic.partitions.len() as i32;
    if count <= have {
        return Err(refuse(
            error_code::INVALID_PARTITIONS,
            format!("topic {name:?} has {have} partitions; the count can only grow"),
        ));
    }
    if count > limits::topic_partitions_max {
        return Err(refuse(error_code::INVALID_PARTITIONS, format!("{count} partitions is too many")));
    }
    let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
    let placed =
        placement::assign(image, count - have, rf).map_err(|e| refuse(error_code::INVALID_REPLICATION_FACTOR, e))?;
    Ok(placed
        .into_iter()
        .enumerate()
        .map(|(i, info)| MetadataRecord::Partition { topic: name.to_owned(), partition: have + i as i32, info })
        .collect())
}

pub fn set_topic_configs(
    image: &MetadataImage,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Result<Vec<MetadataRecord>, Refusal> {
    let Some(topic) = image.topics.get(name) else {
        return Err(refuse(error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown topic {name:?}")));
    };
    Ok(vec![MetadataRecord::Topic { name: name.to_owned(), id: topic.id, configs }])
}

/// A block of producer ids for `broker`: [start, start + block), starting
/// no lower than `floor` (ids a data dir handed out before it joined).
pub fn allocate_producer_ids(image: &MetadataImage, broker: NodeId, floor: i64) -> (Vec<MetadataRecord>, i64) {
    let start = image.next_producer_id.max(floor);
    (vec![MetadataRecord::ProducerIds { broker, next: start + producer_id_block }], start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(n: NodeId) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=n {
            let rec = MetadataRecord::RegisterBroker {
                id,
                incarnation: id as u64,
                epoch: 1,
                host: "127.0.0.1".into(),
                port: 9000 + id,
                rack: None,
            };
            image.apply_entry(id as u64, &[rec, MetadataRecord::UnfenceBroker { id, epoch: 1 }]).unwrap();
        }
        image
    }

    fn new_topic(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: BTreeMap::new(),
            id: None,
            replicas: None,
            assignment: None,
        }
    }

    #[test]
    fn fencing_takes_leadership_and_unfencing_gives_it_back() {
        let mut image = cluster(3);
        let records = create_topic(&image, &new_topic("t", 6), [9; 16]).unwrap();
        image.apply_entry(10, &records).unwrap();
        assert_eq!(image.partitions_led(2), 2);
        let fenced = fence(&image, 2);
        image.apply_entry(11, &fenced).unwrap();
        assert_eq!(image.partitions_led(2), 0);
        assert_eq!(image.topics["t"].partitions.iter().filter(|p| p.leader == -1).count(), 2);
        let back = heartbeat(&image, 2, 1, false).unwrap();
        image.apply_entry(12, &back).unwrap();
        assert_eq!(image.partitions_led(2), 2);
        assert!(image.topics["t"].partitions.iter().all(|p| p.leader != -1));
        assert!(image.topics["t"].partitions.iter().filter(|p| p.leader == 2).all(|p| p.leader_epoch == 2));
    }

    fn rf3(image: &mut MetadataImage, name: &str, partitions: i32) {
        let mut topic = new_topic(name, partitions);
        topic.replication_factor = 3;
        let records = create_topic(image, &topic, [7; 16]).unwrap();
        image.apply_entry(image.offset + 1, &records).unwrap();
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr_and_keeps_the_last_member() {
        let mut image = cluster(3);
        rf3(&mut image, "t", 3);
        let p0 = image.topics["t"].partitions[0].clone();
        assert_eq!(p0.isr.len(), 3);
        let leader = p0.leader;
        image.apply_entry(20, &fence(&image, leader)).unwrap();
        let p0 = image.topics["t"].partitions[0].clone();
        assert_ne!(p0.leader, leader);
        assert!(p0.leader > 0 && !p0.isr.contains(&leader), "{p0:?}");
        assert_eq!(p0.leader_epoch, 1);
        // Every partition lost the fenced broker from its ISR.
        assert!(image.topics["t"].partitions.iter().all(|p| !p.isr.contains(&leader)));
        // Fence the other two: the last ISR member stays, with no leader.
        let second = p0.leader;
        image.apply_entry(21, &fence(&image, second)).unwrap();
        let third = image.topics["t"].partitions[0].leader;
        image.apply_entry(22, &fence(&image, third)).unwrap();
        let p0 = image.topics["t"].partitions[0].clone();
        assert_eq!((p0.leader, p0.isr.clone()), (-1, vec![third]));
        // The first broker back is not in the ISR: the partition stays
        // offline until the last member returns (no unclean election).
        image.apply_entry(23, &heartbeat(&image, leader, 1, false).unwrap()).unwrap();
        assert_eq!(image.topics["t"].partitions[0].leader, -1);
        image.apply_entry(24, &heartbeat(&image, third, 1, false).unwrap()).unwrap();
        assert_eq!(image.topics["t"].partitions[0].leader, third);
    }

    #[test]
    fn unclean_election_takes_any_live_replica_when_enabled() {
        let mut image = cluster(3);
        let mut topic = new_topic("u", 1);
        topic.replication_factor = 3;
        topic.configs.insert("unclean.leader.election.enable".into(), "true".into());
        image.apply_entry(10, &create_topic(&image, &topic, [3; 16]).unwrap()).unwrap();
        let p = image.topics["u"].partitions[0].clone();
        // Shrink the ISR to the leader alone, then fence it.
        let isr = vec![p.leader];
        image.apply_entry(11, &alter_isr(&image, p.leader, "u", 0, 0, 0, &isr).unwrap()).unwrap();
        image.apply_entry(12, &fence(&image, p.leader)).unwrap();
        let now = image.topics["u"].partitions[0].clone();
        assert!(now.leader > 0 && now.leader != p.leader, "{now:?}");
        assert_eq!(now.isr, vec![now.leader]);
    }

    #[test]
    fn isr_changes_are_checked_against_the_epochs() {
        let mut image = cluster(3);
        rf3(&mut image, "t", 1);
        let p = image.topics["t"].partitions[0].clone();
        let follower = p.replicas[1];
        let shrunk: Vec<NodeId> = p.isr.iter().copied().filter(|r| *r != follower).collect();
        let code = |r: Result<Vec<MetadataRecord>, Refusal>| r.map(|_| 0).unwrap_or_else(|e| e.code);
        assert_eq!(code(alter_isr(&image, follower, "t", 0, 0, 0, &shrunk)), error_code::NOT_LEADER_OR_FOLLOWER);
        assert_eq!(code(alter_isr(&image, p.leader, "t", 0, 1, 0, &shrunk)), error_code::FENCED_LEADER_EPOCH);
        assert_eq!(code(alter_isr(&image, p.leader, "t", 0, 0, 5, &shrunk)), error_code::INVALID_UPDATE_VERSION);
        assert_eq!(code(alter_isr(&image, p.leader, "t", 0, 0, 0, &[follower])), error_code::INVALID_REQUEST);
        assert_eq!(code(alter_isr(&image, p.leader, "t", 0, 0, 0, &[p.leader, 9])), error_code::INVALID_REQUEST);
        image.apply_entry(30, &alter_isr(&image, p.leader, "t", 0, 0, 0, &shrunk).unwrap()).unwrap();
        let now = image.topics["t"].partitions[0].clone();
        assert_eq!((now.isr.clone(), now.partition_epoch, now.leader_epoch), (shrunk.clone(), 1, 0));
        // A fenced broker cannot join.
        image.apply_entry(31, &[MetadataRecord::FenceBroker { id: follower, epoch: 1 }]).unwrap();
        let mut grown = shrunk.clone();
        grown.push(follower);
        assert_eq!(code(alter_isr(&image, p.leader, "t", 0, 0, 1, &grown)), error_code::INELIGIBLE_REPLICA);
    }

    #[test]
    fn preferred_elections_and_the_automatic_rebalance() {
        let mut image = cluster(3);
        rf3(&mut image, "t", 3);
        let preferred = image.topics["t"].partitions[0].replicas[0];
        let (records, results) = elect_leaders(&image, Some(&[("t".into(), 0), ("x".into(), 0)]), false);
        assert!(records.is_empty());
        assert_eq!(results[0].2, error_code::ELECTION_NOT_NEEDED);
        assert_eq!(results[1].2, error_code::UNKNOWN_TOPIC_OR_PARTITION);
        image.apply_entry(40, &fence(&image, preferred)).unwrap();
        let (_, results) = elect_leaders(&image, Some(&[("t".into(), 0)]), false);
        assert_eq!(results[0].2, error_code::PREFERRED_LEADER_NOT_AVAILABLE);
        // Back, and in the ISR again: the rebalance returns its partitions.
        image.apply_entry(41, &heartbeat(&image, preferred, 1, false).unwrap()).unwrap();
        let p = image.topics["t"].partitions[0].clone();
        let mut isr = p.isr.clone();
        isr.push(preferred);
        image
            .apply_entry(42, &alter_isr(&image, p.leader, "t", 0, p.leader_epoch, p.partition_epoch, &isr).unwrap())
            .unwrap();
        let records = rebalance_leaders(&image, 10);
        assert_eq!(records.len(), 1, "{records:?}");
        image.apply_entry(43, &records).unwrap();
        assert_eq!(image.topics["t"].partitions[0].leader, preferred);
        assert!(rebalance_leaders(&image, 10).is_empty());
    }

    #[test]
    fn a_reassignment_adds_catches_up_then_removes() {
        let mut image = cluster(4);
        rf3(&mut image, "t", 1);
        let p = image.topics["t"].partitions[0].clone();
        let outside = (1..=4).find(|r| !p.replicas.contains(r)).unwrap();
        let gone = p.replicas[2];
        let target = vec![p.replicas[0], p.replicas[1], outside];
        let code = |r: Result<Vec<MetadataRecord>, Refusal>| r.map(|_| 0).unwrap_or_else(|e| e.code);
        assert_eq!(code(reassign(&image, "t", 0, Some(&[1, 1]), true)), error_code::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(code(reassign(&image, "t", 0, Some(&[1, 9]), true)), error_code::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(code(reassign(&image, "t", 0, Some(&[1]), false)), error_code::INVALID_REPLICATION_FACTOR);
        assert_eq!(code(reassign(&image, "t", 0, None, true)), error_code::NO_REASSIGNMENT_IN_PROGRESS);
        assert_eq!(code(reassign(&image, "x", 0, None, true)), error_code::UNKNOWN_TOPIC_OR_PARTITION);
        image.apply_entry(50, &reassign(&image, "t", 0, Some(&target), false).unwrap()).unwrap();
        let moving = image.topics["t"].partitions[0].clone();
        assert_eq!((moving.adding.clone(), moving.removing.clone()), (vec![outside], vec![gone]));
        assert_eq!(moving.replicas.len(), 4);
        assert_eq!(moving.leader, p.leader);
        // The new replica caught up: the leader adds it, which completes it.
        let mut isr = moving.isr.clone();
        isr.push(outside);
        let records =
            alter_isr(&image, moving.leader, "t", 0, moving.leader_epoch, moving.partition_epoch, &isr).unwrap();
        image.apply_entry(51, &records).unwrap();
        let done = image.topics["t"].partitions[0].clone();
        assert_eq!(done.replicas, target);
        assert!(!done.reassigning() && !done.isr.contains(&gone), "{done:?}");
        // Moving the leader away elects another ISR member.
        let leader = done.leader;
        let away: Vec<NodeId> = (1..=4).filter(|r| *r != leader).collect();
        image.apply_entry(52, &reassign(&image, "t", 0, Some(&away), false).unwrap()).unwrap();
        let p = image.topics["t"].partitions[0].clone();
        let isr = p.isr.iter().copied().chain(p.adding.iter().copied()).collect::<Vec<_>>();
        image
            .apply_entry(53, &alter_isr(&image, p.leader, "t", 0, p.leader_epoch, p.partition_epoch, &isr).unwrap())
            .unwrap();
        let p = image.topics["t"].partitions[0].clone();
        assert!(p.leader != leader && p.replicas == away && p.leader_epoch == done.leader_epoch + 1, "{p:?}");
        // A cancel puts the original replicas back.
        let back: Vec<NodeId> = vec![leader, p.replicas[0], p.replicas[1]];
        image.apply_entry(54, &reassign(&image, "t", 0, Some(&back), false).unwrap()).unwrap();
        assert!(image.topics["t"].partitions[0].reassigning());
        image.apply_entry(55, &reassign(&image, "t", 0, None, false).unwrap()).unwrap();
        assert_eq!(image.topics["t"].partitions[0].replicas, away);
    }

    #[test]
    fn duplicate_live_registration_is_refused() {
        let image = cluster(2);
        let mut live = Liveness::default();
        live.reset(&image, 1000);
        let claim = |inc| (1, inc, "h".to_owned(), 1, None);
        let err = register(&image, &live, 2000, 9000, claim(99)).unwrap_err();
        assert_eq!(err.code, error_code::DUPLICATE_BROKER_REGISTRATION);
        // The same process re-registering is fine, and so is a new one after the session expired.
        assert!(register(&image, &live, 2000, 9000, claim(1)).is_ok());
        assert!(register(&image, &live, 20_000, 9000, claim(99)).is_ok());
        assert_eq!(heartbeat(&image, 1, 5, false).unwrap_err().code, error_code::STALE_BROKER_EPOCH);
        assert_eq!(heartbeat(&image, 7, 1, false).unwrap_err().code, error_code::BROKER_ID_NOT_REGISTERED);
    }

    #[test]
    fn topics_are_checked_before_they_are_placed() {
        let image = cluster(2);
        assert_eq!(
            create_topic(&image, &new_topic("bad name", 1), [1; 16]).unwrap_err().code,
            error_code::INVALID_TOPIC_EXCEPTION
        );
        assert_eq!(create_topic(&image, &new_topic("t", 0), [1; 16]).unwrap_err().code, error_code::INVALID_PARTITIONS);
        let mut rf3 = new_topic("t", 1);
        rf3.replication_factor = 3;
        assert_eq!(create_topic(&image, &rf3, [1; 16]).unwrap_err().code, error_code::INVALID_REPLICATION_FACTOR);
        assert_eq!(delete_topic(&image, "nope").unwrap_err().code, error_code::UNKNOWN_TOPIC_OR_PARTITION);
        let mut image = image;
        image.apply_entry(5, &create_topic(&image, &new_topic("t", 2), [1; 16]).unwrap()).unwrap();
        image.apply_entry(6, &create_partitions(&image, "t", 5).unwrap()).unwrap();
        assert_eq!(image.topics["t"].partitions.len(), 5);
        assert_eq!(create_partitions(&image, "t", 5).unwrap_err().code, error_code::INVALID_PARTITIONS);
        let expired = expire(&image, &Liveness::default(), 0, 10);
        assert_eq!(expired.iter().filter(|r| matches!(r, MetadataRecord::FenceBroker { .. })).count(), 2);
    }
}
