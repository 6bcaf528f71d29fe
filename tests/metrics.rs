//! The metrics endpoint and `ringstream status` against the real binary.
//!
//! Each test starts `ringstream serve --shards 2 --listen 127.0.0.1:0
//! --metrics-listen 127.0.0.1:0` on a fresh data dir, drives known traffic
//! through the bundled Kafka client (so request counts and batch bytes are
//! exact), scrapes `/metrics`, validates the text with the crate's strict
//! parser and checks that the counters match the traffic. The broker is
//! killed by PID when the test ends, also on panic. No assertion depends on
//! timing.

#![allow(non_upper_case_globals)] // as in the crate: constants are named like values.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ringstream_broker::export::FAMILIES;
use ringstream_client::metrics_text::{self as text, Exposition, Kind};
use ringstream_client::status::http_get;
use ringstream_client::Client;
use ringstream_core::batch::{build_test_batch, split_batches, BatchHeader};

const broker_ready_seconds_max: u64 = 60;
const shards: usize = 2;
const topic: &str = "metered";
const partitions: i32 = 4;
const produce_requests: usize = 12;
const records_per_batch: u32 = 5;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringstream")
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// A running broker on a fresh data dir, killed (by PID) on drop.
struct Broker {
    child: Child,
    address: String,
    metrics: String,
    dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SAFETY: signals the child this test started, by its PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        let stdout_path = dir.path().join("broker.stdout");
        let child = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--shards", &shards.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .env("RINGSTREAM_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).unwrap())
            .stderr(File::create(dir.path().join("broker.log")).unwrap())
            .spawn()
            .expect("ringstream starts");
        let mut broker = Broker { child, address: String::new(), metrics: String::new(), dir };
        let deadline = Instant::now() + Duration::from_secs(broker_ready_seconds_max);
        loop {
            let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = stdout.lines().find(|l| l.starts_with("ready ")) {
                let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)).map(str::to_owned);
                broker.address = field("listen=").unwrap_or_else(|| panic!("no listen= in {line:?}"));
                broker.metrics = field("metrics=").unwrap_or_else(|| panic!("no metrics= in {line:?}"));
                assert_eq!(field("shards=").as_deref(), Some(shards.to_string().as_str()), "{line}");
                return broker;
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("broker exited with {status} before it was ready\n{}", broker.log());
            }
            assert!(Instant::now() < deadline, "broker not ready after {broker_ready_seconds_max}s\n{}", broker.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    fn client(&self) -> Client {
        Client::connect(&self.address, Duration::from_secs(5)).expect("connects")
    }

    fn scrape(&self) -> (String, Exposition) {
        let (status, body) = http_get(&self.metrics, "/metrics").expect("scrape");
        assert_eq!(status, 200, "{body}");
        let exposition = text::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        (body, exposition)
    }

    /// Sends raw bytes to the metrics port; returns the whole response.
    fn raw(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(&self.metrics).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response); // a reset after the response is fine
        String::from_utf8_lossy(&response).into_owned()
    }
}

/// The sum over shards of the sample `name` with `extra` labels besides `shard`.
fn total(exposition: &Exposition, name: &str, extra: &[(&str, &str)]) -> f64 {
    (0..shards)
        .map(|shard| {
            let shard = shard.to_string();
            let mut labels = vec![("shard", shard.as_str())];
            labels.extend_from_slice(extra);
            exposition.value(name, &labels).unwrap_or_else(|| panic!("no {name}{labels:?}"))
        })
        .sum()
}

fn create_topic(client: &mut Client) {
    let version = client.version(ApiKey::CreateTopics, 7).unwrap();
    let request = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(s(topic)))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, version, &request).unwrap();
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0].error_message);
}

/// Produces `produce_requests` requests of one batch each, round-robin over
/// the partitions; returns the batch bytes sent.
fn produce(client: &mut Client) -> u64 {
    let version = client.version(ApiKey::Produce, 9).unwrap();
    let mut bytes = 0u64;
    for i in 0..produce_requests {
        let batch = Bytes::from(build_test_batch(records_per_batch, 100 + i, i as u64, 1_700_000_000_000 + i as i64));
        bytes += batch.len() as u64;
        let partition = (i % partitions as usize) as i32;
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
            TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
                PartitionProduceData::default().with_index(partition).with_records(Some(batch)),
            ]),
        ]);
        let response: ProduceResponse = client.call(ApiKey::Produce, version, &request).unwrap();
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    bytes
}

