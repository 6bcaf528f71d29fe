#![allow(non_upper_case_globals)]
//! Crash test: a child process appends durably (flush=always) and prints each
//! acknowledged batch. It is SIGKILLed at random moments and restarted, over
//! and over. Every acknowledged batch must read back intact, with contiguous
//! offsets. RINGSTREAM_CRASH_SEED=<n> replays one schedule.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ringstream_core::batch::BatchHeader;
use ringstream_core::types::{Offset, ShardId, TopicPartition};
use ringstream_storage::log::LogConfig;
use ringstream_storage::shard_storage::ShardStorage;

const partitions: i32 = 3;
const kills: usize = 6;
const records_per_batch: u32 = 5;

#[test]
fn acknowledged_appends_survive_sigkill() {
    let seed: u64 =
        std::env::var("RINGSTREAM_CRASH_SEED").map(|s| s.parse().expect("numeric seed")).unwrap_or_else(|_| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
    eprintln!("crash test seed {seed} (replay with RINGSTREAM_CRASH_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    let shards = ringstream_tuning::allowed_cpus().unwrap().len().min(2);
    // (partition, base) -> last, for every acknowledgement seen.
    let mut acked: BTreeMap<(i32, i64), i64> = BTreeMap::new();
    for round in 0..=kills {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringstream"))
            .args(["debug", "append", "--topic", "crash"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--shards", &shards.to_string(), "--partitions", &partitions.to_string()])
            .args(["--count", "1000000", "--in-flight", "32", "--value-bytes", "300"])
            .args(["--records-per-batch", &records_per_batch.to_string()])
            .args(["--set", "log.segment.bytes=262144"])
            .env("RINGSTREAM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ringstream");
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let it start and append for a random while, then kill -9.
        let run_for = Duration::from_millis(rng.gen_range(150..900));
        let started = Instant::now();
        let mut seen_in_round = 0usize;
        while started.elapsed() < run_for + Duration::from_secs(20) {
            match lines_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => {
                    record_ack(&line, &mut acked);
                    seen_in_round += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("child exited early: {:?}", child.wait()),
            }
            if seen_in_round > 0 && started.elapsed() >= run_for {
                break;
            }
        }
        assert!(seen_in_round > 0, "round {round}: no acknowledgement within 20 s");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
        let status = child.wait().unwrap();
        assert!(!status.success());
        // Acks printed before the kill still count.
        for line in lines_rx.iter() {
            record_ack(&line, &mut acked);
        }
        reader.join().unwrap();
    }
    assert!(acked.len() > kills, "too few acknowledgements to mean anything: {}", acked.len());

    let path = data_dir.clone();
    let acked_for_check = acked.clone();
    run_local(move || async move {
        let storage = ShardStorage::open(ShardId(0), config(&path)).await.unwrap();
        for p in 0..partitions {
            let tp = TopicPartition::new("crash", p);
            storage
                .open_partition(tp.clone(), LogConfig { segment_bytes: 262_144, ..LogConfig::default() })
                .await
                .unwrap();
            // read_all asserts contiguous offsets and a valid CRC per batch.
            let batches = read_all(&storage, &tp).await;
            let stored: BTreeMap<i64, i64> = batches.iter().map(|(b, l, _)| (b.0, l.0)).collect();
            assert_eq!(batches.first().map(|b| b.0), Some(Offset(0)));
            for (&(partition, base), &last) in acked_for_check.range((p, i64::MIN)..(p + 1, i64::MIN)) {
                assert_eq!(partition, p);
                assert_eq!(stored.get(&base), Some(&last), "acknowledged batch {p}@{base}..={last} lost");
            }
            for (_, _, bytes) in &batches {
                assert_eq!(BatchHeader::ref_from_prefix(bytes).unwrap().records_count(), records_per_batch as i32);
            }
        }
        storage.close().await.unwrap();
    });
    eprintln!("crash test: {} acknowledged batches over {} kills all recovered", acked.len(), kills + 1);
}

fn record_ack(line: &str, acked: &mut BTreeMap<(i32, i64), i64>) {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() == 4 && fields[0] == "ack" {
        let p: i32 = fields[1].parse().unwrap();
        let base: i64 = fields[2].parse().unwrap();
        let last: i64 = fields[3].parse().unwrap();
        assert_eq!(last - base + 1, i64::from(records_per_batch));
        if let Some(previous) = acked.insert((p, base), last) {
            assert_eq!(previous, last, "offset {base} of partition {p} acknowledged twice with different extents");
        }
    }
}
