//! Client compatibility: third-party Kafka clients against the real binary.
//!
//! Each test starts `ringstream serve` (2 shards, 6 partitions per new topic,
//! `group.initial.rebalance.delay.ms=0` so that groups form without waiting)
//! on a fresh data dir and port, runs one script from `tests/compat/` with
//! `python3`, and fails with the script's output and the broker's log unless
//! the script exits 0. The clients are confluent-kafka (current librdkafka),
//! kafka-python with its codec packages, and Debian's kcat (librdkafka
//! 2.0.2); `bash scripts/test.sh` installs them. A missing tool fails the
//! test with that hint: nothing is skipped.
//!
//! Every broker is killed when its test ends, also on panic (`Broker`'s Drop),
//! including brokers the restart script started (it records their pids).
//! Scripts bound themselves in time (their watchdog); the harness kills a
//! script that outlives `script_seconds_max` as well.

#![allow(non_upper_case_globals)] // as in the crate: constants are named like values.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The scripts' own watchdog (passed as --timeout).
const script_watchdog_seconds: u64 = 120;
/// The harness's limit, past the watchdog so the script can report first.
const script_seconds_max: u64 = 150;
const broker_ready_seconds_max: u64 = 60;
/// What the scripts import, at the versions whose APIs they use (as in scripts/test.sh).
const python_requirements: &str = "import confluent_kafka, kafka, snappy, lz4.frame, zstandard
assert tuple(int(x) for x in confluent_kafka.__version__.split('.')[:2]) >= (2, 4), 'confluent-kafka < 2.4'
assert int(kafka.__version__.split('.')[0]) >= 3, 'kafka-python < 3'";
const install_hint: &str = "run `bash scripts/test.sh`: it installs the client compatibility tools \
     (apt: kcat, python3-pip; pip: confluent-kafka>=2.4 kafka-python>=3 python-snappy lz4 zstandard) before `cargo test`";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringstream")
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails (never skips) when a client tool is missing; checked once.
fn require_tools() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let python = Command::new("python3")
            .args(["-c", python_requirements])
            .output()
            .map_err(|e| format!("python3 cannot be run ({e})"))?;
        if !python.status.success() {
            return Err(format!(
                "python3 lacks a client module:\n{}",
                String::from_utf8_lossy(&python.stderr).trim_end()
            ));
        }
        let kcat = Command::new("kcat").arg("-V").output().map_err(|e| format!("kcat cannot be run ({e})"))?;
        if !kcat.status.success() {
            return Err(format!("`kcat -V` failed: {}", String::from_utf8_lossy(&kcat.stderr)));
        }
        Ok(())
    });
    if let Err(message) = result {
        panic!("client compatibility tools missing: {message}\n{install_hint}");
    }
}

/// A running broker on a fresh data dir, killed on drop with every broker a
/// script started on the same data dir.
struct Broker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// Arguments after `serve_args` (e.g. `--set name=value`), restarts included.
    extra: Vec<String>,
}

