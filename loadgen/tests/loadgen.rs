#![allow(non_upper_case_globals)]

//! End-to-end runs of the `ringstream-loadgen` binary: against the real
//! broker (started on an ephemeral port with a temporary data dir, killed by
//! PID), against `--baseline raw-tcp`, and against an address where nothing
//! listens. Each run is a couple of seconds and is killed if it outlives a
//! generous deadline; nothing asserts on performance.

use std::process::{Command, Output};
use std::time::Duration;

mod common;
use common::{broker_binary, loadgen, Broker};

/// Runs the command to completion, killing it at `run_deadline`.
fn run_bounded(command: Command) -> (Output, Duration) {
    common::run_bounded(command, run_deadline)
}

/// A run that takes longer than this is a hang and fails the test.
const run_deadline: Duration = Duration::from_secs(60);

/// The text of the JSON value at `key` (first occurrence): a number, null,
/// a string or a whole `{...}` object. Enough for the report's flat layout.
fn json_value<'a>(json: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\": ");
    let start = json.find(&needle).unwrap_or_else(|| panic!("field {key:?} missing from:\n{json}")) + needle.len();
    let rest = &json[start..];
    if rest.starts_with('{') {
        let mut depth = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return &rest[..=i];
                    }
                }
                _ => {}
            }
        }
        panic!("unterminated object at {key:?}");
    }
    let end = rest.find([',', '\n']).unwrap_or(rest.len());
    rest[..end].trim()
}

fn json_number(json: &str, key: &str) -> f64 {
    let text = json_value(json, key);
    text.parse().unwrap_or_else(|_| panic!("field {key:?} is {text:?}, not a number"))
}

/// Checks the `--broker-pid` fields: present, not negative, and consistent
/// with each other (cores = CPU-s / window, CPU-s/GB = CPU-s / GB produced).
/// Returns broker cores.
fn check_broker_cpu(json: &str, pid: u32) -> f64 {
    assert_eq!(json_number(json, "broker_pid"), f64::from(pid), "{json}");
    let cpu_sec = json_number(json, "broker_cpu_sec");
    let wall_sec = json_number(json, "broker_cpu_wall_sec");
    let cores = json_number(json, "broker_cores");
    let per_gb = json_number(json, "broker_cpu_s_per_gb");
    let measured_sec = json_number(json, "measured_sec");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(cpu_sec >= 0.0 && cores >= 0.0 && per_gb >= 0.0, "{json}");
    assert!((wall_sec - measured_sec).abs() < 0.5, "the CPU window is the measured window: {json}");
    assert!(cores <= cpus + 0.5, "{cores} cores on {cpus} CPUs: {json}");
    assert!((cores - cpu_sec / wall_sec).abs() < 0.002, "{json}");
    let gb = json_number(json, "bytes") / 1e9;
    assert!((per_gb - cpu_sec / gb).abs() <= 0.001 / gb + 0.001, "{json}");
    cores
}

/// How far host busy cores may fall below the load generator's own before
/// a test calls it wrong: /proc/stat charges whole ticks to whatever was
/// running, a process's time is exact, so over a 2 s window on a few CPUs
/// they can differ by a few ticks either way.
const tick_slack_cores: f64 = 0.05;

/// Checks the host fields that come with `--broker-pid`: present, sane
/// (host busy ≥ the load generator's own ≥ 0, the rest ≥ 0, no more than
/// the CPU count), and consistent with each other and with `bytes`.
/// Returns host−loadgen cores.
fn check_host_cpu(json: &str) -> f64 {
    let busy = json_number(json, "host_busy_cores");
    let loadgen = json_number(json, "loadgen_cores");
    let rest = json_number(json, "host_minus_loadgen_cores");
    let per_gb = json_number(json, "host_minus_loadgen_cpu_s_per_gb");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(loadgen > 0.0, "the load generator ran: {json}");
    assert!(busy + tick_slack_cores >= loadgen, "the host did at least the load generator's work: {json}");
    assert!(rest >= 0.0 && per_gb >= 0.0, "{json}");
    assert!(busy <= cpus + 0.5, "{busy} busy cores on {cpus} CPUs: {json}");
    assert!((rest - (busy - loadgen).max(0.0)).abs() < 0.002, "the rest is host busy less the load generator: {json}");
    let wall_sec = json_number(json, "broker_cpu_wall_sec");
    let gb = json_number(json, "bytes") / 1e9;
    assert!((per_gb - rest * wall_sec / gb).abs() <= 0.001 * wall_sec / gb + 0.001, "{json}");
    rest
}

