//! Shared helpers for the storage and shard integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;

use bytes::Bytes;
use ringstream_core::batch::{build_test_batch, BatchHeader};
use ringstream_core::types::{Offset, ShardId, TopicPartition};
use ringstream_storage::log::LogConfig;
use ringstream_storage::shard_storage::{ShardStorage, StorageConfig};

/// Runs `f` on a fresh glommio executor on this thread's own OS thread.
pub fn run_local<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 * 1024)
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("executor finishes")
}

pub fn config(dir: &Path) -> StorageConfig {
    let mut config = StorageConfig::new(dir);
    config.retention_check_interval_ms = 3_600_000; // tests call enforce_retention themselves
    config
}

pub fn small_segments(segment_bytes: u64) -> LogConfig {
    LogConfig { segment_bytes, ..LogConfig::default() }
}

pub async fn open(dir: &Path, tp: &TopicPartition, log: LogConfig) -> ShardStorage {
    let storage = ShardStorage::open(ShardId(0), config(dir)).await.expect("storage opens");
    storage.open_partition(tp.clone(), log).await.expect("partition opens");
    storage
}

/// A valid batch whose records carry `seed` in their values.
pub fn batch(records: u32, value_bytes: usize, seed: u64, timestamp_ms: i64) -> Bytes {
    Bytes::from(build_test_batch(records, value_bytes, seed, timestamp_ms))
}

/// Every batch of a partition from its log start, as (base, last, bytes).
pub async fn read_all(storage: &ShardStorage, tp: &TopicPartition) -> Vec<(Offset, Offset, Vec<u8>)> {
    let offsets = storage.offsets(tp).unwrap();
    let mut cursor = offsets.log_start_offset;
    let mut out = Vec::new();
    while cursor < offsets.high_watermark {
        let read = storage.read(tp, cursor, 256 * 1024).await.expect("read");
        assert!(!read.batches.is_empty(), "read at {cursor} below hw {} returned nothing", offsets.high_watermark);
        for bytes in &read.batches {
            let header = BatchHeader::ref_from_prefix(bytes).unwrap();
            let base = header.base_offset();
            let last = Offset(base.0 + i64::from(header.last_offset_delta()));
            assert_eq!(base, cursor, "batches are contiguous");
            ringstream_core::batch::validate(bytes, ringstream_core::limits::batch_bytes_max)
                .expect("stored batch valid");
            out.push((base, last, bytes.to_vec()));
            cursor = Offset(last.0 + 1);
        }
    }
    out
}

/// The batch as the log stores it: base offset and leader epoch stamped.
pub fn stamped(batch: &[u8], base: Offset, epoch: i32) -> Vec<u8> {
    let mut copy = batch.to_vec();
    ringstream_core::batch::set_base_offset(&mut copy, base);
    ringstream_core::batch::set_leader_epoch(&mut copy, ringstream_core::types::LeaderEpoch(epoch));
    copy
}
