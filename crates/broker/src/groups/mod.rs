//! Consumer groups: the group coordinator (Kafka's classic group protocol)
//! and committed offsets, kept durable in an internal log.
//!
//! Placement: a group belongs to partition `abs(javaHash(group)) % N` of
//! the internal offsets log `__consumer_offsets` (N is
//! `offsets.topic.num.partitions`, fixed when the data dir is first used),
//! and that partition's owning shard is the group's coordinator. Requests
//! arrive on any shard; handlers route them to the coordinator shard with
//! `on_coordinator`, and everything about a group happens on that shard.
//!
//! Runs on: every shard; each coordinates the groups of the offsets-log
//! partitions it owns (`coordinator::Coordinator`, one per shard).

pub mod consumer;
pub mod coordinator;
pub mod store;

use std::path::Path;
use std::rc::Rc;

use ringstream_core::types::{ShardId, TopicPartition};
use ringstream_shard::placement::place;
use ringstream_shard::Shard;

pub use coordinator::Coordinator;

/// The internal topic holding committed offsets and group metadata. Not in
/// the topic table: clients cannot see, create, produce to or delete it.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Where the offsets-log partition count is recorded on first start.
pub const GROUPS_FILE_NAME: &str = "group-coordinator";

/// Coordinator settings (Kafka's names in comments).
#[derive(Clone, Debug)]
pub struct GroupsConfig {
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.max.size`
    pub max_size: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: i64,
    /// `offsets.topic.num.partitions`
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.segment.bytes`
    pub offsets_segment_bytes: u64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups)
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups)
    pub consumer_heartbeat_interval_ms: i32,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: ringstream_core::limits::group_members_max,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offsets_topic_partitions: 50,
            offsets_segment_bytes: 16 * 1024 * 1024,
            offset_metadata_max_bytes: 4096,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        }
    }
}

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`: the same group
/// lands on the same partition number as in Kafka.
pub fn group_partition(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0);
    let mut hash: i32 = 0;
    for unit in group_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (hash & 0x7fff_ffff) % partitions
}

pub fn offsets_partition(partition: i32) -> TopicPartition {
    TopicPartition::new(OFFSETS_TOPIC.to_owned(), partition)
}

/// The shard coordinating `group_id`: the owner of its offsets-log
/// partition, or where that partition will be placed when first written.
pub fn coordinator_shard(shard: &Shard, group_id: &str, partitions: i32) -> ShardId {
    let tp = offsets_partition(group_partition(group_id, partitions));
    shard.owner(&tp).unwrap_or_else(|| place(&tp, shard.shard_count()))
}

/// Runs `task` with the coordinator of `group_id`, on its shard.
pub async fn on_coordinator<T, F, Fut>(shard: &Rc<Shard>, group_id: &str, task: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let partitions = coordinator::partitions_configured();
    // In a cluster, only the leader of the group's offsets partition
    // coordinates it; elsewhere the caller answers that there is no
    // coordinator here, and the client looks it up again.
    if !coordinator::local().coordinates(group_partition(group_id, partitions)) {
        return None;
    }
    let to = coordinator_shard(shard, group_id, partitions);
    let partition = group_partition(group_id, partitions);
    // A closure (see `Shard::run_on`): the group's coordinator lives above the router,
    // which cannot name its requests; every group operation goes through here.
    shard
        .run_on(to, move |_| async move {
            let coordinator = coordinator::local();
            // The groups of a partition this broker just came to lead are
            // read from the replicated log first.
            coordinator.ensure_loaded(partition).await.ok()?;
            Some(task(coordinator).await)
        })
        .await
        .ok()
        .flatten()
}

/// Commits offsets (OffsetCommit, TxnOffsetCommit) at the group's
/// coordinator; every partition gets the no-coordinator code when there is none.
pub async fn commit_offsets(shard: &Rc<Shard>, args: coordinator::CommitArgs) -> coordinator::CommitResult {
    let group_id = args.group_id.clone();
    let asked: Vec<(String, i32)> = args.offsets.iter().map(|o| (o.topic.clone(), o.partition)).collect();
    on_coordinator(shard, &group_id, move |c| async move { c.commit(args).await })
        .await
        .unwrap_or_else(|| asked.into_iter().map(|(t, p)| (t, p, no_coordinator_code(&group_id))).collect())
}

/// Drops a deleted topic's committed offsets on every shard's coordinator.
pub async fn forget_committed_offsets(shard: &Rc<Shard>, name: &str) {
    for i in 0..shard.shard_count() {
        let topic = name.to_owned();
        // A closure (see `Shard::run_on`): each shard's coordinator lives above the router.
        let cleaned = shard
            .run_on(ShardId(i as u16), move |_| async move {
                crate::groups::coordinator::local().topic_deleted(&topic).await
            })
            .await;
        if cleaned.is_err() {
            tracing::warn!(topic = %name, shard = i, "could not remove the deleted topic's committed offsets");
        }
    }
}

/// What a group request gets when `on_coordinator` found no coordinator:
/// NOT_COORDINATOR when another broker coordinates the group (the client
/// looks it up again), COORDINATOR_NOT_AVAILABLE when this one should but
/// cannot (shutting down, or its offsets partition has no leader).
pub fn no_coordinator_code(group_id: &str) -> i16 {
    no_coordinator_error(group_id).code()
}

pub fn no_coordinator_error(group_id: &str) -> coordinator::GroupError {
    let partition = group_partition(group_id, coordinator::partitions_configured());
    if coordinator::local().coordinates(partition) {
        coordinator::GroupError::CoordinatorNotAvailable
    } else {
        coordinator::GroupError::NotCoordinator
    }
}

/// The offsets-log partition count for `data_dir`: the one recorded there,
/// or `configured`, recorded now. Changing it later would move groups to
/// other partitions and lose their offsets, so the recorded value wins.
pub fn settle_partition_count(data_dir: &Path, configured: i32) -> Result<i32, String> {
    let path = data_dir.join(GROUPS_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let recorded = text
                .lines()
                .find_map(|line| line.strip_prefix("offsets.topic.num.partitions="))
                .and_then(|v| v.trim().parse::<i32>().ok())
                .filter(|&n| n > 0 && n <= ringstream_core::limits::offsets_topic_partitions_max)
                .ok_or_else(|| format!("{}: no valid offsets.topic.num.partitions line", path.display()))?;
            if recorded != configured {
                tracing::warn!(
                    recorded,
                    configured,
                    "offsets.topic.num.partitions is fixed when the data dir is created; keeping the recorded value"
                );
            }
            Ok(recorded)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|e| format!("create {}: {e}", data_dir.display()))?;
            let temp = data_dir.join(format!("{GROUPS_FILE_NAME}.tmp"));
            let text = format!("offsets.topic.num.partitions={configured}\n");
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut file = std::fs::File::create(&temp)?;
                file.write_all(text.as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&temp, &path)?;
                std::fs::File::open(data_dir)?.sync_all()
            };
            write().map_err(|e| format!("write {}: {e}", path.display()))?;
            Ok(configured)
        }
        Err(e) => Err(format!("read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partitions_match_kafka() {
        // Java: Math.abs("test-group".hashCode()) % 50 and friends.
        // "test-group".hashCode() == 627841412 (computed with Java's rule).
        assert_eq!(group_partition("test-group", 50), 627_841_412 % 50);
        assert_eq!(group_partition("test-group", 1_000_000_000), 627_841_412);
        assert_eq!(group_partition("", 50), 0);
        for g in ["a", "group-1", "ünïcode", "x".repeat(300).as_str()] {
            assert!((0..7).contains(&group_partition(g, 7)));
        }
    }

    #[test]
    fn the_recorded_partition_count_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(settle_partition_count(dir.path(), 12).unwrap(), 12);
        assert_eq!(settle_partition_count(dir.path(), 50).unwrap(), 12);
        std::fs::write(dir.path().join(GROUPS_FILE_NAME), "garbage").unwrap();
        assert!(settle_partition_count(dir.path(), 50).is_err());
    }
}