/// Checks a latency object has every percentile, ordered, and a count.
fn check_latency(json: &str, key: &str) {
    let object = json_value(json, key);
    assert!(object.starts_with('{'), "{key} is {object}, expected an object");
    let mut previous = 0.0;
    for field in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        let value = json_number(object, field);
        assert!(value >= previous && value > 0.0, "{key}.{field} = {value} after {previous}");
        previous = value;
    }
    assert!(json_number(object, "count") > 0.0);
}

fn check_clean_run(output: &Output, json_path: &std::path::Path) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "status {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    assert!(stdout.contains("throughput") && stdout.contains("p99.99"), "no summary table:\n{stdout}");
    assert!(stderr.contains("rec/s"), "no progress line:\n{stderr}");
    let json = std::fs::read_to_string(json_path).expect("the --json file");
    assert!(json_number(&json, "throughput_records_per_sec") > 0.0, "{json}");
    assert!(json_number(&json, "throughput_bytes_per_sec") > 0.0, "{json}");
    assert_eq!(json_number(&json, "errors"), 0.0, "{json}");
    check_latency(&json, "latency_ack_us");
    json
}

#[test]
fn produce_and_consume_against_the_broker() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("run.json");
    let mut command = loadgen();
    command
        .args(["--brokers", &broker.address, "--topic", "lg-e2e", "--partitions", "4", "--record-size", "256"])
        .args(["--acks", "all", "--producers", "1", "--consumers", "1", "--rate", "2000"])
        .args(["--duration", "2s", "--warmup", "200ms", "--linger", "1ms"])
        .args(["--broker-pid", &broker.pid().to_string()])
        .arg("--json")
        .arg(&json_path);
    let (output, _) = run_bounded(command);
    let json = check_clean_run(&output, &json_path);
    check_latency(&json, "latency_e2e_us");
    let cores = check_broker_cpu(&json, broker.pid());
    assert!(cores > 0.0, "the broker served 2000 records/s and a consumer: {json}");
    let rest = check_host_cpu(&json);
    assert!(rest > 0.0, "the broker's work is in the rest: {json}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("broker CPU    PID {}: ", broker.pid())) && stdout.contains(" cores, "),
        "{stdout}"
    );
    assert!(stdout.contains("host CPU      ") && stdout.contains(" cores busy, load generator "), "{stdout}");
    // Nothing lost: as many records of the measured window were read (the
    // consumer skips offsets it has passed) as were acknowledged.
    let sent = json_number(json_value(&json, "latency_ack_us"), "count");
    assert_eq!(json_number(&json, "records_consumed"), sent, "{json}");
    assert_eq!(json_number(json_value(&json, "latency_e2e_us"), "count"), sent, "{json}");
    assert_eq!(json_value(&json, "acks"), "\"all\"");
    assert_eq!(json_number(&json, "rate"), 2000.0);
}

#[test]
fn max_throughput_against_the_broker_without_consumers() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("run.json");
    let mut command = loadgen();
    command
        .args(["--brokers", &broker.address, "--topic", "lg-max", "--partitions", "3", "--record-size", "1024"])
        .args(["--acks", "1", "--producers", "2", "--duration", "1500ms", "--batch-bytes", "65536"])
        .arg("--json")
        .arg(&json_path);
    let (output, _) = run_bounded(command);
    let json = check_clean_run(&output, &json_path);
    assert_eq!(json_value(&json, "latency_e2e_us"), "null", "no consumers, so no end-to-end latency");
    for field in [
        "broker_pid",
        "broker_cpu_sec",
        "broker_cpu_wall_sec",
        "broker_cores",
        "broker_cpu_s_per_gb",
        "host_busy_cores",
        "loadgen_cores",
        "host_minus_loadgen_cores",
        "host_minus_loadgen_cpu_s_per_gb",
    ] {
        assert_eq!(json_value(&json, field), "null", "no --broker-pid, so no {field}");
    }
    assert!(!String::from_utf8_lossy(&output.stdout).contains("host CPU"));
}

