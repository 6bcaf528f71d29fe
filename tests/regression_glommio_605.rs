#![allow(non_upper_case_globals)]
//! Regression test for glommio issue #605 (DataDog/glommio#605): if the first
//! DmaFile a process opens on a device is an empty file, glommio marks the
//! device as supporting iopoll and every later DMA read fails with
//! EOPNOTSUPP. A new partition's first segment is exactly such a file, so
//! storage probes the device with a non-empty file first.
//!
//! This must be its own test binary: the device table is process-wide, and
//! here the very first DmaFile this process opens goes through storage.

mod common;

use common::*;
use ringstream_core::types::{Offset, TopicPartition};
use ringstream_storage::log::LogConfig;
use ringstream_storage::shard_storage::BatchBytes;

#[test]
fn dma_reads_work_when_the_first_file_opened_is_a_new_empty_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let tp = TopicPartition::new("fresh", 0);
    run_local(move || async move {
        let storage = open(&path, &tp, LogConfig::default()).await;
        let b = batch(4, 100, 1, 0);
        storage.append(&tp, b.clone()).await.unwrap();
        storage.close().await.unwrap();
        // Reopen so the read misses the cache and goes to the device.
        let storage = open(&path, &tp, LogConfig::default()).await;
        let read = storage.read(&tp, Offset(0), 1 << 20).await.expect("DMA read must not fail with EOPNOTSUPP");
        assert_eq!(read.batches.len(), 1);
        assert!(matches!(read.batches[0], BatchBytes::Disk(_)));
        assert_eq!(&read.batches[0][..], &stamped(&b, Offset(0), 0)[..]);
        storage.close().await.unwrap();
    });
}
