#![allow(non_upper_case_globals)]
//! Crash test at protocol level: an idempotent, acks=all producer (the
//! bundled client, speaking Kafka) runs while the broker is SIGKILLed at
//! random moments and restarted on the same port. The producer resends an
//! unacknowledged batch with its original sequence after reconnecting, as a
//! Kafka idempotent producer does. In the end every acknowledged record is
//! consumable, every record appears once (no duplicates from resends), and
//! offsets have no gaps. RINGSTREAM_CRASH_SEED=<n> replays one schedule.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ringstream_client::Client;
use ringstream_core::batch::{records, BatchBuilder, Record};

const topic: &str = "crashy";
const kills: usize = 5;
const records_per_batch: u32 = 20;

struct Broker {
    child: Child,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &std::path::Path, port: u16) -> Broker {
    for _ in 0..50 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringstream"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--set", "num.partitions=2"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RINGSTREAM_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        if line.starts_with("ready") {
            return Broker { child };
        }
        // The port may still be held by the killed process's sockets.
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("broker did not start on port {port}");
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// Produces until `stop`, recording (id -> (partition, offset)) of every
/// acknowledged record. Returns when stopped.
fn produce(address: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<BTreeMap<u64, (i32, i64)>>>) {
    let mut next_id = 0u64;
    let mut sequences = [0i32; 2];
    let mut identity: Option<(i64, i16)> = None;
    let mut client: Option<Client> = None;
    let mut pending: Option<(i32, u64, Bytes)> = None; // partition, first id, batch
    while !stop.load(Ordering::SeqCst) {
        let Some(c) = client.as_mut() else {
            client = Client::connect(&address, Duration::from_millis(500)).ok();
            if client.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        };
        let (producer_id, epoch) = match identity {
            Some(identity) => identity,
            None => {
                let request =
                    InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000);
                match c.call::<_, InitProducerIdResponse>(ApiKey::InitProducerId, 4, &request) {
                    Ok(r) if r.error_code == 0 => {
                        identity = Some((r.producer_id.0, r.producer_epoch));
                        continue;
                    }
                    _ => {
                        client = None;
                        continue;
                    }
                }
            }
        };
        let (partition, first_id, batch) = pending.take().unwrap_or_else(|| {
            let partition = (next_id / u64::from(records_per_batch) % 2) as i32;
            let mut builder = BatchBuilder::new(1_700_000_000_000);
            builder.producer(producer_id, epoch, sequences[partition as usize]);
            let values: Vec<Vec<u8>> =
                (0..u64::from(records_per_batch)).map(|i| (next_id + i).to_be_bytes().to_vec()).collect();
            for value in &values {
                builder.push(&Record { key: None, value: Some(value), headers: &[], timestamp_delta: 0 });
            }
            let first = next_id;
            next_id += u64::from(records_per_batch);
            sequences[partition as usize] += records_per_batch as i32;
            (partition, first, Bytes::from(builder.build()))
        });
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
            TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
                PartitionProduceData::default().with_index(partition).with_records(Some(batch.clone())),
            ]),
        ]);
        match c.call::<_, ProduceResponse>(ApiKey::Produce, 9, &request) {
            Ok(response) => {
                let p = &response.responses[0].partition_responses[0];
                match p.error_code {
                    0 => {
                        let mut acked = acked.lock().unwrap();
                        for i in 0..u64::from(records_per_batch) {
                            let previous = acked.insert(first_id + i, (partition, p.base_offset + i as i64));
                            assert!(previous.is_none() || previous == Some((partition, p.base_offset + i as i64)));
                        }
                    }
                    // The topic is being auto-created, or the broker is shutting down: retry the same batch.
                    3 | 6 | 56 => pending = Some((partition, first_id, batch)),
                    code => panic!("produce failed with Kafka error {code}"),
                }
            }
            Err(_) => {
                // Broker died mid-request: resend the same batch (same sequence).
                pending = Some((partition, first_id, batch));
                client = None;
            }
        }
    }
}

#[test]
fn acknowledged_records_survive_sigkill_without_duplicates() {
    let seed: u64 =
        std::env::var("RINGSTREAM_CRASH_SEED").map(|s| s.parse().expect("numeric seed")).unwrap_or_else(|_| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
    eprintln!("protocol crash test seed {seed} (replay with RINGSTREAM_CRASH_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let mut broker = start(dir.path(), port);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let producer = {
        let (address, stop, acked) = (address.clone(), stop.clone(), acked.clone());
        std::thread::spawn(move || produce(address, stop, acked))
    };
    for _ in 0..kills {
        let before = acked.lock().unwrap().len();
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..700)));
        while acked.lock().unwrap().len() == before && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe {
            libc::kill(broker.child.id() as i32, libc::SIGKILL);
        }
        let _ = broker.child.wait();
        drop(broker);
        broker = start(dir.path(), port);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    producer.join().expect("producer thread");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= kills * records_per_batch as usize, "too few acknowledgements: {}", acked.len());

    // Read everything back.
    let mut client = Client::connect(&address, Duration::from_secs(5)).unwrap();
    let mut seen: BTreeMap<u64, (i32, i64)> = BTreeMap::new();
    for partition in 0..2 {
        let mut offset = 0i64;
        loop {
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_max_bytes(4 * 1024 * 1024)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default().with_topic(TopicName(s(topic))).with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1024 * 1024),
                ])]);
            let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request).unwrap();
            let data = &response.responses[0].partitions[0];
            assert_eq!(data.error_code, 0);
            let Some(records_bytes) = data.records.as_ref().filter(|r| !r.is_empty()) else { break };
            for batch in ringstream_core::batch::split_batches(records_bytes, ringstream_core::limits::batch_bytes_max)
            {
                let batch = batch.unwrap();
                let header = ringstream_core::batch::BatchHeader::ref_from_prefix(batch).unwrap();
                assert_eq!(header.base_offset().0, offset, "no gaps in partition {partition}");
                for record in records(batch).unwrap() {
                    let id = u64::from_be_bytes(record.value.unwrap().try_into().unwrap());
                    let at = (partition, offset);
                    assert!(seen.insert(id, at).is_none(), "record {id} stored twice (again at {at:?})");
                    offset += 1;
                }
            }
        }
    }
    for (id, at) in &acked {
        assert_eq!(seen.get(id), Some(at), "acknowledged record {id} lost or moved");
    }
    eprintln!("protocol crash test: {} acknowledged, {} stored, {kills} kills", acked.len(), seen.len());
}