#[test]
fn baseline_raw_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("raw.json");
    let mut command = loadgen();
    command
        .args(["--baseline", "raw-tcp", "--partitions", "12", "--record-size", "1024", "--duration", "2s"])
        // Any process can be measured: here the test itself.
        .args(["--broker-pid", &std::process::id().to_string()])
        .arg("--json")
        .arg(&json_path);
    let (output, _) = run_bounded(command);
    let json = check_clean_run(&output, &json_path);
    check_broker_cpu(&json, std::process::id());
    // The sink runs inside the load generator: its work is the load generator's own.
    check_host_cpu(&json);
    assert!(json_value(&json, "target").contains("raw-tcp sink"), "{json}");
    assert_eq!(json_value(&json, "baseline"), "\"raw-tcp\"");
    assert_eq!(json_value(&json, "latency_e2e_us"), "null");
}

#[test]
fn unreachable_broker_is_a_clear_error_not_a_hang() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // TEST-NET-1 (RFC 5737) is never routed: a connect there times out or is refused at once.
    for address in [format!("127.0.0.1:{port}"), "192.0.2.1:9092".to_owned()] {
        let mut command = loadgen();
        command.args(["--brokers", &address, "--duration", "1s", "--connect-timeout", "2s"]);
        let (output, elapsed) = run_bounded(command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{address}: {stderr}");
        assert!(stderr.contains("cannot reach broker") && stderr.contains(&address), "{address}: {stderr}");
        // Bounded by the connect timeout, with room for a loaded machine.
        assert!(elapsed < Duration::from_secs(30), "{address}: took {elapsed:?}");
    }
}

