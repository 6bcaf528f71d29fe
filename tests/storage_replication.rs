//! Storage under replication, with no network: a leader's and a follower's
//! `ShardStorage` in one executor, the follower copying by `read_replica`
//! and `submit_replica` as the broker's fetcher does. The high watermark
//! waits for the follower; the follower's log is the leader's byte for
//! byte; a follower whose log diverged (an old leader) truncates to the new
//! leader's, across segments, and keeps that over a restart.

mod common;

use common::{batch, open, read_all, run_local, small_segments};
use ringstream_core::types::{LeaderEpoch, Offset, TopicPartition};
use ringstream_storage::replica::{LeaderAssignment, Role};
use ringstream_storage::shard_storage::ShardStorage;

fn tp() -> TopicPartition {
    TopicPartition::new("replicated", 0)
}

fn leader(local: i32, epoch: i32) -> Role {
    Role::Leader(LeaderAssignment {
        local,
        epoch: LeaderEpoch(epoch),
        partition_epoch: 0,
        replicas: vec![1, 2],
        isr: vec![1, 2],
    })
}

/// One fetch round of `follower` (node `id`) from `leader`: what the
/// broker's fetcher does. Returns whether anything changed.
async fn fetch_once(leader: &ShardStorage, follower: &ShardStorage, id: i32) -> bool {
    let tp = tp();
    let end = follower.offsets(&tp).unwrap().log_end_offset;
    let last_epoch = follower.epochs(&tp).unwrap().latest().map_or(LeaderEpoch(-1), |e| e.epoch);
    let read = leader.read_replica(&tp, end, 1 << 20, id, last_epoch).await.expect("replica read");
    if let Some((_, diverging_end)) = read.diverging {
        follower.truncate_to(&tp, diverging_end.min(end)).await.expect("truncate");
        return true;
    }
    let mut tickets = Vec::new();
    for bytes in &read.batches {
        tickets.push(follower.submit_replica(&tp, bytes::Bytes::copy_from_slice(bytes)).await.expect("submit"));
    }
    let changed = !tickets.is_empty();
    for ticket in tickets {
        ticket.wait().await.expect("replica append");
    }
    follower.set_follower_high_watermark(&tp, read.high_watermark).unwrap();
    changed
}

async fn sync(leader: &ShardStorage, follower: &ShardStorage, id: i32) {
    for _ in 0..100 {
        if !fetch_once(leader, follower, id).await {
            // One more round reports the follower's log end to the leader.
            fetch_once(leader, follower, id).await;
            return;
        }
    }
    panic!("the follower did not catch up in 100 fetches");
}

