#![allow(non_upper_case_globals)]
//! Partition log behaviour through `ShardStorage`: round trips, rolling,
//! restart, retention, reads by time, bad batches and a full disk.

mod common;

use bytes::Bytes;
use common::*;
use ringstream_core::types::{Offset, TopicPartition};
use ringstream_storage::log::LogConfig;
use ringstream_storage::shard_storage::{BatchBytes, ShardStorage};
use ringstream_storage::StorageError;

fn tp() -> TopicPartition {
    TopicPartition::new("events", 0)
}

#[test]
fn append_read_round_trip_assigns_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let storage = open(&path, &tp(), LogConfig::default()).await;
        let mut sent = Vec::new();
        let mut expected_base = 0;
        for i in 0..50u64 {
            let records = 1 + (i % 7) as u32;
            let batch = batch(records, 10 + i as usize * 13, i, 1_000 + i as i64);
            let info = storage.append(&tp(), batch.clone()).await.unwrap();
            assert_eq!(info.base_offset, Offset(expected_base));
            assert_eq!(info.last_offset, Offset(expected_base + i64::from(records) - 1));
            sent.push(stamped(&batch, info.base_offset, 0));
            expected_base += i64::from(records);
        }
        let offsets = storage.offsets(&tp()).unwrap();
        assert_eq!(offsets.high_watermark, Offset(expected_base));
        assert_eq!(offsets.log_end_offset, Offset(expected_base));
        let all = read_all(&storage, &tp()).await;
        assert_eq!(all.into_iter().map(|(_, _, b)| b).collect::<Vec<_>>(), sent);
        // The hot tail came from the batch cache, without a disk read.
        let read = storage.read(&tp(), Offset(0), 1 << 20).await.unwrap();
        assert!(read.batches.iter().all(|b| matches!(b, BatchBytes::Cached(_))));
        // A read in the middle of a batch returns that whole batch.
        let read = storage.read(&tp(), Offset(2), 1).await.unwrap();
        assert_eq!(read.batches.len(), 1, "max_bytes smaller than a batch still returns one whole batch");
        assert_eq!(&read.batches[0][..], &sent[1][..]);
        // At the high watermark: nothing; beyond it: out of range.
        assert!(storage.read(&tp(), Offset(expected_base), 1 << 20).await.unwrap().batches.is_empty());
        assert!(matches!(
            storage.read(&tp(), Offset(expected_base + 1), 1 << 20).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        storage.close().await.unwrap();
    });
}

#[test]
fn segments_roll_by_size_and_survive_clean_and_unclean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let expected: Vec<Vec<u8>> = run_local({
        let path = path.clone();
        move || async move {
            let storage = open(&path, &tp(), small_segments(16 * 1024)).await;
            let mut sent = Vec::new();
            for i in 0..60u64 {
                let batch = batch(3, 900, i, 5_000 + i as i64);
                let info = storage.append(&tp(), batch.clone()).await.unwrap();
                sent.push(stamped(&batch, info.base_offset, 0));
            }
            let offsets = storage.offsets(&tp()).unwrap();
            assert!(offsets.segments >= 4, "60 x ~3 KiB batches roll 16 KiB segments: {}", offsets.segments);
            storage.close().await.unwrap();
            sent
        }
    });
    assert!(path.join("events-0").join("clean-shutdown").exists());
    // Clean restart: the marker lets recovery skip the scan; data is intact.
    let expected_clone = expected.clone();
    run_local({
        let path = path.clone();
        move || async move {
            let storage = open(&path, &tp(), small_segments(16 * 1024)).await;
            let all = read_all(&storage, &tp()).await;
            assert_eq!(all.into_iter().map(|(_, _, b)| b).collect::<Vec<_>>(), expected_clone);
            // Append more, then drop without close: an unclean stop.
            storage.append(&tp(), batch(2, 50, 999, 9_000)).await.unwrap();
            std::mem::forget(storage);
        }
    });
    assert!(!path.join("events-0").join("clean-shutdown").exists(), "marker removed while open");
    run_local(move || async move {
        let storage = open(&path, &tp(), small_segments(16 * 1024)).await;
        let all = read_all(&storage, &tp()).await;
        assert_eq!(all.len(), expected.len() + 1);
        assert_eq!(all[..expected.len()].iter().map(|(_, _, b)| b.clone()).collect::<Vec<_>>(), expected);
        // Disk reads (cold, after restart) and offsets continue.
        let next = storage.append(&tp(), batch(1, 10, 1000, 9_500)).await.unwrap();
        assert_eq!(next.base_offset, all.last().unwrap().1.next(1));
        storage.close().await.unwrap();
    });
}

