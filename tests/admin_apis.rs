//! Admin APIs that clients call (issue 11): DescribeConfigs and
//! IncrementalAlterConfigs for the broker, DeleteRecords, DescribeLogDirs,
//! DescribeProducers, DescribeTopicPartitions, ElectLeaders and the
//! partition reassignment APIs, each through a third-party client against
//! the real binary (scripts `tests/compat/admin_apis_*.py`), plus the
//! storage side of DeleteRecords: the log start survives restarts.

#![allow(non_upper_case_globals)] // as in the crate: constants are named like values.

mod common;
mod harness;

use common::{batch, open, run_local, small_segments};
use harness::*;
use ringstream_core::types::{Offset, TopicPartition};
use ringstream_storage::StorageError;

fn tp() -> TopicPartition {
    TopicPartition::new("deleted", 0)
}

/// DeleteRecords in storage: the log start moves, whole segments below it
/// go, reads below it are out of range, and after a clean and an unclean
/// restart the log start is still there (the checkpoint, not the segments,
/// holds it: the segment holding it stays).
#[test]
fn delete_records_log_start_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (segments_before, high_watermark) = run_local({
        let path = path.clone();
        move || async move {
            let storage = open(&path, &tp(), small_segments(16 * 1024)).await;
            for i in 0..60u64 {
                storage.append(&tp(), batch(3, 900, i, 5_000 + i as i64)).await.unwrap();
            }
            let before = storage.offsets(&tp()).unwrap();
            assert_eq!(before.high_watermark, Offset(180));
            assert!(before.segments >= 4, "{} segments", before.segments);
            // Past the high watermark and negative offsets are refused.
            for bad in [181, -2] {
                let e = storage.delete_records(&tp(), bad).await.unwrap_err();
                assert!(matches!(e, StorageError::OffsetOutOfRange { .. }), "{bad}: {e}");
            }
            // Mid-batch, mid-segment: offset 100.
            assert_eq!(storage.delete_records(&tp(), 100).await.unwrap(), Offset(100));
            let after = storage.offsets(&tp()).unwrap();
            assert_eq!(after.log_start_offset, Offset(100));
            assert!(
                after.segments < before.segments,
                "segments below 100 deleted: {} -> {}",
                before.segments,
                after.segments
            );
            // A lower offset does not move it back.
            assert_eq!(storage.delete_records(&tp(), 40).await.unwrap(), Offset(100));
            assert!(matches!(
                storage.read(&tp(), Offset(99), 1 << 20).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            let read = storage.read(&tp(), Offset(100), 1).await.unwrap();
            assert_eq!(read.log_start_offset, Offset(100));
            assert_eq!(read.batches.len(), 1, "the batch holding offset 100 is returned whole");
            // A time lookup never answers an offset below the start, also
            // inside the batch that straddles it (batch 33: offsets 99-101,
            // timestamps 5033-5035).
            assert_eq!(storage.offset_for_timestamp(&tp(), 0).await.unwrap(), Some((Offset(100), 5_034)));
            storage.close().await.unwrap();
            (before.segments, before.high_watermark)
        }
    });
    assert!(path.join("deleted-0").join("log-start-offset").exists());
    // Clean restart.
    run_local({
        let path = path.clone();
        move || async move {
            let storage = open(&path, &tp(), small_segments(16 * 1024)).await;
            let offsets = storage.offsets(&tp()).unwrap();
            assert_eq!(offsets.log_start_offset, Offset(100));
            assert_eq!(offsets.high_watermark, high_watermark);
            assert!(offsets.segments < segments_before);
            assert!(matches!(
                storage.read(&tp(), Offset(0), 1 << 20).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            // -1: up to the high watermark.
            assert_eq!(storage.delete_records(&tp(), -1).await.unwrap(), high_watermark);
            assert_eq!(storage.offsets(&tp()).unwrap().segments, 1, "only the active segment is left");
            assert!(storage.read(&tp(), high_watermark, 1 << 20).await.unwrap().batches.is_empty());
            std::mem::forget(storage); // an unclean stop: no close, no clean marker
        }
    });
    // Unclean restart: recovery scans, the checkpoint still holds.
    run_local(move || async move {
        let storage = open(&path, &tp(), small_segments(16 * 1024)).await;
        let offsets = storage.offsets(&tp()).unwrap();
        assert_eq!(offsets.log_start_offset, high_watermark);
        assert_eq!(offsets.high_watermark, high_watermark);
        let info = storage.append(&tp(), batch(2, 100, 99, 9_000)).await.unwrap();
        assert_eq!(info.base_offset, high_watermark);
        assert_eq!(info.log_start_offset, high_watermark);
        storage.close().await.unwrap();
    });
}

/// kafka-python's KafkaAdminClient: DeleteRecords, DescribeLogDirs,
/// DescribeProducers, DescribeTopicPartitions, ElectLeaders and the
/// reassignment APIs against the broker.
#[test]
fn admin_apis_kafka_python() {
    Broker::start().run("admin_apis_kafka_python", &[]);
}

/// confluent-kafka's AdminClient: broker configs (sources, dynamic changes
/// per broker and cluster-wide), DeleteRecords with ListOffsets earliest,
/// ElectLeaders.
#[test]
fn admin_apis_confluent() {
    Broker::start().run("admin_apis_confluent", &[]);
}