impl Broker {
    fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// A broker started with `extra` arguments after the usual ones, e.g.
    /// `["--set", "group.consumer.session.timeout.ms=6000"]`. Its log level
    /// is RINGSTREAM_LOG where that is set (e.g. debug), else info.
    fn start_with(extra: &[&str]) -> Broker {
        require_tools();
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(dir.path().join("data")).unwrap();
        let stdout_path = dir.path().join("broker.stdout");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let log_level = std::env::var("RINGSTREAM_LOG").unwrap_or_else(|_| "info".to_owned());
        let child = Command::new(bin())
            .args(serve_args(&dir.path().join("data"), "127.0.0.1:0"))
            .args(&extra)
            .env("RINGSTREAM_LOG", log_level)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).unwrap())
            .stderr(append(&dir.path().join("broker.log")))
            .spawn()
            .expect("ringstream starts");
        let mut broker = Broker { child, port: 0, dir, extra };
        let deadline = Instant::now() + Duration::from_secs(broker_ready_seconds_max);
        loop {
            let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = stdout.lines().find(|l| l.starts_with("ready ")) {
                // The listen= word's port (`metrics=HOST:PORT` may follow it).
                let listen = line.split_whitespace().find_map(|w| w.strip_prefix("listen="));
                let port = listen.and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| p.parse().ok());
                broker.port = port.unwrap_or_else(|| panic!("cannot read the port from {line:?}"));
                return broker;
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("broker exited with {status} before it was ready\n{}", broker.log_tail(60));
            }
            if Instant::now() > deadline {
                panic!("broker not ready after {broker_ready_seconds_max}s\n{}", broker.log_tail(60));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("restarted.pids")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// The command line that starts this broker again on its data dir and port.
    fn restart_command(&self) -> Vec<String> {
        let mut command = vec![bin().to_owned()];
        command.extend(serve_args(&self.data_dir(), &self.bootstrap()));
        command.extend(self.extra.iter().cloned());
        command
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let text = strip_ansi(&text);
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        format!(
            "--- broker log (stderr, last {} of {} lines) ---\n{}",
            all.len() - start,
            all.len(),
            all[start..].join("\n")
        )
    }

    /// Runs `tests/compat/<script>.py` against this broker; panics with its
    /// output and the broker's log unless it exits 0. Returns its output.
    fn run(&self, script: &str, extra: &[&str]) -> String {
        let path = repo().join("tests/compat").join(format!("{script}.py"));
        let output_path = self.dir.path().join(format!("{script}.output"));
        let output = File::create(&output_path).unwrap();
        let mut command = Command::new("python3");
        command
            .arg(&path)
            .arg("--bootstrap")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--broker-pid")
            .arg(self.child.id().to_string())
            .arg("--timeout")
            .arg(script_watchdog_seconds.to_string())
            .args(extra)
            .current_dir(repo())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output);
        let started = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|e| panic!("python3 cannot be run: {e}\n{install_hint}"));
        let status = wait_bounded(&mut child, Duration::from_secs(script_seconds_max));
        let text = fs::read_to_string(&output_path).unwrap_or_default();
        match status {
            Some(status) if status.success() => {
                println!("{script}.py passed in {:.1}s:\n{text}", started.elapsed().as_secs_f64());
                text
            }
            Some(status) => panic!(
                "tests/compat/{script}.py failed ({status}) after {:.1}s\n--- script output ---\n{}\n{}",
                started.elapsed().as_secs_f64(),
                text.trim_end(),
                self.log_tail(80)
            ),
            None => panic!(
                "tests/compat/{script}.py still running after {script_seconds_max}s: killed\n--- script output ---\n{}\n{}",
                text.trim_end(),
                self.log_tail(80)
            ),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Brokers the restart script started, if it could not stop them.
        for pid in fs::read_to_string(self.pid_file()).unwrap_or_default().lines() {
            let Ok(pid) = pid.trim().parse::<i32>() else { continue };
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains(&*self.data_dir().to_string_lossy());
            if ours {
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

fn serve_args(data_dir: &Path, listen: &str) -> Vec<String> {
    vec![
        "serve".into(),
        "--data-dir".into(),
        data_dir.to_string_lossy().into_owned(),
        "--listen".into(),
        listen.into(),
        "--shards".into(),
        "2".into(),
        "--set".into(),
        "num.partitions=6".into(),
        "--set".into(),
        "group.initial.rebalance.delay.ms=0".into(),
    ]
}

fn append(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap()
}

/// Waits for `child` at most `limit`; kills it and returns None past that.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn json_string_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| {
            let mut s = String::from("\"");
            for c in item.chars() {
                match c {
                    '"' => s.push_str("\\\""),
                    '\\' => s.push_str("\\\\"),
                    c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                    c => s.push(c),
                }
            }
            s.push('"');
            s
        })
        .collect();
    format!("[{}]", quoted.join(","))
}

/// confluent-kafka: 20k keyed records with headers per codec (none, gzip,
/// snappy, lz4, zstd), byte-exact read-back with assign(), order, key ->
/// partition stability, the codec actually stored.
#[test]
fn confluent_kafka_codecs_byte_exact() {
    Broker::start().run("confluent_codecs", &["--per-codec", "20000"]);
}

/// kafka-python: 6k records per codec, read back by kafka-python and by
/// confluent-kafka; its murmur2 placement matches confluent-kafka's.
#[test]
fn kafka_python_codecs_byte_exact() {
    Broker::start().run("kafka_python_codecs", &["--per-codec", "6000"]);
}

/// offsets_for_times through both clients, plus earliest/latest/max
/// timestamp, over uncompressed and compressed batches.
#[test]
fn offsets_for_times_both_clients() {
    Broker::start().run("offsets_for_times", &[]);
}

/// Topic create/describe/alter/grow/delete through confluent-kafka's AdminClient.
#[test]
fn admin_confluent_kafka() {
    Broker::start().run("admin_confluent", &[]);
}

/// Topic create/describe/alter/grow/delete through kafka-python's KafkaAdminClient.
#[test]
fn admin_kafka_python() {
    Broker::start().run("admin_kafka_python", &[]);
}