#[test]
fn retention_by_bytes_and_time_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let config = LogConfig { segment_bytes: 8192, retention_bytes: 20_000, ..LogConfig::default() };
        let storage = open(&path, &tp(), config).await;
        let now = ringstream_core::clock::now_ms();
        for i in 0..40u64 {
            storage.append(&tp(), batch(2, 1000, i, now)).await.unwrap();
        }
        let before = storage.offsets(&tp()).unwrap();
        let deleted = storage.enforce_retention(now).await.unwrap();
        let after = storage.offsets(&tp()).unwrap();
        assert!(deleted > 0);
        assert_eq!(after.segments, before.segments - deleted);
        assert!(after.size_bytes >= 20_000 - 8192 && after.size_bytes < 20_000 + 8192, "{after:?}");
        assert!(after.log_start_offset > Offset(0));
        assert_eq!(after.high_watermark, before.high_watermark);
        assert!(matches!(storage.read(&tp(), Offset(0), 1024).await, Err(StorageError::OffsetOutOfRange { .. })));
        let remaining = read_all(&storage, &tp()).await;
        assert_eq!(remaining.first().unwrap().0, after.log_start_offset);

        // Time: everything but the active segment is older than retention.ms.
        let tp_time = TopicPartition::new("old", 0);
        let config = LogConfig { segment_bytes: 8192, retention_ms: 60_000, ..LogConfig::default() };
        storage.open_partition(tp_time.clone(), config).await.unwrap();
        for i in 0..20u64 {
            storage.append(&tp_time, batch(2, 1000, i, now - 3_600_000)).await.unwrap();
        }
        let before = storage.offsets(&tp_time).unwrap();
        assert!(before.segments > 1);
        storage.enforce_retention(now).await.unwrap();
        let after = storage.offsets(&tp_time).unwrap();
        assert_eq!(after.segments, 1, "only the active segment is kept");
        assert!(after.log_start_offset > Offset(0));
        assert_eq!(after.high_watermark, before.high_watermark);
        let remaining = read_all(&storage, &tp_time).await;
        assert_eq!(remaining.first().unwrap().0, after.log_start_offset);
        assert_eq!(remaining.last().unwrap().1.next(1), after.high_watermark);
        storage.close().await.unwrap();
    });
}

#[test]
fn reads_by_timestamp_use_the_time_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let storage = open(&path, &tp(), small_segments(8192)).await;
        // Batch i has 4 records at timestamps 10_000 + 100 i + (0..4).
        for i in 0..60i64 {
            storage.append(&tp(), batch(4, 200, i as u64, 10_000 + 100 * i)).await.unwrap();
        }
        assert_eq!(storage.offset_for_timestamp(&tp(), 0).await.unwrap(), Some((Offset(0), 10_000)));
        // Record timestamps inside batch 7: 10_700..10_703 at offsets 28..31.
        assert_eq!(storage.offset_for_timestamp(&tp(), 10_702).await.unwrap(), Some((Offset(30), 10_702)));
        // Between batches: the next batch's first record.
        assert_eq!(storage.offset_for_timestamp(&tp(), 10_750).await.unwrap(), Some((Offset(32), 10_800)));
        assert_eq!(storage.offset_for_timestamp(&tp(), 99_999).await.unwrap(), None);
        let (offset, ts) = storage.max_timestamp(&tp()).await.unwrap().unwrap();
        assert_eq!(ts, 10_000 + 100 * 59 + 3);
        assert_eq!(offset, Offset(59 * 4 + 3));
        storage.close().await.unwrap();
    });
}

