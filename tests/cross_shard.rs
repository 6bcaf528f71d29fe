#![allow(non_upper_case_globals)]
//! The shard runtime and router: appends submitted on shard A to a partition
//! owned by shard B land in submission order; placement persists.

mod common;

use std::rc::Rc;

use bytes::Bytes;
use ringstream_core::batch::{records, BatchBuilder, Record};
use ringstream_core::types::{Offset, ShardId, TopicPartition};
use ringstream_shard::{place, RuntimeConfig, Shard, ShardSet};
use ringstream_storage::shard_storage::StorageConfig;

fn shard_count() -> usize {
    let cpus = ringstream_tuning::allowed_cpus().unwrap().len();
    assert!(cpus >= 2, "the cross-shard test needs 2 CPUs in the affinity mask, found {cpus}");
    2
}

fn start(dir: &std::path::Path, shards: usize) -> ShardSet {
    let mut config = RuntimeConfig::new(StorageConfig::new(dir));
    config.shards = Some(shards);
    ShardSet::start(config).expect("shards start")
}

/// A one-record batch whose value is the sequence number.
fn numbered(sequence: u64) -> Bytes {
    let value = sequence.to_be_bytes();
    let mut builder = BatchBuilder::new(0);
    builder.push(&Record { key: None, value: Some(&value), headers: &[], timestamp_delta: 0 });
    Bytes::from(builder.build())
}

#[test]
fn appends_from_another_shard_land_in_submission_order() {
    let shards = shard_count();
    let dir = tempfile::tempdir().unwrap();
    let set = start(dir.path(), shards);
    // A partition that placement puts on shard 1.
    let tp = (0..64).map(|p| TopicPartition::new("routed", p)).find(|tp| place(tp, shards) == ShardId(1)).unwrap();
    let owner = set.run_on(ShardId(0), {
        let tp = tp.clone();
        move |shard: Rc<Shard>| async move {
            let config = shard.storage.config().default_log.clone();
            shard.create_partition(&tp, config).await.unwrap()
        }
    });
    assert_eq!(owner, ShardId(1));
    const count: u64 = 2000;
    let offsets: Vec<Offset> = set.run_on(ShardId(0), {
        let tp = tp.clone();
        move |shard: Rc<Shard>| async move {
            assert!(!shard.storage.owns(&tp), "shard 0 must not own it: this test is about routing");
            let mut tickets = Vec::new();
            for sequence in 0..count {
                tickets.push(shard.submit(&tp, numbered(sequence)).await.unwrap());
            }
            let mut offsets = Vec::new();
            for ticket in tickets {
                offsets.push(ticket.wait().await.unwrap().base_offset);
            }
            offsets
        }
    });
    assert_eq!(offsets, (0..count as i64).map(Offset).collect::<Vec<_>>(), "offsets follow submission order");
    // Read back through the router from shard 0 (a remote read).
    let values: Vec<u64> = set.run_on(ShardId(0), {
        let tp = tp.clone();
        move |shard: Rc<Shard>| async move {
            let mut values = Vec::new();
            let mut cursor = Offset(0);
            while values.len() < count as usize {
                let read = shard.read(&tp, cursor, 64 * 1024).await.unwrap();
                for bytes in read.batches() {
                    for record in records(bytes).unwrap() {
                        values.push(u64::from_be_bytes(record.value.unwrap().try_into().unwrap()));
                    }
                    cursor = cursor.next(1);
                }
            }
            values
        }
    });
    assert_eq!(values, (0..count).collect::<Vec<_>>());
    set.shutdown().unwrap();

    // Restart: the persisted table keeps the owner and the data.
    let set = start(dir.path(), shards);
    let (owner, hw) = set.run_on(ShardId(0), {
        let tp = tp.clone();
        move |shard: Rc<Shard>| async move { (shard.owner(&tp), shard.offsets(&tp).await.unwrap().high_watermark) }
    });
    assert_eq!(owner, Some(ShardId(1)));
    assert_eq!(hw, Offset(count as i64));
    set.shutdown().unwrap();

    // With one shard, the partition is re-placed onto shard 0 and still readable.
    let set = start(dir.path(), 1);
    let hw = set.run_on(ShardId(0), move |shard: Rc<Shard>| async move {
        assert!(shard.storage.owns(&tp));
        shard.offsets(&tp).await.unwrap().high_watermark
    });
    assert_eq!(hw, Offset(count as i64));
    set.shutdown().unwrap();
}