/// A SIGTERM restart and a SIGKILL restart while both clients produce and a
/// consumer reads along: nothing acknowledged is lost.
#[test]
fn broker_restart_mid_run_loses_nothing_acknowledged() {
    let mut broker = Broker::start();
    let command = json_string_array(&broker.restart_command());
    let (log, pids) = (broker.log_path(), broker.pid_file());
    broker.run(
        "restart",
        &["--broker-cmd", &command, "--broker-log", &log.to_string_lossy(), "--pid-file", &pids.to_string_lossy()],
    );
    // The script stopped the first broker with SIGTERM: a clean stop, status 0.
    match broker.child.try_wait().unwrap() {
        Some(status) => {
            assert!(status.success(), "the broker stopped with {status} after SIGTERM\n{}", broker.log_tail(60))
        }
        None => panic!("the first broker is still running after the restart test"),
    }
}

/// kcat (Debian, librdkafka 2.0.2): -L metadata, -P -K -H per codec, -C -e -f, -Q.
#[test]
fn kcat_metadata_produce_consume_query() {
    Broker::start().run("kcat", &[]);
}

/// confluent-kafka with enable.idempotence under retries forced by pausing
/// the broker (SIGSTOP/SIGCONT): no duplicates, where the same run without
/// idempotence does duplicate.
#[test]
fn idempotent_confluent_kafka_no_duplicates_under_forced_retries() {
    Broker::start().run("idempotent", &["--client", "confluent-kafka"]);
}

/// The same with kafka-python (idempotent by default since 3.0).
#[test]
fn idempotent_kafka_python_no_duplicates_under_forced_retries() {
    Broker::start().run("idempotent", &["--client", "kafka-python"]);
}

/// Runs one case of a consumer-group script on a fresh broker.
fn group_case(script: &str, case: &str) {
    Broker::start().run(script, &["--case", case]);
}

/// confluent-kafka, 3 members over 6 partitions: two partitions each, every
/// partition read by its one owner, no loss or duplicate, offset order;
/// DescribeGroups and ListGroups agree; Empty after LeaveGroup.
#[test]
fn groups_confluent_partition_spread() {
    group_case("groups_confluent", "spread");
}

/// confluent-kafka, manual commits: a member SIGKILLed (no LeaveGroup) loses
/// its partitions after session.timeout.ms; the others resume at its last
/// commit: nothing lost, duplicates only past that commit.
#[test]
fn groups_confluent_member_loss() {
    group_case("groups_confluent", "member-loss");
}

/// confluent-kafka, 4 members over 2 partitions: two idle members.
#[test]
fn groups_confluent_idle_members() {
    group_case("groups_confluent", "idle");
}

/// confluent-kafka, two groups on one topic each read every record; their
/// committed offsets are separate.
#[test]
fn groups_confluent_independent_groups() {
    group_case("groups_confluent", "independent");
}

/// Committed offsets survive a SIGTERM and a SIGKILL restart (same data dir
/// and port); a new member resumes at them and re-reads nothing committed;
/// a member connected through a third restart reads on.
#[test]
fn groups_confluent_offsets_survive_restarts() {
    let mut broker = Broker::start();
    let command = json_string_array(&broker.restart_command());
    let (log, pids) = (broker.log_path(), broker.pid_file());
    broker.run(
        "groups_confluent",
        &[
            "--case",
            "persistence",
            "--broker-cmd",
            &command,
            "--broker-log",
            &log.to_string_lossy(),
            "--pid-file",
            &pids.to_string_lossy(),
        ],
    );
    match broker.child.try_wait().unwrap() {
        Some(status) => {
            assert!(status.success(), "the broker stopped with {status} after SIGTERM\n{}", broker.log_tail(60))
        }
        None => panic!("the first broker is still running after the persistence test"),
    }
}

/// confluent-kafka static membership: a member with group.instance.id
/// closes (no LeaveGroup) and comes back within the session timeout with the
/// same partitions and no rebalance of the other member; gone for good, its
/// partitions move after the session timeout.
#[test]
fn groups_confluent_static_membership() {
    group_case("groups_confluent", "static");
}

/// confluent-kafka cooperative-sticky: a joining member takes partitions
/// incrementally while records flow; the first keeps the rest; no loss, no
/// duplicates.
#[test]
fn groups_confluent_cooperative_sticky() {
    group_case("groups_confluent", "cooperative");
}

/// OffsetFetch of a group that never existed: OFFSET_INVALID without error;
/// DescribeGroups Dead, DeleteGroups GROUP_ID_NOT_FOUND.
#[test]
fn groups_confluent_unknown_group_offsets() {
    group_case("groups_confluent", "unknown-group");
}