#[test]
fn invalid_batches_never_enter_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let storage = open(&path, &tp(), LogConfig { max_message_bytes: 4096, ..LogConfig::default() }).await;
        let good = batch(3, 20, 1, 0);
        let mut bad_crc = good.to_vec();
        *bad_crc.last_mut().unwrap() ^= 1;
        let mut bad_magic = good.to_vec();
        bad_magic[16] = 1;
        let mut bad_length = good.to_vec();
        bad_length[8..12].copy_from_slice(&40i32.to_be_bytes());
        let cases: Vec<(Vec<u8>, i16)> = vec![
            (bad_crc, ringstream_core::error_code::CORRUPT_MESSAGE),
            (bad_magic, ringstream_core::error_code::CORRUPT_MESSAGE),
            (bad_length, ringstream_core::error_code::CORRUPT_MESSAGE),
            (good[..good.len() - 1].to_vec(), ringstream_core::error_code::CORRUPT_MESSAGE),
            (batch(1, 5000, 2, 0).to_vec(), ringstream_core::error_code::MESSAGE_TOO_LARGE),
        ];
        for (bytes, kafka_error) in cases {
            let error = storage.append(&tp(), Bytes::from(bytes)).await.unwrap_err();
            assert_eq!(error.kafka_error_code(), kafka_error, "{error}");
        }
        // A record count that disagrees with the records (CRC re-signed).
        let mut bad_count = good.to_vec();
        bad_count[57..61].copy_from_slice(&2i32.to_be_bytes());
        bad_count[23..27].copy_from_slice(&1i32.to_be_bytes());
        ringstream_core::batch::write_crc(&mut bad_count);
        let error = storage.append(&tp(), Bytes::from(bad_count)).await.unwrap_err();
        assert_eq!(error.kafka_error_code(), ringstream_core::error_code::INVALID_RECORD, "{error}");
        let offsets = storage.offsets(&tp()).unwrap();
        assert_eq!(offsets.high_watermark, Offset(0));
        assert_eq!(offsets.size_bytes, 0);
        assert_eq!(storage.append(&tp(), good).await.unwrap().base_offset, Offset(0));
        storage.close().await.unwrap();
    });
}

#[test]
fn enospc_fails_the_append_leaves_nothing_visible_and_reads_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (kept, last_good): (Vec<Vec<u8>>, Offset) = run_local({
        let path = path.clone();
        move || async move {
            let storage = open(&path, &tp(), LogConfig::default()).await;
            let mut kept = Vec::new();
            for i in 0..5u64 {
                let b = batch(2, 3000, i, 0);
                let info = storage.append(&tp(), b.clone()).await.unwrap();
                kept.push(stamped(&b, info.base_offset, 0));
            }
            let before = storage.offsets(&tp()).unwrap();
            storage.faults().arm_write_enospc(1);
            // Several appends in one round: all fail, none becomes visible.
            let tickets = futures_lite_join(&storage, 4).await;
            for result in tickets {
                let error = result.unwrap_err();
                assert!(matches!(error, StorageError::NoSpace { .. } | StorageError::AppendAborted(_)), "{error}");
            }
            assert_eq!(storage.offsets(&tp()).unwrap(), before, "no partial batch visible");
            // Reads keep working, and the next append reuses the offsets.
            assert_eq!(read_all(&storage, &tp()).await.into_iter().map(|(_, _, b)| b).collect::<Vec<_>>(), kept);
            let b = batch(1, 10, 77, 0);
            let info = storage.append(&tp(), b.clone()).await.unwrap();
            assert_eq!(info.base_offset, before.high_watermark);
            kept.push(stamped(&b, info.base_offset, 0));
            std::mem::forget(storage); // crash: recovery must not resurrect the torn write
            (kept, info.base_offset)
        }
    });
    run_local(move || async move {
        let storage = open(&path, &tp(), LogConfig::default()).await;
        let all = read_all(&storage, &tp()).await;
        assert_eq!(all.last().unwrap().0, last_good);
        assert_eq!(all.into_iter().map(|(_, _, b)| b).collect::<Vec<_>>(), kept);
        storage.close().await.unwrap();
    });
}