/// The same under write-buffer pressure: large batches (up to 1 MiB, mixed
/// with tiny ones) from another shard fill the partition's pending bytes,
/// so the owner's submits wait for commits. Each remote append is queued by
/// a task of its own (the inbox never waits); order must still hold.
#[test]
fn large_remote_appends_keep_submission_order_under_write_pressure() {
    let shards = shard_count();
    let dir = tempfile::tempdir().unwrap();
    let set = start(dir.path(), shards);
    let tp = (0..64).map(|p| TopicPartition::new("pressed", p)).find(|tp| place(tp, shards) == ShardId(1)).unwrap();
    set.run_on(ShardId(0), {
        let tp = tp.clone();
        move |shard: Rc<Shard>| async move {
            let config = shard.storage.config().default_log.clone();
            shard.create_partition(&tp, config).await.unwrap()
        }
    });
    const count: u64 = 400;
    let offsets: Vec<Offset> = set.run_on(ShardId(0), {
        let tp = tp.clone();
        move |shard: Rc<Shard>| async move {
            let large = vec![7u8; 1_000_000];
            let mut tickets = Vec::new();
            for sequence in 0..count {
                let mut builder = BatchBuilder::new(0);
                let mut value = sequence.to_be_bytes().to_vec();
                if sequence % 3 != 0 {
                    value.extend_from_slice(&large);
                }
                builder.push(&Record { key: None, value: Some(&value), headers: &[], timestamp_delta: 0 });
                tickets.push(shard.submit(&tp, Bytes::from(builder.build())).await.unwrap());
            }
            let mut offsets = Vec::new();
            for ticket in tickets {
                offsets.push(ticket.wait().await.unwrap().base_offset);
            }
            offsets
        }
    });
    assert_eq!(offsets, (0..count as i64).map(Offset).collect::<Vec<_>>(), "offsets follow submission order");
    set.shutdown().unwrap();
}

#[test]
fn too_many_shards_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cpus = ringstream_tuning::allowed_cpus().unwrap().len();
    let mut config = RuntimeConfig::new(StorageConfig::new(dir.path()));
    config.shards = Some(cpus + 1);
    let error = ShardSet::start(config).err().expect("must not start");
    let message = error.to_string();
    assert!(message.contains(&format!("--shards {}", cpus + 1)), "{message}");
}

#[test]
fn deleting_many_partitions_at_once_removes_them_everywhere() {
    let shards = shard_count();
    let dir = tempfile::tempdir().unwrap();
    let set = start(dir.path(), shards);
    const partitions: i32 = 300;
    let tps: Vec<TopicPartition> = (0..partitions).map(|p| TopicPartition::new("doomed", p)).collect();
    let kept = TopicPartition::new("kept", 0);
    let owners_left = set.run_on(ShardId(1), {
        let (tps, kept) = (tps.clone(), kept.clone());
        move |shard: Rc<Shard>| async move {
            let config = shard.storage.config().default_log.clone();
            shard.create_partitions(tps.clone(), config.clone()).await.unwrap();
            shard.create_partitions(vec![kept.clone()], config).await.unwrap();
            shard.append(&tps[7], numbered(7)).await.unwrap();
            // A partition named twice, and one that never existed, are skipped.
            let mut doomed = tps.clone();
            doomed.push(tps[0].clone());
            doomed.push(TopicPartition::new("never", 0));
            shard.delete_partitions(doomed).await.unwrap();
            let mut left = Vec::new();
            for index in 0..shard.shard_count() {
                let tps = tps.clone();
                let seen = shard
                    .run_on(ShardId(index as u16), move |other| async move {
                        tps.iter().filter(|tp| other.owner(tp).is_some() || other.storage.owns(tp)).count()
                    })
                    .await
                    .unwrap();
                left.push(seen);
            }
            assert!(shard.owner(&kept).is_some(), "the other topic stays");
            left
        }
    });
    assert_eq!(owners_left, vec![0; shards], "no shard routes to or owns a deleted partition");
    let dirs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("doomed-"))
        .count();
    assert_eq!(dirs, 0, "their directories are gone");
    set.shutdown().unwrap();
    let table = ringstream_shard::PlacementTable::load(dir.path()).unwrap();
    assert_eq!(table.len(), 1, "the persisted table keeps only the other topic");
}