#[test]
fn bad_flags_are_clear_errors() {
    for (flags, expected) in [
        (&["--acks", "2"][..], "--acks"),
        (&["--duration", "5parsecs"][..], "--duration"),
        (&["--record-size", "4"][..], "--record-size"),
        (&["--baseline", "raw-tcp", "--consumers", "1"][..], "nothing to consume"),
        (&["--producers", "0", "--consumers", "0"][..], "nothing to run"),
        (&["--batch-bytes", "1000", "--record-size", "4096"][..], "--batch-bytes"),
        (&["--record-size", "100..50"][..], "--record-size"),
        (&["--record-size", "4..100"][..], "--record-size"),
        (&["--keys", "zipf:0"][..], "--keys"),
        (&["--keys", "zipf:10:-1"][..], "--keys"),
        (&["--keys", "hash:10"][..], "--keys"),
        (&["--compression", "brotli"][..], "--compression"),
        (&["--idempotence", "--in-flight", "6"][..], "--in-flight"),
        (&["--idempotence", "--acks", "1"][..], "--acks all"),
        (&["--groups", "2"][..], "--consumers"),
        (&["--messages", "0"][..], "--messages"),
        (&["--group-prefix", "x"][..], "--groups"),
    ] {
        let mut command = loadgen();
        command.args(flags);
        let (output, _) = run_bounded(command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: expected {expected:?} in {stderr}");
    }
}

/// A `--broker-pid` with no process behind it fails before any load, with
/// the flag and the reason in the message.
#[test]
fn broker_pid_not_running_is_a_clear_error() {
    let mut finished = Command::new("true").spawn().expect("run true");
    finished.wait().expect("wait for true");
    let gone = finished.id().to_string();
    let mut command = loadgen();
    command.args(["--baseline", "raw-tcp", "--duration", "1s", "--broker-pid", &gone]);
    let (output, elapsed) = run_bounded(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("--broker-pid {gone}: no such process")), "{stderr}");
    assert!(!stderr.contains("rec/s"), "nothing ran: {stderr}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

/// Runs the load generator against `broker` with `flags` and `--json`;
/// checks a clean run (exit 0, zero errors) and returns the JSON and how
/// long the run took.
fn clean_run(broker: &Broker, flags: &[&str]) -> (String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("run.json");
    let mut command = loadgen();
    command.args(["--brokers", &broker.address]).args(flags).arg("--json").arg(&json_path);
    let (output, elapsed) = run_bounded(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{flags:?}: status {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    assert!(stdout.contains("throughput") && stdout.contains("p99.99"), "no summary table:\n{stdout}");
    // A run cut short by --messages may end before the first progress line.
    let json = std::fs::read_to_string(&json_path).expect("the --json file");
    assert_eq!(json_number(&json, "errors"), 0.0, "{json}\nstderr:\n{stderr}");
    check_latency(&json, "latency_ack_us");
    (json, elapsed)
}

/// Every record of `topic` as the broker's own CLI reads it (kafka-protocol's
/// decoder, so compressed batches are decoded independently of the load
/// generator): (partition, key) per record. Lines are `partition offset key
/// value`; a value may hold newline bytes, so only lines that start that way
/// count.
fn records_on_broker(broker: &Broker, topic: &str) -> Vec<(i32, String)> {
    let output = Command::new(broker_binary())
        .args(["consume", topic, "-v", "-b", &broker.address])
        .output()
        .expect("run ringstream consume");
    assert!(output.status.success(), "consume: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let mut found = Vec::new();
    for line in text.lines() {
        let mut words = line.splitn(4, ' ');
        let (Some(partition), Some(offset), Some(key)) = (words.next(), words.next(), words.next()) else { continue };
        let (Ok(partition), Ok(_)) = (partition.parse::<i32>(), offset.parse::<i64>()) else { continue };
        if key.starts_with("key-") {
            found.push((partition, key.to_owned()));
        }
    }
    found
}

/// Two groups of two members on four partitions: each group reads every
/// record once, so the end-to-end count is twice what was produced, and the
/// run ends once they have (well before --duration).
#[test]
fn two_groups_each_read_every_record() {
    let broker = Broker::start();
    let (json, elapsed) = clean_run(
        &broker,
        &[
            "--topic",
            "lg-groups",
            "--partitions",
            "4",
            "--record-size",
            "128",
            "--rate",
            "1500",
            "--messages",
            "3000",
            "--groups",
            "2",
            "--consumers",
            "2",
            "--linger",
            "1ms",
            "--duration",
            "40s",
        ],
    );
    assert_eq!(json_number(&json, "records"), 3000.0, "{json}");
    assert_eq!(json_number(json_value(&json, "latency_ack_us"), "count"), 3000.0, "{json}");
    check_latency(&json, "latency_e2e_us");
    assert_eq!(json_number(json_value(&json, "latency_e2e_us"), "count"), 6000.0, "{json}");
    assert_eq!(json_number(&json, "records_consumed"), 6000.0, "{json}");
    assert_eq!(json_number(&json, "groups"), 2.0);
    assert!(json_value(&json, "group_prefix").starts_with("\"loadgen-"), "{json}");
    assert!(elapsed < Duration::from_secs(35), "the run should end once everything is consumed, took {elapsed:?}");
}

/// Zipf keys: every record's key sits on murmur2(key) % partitions (read
/// back with the broker's CLI), the hottest key is rank 1, and sizes from a
/// range count as the bytes they are.
#[test]
fn zipf_keys_land_on_their_murmur2_partitions() {
    let broker = Broker::start();
    let (json, _) = clean_run(
        &broker,
        &[
            "--topic",
            "lg-keys",
            "--partitions",
            "5",
            "--record-size",
            "8..64",
            "--keys",
            "zipf:50",
            "--messages",
            "2000",
        ],
    );
    assert_eq!(json_number(&json, "records"), 2000.0, "{json}");
    let bytes = json_number(&json, "bytes");
    assert!((2000.0 * 8.0..=2000.0 * 64.0).contains(&bytes) && bytes != 2000.0 * 36.0, "bytes {bytes}");
    assert_eq!(json_value(&json, "keys"), "\"zipf:50:0.99\"");
    assert_eq!(json_number(&json, "record_size_min"), 8.0);
    assert_eq!(json_number(&json, "record_size_max"), 64.0);
    let records = records_on_broker(&broker, "lg-keys");
    assert_eq!(records.len(), 2000);
    let mut counts: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    for (partition, key) in &records {
        assert_eq!(ringstream_client::partition_for_key(key.as_bytes(), 5), *partition, "{key}");
        *counts.entry(key).or_default() += 1;
    }
    let hottest = counts.iter().max_by_key(|(_, &n)| n).unwrap();
    assert_eq!(*hottest.0, "key-0", "{counts:?}");
    // P(rank 1) = 1 / H(50, 0.99) ≈ 0.22: about 440 of 2000.
    assert!((340..=540).contains(hottest.1), "{counts:?}");
}

/// Each codec: the batches decode with kafka-protocol's decoder (the
/// broker's CLI) and with the load generator's consumer, every record once.
#[test]
fn every_compression_codec_produces_and_consumes() {
    let broker = Broker::start();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("lg-{codec}");
        let (json, _) = clean_run(
            &broker,
            &[
                "--topic",
                &topic,
                "--partitions",
                "3",
                "--record-size",
                "200",
                "--compression",
                codec,
                "--keys",
                "uniform:10",
                "--consumers",
                "1",
                "--rate",
                "2000",
                "--messages",
                "1000",
                "--linger",
                "2ms",
                "--duration",
                "30s",
            ],
        );
        assert_eq!(json_value(&json, "compression"), format!("\"{codec}\""));
        assert_eq!(json_number(&json, "records"), 1000.0, "{codec}: {json}");
        assert_eq!(json_number(json_value(&json, "latency_e2e_us"), "count"), 1000.0, "{codec}: {json}");
        assert_eq!(records_on_broker(&broker, &topic).len(), 1000, "{codec}");
    }
}

/// Idempotent producers (two, at max throughput, compressed): no
/// sequence errors, and exactly --messages acknowledged.
#[test]
fn idempotent_producers_send_exactly_their_messages() {
    let broker = Broker::start();
    let (json, _) = clean_run(
        &broker,
        &[
            "--topic",
            "lg-idem",
            "--partitions",
            "3",
            "--record-size",
            "100",
            "--idempotence",
            "--producers",
            "2",
            "--in-flight",
            "5",
            "--batch-bytes",
            "16384",
            "--messages",
            "20001",
            "--compression",
            "lz4",
            "--duration",
            "30s",
        ],
    );
    assert_eq!(json_value(&json, "idempotence"), "true");
    assert_eq!(json_number(&json, "records"), 20001.0, "{json}");
    assert_eq!(records_on_broker_count(&broker, "lg-idem"), 20001);
}

/// --messages alone: three producers share 777 records exactly, and the
/// run ends when they are acknowledged, long before --duration.
#[test]
fn messages_ends_the_run_after_exactly_that_many() {
    let broker = Broker::start();
    let (json, elapsed) = clean_run(
        &broker,
        &["--topic", "lg-count", "--partitions", "4", "--producers", "3", "--messages", "777", "--duration", "40s"],
    );
    assert_eq!(json_number(&json, "records"), 777.0, "{json}");
    assert_eq!(json_number(json_value(&json, "latency_ack_us"), "count"), 777.0, "{json}");
    assert_eq!(json_number(&json, "messages"), 777.0);
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

/// How many records the broker's CLI reads from `topic` (no keys needed):
/// the high-water marks' sum via `ringstream consume` would need parsing
/// values, so count `partition offset` line starts with an offset that
/// increases per partition.
fn records_on_broker_count(broker: &Broker, topic: &str) -> usize {
    let output = Command::new(broker_binary())
        .args(["consume", topic, "-v", "-b", &broker.address])
        .output()
        .expect("run ringstream consume");
    assert!(output.status.success(), "consume: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let mut next: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    let mut count = 0;
    for line in text.lines() {
        let mut words = line.splitn(3, ' ');
        let (Some(partition), Some(offset)) = (words.next(), words.next()) else { continue };
        let (Ok(partition), Ok(offset)) = (partition.parse::<i32>(), offset.parse::<i64>()) else { continue };
        let expected = next.entry(partition).or_insert(0);
        if offset == *expected {
            *expected += 1;
            count += 1;
        }
    }
    count
}
