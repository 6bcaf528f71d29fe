//! Transactions in one partition's storage, with no broker: transactional
//! batches open a producer's transaction, COMMIT and ABORT markers close
//! it; the last stable offset stays at the first open transaction; a
//! read_committed read stops there and names the aborted transactions of
//! its range; all of it survives clean and unclean restarts (the producer
//! snapshot's open transactions, the segments' `.txnindex` files, and the
//! tail scan).

mod common;

use bytes::Bytes;
use common::{open, run_local, small_segments};
use ringstream_core::batch::{build_marker, BatchBuilder, BatchHeader, Record};
use ringstream_core::types::{Offset, TopicPartition};
use ringstream_storage::shard_storage::ShardStorage;

fn tp() -> TopicPartition {
    TopicPartition::new("txn", 0)
}

/// A transactional batch of `count` records of producer `id`.
fn txn_batch(id: i64, epoch: i16, sequence: i32, count: usize) -> Bytes {
    let mut builder = BatchBuilder::new(1_000);
    builder.producer(id, epoch, sequence).transactional();
    let value = vec![7u8; 600];
    for _ in 0..count {
        builder.push(&Record { key: None, value: Some(&value), headers: &[], timestamp_delta: 0 });
    }
    Bytes::from(builder.build())
}

fn marker(id: i64, epoch: i16, commit: bool) -> Bytes {
    Bytes::from(build_marker(id, epoch, commit, 0, 1_000))
}

/// (last stable offset, high watermark, aborted transactions a
/// read_committed read from 0 is told about, records it returns).
async fn committed_view(storage: &ShardStorage) -> (Offset, Offset, Vec<(i64, Offset)>, usize) {
    let tp = tp();
    let offsets = storage.offsets(&tp).unwrap();
    let mut aborted = Vec::new();
    let mut records = 0usize;
    let mut cursor = Offset(0);
    loop {
        let read = storage.read_committed(&tp, cursor, 1 << 20).await.unwrap();
        assert_eq!(read.last_stable_offset, offsets.last_stable_offset);
        if read.batches.is_empty() {
            break;
        }
        for a in read.aborted {
            if !aborted.contains(&a) {
                aborted.push(a);
            }
        }
        for bytes in &read.batches {
            let header = BatchHeader::ref_from_prefix(bytes).unwrap();
            if !header.is_control() {
                records += header.records_count() as usize;
            }
            cursor = Offset(header.base_offset().0 + i64::from(header.last_offset_delta()) + 1);
        }
    }
    (offsets.last_stable_offset, offsets.high_watermark, aborted, records)
}

#[test]
fn markers_lso_and_aborted_transactions_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    run_local(move || async move {
        let tp = tp();
        let log = small_segments(4096);
        let storage = open(&path, &tp, log.clone()).await;
        // Producer 1 aborts (offsets 0..=2 and 5..=7, marker 8); producer 2
        // commits (3..=4, marker 9); producer 3 leaves its transaction open
        // from offset 10.
        storage.append(&tp, txn_batch(1, 0, 0, 3)).await.unwrap(); // 0..=2
        storage.append(&tp, txn_batch(2, 0, 0, 2)).await.unwrap(); // 3..=4
        storage.append(&tp, txn_batch(1, 0, 3, 3)).await.unwrap(); // 5..=7
        let (lso, hw, _, _) = committed_view(&storage).await;
        assert_eq!((lso, hw), (Offset(0), Offset(8)), "open transactions hold the LSO at the first");
        storage.append(&tp, marker(1, 0, false)).await.unwrap(); // 8
        let (lso, _, _, records) = committed_view(&storage).await;
        assert_eq!(lso, Offset(3), "producer 2's transaction still holds it");
        assert_eq!(records, 3, "below the LSO: producer 1's aborted batch, which the client drops");
        storage.append(&tp, marker(2, 0, true)).await.unwrap(); // 9
        storage.append(&tp, txn_batch(3, 0, 0, 2)).await.unwrap(); // 10..=11
        let view = committed_view(&storage).await;
        assert_eq!(view.0, Offset(10), "producer 3's open transaction holds the LSO");
        assert_eq!(view.2, vec![(1, Offset(0))], "the aborted transaction is named");
        assert_eq!(view.3, 8, "read_committed returns batches below the LSO; the client drops the aborted ones");

        // Unclean stop (kill -9): the tail scan rebuilds the state.
        std::mem::forget(storage);
        let storage = open(&path, &tp, log.clone()).await;
        assert_eq!(committed_view(&storage).await, view, "the same after an unclean restart");

        // Fill a few segments so the abort's segment is sealed with its
        // .txnindex, then close cleanly and reopen.
        for i in 0..12 {
            storage.append(&tp, txn_batch(3, 0, 2 + i * 2, 2)).await.unwrap();
        }
        let sealed = std::fs::read_dir(path.join(tp.dir_name()))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".txnindex"))
            .count();
        assert_eq!(sealed, 1, "the sealed segment holding the abort marker has its .txnindex");
        let view = committed_view(&storage).await;
        assert_eq!((view.0, &view.2), (Offset(10), &vec![(1, Offset(0))]));
        storage.close().await.unwrap();
        let storage = open(&path, &tp, log.clone()).await;
        assert_eq!(committed_view(&storage).await, view, "the same after a clean restart");
        // An unclean restart after the clean one: snapshot, indexes and scan agree.
        std::mem::forget(storage);
        let storage = open(&path, &tp, log.clone()).await;
        assert_eq!(committed_view(&storage).await, view, "the same after clean then unclean restarts");

        // Producer 3 is fenced by an abort with a newer epoch: its
        // transaction ends, the LSO reaches the high watermark, and its
        // old epoch can write no more.
        storage.append(&tp, marker(3, 1, false)).await.unwrap();
        let (lso, hw, aborted, _) = committed_view(&storage).await;
        assert_eq!(lso, hw);
        assert_eq!(aborted, vec![(1, Offset(0)), (3, Offset(10))]);
        let zombie = storage.append(&tp, txn_batch(3, 0, 26, 1)).await;
        assert!(zombie.is_err(), "a fenced epoch's batch is refused: {zombie:?}");
        storage.close().await.unwrap();
    });
}
