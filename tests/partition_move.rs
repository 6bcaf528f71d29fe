#![allow(non_upper_case_globals)]
//! Live partition moves between shards (`Shard::move_partition`): appends
//! submitted from both shards while the partition moves back and forth all
//! land, once each, in each submitter's order; readers keep reading; the new
//! owner persists across a restart. The end-to-end version, through Kafka
//! clients and `ringstream partition move`, is in tests/compat.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ringstream_core::batch::{records, BatchBuilder, Record};
use ringstream_core::types::{Offset, ShardId, TopicPartition};
use ringstream_shard::{place, RuntimeConfig, Shard, ShardSet};
use ringstream_storage::shard_storage::StorageConfig;
use ringstream_storage::StorageError;

const shards: usize = 2;
/// Appends per submitting shard.
const appends_per_shard: u64 = 3000;
/// Moves made while they run (back and forth).
const moves: usize = 12;
/// Appends each submitter keeps in flight.
const in_flight: usize = 32;

/// Acknowledgements so far, from both submitters: each move records it, to
/// show that the moves happened while appends were flowing.
static acknowledged: AtomicU64 = AtomicU64::new(0);

fn start(dir: &std::path::Path) -> ShardSet {
    let cpus = ringstream_tuning::allowed_cpus().unwrap().len();
    assert!(cpus >= shards, "the move test needs {shards} CPUs in the affinity mask, found {cpus}");
    let mut config = RuntimeConfig::new(StorageConfig::new(dir));
    config.shards = Some(shards);
    ShardSet::start(config).expect("shards start")
}

/// A one-record batch whose value is (submitting shard, sequence).
fn tagged(shard: u16, sequence: u64) -> Bytes {
    let mut value = [0u8; 10];
    value[..2].copy_from_slice(&shard.to_be_bytes());
    value[2..].copy_from_slice(&sequence.to_be_bytes());
    let mut builder = BatchBuilder::new(0);
    builder.push(&Record { key: None, value: Some(&value), headers: &[], timestamp_delta: 0 });
    Bytes::from(builder.build())
}

fn untag(value: &[u8]) -> (u16, u64) {
    (u16::from_be_bytes(value[..2].try_into().unwrap()), u64::from_be_bytes(value[2..10].try_into().unwrap()))
}

/// Submits `appends_per_shard` tagged appends from `shard`, `in_flight` at a
/// time; returns (sequence, offset) for each, in acknowledgement order.
async fn submit_all(shard: Rc<Shard>, tp: TopicPartition) -> Vec<(u64, Offset)> {
    let acked = Rc::new(RefCell::new(Vec::new()));
    let slots = Rc::new(glommio::sync::Semaphore::new(in_flight as u64));
    for sequence in 0..appends_per_shard {
        let permit = slots.acquire_static_permit(1).await.unwrap();
        let ticket = shard.submit(&tp, tagged(shard.id.0, sequence)).await.expect("submit during a move");
        let acked = acked.clone();
        glommio::spawn_local(async move {
            let info = ticket.wait().await.expect("append during a move");
            acked.borrow_mut().push((sequence, info.base_offset));
            acknowledged.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        })
        .detach();
    }
    let _ = slots.acquire(in_flight as u64).await;
    Rc::try_unwrap(acked).unwrap().into_inner()
}

/// Reads `tp` from `from` until `count` records came back; returns values.
async fn read_all(shard: &Shard, tp: &TopicPartition, count: usize) -> Vec<(u16, u64)> {
    let mut values = Vec::with_capacity(count);
    let mut cursor = Offset(0);
    let started = std::time::Instant::now();
    while values.len() < count {
        assert!(started.elapsed() < Duration::from_secs(60), "read {} of {count} records in 60 s", values.len());
        let read = shard.read(tp, cursor, 256 * 1024).await.expect("read during a move");
        let batches = read.batches();
        if batches.is_empty() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for bytes in batches {
            for record in records(bytes).unwrap() {
                values.push(untag(record.value.unwrap()));
                cursor = cursor.next(1);
            }
        }
    }
    values
}