/// Submits `n` appends before awaiting any, so they share a commit round.
async fn futures_lite_join(
    storage: &ShardStorage,
    n: u64,
) -> Vec<Result<ringstream_storage::log::AppendInfo, StorageError>> {
    let mut tickets = Vec::new();
    for i in 0..n {
        tickets.push(storage.submit(&tp(), batch(2, 3000, 100 + i, 0)).await.unwrap());
    }
    let mut results = Vec::new();
    for ticket in tickets {
        results.push(ticket.wait().await);
    }
    results
}

#[test]
fn close_drains_queued_appends_before_closing_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let acked = run_local({
        let path = path.clone();
        move || async move {
            let storage = open(&path, &tp(), LogConfig::default()).await;
            let mut tickets = Vec::new();
            for i in 0..200u64 {
                tickets.push(storage.submit(&tp(), batch(2, 400, i, 0)).await.unwrap());
            }
            // Close while appends are still queued: they drain first.
            storage.close().await.unwrap();
            assert!(matches!(storage.submit(&tp(), batch(1, 1, 1, 0)).await, Err(StorageError::ShuttingDown)));
            let mut last = Offset(-1);
            for ticket in tickets {
                let info = ticket.wait().await.expect("queued append acknowledged during close");
                assert_eq!(info.base_offset, last.next(1));
                last = info.last_offset;
            }
            last
        }
    });
    run_local(move || async move {
        let storage = open(&path, &tp(), LogConfig::default()).await;
        assert_eq!(storage.offsets(&tp()).unwrap().high_watermark, acked.next(1));
        storage.close().await.unwrap();
    });
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let storage = open(&path, &tp(), LogConfig { segment_ms: 1, ..LogConfig::default() }).await;
        for i in 0..4u64 {
            storage.append(&tp(), batch(1, 10, i, 0)).await.unwrap();
            // The wall clock moves past segment.ms between appends.
            glommio::timer::sleep(std::time::Duration::from_millis(3)).await;
        }
        assert_eq!(storage.offsets(&tp()).unwrap().segments, 4, "each append after segment.ms starts a segment");
        storage.close().await.unwrap();
    });
}

#[test]
fn interval_flush_acknowledges_after_the_write_and_syncs_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let sent = run_local({
        let path = path.clone();
        move || async move {
            let mut config = config(&path);
            config.flush = ringstream_storage::log::FlushPolicy::Interval { interval_ms: 5 };
            let storage = ShardStorage::open(ringstream_core::types::ShardId(0), config).await.unwrap();
            storage.open_partition(tp(), LogConfig::default()).await.unwrap();
            let mut sent = Vec::new();
            for i in 0..20u64 {
                let b = batch(3, 100, i, 0);
                let info = storage.append(&tp(), b.clone()).await.unwrap();
                sent.push(stamped(&b, info.base_offset, 0));
            }
            let stats = storage.commit_stats();
            assert_eq!(stats.fdatasyncs, 0, "no fdatasync on the acknowledgement path");
            assert!(stats.writes >= 1);
            std::mem::forget(storage); // kill -9: written data is in the kernel, not the process
            sent
        }
    });
    run_local(move || async move {
        let storage = open(&path, &tp(), LogConfig::default()).await;
        assert_eq!(read_all(&storage, &tp()).await.into_iter().map(|(_, _, b)| b).collect::<Vec<_>>(), sent);
        storage.close().await.unwrap();
    });
}

