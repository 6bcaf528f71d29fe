//! Placement: which shard owns each partition.
//!
//! One deterministic function, `place`, proposes an owner for a new
//! partition. The decision is then recorded in the placement table and
//! persisted in the data directory, so that a later tuning step can move a
//! partition to another shard by editing the table: after the first decision
//! the table, not the function, is the truth.
//!
//! The control plane (shard 0) is the only writer of the table at run time;
//! every shard keeps a read-only copy, updated over the router before any
//! request can be routed with the new entry.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use ringstream_core::types::{ShardId, TopicPartition};
use ringstream_storage::checkpoint::{decode_placement, encode_placement};
use ringstream_storage::dir::PLACEMENT_FILE_NAME;

/// The shard proposed for a new partition: a topic's partitions go
/// round-robin over the shards, starting at a shard chosen by the topic's
/// FNV-1a hash, so topics with few partitions do not all start on shard 0.
pub fn place(tp: &TopicPartition, shard_count: usize) -> ShardId {
    assert!(shard_count > 0 && shard_count <= ringstream_core::limits::shards_max);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tp.topic.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let partition = u64::try_from(tp.partition.0).expect("partition indexes are non-negative");
    ShardId(((hash.wrapping_add(partition)) % shard_count as u64) as u16)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementTable {
    entries: BTreeMap<TopicPartition, ShardId>,
}

/// A change `reconcile` made to the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementChange {
    pub tp: TopicPartition,
    pub from: Option<ShardId>,
    pub to: ShardId,
}

impl PlacementTable {
    pub fn owner(&self, tp: &TopicPartition) -> Option<ShardId> {
        self.entries.get(tp).copied()
    }

    pub fn insert(&mut self, tp: TopicPartition, shard: ShardId) {
        self.entries.insert(tp, shard);
    }

    pub fn remove(&mut self, tp: &TopicPartition) -> Option<ShardId> {
        self.entries.remove(tp)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, ShardId)> {
        self.entries.iter().map(|(tp, shard)| (tp, *shard))
    }

    pub fn partitions_of(&self, shard: ShardId) -> Vec<TopicPartition> {
        self.entries.iter().filter(|(_, s)| **s == shard).map(|(tp, _)| tp.clone()).collect()
    }

    pub fn encode(&self) -> String {
        let entries: Vec<(TopicPartition, ShardId)> = self.iter().map(|(tp, s)| (tp.clone(), s)).collect();
        encode_placement(&entries)
    }

    /// Loads the table from a data directory; a missing file is an empty table.
    pub fn load(data_dir: &Path) -> io::Result<PlacementTable> {
        let path = data_dir.join(PLACEMENT_FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PlacementTable::default()),
            Err(e) => return Err(e),
        };
        let entries = decode_placement(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?;
        Ok(PlacementTable { entries: entries.into_iter().collect() })
    }

    /// Writes the table atomically with blocking I/O (start-up, before the
    /// shards run). At run time shard 0 uses `storage::dir::write_file_atomic`.
    pub fn store_blocking(&self, data_dir: &Path) -> io::Result<()> {
        let path = data_dir.join(PLACEMENT_FILE_NAME);
        let temp = data_dir.join(format!("{PLACEMENT_FILE_NAME}.tmp"));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(self.encode().as_bytes())?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    }

    /// Makes the table cover exactly the partitions found on disk, for
    /// `shard_count` shards: partitions missing from it are placed, entries
    /// naming a shard that no longer exists are re-placed, and entries with
    /// no data directory are dropped.
    pub fn reconcile(&mut self, on_disk: &[TopicPartition], shard_count: usize) -> Vec<PlacementChange> {
        let mut changes = Vec::new();
        self.entries.retain(|tp, _| on_disk.contains(tp));
        for tp in on_disk {
            match self.entries.get(tp) {
                Some(shard) if shard.index() < shard_count => {}
                current => {
                    let from = current.copied();
                    let to = place(tp, shard_count);
                    self.entries.insert(tp.clone(), to);
                    changes.push(PlacementChange { tp: tp.clone(), from, to });
                }
            }
        }
        changes
    }
}

/// The metadata quorum's log directory: not a partition of ours, though
/// named like one (Kafka's layout).
pub const METADATA_LOG_DIR_NAME: &str = "__cluster_metadata-0";

/// Partitions with a directory under `data_dir`.
pub fn partitions_on_disk(data_dir: &Path) -> io::Result<Vec<TopicPartition>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() || entry.file_name() == METADATA_LOG_DIR_NAME {
            continue;
        }
        if let Some(tp) = entry.file_name().to_str().and_then(TopicPartition::from_dir_name) {
            found.push(tp);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_is_deterministic_and_spreads_a_topic() {
        let shards = 4;
        let owners: Vec<ShardId> = (0..8).map(|p| place(&TopicPartition::new("orders", p), shards)).collect();
        assert_eq!(owners, (0..8).map(|p| place(&TopicPartition::new("orders", p), shards)).collect::<Vec<_>>());
        for shard in 0..shards {
            assert_eq!(owners.iter().filter(|s| s.index() == shard).count(), 2, "round-robin over shards");
        }
        assert!(owners.iter().all(|s| s.index() < shards));
    }

    #[test]
    fn reconcile_places_new_replaces_missing_shards_and_drops_gone() {
        let mut table = PlacementTable::default();
        let a0 = TopicPartition::new("a", 0);
        let a1 = TopicPartition::new("a", 1);
        let gone = TopicPartition::new("gone", 0);
        table.insert(a0.clone(), ShardId(7)); // shard 7 no longer exists
        table.insert(gone.clone(), ShardId(0));
        let changes = table.reconcile(&[a0.clone(), a1.clone()], 2);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0], PlacementChange { tp: a0.clone(), from: Some(ShardId(7)), to: place(&a0, 2) });
        assert_eq!(changes[1].from, None);
        assert_eq!(table.owner(&gone), None);
        assert_eq!(table.len(), 2);
        // A second reconcile with the same inputs changes nothing.
        assert!(table.reconcile(&[a0, a1], 2).is_empty());
    }

    #[test]
    fn table_round_trips_through_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = PlacementTable::default();
        table.insert(TopicPartition::new("t", 0), ShardId(1));
        table.insert(TopicPartition::new("t-x", 3), ShardId(0));
        table.store_blocking(dir.path()).unwrap();
        assert_eq!(PlacementTable::load(dir.path()).unwrap(), table);
        assert!(PlacementTable::load(&dir.path().join("none")).unwrap().is_empty());
    }
}