#[test]
fn moves_under_load_lose_duplicate_and_reorder_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let set = start(dir.path());
    let tp = (0..64).map(|p| TopicPartition::new("moving", p)).find(|tp| place(tp, shards) == ShardId(1)).unwrap();
    let (acked, read, owners) = set.run_on(ShardId(0), {
        let tp = tp.clone();
        move |shard: Rc<Shard>| async move {
            let config = shard.storage.config().default_log.clone();
            assert_eq!(shard.create_partition(&tp, config).await.unwrap(), ShardId(1));
            // A submitter on each shard, a reader that follows the log, and
            // the moves, all at once.
            let here = glommio::spawn_local(submit_all(shard.clone(), tp.clone()));
            let there = {
                let tp = tp.clone();
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    shard.run_on(ShardId(1), move |other| submit_all(other, tp)).await.unwrap()
                })
            };
            let reader = {
                let (shard, tp) = (shard.clone(), tp.clone());
                glommio::spawn_local(async move { read_all(&shard, &tp, 2 * appends_per_shard as usize).await })
            };
            let mut owners = Vec::new();
            for round in 0..moves {
                glommio::timer::sleep(Duration::from_millis(15)).await;
                let to = if round % 2 == 0 { ShardId(0) } else { ShardId(1) };
                let before = acknowledged.load(Ordering::Relaxed);
                let from = shard.move_partition(tp.clone(), to).await.expect("move");
                owners.push((from, to, shard.owner(&tp).unwrap(), before));
            }
            let mut acked = vec![here.await, there.await];
            acked[1].sort();
            acked[0].sort();
            (acked, reader.await, owners)
        }
    });

    // Each move went from the owner of the time to the shard asked for.
    for (index, (from, to, owner, _)) in owners.iter().enumerate() {
        assert_ne!(from, to, "move {index} was a no-op: {owners:?}");
        assert_eq!(owner, to, "after move {index}");
    }
    let total = 2 * appends_per_shard;
    let under_load = owners.iter().filter(|(.., before)| *before > 0 && *before < total).count();
    assert!(under_load >= moves / 2, "only {under_load} of {moves} moves ran while appends flowed: {owners:?}");
    // Every append was acknowledged, once, with distinct offsets, and each
    // shard's appends got increasing offsets in submission order.
    let mut all_offsets = Vec::new();
    for (submitter, acks) in acked.iter().enumerate() {
        assert_eq!(acks.len(), appends_per_shard as usize, "shard {submitter}'s acknowledgements");
        for pair in acks.windows(2) {
            assert_eq!(pair[1].0, pair[0].0 + 1);
            assert!(pair[1].1 > pair[0].1, "shard {submitter}: sequence {} landed before {}", pair[1].0, pair[0].0);
        }
        all_offsets.extend(acks.iter().map(|(_, offset)| offset.0));
    }
    all_offsets.sort();
    assert_eq!(all_offsets, (0..2 * appends_per_shard as i64).collect::<Vec<_>>(), "offsets are dense and unique");
    // The reader, which read through every move, saw each record once, in
    // each submitter's order, matching the acknowledged offsets.
    assert_eq!(read.len(), 2 * appends_per_shard as usize);
    let mut next = [0u64; shards];
    for (offset, (submitter, sequence)) in read.iter().enumerate() {
        assert_eq!(*sequence, next[*submitter as usize], "offset {offset}: out of order or duplicated");
        next[*submitter as usize] += 1;
        let (_, acked_offset) = acked[*submitter as usize][*sequence as usize];
        assert_eq!(acked_offset, Offset(offset as i64), "the read agrees with the acknowledgement");
    }
    let last_owner = owners.last().unwrap().2;
    set.shutdown().unwrap();

    // The last owner is persisted, and the data is all there.
    let set = start(dir.path());
    let (owner, high_watermark) = set.run_on(ShardId(1), {
        let tp = tp.clone();
        move |shard: Rc<Shard>| async move { (shard.owner(&tp), shard.offsets(&tp).await.unwrap().high_watermark) }
    });
    assert_eq!(owner, Some(last_owner));
    assert_eq!(high_watermark, Offset(2 * appends_per_shard as i64));
    set.shutdown().unwrap();
}

#[test]
fn bad_moves_are_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let set = start(dir.path());
    let errors = set.run_on(ShardId(1), |shard: Rc<Shard>| async move {
        let tp = TopicPartition::new("t", 0);
        let config = shard.storage.config().default_log.clone();
        let owner = shard.create_partition(&tp, config.clone()).await.unwrap();
        let internal = TopicPartition::new("__consumer_offsets", 0);
        shard.create_partition(&internal, config).await.unwrap();
        let errors = vec![
            shard.move_partition(tp.clone(), ShardId(shards as u16)).await.unwrap_err(),
            shard.move_partition(TopicPartition::new("t", 9), ShardId(0)).await.unwrap_err(),
            shard.move_partition(internal, ShardId(0)).await.unwrap_err(),
        ];
        // A move to the current owner is a no-op.
        assert_eq!(shard.move_partition(tp.clone(), owner).await.unwrap(), owner);
        assert_eq!(shard.owner(&tp), Some(owner));
        errors
    });
    assert!(matches!(&errors[0], StorageError::Config(m) if m.contains("does not exist")), "{:?}", errors[0]);
    assert!(matches!(&errors[1], StorageError::UnknownPartition(_)), "{:?}", errors[1]);
    assert!(matches!(&errors[2], StorageError::Config(m) if m.contains("internal topic")), "{:?}", errors[2]);
    set.shutdown().unwrap();
}