fn idempotent(producer_id: i64, epoch: i16, sequence: i32, records: u32) -> Bytes {
    let mut builder = ringstream_core::batch::BatchBuilder::new(1_000);
    builder.producer(producer_id, epoch, sequence);
    let value = [7u8; 20];
    for _ in 0..records {
        builder.push(&ringstream_core::batch::Record {
            key: None,
            value: Some(&value),
            headers: &[],
            timestamp_delta: 0,
        });
    }
    Bytes::from(builder.build())
}

#[test]
fn idempotent_producers_are_deduplicated_across_restarts_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    // Small segments: the producer's batches span a roll (snapshot at seal).
    let config = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
    run_local({
        let (path, config) = (path.clone(), config.clone());
        move || async move {
            let storage = open(&path, &tp(), config).await;
            let mut sequence = 0;
            for _ in 0..40 {
                storage.append(&tp(), idempotent(9, 0, sequence, 3)).await.unwrap();
                sequence += 3;
            }
            // A resend of the last batch is acknowledged with its original offsets.
            let again = storage.append(&tp(), idempotent(9, 0, sequence - 3, 3)).await.unwrap();
            assert_eq!(again.base_offset, Offset(117));
            assert_eq!(storage.offsets(&tp()).unwrap().high_watermark, Offset(120), "not appended twice");
            // A gap, an old epoch: rejected with Kafka's errors.
            let gap = storage.append(&tp(), idempotent(9, 0, sequence + 1, 1)).await.unwrap_err();
            assert_eq!(gap.kafka_error_code(), ringstream_core::error_code::OUT_OF_ORDER_SEQUENCE_NUMBER, "{gap}");
            storage.append(&tp(), idempotent(9, 1, 0, 1)).await.unwrap();
            let fenced = storage.append(&tp(), idempotent(9, 0, sequence, 1)).await.unwrap_err();
            assert_eq!(fenced.kafka_error_code(), ringstream_core::error_code::INVALID_PRODUCER_EPOCH, "{fenced}");
            // A failed write rolls the producer back: the same batch may be resent.
            storage.faults().arm_write_enospc(1);
            assert!(storage.append(&tp(), idempotent(9, 1, 1, 2)).await.is_err());
            let retried = storage.append(&tp(), idempotent(9, 1, 1, 2)).await.unwrap();
            assert_eq!(retried.base_offset, Offset(121));
            std::mem::forget(storage); // unclean stop: snapshot at the last seal + tail scan
        }
    });
    run_local({
        let (path, config) = (path.clone(), config.clone());
        move || async move {
            let storage = open(&path, &tp(), config).await;
            let again = storage.append(&tp(), idempotent(9, 1, 1, 2)).await.unwrap();
            assert_eq!(again.base_offset, Offset(121), "duplicate recognised after an unclean restart");
            let next = storage.append(&tp(), idempotent(9, 1, 3, 1)).await.unwrap();
            assert_eq!(next.base_offset, Offset(123));
            storage.close().await.unwrap();
        }
    });
    run_local(move || async move {
        let storage = open(&path, &tp(), config).await;
        let again = storage.append(&tp(), idempotent(9, 1, 3, 1)).await.unwrap();
        assert_eq!(again.base_offset, Offset(123), "duplicate recognised after a clean restart");
        assert_eq!(storage.offsets(&tp()).unwrap().high_watermark, Offset(124));
        storage.close().await.unwrap();
    });
}

#[test]
fn log_append_time_topics_get_the_broker_time_and_a_valid_crc() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let storage = open(&path, &tp(), LogConfig { log_append_time: true, ..LogConfig::default() }).await;
        let before = ringstream_core::clock::now_ms();
        let info = storage.append(&tp(), batch(3, 10, 1, 5)).await.unwrap();
        let after = ringstream_core::clock::now_ms();
        assert!((before..=after).contains(&info.log_append_time_ms), "{info:?}");
        let stored = read_all(&storage, &tp()).await; // validates the CRC
        let header = ringstream_core::batch::BatchHeader::ref_from_prefix(&stored[0].2).unwrap();
        assert!(header.timestamp_type_log_append());
        assert_eq!(header.max_timestamp(), info.log_append_time_ms);
        assert_eq!(storage.max_timestamp(&tp()).await.unwrap(), Some((Offset(2), info.log_append_time_ms)));
        storage.close().await.unwrap();
    });
}