/// confluent-kafka AdminClient: list, describe, list/alter offsets, delete
/// (NON_EMPTY_GROUP, then OK), and a simple (assign-only) group's commits.
#[test]
fn groups_confluent_admin() {
    group_case("groups_confluent", "admin");
}

/// kafka-python, 3 consumers over 6 partitions, and its admin client's
/// list_groups / describe_groups.
#[test]
fn groups_kafka_python_partition_spread() {
    group_case("groups_kafka_python", "spread");
}

/// kafka-python: commit, resume; list_group_offsets, delete_group_offsets
/// (OffsetDelete), delete_groups; -1 offsets of an unknown group.
#[test]
fn groups_kafka_python_commit_resume() {
    group_case("groups_kafka_python", "commit-resume");
}

/// A kafka-python and a confluent-kafka member in one group.
#[test]
fn groups_mixed_clients() {
    group_case("groups_kafka_python", "mixed");
}

/// KIP-848 timings for the consumer-protocol tests: the client sets no
/// session timeout or heartbeat interval there, the broker's apply, and
/// Kafka's defaults (45 s, 5 s) would make these tests slow.
const consumer_protocol_session_timeout_ms: u32 = 6000;

fn consumer_protocol_broker() -> Broker {
    let session = format!("group.consumer.session.timeout.ms={consumer_protocol_session_timeout_ms}");
    Broker::start_with(&["--set", "group.consumer.heartbeat.interval.ms=500", "--set", &session])
}

/// Runs one case of groups_consumer_protocol.py on a fresh broker with the
/// consumer-protocol timings.
fn consumer_protocol_case(case: &str) {
    let session = consumer_protocol_session_timeout_ms.to_string();
    consumer_protocol_broker()
        .run("groups_consumer_protocol", &["--case", case, "--ringstream", bin(), "--session-timeout-ms", &session]);
}

/// confluent-kafka, group.protocol=consumer (KIP-848), 3 members over 6
/// partitions: two each, disjoint and covering; every record read once by
/// its partition's owner, in order; auto-commits land; ConsumerGroupDescribe,
/// ListGroups (type consumer) and `ringstream group describe|list` agree.
#[test]
fn groups_consumer_protocol_partition_spread() {
    consumer_protocol_case("spread");
}

/// KIP-848: a member SIGKILLed loses its partitions to the survivors within
/// the broker's group.consumer.session.timeout.ms; they keep their own and
/// resume at its last commit: nothing lost, duplicates only past that commit.
#[test]
fn groups_consumer_protocol_member_loss() {
    consumer_protocol_case("member-loss");
}

/// KIP-848: a 2nd and a 3rd member join while records flow; from every
/// member's timestamped assign/revoke callbacks, no partition is ever owned
/// by two members at once; commits in on_revoke: no loss, no duplicates.
#[test]
fn groups_consumer_protocol_scale_out_single_owner() {
    consumer_protocol_case("scale-out");
}

/// KIP-848 with a regex subscription (SubscribedTopicRegex): two members
/// read every record of the matching topics once, nothing of the others,
/// and a matching topic created later.
#[test]
fn groups_consumer_protocol_regex_subscription() {
    consumer_protocol_case("regex");
}

/// KIP-848: members commit, the broker restarts (SIGTERM, then SIGKILL) on
/// the same data dir and port; membership is durable, so the members carry
/// on with their partitions (no assign, revoke or lost callback) and read on
/// from their commits, re-reading nothing committed.
#[test]
fn groups_consumer_protocol_offsets_survive_restarts() {
    let mut broker = consumer_protocol_broker();
    let command = json_string_array(&broker.restart_command());
    let (log, pids) = (broker.log_path(), broker.pid_file());
    let session = consumer_protocol_session_timeout_ms.to_string();
    broker.run(
        "groups_consumer_protocol",
        &[
            "--case",
            "persistence",
            "--session-timeout-ms",
            &session,
            "--broker-cmd",
            &command,
            "--broker-log",
            &log.to_string_lossy(),
            "--pid-file",
            &pids.to_string_lossy(),
        ],
    );
    match broker.child.try_wait().unwrap() {
        Some(status) => {
            assert!(status.success(), "the broker stopped with {status} after SIGTERM\n{}", broker.log_tail(60))
        }
        None => panic!("the first broker is still running after the persistence test"),
    }
}

#[test]
fn harness_helpers() {
    assert_eq!(strip_ansi("\u{1b}[2mtime\u{1b}[0m INFO x"), "time INFO x");
    assert_eq!(json_string_array(&["a\"b".into(), "c\\d".into()]), r#"["a\"b","c\\d"]"#);
}