/// Appends one-record batches to `tp` from `shard`, one at a time, until
/// `stop` says so; returns how many.
async fn append_until(shard: Rc<Shard>, tp: TopicPartition, stop: Rc<std::cell::Cell<bool>>) -> u64 {
    let mut count = 0;
    while !stop.get() {
        shard.append(&tp, tagged(shard.id.0, count)).await.expect("append while balancing");
        count += 1;
    }
    count
}

#[test]
fn the_balancer_moves_a_hot_partition_off_the_busy_shard() {
    use ringstream_shard::policy::BalanceConfig;
    let dir = tempfile::tempdir().unwrap();
    let cpus = ringstream_tuning::allowed_cpus().unwrap().len();
    assert!(cpus >= shards, "the balancer test needs {shards} CPUs in the affinity mask, found {cpus}");
    let mut config = RuntimeConfig::new(StorageConfig::new(dir.path()));
    config.shards = Some(shards);
    config.storage.flush = ringstream_storage::log::FlushPolicy::Interval { interval_ms: 50 };
    config.balance =
        BalanceConfig { balancer: true, interval_ms: 1000, min_bytes_per_sec: 1, ..BalanceConfig::default() };
    let set = ShardSet::start(config).expect("shards start");
    let (moved_to, hot) = set.run_on(ShardId(0), |shard: Rc<Shard>| async move {
        // Two hot partitions and one idle one, all on shard 0; shard 1 idle.
        let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("skewed", p)).collect();
        let config = shard.storage.config().default_log.clone();
        shard.create_partitions(tps.clone(), config).await.unwrap();
        for tp in &tps {
            shard.move_partition(tp.clone(), ShardId(0)).await.unwrap();
        }
        let stop = Rc::new(std::cell::Cell::new(false));
        let writers: Vec<_> = tps[..2]
            .iter()
            .map(|tp| glommio::spawn_local(append_until(shard.clone(), tp.clone(), stop.clone())))
            .collect();
        // The sampler needs two samples for a rate, the balancer one interval.
        let started = std::time::Instant::now();
        let moved = loop {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            if let Some(tp) = tps.iter().find(|tp| shard.owner(tp) == Some(ShardId(1))) {
                break Some(tp.clone());
            }
            if started.elapsed() > Duration::from_secs(20) {
                break None;
            }
        };
        stop.set(true);
        for writer in writers {
            assert!(writer.await > 0);
        }
        (moved, tps[..2].to_vec())
    });
    let moved_to = moved_to.expect("the balancer moved nothing to the idle shard in 20 s");
    assert!(hot.contains(&moved_to), "it moved {moved_to}, not one of the hot partitions {hot:?}");
    set.shutdown().unwrap();
}

#[test]
fn least_loaded_placement_puts_new_partitions_on_the_idle_shard() {
    use ringstream_shard::policy::{BalanceConfig, PlacementPolicy};
    let dir = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(StorageConfig::new(dir.path()));
    config.shards = Some(shards);
    config.storage.flush = ringstream_storage::log::FlushPolicy::Interval { interval_ms: 50 };
    config.balance = BalanceConfig { policy: PlacementPolicy::LeastLoaded, ..BalanceConfig::default() };
    let set = ShardSet::start(config).expect("shards start");
    let owners = set.run_on(ShardId(0), |shard: Rc<Shard>| async move {
        let config = shard.storage.config().default_log.clone();
        // With no load yet, by partition count: one each.
        let first: Vec<TopicPartition> = (0..2).map(|p| TopicPartition::new("first", p)).collect();
        shard.create_partitions(first.clone(), config.clone()).await.unwrap();
        let spread = [shard.owner(&first[0]).unwrap(), shard.owner(&first[1]).unwrap()];
        // Load the partition on shard 0, wait for two samples, then a new
        // topic's two partitions both go to shard 1.
        let busy = first.iter().find(|tp| shard.owner(tp) == Some(ShardId(0))).unwrap().clone();
        let stop = Rc::new(std::cell::Cell::new(false));
        let writer = glommio::spawn_local(append_until(shard.clone(), busy, stop.clone()));
        glommio::timer::sleep(Duration::from_millis(2500)).await;
        let second: Vec<TopicPartition> = (0..2).map(|p| TopicPartition::new("second", p)).collect();
        shard.create_partitions(second.clone(), config).await.unwrap();
        stop.set(true);
        assert!(writer.await > 0);
        (spread, [shard.owner(&second[0]).unwrap(), shard.owner(&second[1]).unwrap()])
    });
    let (mut spread, second) = owners;
    spread.sort();
    assert_eq!(spread, [ShardId(0), ShardId(1)], "an idle broker spreads by partition count");
    assert_eq!(second, [ShardId(1), ShardId(1)], "new partitions go to the idle shard");
    set.shutdown().unwrap();
}