/// Every file under `dir`, recursively.
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The open(2) flags of this process's open segment files under `dir`
/// (other tests of this binary run alongside, with their own directories).
fn segment_open_flags(dir: &std::path::Path) -> Vec<i32> {
    let mut flags = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        if !target.starts_with(dir) || target.extension().map_or(true, |e| e != "log") {
            continue;
        }
        let fd = entry.file_name().to_string_lossy().into_owned();
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else { continue };
        let octal = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim().to_owned();
        flags.push(i32::from_str_radix(&octal, 8).unwrap());
    }
    flags
}

/// Acknowledged means durable: under flush=always no append is
/// acknowledged before a durable write covers it, and the counts agree: one
/// durable completion per segment write, every acknowledged batch covered.
#[test]
fn flush_always_acknowledges_only_after_the_durable_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let storage = ShardStorage::open(ringstream_core::types::ShardId(0), config(&path)).await.unwrap();
        let partitions: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("events", p)).collect();
        for tp in &partitions {
            storage.open_partition(tp.clone(), LogConfig::default()).await.unwrap();
        }
        // Every segment file is O_DSYNC: its writes are the fdatasync.
        let flags = segment_open_flags(&path);
        assert_eq!(flags.len(), partitions.len(), "one open segment per partition");
        assert!(flags.iter().all(|f| f & libc::O_DSYNC == libc::O_DSYNC), "segments are O_DSYNC: {flags:?}");

        // Hold every write between its completion and the acknowledgement:
        // nothing may be acknowledged while the writes are held.
        storage.faults().hold_writes();
        let appends: u64 = 60;
        let acked = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let mut tasks = Vec::new();
        for i in 0..appends {
            let (storage, tp, acked) = (storage.clone(), partitions[(i % 3) as usize].clone(), acked.clone());
            tasks.push(glommio::spawn_local(async move {
                let info = storage.append(&tp, batch(2, 50, i, 0)).await.unwrap();
                acked.set(acked.get() + 1);
                info
            }));
        }
        // Wait (bounded) until the held writes have reached the segments.
        let segment_bytes = || -> u64 {
            walk_files(&path)
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while segment_bytes() == 0 {
            assert!(std::time::Instant::now() < deadline, "the writes never reached the segments");
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Give the round every chance to acknowledge, were it to do so early.
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(acked.get(), 0, "an append was acknowledged while its write was held");
        assert_eq!(storage.commit_stats().acked_batches, 0);
        storage.faults().release_writes();
        for task in tasks {
            task.await;
        }
        assert_eq!(acked.get(), appends);

        let stats = storage.commit_stats();
        assert_eq!(stats.batches, appends);
        assert_eq!(stats.acked_batches, appends);
        assert_eq!(stats.fdatasyncs, stats.writes, "every segment write under flush=always is durable");
        assert_eq!(stats.synced_batches, appends, "every acknowledged batch was covered by a durable write");
        storage.close().await.unwrap();
    });

    // flush=interval acknowledges after the write: its segments are not O_DSYNC.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let mut config = config(&path);
        config.flush = ringstream_storage::log::FlushPolicy::Interval { interval_ms: 1000 };
        let storage = ShardStorage::open(ringstream_core::types::ShardId(0), config).await.unwrap();
        storage.open_partition(tp(), LogConfig::default()).await.unwrap();
        let flags = segment_open_flags(&path);
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0] & libc::O_DSYNC, 0, "interval segments are not O_DSYNC");
        storage.append(&tp(), batch(1, 10, 0, 0)).await.unwrap();
        assert_eq!(storage.commit_stats().synced_batches, 0);
        storage.close().await.unwrap();
    });
}
