#![allow(non_upper_case_globals)]
//! Op-fuzzer: random sequences of append, roll, retention, restart (clean or
//! crash) and read, checked against a simple in-memory model of the log.
//! Each seed is a replayable case: RINGSTREAM_MODEL_SEED=<n> runs just one.

mod common;

use std::collections::BTreeMap;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ringstream_core::batch::BatchHeader;
use ringstream_core::types::{Offset, TopicPartition};
use ringstream_storage::log::LogConfig;
use ringstream_storage::shard_storage::ShardStorage;
use ringstream_storage::StorageError;

const partitions: i32 = 3;
const ops_per_seed: usize = 160;

/// The model: per partition, every acknowledged batch by base offset, and the
/// log start offset.
#[derive(Default)]
struct Model {
    batches: BTreeMap<Offset, (Offset, Vec<u8>)>,
    log_start: Offset,
    next: Offset,
}

fn log_config(rng: &mut SmallRng) -> LogConfig {
    LogConfig { segment_bytes: [4096u64, 8192, 32768][rng.gen_range(0..3)], ..LogConfig::default() }
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("model", p)
}

async fn open_all(path: &std::path::Path, config: &LogConfig) -> ShardStorage {
    let storage = ShardStorage::open(ringstream_core::types::ShardId(0), common::config(path)).await.unwrap();
    for p in 0..partitions {
        storage.open_partition(tp(p), config.clone()).await.unwrap();
    }
    storage
}

fn run_seed(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let mut rng = SmallRng::seed_from_u64(seed);
        let config = log_config(&mut rng);
        let mut models: Vec<Model> = (0..partitions).map(|_| Model::default()).collect();
        let mut storage = open_all(&path, &config).await;
        for step in 0..ops_per_seed {
            let p = rng.gen_range(0..partitions);
            let model = &mut models[p as usize];
            match rng.gen_range(0..100) {
                0..=54 => {
                    // A burst of appends submitted together (one commit round).
                    let burst = rng.gen_range(1..=4);
                    let mut tickets = Vec::new();
                    for _ in 0..burst {
                        let records = rng.gen_range(1..=5);
                        let value = rng.gen_range(0..1500);
                        let b = batch(records, value, rng.gen(), ringstream_core::clock::now_ms() + step as i64);
                        tickets.push((b.clone(), storage.submit(&tp(p), b).await.unwrap()));
                    }
                    for (b, ticket) in tickets {
                        let info = ticket.wait().await.unwrap();
                        assert_eq!(info.base_offset, model.next, "seed {seed} step {step}");
                        model.next = info.last_offset.next(1);
                        model.batches.insert(info.base_offset, (info.last_offset, stamped(&b, info.base_offset, 0)));
                    }
                }
                55..=62 => storage.roll(&tp(p)).await.unwrap(),
                63..=69 => {
                    let mut c = config.clone();
                    c.retention_bytes = rng.gen_range(0..40_000);
                    storage.set_log_config(&tp(p), c).unwrap();
                    storage.enforce_retention(ringstream_core::clock::now_ms()).await.unwrap();
                    storage.set_log_config(&tp(p), config.clone()).unwrap();
                    for (q, model) in models.iter_mut().enumerate() {
                        let start = storage.offsets(&tp(q as i32)).unwrap().log_start_offset;
                        assert!(
                            q as i32 == p || start == model.log_start,
                            "seed {seed}: retention touched partition {q}"
                        );
                        assert!(start >= model.log_start, "seed {seed}: log start went backwards");
                        assert!(
                            start == model.next || model.batches.contains_key(&start),
                            "seed {seed}: start {start} not a batch boundary"
                        );
                        model.batches = model.batches.split_off(&start);
                        model.log_start = start;
                    }
                }
                70..=77 => {
                    if rng.gen_bool(0.5) {
                        storage.close().await.unwrap();
                    } else {
                        std::mem::forget(storage); // crash: nothing flushed beyond acks
                    }
                    storage = open_all(&path, &config).await;
                }
                _ => {
                    // Read from a random offset in range, with a random limit.
                    let hw = storage.offsets(&tp(p)).unwrap().high_watermark;
                    assert_eq!(hw, model.next, "seed {seed} step {step}");
                    let offset = Offset(rng.gen_range(model.log_start.0..=hw.0));
                    let max_bytes = rng.gen_range(1..20_000);
                    let read = storage.read(&tp(p), offset, max_bytes).await.unwrap();
                    let expected: Vec<&Vec<u8>> = model
                        .batches
                        .range(..=offset)
                        .next_back()
                        .filter(|(_, (last, _))| *last >= offset)
                        .map(|(base, _)| *base)
                        .into_iter()
                        .chain(model.batches.range(offset..).map(|(b, _)| *b))
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .map(|base| &model.batches[&base].1)
                        .collect();
                    let got: Vec<&[u8]> = read.batches.iter().map(|b| &b[..]).collect();
                    assert!(got.len() <= expected.len());
                    for (g, e) in got.iter().zip(&expected) {
                        assert_eq!(*g, &e[..], "seed {seed} step {step}: read mismatch");
                    }
                    if offset < hw {
                        assert!(!got.is_empty(), "seed {seed}: empty read below hw");
                        let bytes: usize = got.iter().map(|b| b.len()).sum();
                        assert!(got.len() == 1 || bytes <= max_bytes, "seed {seed}: read exceeded max_bytes");
                        if got.len() < expected.len() {
                            assert!(bytes + expected[got.len()].len() > max_bytes, "seed {seed}: read stopped early");
                        }
                    }
                    for b in &got {
                        assert!(BatchHeader::ref_from_prefix(b).is_some());
                    }
                }
            }
        }
        // Final full check after one more crash-restart.
        std::mem::forget(storage);
        let storage = open_all(&path, &config).await;
        for p in 0..partitions {
            let model = &models[p as usize];
            let all = read_all(&storage, &tp(p)).await;
            let expected: Vec<Vec<u8>> = model.batches.values().map(|(_, b)| b.clone()).collect();
            assert_eq!(all.into_iter().map(|(_, _, b)| b).collect::<Vec<_>>(), expected, "seed {seed} partition {p}");
            if model.log_start > Offset(0) {
                let below = storage.read(&tp(p), Offset(model.log_start.0 - 1), 100).await;
                assert!(matches!(below, Err(StorageError::OffsetOutOfRange { .. })));
            }
        }
        storage.close().await.unwrap();
    });
}

#[test]
fn random_operations_match_the_model() {
    if let Ok(seed) = std::env::var("RINGSTREAM_MODEL_SEED") {
        run_seed(seed.parse().expect("RINGSTREAM_MODEL_SEED is a number"));
        return;
    }
    for seed in 1..=6 {
        run_seed(seed);
    }
}