#[test]
fn a_follower_copies_the_leader_and_truncates_where_they_diverge() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let (a_path, b_path) = (a_dir.path().to_owned(), b_dir.path().to_owned());
    run_local(move || async move {
        let tp = tp();
        let log = small_segments(8192);
        let a = open(&a_path, &tp, log.clone()).await;
        let b = open(&b_path, &tp, log.clone()).await;
        a.set_role(&tp, leader(1, 1)).unwrap();
        b.set_role(&tp, Role::Follower { leader: 1, epoch: LeaderEpoch(1) }).unwrap();
        for i in 0..12 {
            a.append(&tp, batch(4, 500, i, 1000 + i as i64)).await.unwrap();
        }
        let a_end = a.offsets(&tp).unwrap().log_end_offset;
        assert_eq!(a_end, Offset(48));
        // Nobody has copied it: nothing is committed, nothing readable.
        assert_eq!(a.offsets(&tp).unwrap().high_watermark, Offset(0));
        assert!(a.read(&tp, Offset(0), 1 << 20).await.unwrap().batches.is_empty());
        assert!(b.append(&tp, batch(1, 10, 99, 1)).await.is_err(), "a follower takes no client appends");
        sync(&a, &b, 2).await;
        assert_eq!(a.offsets(&tp).unwrap().high_watermark, a_end, "the follower has it all");
        assert_eq!(b.offsets(&tp).unwrap().high_watermark, a_end);
        assert_eq!(read_all(&a, &tp).await, read_all(&b, &tp).await, "byte for byte");
        assert!(b.offsets(&tp).unwrap().segments > 1, "the copy rolled segments too");

        // A appends in epoch 1 what B never gets; B takes over in epoch 2.
        for i in 0..6 {
            a.append(&tp, batch(4, 500, 100 + i, 2000)).await.unwrap();
        }
        b.set_role(&tp, leader(2, 2)).unwrap();
        for i in 0..3 {
            b.append(&tp, batch(2, 300, 200 + i, 3000)).await.unwrap();
        }
        a.set_role(&tp, Role::Follower { leader: 2, epoch: LeaderEpoch(2) }).unwrap();
        assert_eq!(a.offsets(&tp).unwrap().log_end_offset, Offset(72));
        // A's first fetch learns where epoch 1 ended on B, and cuts there
        // (in an earlier segment than its last); then it copies epoch 2.
        sync(&b, &a, 1).await;
        assert_eq!(a.offsets(&tp).unwrap().log_end_offset, Offset(54));
        assert_eq!(read_all(&a, &tp).await, read_all(&b, &tp).await);
        let epochs: Vec<(i32, i64)> =
            a.epochs(&tp).unwrap().entries().iter().map(|e| (e.epoch.0, e.start_offset.0)).collect();
        assert_eq!(epochs, vec![(1, 0), (2, 48)]);
        let before = read_all(&a, &tp).await;
        a.close().await.unwrap();
        b.close().await.unwrap();
        // The truncation is durable.
        let a = open(&a_path, &tp, log).await;
        assert_eq!(read_all(&a, &tp).await, before);
        a.close().await.unwrap();
    });
}

/// A follower whose log ends before the leader's log start (retention or
/// DeleteRecords moved it while the follower was away) restarts its log at
/// the leader's start, then copies from there.
#[test]
fn a_follower_behind_the_leaders_log_start_restarts_there() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let (a_path, b_path) = (a_dir.path().to_owned(), b_dir.path().to_owned());
    run_local(move || async move {
        let tp = tp();
        let a = open(&a_path, &tp, small_segments(8192)).await;
        let b = open(&b_path, &tp, small_segments(8192)).await;
        a.set_role(&tp, Role::Sole { epoch: LeaderEpoch(1) }).unwrap();
        for i in 0..10 {
            a.append(&tp, batch(4, 500, i, 1000)).await.unwrap();
        }
        a.delete_records(&tp, 20).await.unwrap();
        a.set_role(&tp, leader(1, 2)).unwrap();
        b.set_role(&tp, Role::Follower { leader: 1, epoch: LeaderEpoch(2) }).unwrap();
        let err = a.read_replica(&tp, Offset(0), 1 << 20, 2, LeaderEpoch(-1)).await.err().expect("out of range");
        let ringstream_storage::StorageError::OffsetOutOfRange { log_start, .. } = err else { panic!("{err}") };
        assert_eq!(log_start, Offset(20));
        b.restart_log_at(&tp, log_start).await.unwrap();
        let offsets = b.offsets(&tp).unwrap();
        assert_eq!((offsets.log_start_offset, offsets.log_end_offset), (Offset(20), Offset(20)));
        sync(&a, &b, 2).await;
        assert_eq!(b.offsets(&tp).unwrap().log_end_offset, Offset(40));
        assert_eq!(read_all(&a, &tp).await, read_all(&b, &tp).await);
        b.close().await.unwrap();
        a.close().await.unwrap();
        let b = open(&b_path, &tp, small_segments(8192)).await;
        assert_eq!(b.offsets(&tp).unwrap().log_start_offset, Offset(20), "the restart is durable");
        b.close().await.unwrap();
    });
}