/// Fetches every partition from offset 0 to its end; returns (bytes, records).
fn fetch_all(client: &mut Client) -> (u64, u64) {
    let version = client.version(ApiKey::Fetch, 12).unwrap();
    let (mut bytes, mut records) = (0u64, 0u64);
    for partition in 0..partitions {
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
            let response: FetchResponse = client.call(ApiKey::Fetch, version, &request).unwrap();
            let data = &response.responses[0].partitions[0];
            assert_eq!(data.error_code, 0);
            let Some(batches) = data.records.as_ref().filter(|r| !r.is_empty()) else { break };
            for batch in split_batches(batches, ringstream_core::limits::batch_bytes_max) {
                let batch = batch.unwrap();
                let header = BatchHeader::ref_from_prefix(batch).unwrap();
                bytes += batch.len() as u64;
                records += header.records_count() as u64;
                offset = header.base_offset().0 + i64::from(header.last_offset_delta()) + 1;
            }
        }
    }
    (bytes, records)
}

#[test]
fn metrics_match_the_traffic_exactly() {
    let broker = Broker::start();
    let mut client = broker.client();
    create_topic(&mut client);
    let bytes_in = produce(&mut client);
    let (bytes_fetched, records_fetched) = fetch_all(&mut client);
    let records_in = (produce_requests as u64) * u64::from(records_per_batch);
    assert_eq!(records_fetched, records_in, "the fetches read everything back");
    assert_eq!(bytes_fetched, bytes_in, "stored batches are as long as those sent");

    let (body, m) = broker.scrape();
    // Every family is there, typed as declared, with one series per shard.
    for (name, kind, _) in FAMILIES {
        let family = m.family(name).unwrap_or_else(|| panic!("{name} missing\n{body}"));
        assert_eq!(family.kind.as_str(), kind.as_str(), "{name}");
        assert!(family.help.as_deref().is_some_and(|h| !h.is_empty()), "{name} has no help");
        for shard in 0..shards {
            let shard = shard.to_string();
            assert!(family.samples.iter().any(|s| s.label("shard") == Some(&shard)), "{name} has no shard {shard}");
        }
        if family.kind != Kind::Histogram {
            assert_eq!(family.samples.len(), shards, "{name}: one sample per shard");
        }
    }
    assert!(body.ends_with("# EOF\n"));

    // Counters match the traffic.
    assert_eq!(total(&m, "ringstream_records_in_total", &[]), records_in as f64);
    assert_eq!(total(&m, "ringstream_bytes_in_total", &[]), bytes_in as f64);
    assert!(total(&m, "ringstream_records_out_total", &[]) >= records_fetched as f64);
    assert!(total(&m, "ringstream_bytes_out_total", &[]) >= bytes_fetched as f64);
    let produce = [("api", "Produce")];
    assert_eq!(total(&m, "ringstream_request_latency_seconds_count", &produce), produce_requests as f64);
    assert!(total(&m, "ringstream_request_latency_seconds_count", &[("api", "Fetch")]) >= f64::from(partitions));
    assert_eq!(total(&m, "ringstream_request_latency_seconds_count", &[("api", "CreateTopics")]), 1.0);
    assert!(total(&m, "ringstream_request_latency_seconds_sum", &produce) > 0.0);
    // Partitions: the topic's (no group ran, so no offsets-log partitions).
    assert_eq!(total(&m, "ringstream_partitions", &[]), f64::from(partitions));
    assert!(total(&m, "ringstream_connections", &[]) >= 1.0, "our client is connected");
    // A lone broker is a one-node cluster: its own active controller, with
    // the topic and the offsets topic in its metadata log.
    let node = |name: &str| m.value(name, &[]).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(node("ringstream_controller_active"), 1.0);
    assert_eq!(node("ringstream_broker_serving"), 1.0);
    assert_eq!(node("ringstream_brokers_registered"), 1.0);
    assert_eq!(node("ringstream_brokers_fenced"), 0.0);
    assert!(node("ringstream_metadata_offset") >= 3.0);
    assert!(node("ringstream_quorum_term") >= 1.0);
    // Group commit wrote every batch once, and the bytes appended.
    assert_eq!(total(&m, "ringstream_commit_round_batches_sum", &[]), produce_requests as f64);
    assert_eq!(total(&m, "ringstream_commit_round_bytes_sum", &[]), bytes_in as f64);
    let rounds = total(&m, "ringstream_commit_round_batches_count", &[]);
    assert!(rounds >= 1.0 && rounds <= produce_requests as f64, "{rounds} rounds");
    assert_eq!(total(&m, "ringstream_commit_round_bytes_count", &[]), rounds);
    assert!(total(&m, "ringstream_fdatasync_seconds_count", &[]) >= rounds, "flush=always syncs every round");
    // Every fetched batch was a cache hit or a disk read.
    let lookups =
        total(&m, "ringstream_batch_cache_hits_total", &[]) + total(&m, "ringstream_batch_cache_misses_total", &[]);
    assert!(lookups >= produce_requests as f64, "{lookups} batch lookups");
    for shard in 0..shards {
        let shard = shard.to_string();
        let labels = [("shard", shard.as_str())];
        let utilisation = m.value("ringstream_reactor_utilisation", &labels).unwrap();
        assert!((0.0..=1.0).contains(&utilisation), "utilisation {utilisation}");
        let busy = m.value("ringstream_reactor_busy_seconds_total", &labels).unwrap();
        assert!(busy > 0.0 && busy.is_finite(), "shard {shard} busy {busy}");
        assert!(m.value("ringstream_router_queue_depth", &labels).unwrap() >= 0.0);
    }

    // Counters only grow: a second scrape sees at least the same.
    let (_, again) = broker.scrape();
    assert_eq!(total(&again, "ringstream_records_in_total", &[]), records_in as f64);
    for shard in 0..shards {
        let shard = shard.to_string();
        let labels = [("shard", shard.as_str())];
        let before = m.value("ringstream_reactor_busy_seconds_total", &labels).unwrap();
        assert!(again.value("ringstream_reactor_busy_seconds_total", &labels).unwrap() >= before);
    }

    // `ringstream status`: two tables, one row per shard, sane numbers.
    let output = Command::new(bin())
        .args(["status", "--metrics", &broker.metrics, "--count", "2", "--interval", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "status failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let headers = stdout.lines().filter(|l| l.starts_with("shard ")).count();
    assert_eq!(headers, 2, "two tables\n{stdout}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|f| f.parse::<usize>().is_ok()))
        .collect();
    assert_eq!(rows.len(), 2 * shards, "one row per shard per table\n{stdout}");
    for table in rows.chunks(shards) {
        let ids: Vec<&str> = table.iter().map(|r| r[0]).collect();
        assert_eq!(
            ids,
            (0..shards).map(|s| s.to_string()).collect::<Vec<_>>().iter().map(String::as_str).collect::<Vec<_>>()
        );
        let partitions_listed: f64 = table.iter().map(|r| r[2].parse::<f64>().unwrap()).sum();
        assert_eq!(partitions_listed, f64::from(partitions), "{stdout}");
        for row in table {
            assert_eq!(row.len(), 12, "{row:?}");
            let load: f64 = row[1].parse().unwrap();
            assert!((0.0..=100.0).contains(&load), "{row:?}");
            assert!(row[3].parse::<f64>().unwrap() >= 0.0, "{row:?}");
            for rate in &row[4..7] {
                let rate: f64 = rate.parse().unwrap();
                assert!(rate >= 0.0 && rate.is_finite(), "{row:?}");
            }
            for optional in &row[7..10] {
                assert!(*optional == "-" || optional.parse::<f64>().is_ok_and(|v| v >= 0.0), "{row:?}");
            }
            for rate in &row[10..12] {
                let rate: f64 = rate.parse().unwrap();
                assert!(rate >= 0.0 && rate.is_finite(), "wake-ups and cross-shard messages per second: {row:?}");
            }
        }
    }
    drop(client);
}

#[test]
fn the_endpoint_refuses_unknown_paths_methods_and_oversized_requests() {
    let broker = Broker::start();
    let (status, body) = http_get(&broker.metrics, "/nope").unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("/nope"), "{body}");
    let (status, _) = http_get(&broker.metrics, "/metrics?format=text").unwrap();
    assert_eq!(status, 200, "a query string does not change the path");

    let response = broker.raw(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
    assert!(response.contains("Allow: GET\r\n"), "{response}");

    let response = broker.raw(b"NOT A REQUEST\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");

    let padding = "x".repeat(ringstream_core::limits::http_request_bytes_max + 1024);
    let response = broker.raw(format!("GET /metrics HTTP/1.1\r\nX-Padding: {padding}\r\n\r\n").as_bytes());
    assert!(response.starts_with("HTTP/1.1 413 "), "{response}");
    let response = broker.raw(format!("GET /metrics HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 1 << 30).as_bytes());
    assert!(response.starts_with("HTTP/1.1 413 "), "{response}");

    // The server still serves after all that.
    let (_, exposition) = broker.scrape();
    assert!(exposition.family("ringstream_partitions").is_some());
}

#[test]
fn status_fails_clearly_when_the_endpoint_is_unreachable() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let output = Command::new(bin()).args(["status", "--metrics", &address, "--count", "1"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot reach the metrics endpoint {address}")), "{stderr}");
    assert!(output.stdout.is_empty());
}

/// In process: appends submitted at once to many partitions (so commit
/// rounds cover several partitions concurrently) are all counted, in the
/// commit-size histograms and in `shard_load`, read on a shard and outside.
#[test]
fn shard_load_and_commit_sizes_count_concurrent_appends() {
    use ringstream_core::metrics::{self, ShardLoad};
    use ringstream_core::types::{ShardId, TopicPartition};
    use ringstream_shard::{RuntimeConfig, Shard, ShardSet};
    use ringstream_storage::shard_storage::StorageConfig;
    use std::rc::Rc;

    const partitions_here: i32 = 8;
    const batches_per_partition: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(StorageConfig::new(dir.path()));
    config.shards = Some(shards);
    let set = ShardSet::start(config).expect("shards start");
    let (bytes, loads): (u64, Vec<ShardLoad>) = set.run_on(ShardId(0), move |shard: Rc<Shard>| async move {
        let tps: Vec<TopicPartition> = (0..partitions_here).map(|p| TopicPartition::new("loaded", p)).collect();
        let config = shard.storage.config().default_log.clone();
        shard.create_partitions(tps.clone(), config).await.unwrap();
        let mut tickets = Vec::new();
        let mut bytes = 0u64;
        for i in 0..batches_per_partition {
            for tp in &tps {
                let batch = Bytes::from(build_test_batch(records_per_batch, 64, i, 1_700_000_000_000));
                bytes += batch.len() as u64;
                tickets.push(shard.submit(tp, batch).await.unwrap());
            }
        }
        for ticket in tickets {
            ticket.wait().await.unwrap();
        }
        let loads: Vec<ShardLoad> = (0..shards).map(|s| metrics::shard_load(ShardId(s as u16))).collect();
        // The traffic is over; only the reactor figures still move.
        let traffic = |l: &ShardLoad| (l.bytes_in_total, l.records_in_total, l.bytes_out_total, l.partitions);
        assert_eq!(
            metrics::shard_loads().iter().map(traffic).collect::<Vec<_>>(),
            loads.iter().map(traffic).collect::<Vec<_>>()
        );
        (bytes, loads)
    });
    let batches = batches_per_partition * partitions_here as u64;
    let table = set.metrics().clone();
    let (mut batches_counted, mut bytes_counted) = (0, 0);
    for (s, load) in loads.iter().enumerate() {
        let id = ShardId(s as u16);
        assert_eq!(table.load(id).bytes_in_total, load.bytes_in_total, "the same cells on a shard and outside");
        assert_eq!(table.load(id).partitions, load.partitions);
        let cells = table.shard(id);
        let (sizes, volumes) = (cells.commit_batches.snapshot(), cells.commit_bytes.snapshot());
        assert_eq!(sizes.count(), volumes.count(), "one observation of each per round");
        assert_eq!(volumes.sum, cells.bytes_in.get(), "every appended byte is in some round");
        batches_counted += sizes.sum;
        bytes_counted += volumes.sum;
    }
    assert_eq!(batches_counted, batches);
    assert_eq!(bytes_counted, bytes);
    assert_eq!(loads.iter().map(|l| l.bytes_in_total).sum::<u64>(), bytes);
    assert_eq!(loads.iter().map(|l| l.records_in_total).sum::<u64>(), batches * u64::from(records_per_batch));
    assert_eq!(loads.iter().map(|l| l.partitions).sum::<u64>(), partitions_here as u64);
    set.shutdown().unwrap();
}

/// One fetch of every partition from offset 0 (`max_wait_ms` as given);
/// returns the records it carried.
fn fetch_every_partition(client: &mut Client, offsets: &[i64], max_wait_ms: i32) -> u64 {
    let version = client.version(ApiKey::Fetch, 12).unwrap();
    let wanted = (0..partitions)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offsets[p as usize])
                .with_partition_max_bytes(1024 * 1024)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(4 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(TopicName(s(topic))).with_partitions(wanted)]);
    let response: FetchResponse = client.call(ApiKey::Fetch, version, &request).unwrap();
    let mut records = 0u64;
    for data in &response.responses[0].partitions {
        assert_eq!(data.error_code, 0, "partition {}", data.partition_index);
        let Some(batches) = data.records.as_ref() else { continue };
        for batch in split_batches(batches, ringstream_core::limits::batch_bytes_max) {
            records += BatchHeader::ref_from_prefix(batch.unwrap()).unwrap().records_count() as u64;
        }
    }
    records
}

/// A fetch of partitions on both shards costs the other shard one read
/// message (whose reads also park the long-poll waiters) and one message
/// that takes the lent batches home, however many of its partitions the
/// fetch names; it used to cost a round trip per partition. Counted by the
/// broker's own `ringstream_cross_shard_messages_sent_total`.
#[test]
fn a_fetch_of_many_partitions_sends_one_read_per_owner_shard() {
    let broker = Broker::start();
    let mut client = broker.client();
    create_topic(&mut client);
    produce(&mut client);
    let sent = |broker: &Broker| total(&broker.scrape().1, "ringstream_cross_shard_messages_sent_total", &[]);

    let fetches = 20u64;
    let before = sent(&broker);
    for _ in 0..fetches {
        let records = fetch_every_partition(&mut client, &[0; partitions as usize], 0);
        assert_eq!(records, (produce_requests as u64) * u64::from(records_per_batch), "every record, every time");
    }
    let after = sent(&broker);
    // Two messages per fetch, plus the scrapes' own (one per other shard each).
    let budget = 2 * fetches + 2 * (shards as u64 - 1);
    assert!(
        after - before <= budget as f64,
        "{} router messages for {fetches} fetches (budget {budget})",
        after - before
    );
    // And not vacuous: the partitions are spread over both shards, so
    // every fetch does reach the other one.
    assert!(after - before >= fetches as f64, "{} router messages: no fetch reached the other shard", after - before);

    // A long-poll at the end of every partition: one read message parks the
    // waiters, the deadline ends it, and it answers empty without errors.
    let ends =
        vec![(produce_requests / partitions as usize) as i64 * i64::from(records_per_batch); partitions as usize];
    let before = sent(&broker);
    let started = Instant::now();
    assert_eq!(fetch_every_partition(&mut client, &ends, 200), 0);
    assert!(started.elapsed() >= Duration::from_millis(150), "the long-poll waited for its deadline");
    let after = sent(&broker);
    assert!(
        after - before <= 2.0 + 2.0 * (shards as f64 - 1.0),
        "{} router messages for one long-poll",
        after - before
    );
}
