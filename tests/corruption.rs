#![allow(non_upper_case_globals)]
//! Corruption: damage a tail segment after an unclean stop, restart, and
//! assert exactly where recovery truncated the log.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use common::*;
use ringstream_core::types::{Offset, TopicPartition};
use ringstream_storage::log::LogConfig;

fn tp() -> TopicPartition {
    TopicPartition::new("damaged", 0)
}

/// Writes `count` batches of 3 records, stops uncleanly, and returns the
/// stamped batches plus the tail segment path.
fn prepare(dir: &Path, count: u64) -> (Vec<Vec<u8>>, PathBuf) {
    let path = dir.to_path_buf();
    let batches = run_local(move || async move {
        let storage = open(&path, &tp(), LogConfig::default()).await;
        let mut sent = Vec::new();
        for i in 0..count {
            let b = batch(3, 100 + 37 * i as usize, i, 1_000);
            let info = storage.append(&tp(), b.clone()).await.unwrap();
            sent.push(stamped(&b, info.base_offset, 0));
        }
        std::mem::forget(storage);
        sent
    });
    (batches, dir.join("damaged-0").join("00000000000000000000.log"))
}

/// Restarts, returns what the log holds and the segment's size on disk.
fn recover(dir: &Path, segment: &Path) -> (Vec<Vec<u8>>, u64) {
    let path = dir.to_path_buf();
    let batches = run_local(move || async move {
        let storage = open(&path, &tp(), LogConfig::default()).await;
        let all = read_all(&storage, &tp()).await;
        // The log accepts appends right after the cut.
        let next = storage.append(&tp(), batch(1, 1, 9, 0)).await.unwrap();
        assert_eq!(next.base_offset, all.last().map_or(Offset(0), |(_, last, _)| last.next(1)));
        std::mem::forget(storage);
        all.into_iter().map(|(_, _, b)| b).collect()
    });
    let len = std::fs::metadata(segment).unwrap().len();
    (batches, len)
}

fn offsets_of(batches: &[Vec<u8>]) -> Vec<usize> {
    batches
        .iter()
        .scan(0, |position, b| {
            let start = *position;
            *position += b.len();
            Some(start)
        })
        .collect()
}

#[test]
fn zero_padding_after_the_last_batch_is_trimmed_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (sent, segment) = prepare(dir.path(), 10);
    let logical: usize = sent.iter().map(Vec::len).sum();
    // A partial O_DIRECT block leaves zeros behind the data; add even more.
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[0u8; 8192]).unwrap();
    drop(file);
    let (kept, _) = recover(dir.path(), &segment);
    assert_eq!(kept, sent);
    assert!(std::fs::metadata(&segment).unwrap().len() >= logical as u64);
}

#[test]
fn a_torn_last_batch_is_cut_and_everything_before_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (sent, segment) = prepare(dir.path(), 10);
    let starts = offsets_of(&sent);
    let logical: u64 = sent.iter().map(|b| b.len() as u64).sum();
    // Tear the last batch in half.
    let torn_at = starts[9] as u64 + sent[9].len() as u64 / 2;
    OpenOptions::new().write(true).open(&segment).unwrap().set_len(torn_at).unwrap();
    let (kept, _) = recover(dir.path(), &segment);
    assert_eq!(kept, sent[..9].to_vec());
    assert!(torn_at < logical);
}

#[test]
fn a_flipped_bit_cuts_the_log_at_the_damaged_batch() {
    for damaged in [0usize, 4, 9] {
        let dir = tempfile::tempdir().unwrap();
        let (sent, segment) = prepare(dir.path(), 10);
        let starts = offsets_of(&sent);
        let mut file = OpenOptions::new().read(true).write(true).open(&segment).unwrap();
        let position = starts[damaged] as u64 + 70; // inside the records, CRC-covered
        file.seek(SeekFrom::Start(position)).unwrap();
        let mut byte = [0u8];
        std::io::Read::read_exact(&mut file, &mut byte).unwrap();
        file.seek(SeekFrom::Start(position)).unwrap();
        file.write_all(&[byte[0] ^ 0x10]).unwrap();
        drop(file);
        let (kept, _) = recover(dir.path(), &segment);
        assert_eq!(kept, sent[..damaged].to_vec(), "damage in batch {damaged}");
    }
}

#[test]
fn garbage_and_out_of_sequence_batches_after_the_end_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (sent, segment) = prepare(dir.path(), 6);
    let logical: usize = sent.iter().map(Vec::len).sum();
    let mut file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.seek(SeekFrom::Start(logical as u64)).unwrap();
    // A valid batch whose base offset skips ahead: breaks continuity.
    file.write_all(&stamped(&batch(2, 10, 1, 0), Offset(1000), 0)).unwrap();
    file.write_all(b"definitely not a record batch, just noise......................").unwrap();
    drop(file);
    let (kept, _) = recover(dir.path(), &segment);
    assert_eq!(kept, sent);
}

#[test]
fn a_clean_marker_that_no_longer_matches_the_file_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let sent = run_local({
        let path = path.clone();
        move || async move {
            let storage = open(&path, &tp(), LogConfig::default()).await;
            let mut sent = Vec::new();
            for i in 0..5u64 {
                let b = batch(2, 500, i, 0);
                let info = storage.append(&tp(), b.clone()).await.unwrap();
                sent.push(stamped(&b, info.base_offset, 0));
            }
            storage.close().await.unwrap();
            sent
        }
    });
    let segment = path.join("damaged-0").join("00000000000000000000.log");
    let len = std::fs::metadata(&segment).unwrap().len();
    let last_len = sent.last().unwrap().len() as u64;
    OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - last_len / 2).unwrap();
    let (kept, _) = recover(&path, &segment);
    assert_eq!(kept, sent[..4].to_vec());
}

#[test]
fn missing_or_damaged_indexes_of_sealed_segments_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let config = LogConfig { segment_bytes: 16 * 1024, index_interval_bytes: 1024, ..LogConfig::default() };
    let sent = run_local({
        let (path, config) = (path.clone(), config.clone());
        move || async move {
            let storage = open(&path, &tp(), config).await;
            let mut sent = Vec::new();
            for i in 0..40u64 {
                let b = batch(2, 700, i, 1_000 + i as i64);
                let info = storage.append(&tp(), b.clone()).await.unwrap();
                sent.push(stamped(&b, info.base_offset, 0));
            }
            storage.close().await.unwrap();
            sent
        }
    });
    let partition_dir = path.join("damaged-0");
    let first_index = partition_dir.join("00000000000000000000.index");
    let first_time_index = partition_dir.join("00000000000000000000.timeindex");
    let original = std::fs::read(&first_index).unwrap();
    let original_time = std::fs::read(&first_time_index).unwrap();
    assert!(original.len() >= 8, "the sealed segment has index entries");
    std::fs::write(&first_index, b"7 bytes").unwrap(); // not a whole entry
    std::fs::remove_file(&first_time_index).unwrap();
    run_local({
        let path = path.clone();
        move || async move {
            let storage = open(&path, &tp(), config).await;
            assert_eq!(read_all(&storage, &tp()).await.into_iter().map(|(_, _, b)| b).collect::<Vec<_>>(), sent);
            storage.close().await.unwrap();
        }
    });
    assert_eq!(std::fs::read(&first_index).unwrap(), original, "rebuilt index equals the original");
    assert_eq!(std::fs::read(&first_time_index).unwrap(), original_time);
}
