//! `ringstream group list|describe|delete|reset-offsets` against the real
//! binary, checked against Kafka's semantics (kafka-consumer-groups.sh and
//! the group coordinator).
//!
//! Each test starts `ringstream serve` (2 shards, so the tools' several
//! connections land on different shards) on a fresh data dir and an
//! ephemeral port, produces records with `ringstream produce`, builds group
//! state with hand-written requests through `ringstream_client` (admin
//! OffsetCommits with generation -1; a member that joins, syncs, heartbeats
//! and leaves), then runs the tools and checks their output and the offsets
//! OffsetFetch reads back. The broker is killed when the test ends, also on
//! panic. Nothing here waits on a clock: the member's session timeout is far
//! longer than the test, and it heartbeats between steps anyway.

#![allow(non_upper_case_globals)] // as in the crate: constants are named like values.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ringstream_client::Client;
use ringstream_core::types::TopicPartition;

const broker_ready_seconds_max: u64 = 60;
/// Longer than any test runs: the member never expires on its own.
const session_timeout_ms: i32 = 120_000;

const UNKNOWN_MEMBER_ID: i16 = 25;
const MEMBER_ID_REQUIRED: i16 = 79;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringstream")
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// A running broker on a fresh data dir, killed on drop.
struct Broker {
    child: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        let stdout_path = dir.path().join("broker.stdout");
        let child = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--shards", "2"])
            .arg("--data-dir")
            .arg(&data)
            .args(["--set", "group.initial.rebalance.delay.ms=0"])
            .env("RINGSTREAM_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).unwrap())
            .stderr(File::create(dir.path().join("broker.log")).unwrap())
            .spawn()
            .expect("ringstream starts");
        let mut broker = Broker { child, address: String::new(), dir };
        let deadline = Instant::now() + Duration::from_secs(broker_ready_seconds_max);
        loop {
            let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = stdout.lines().find(|l| l.starts_with("ready ")) {
                let address = line.split_whitespace().find_map(|word| word.strip_prefix("listen="));
                broker.address = address.unwrap_or_else(|| panic!("no listen= in {line:?}")).to_owned();
                return broker;
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("broker exited with {status} before it was ready\n{}", broker.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "broker not ready after {broker_ready_seconds_max}s\n{}",
                broker.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        format!("--- broker log (last {} lines) ---\n{}", lines.len() - start, lines[start..].join("\n"))
    }

    fn client(&self) -> Client {
        Client::connect(&self.address, Duration::from_secs(5)).expect("connects")
    }

    /// Runs `ringstream ARGS -b ADDRESS` with `stdin` as its input.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(bin())
            .args(args)
            .args(["-b", &self.address])
            .env("RINGSTREAM_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs a tool that must succeed; returns its stdout and stderr.
    fn ok(&self, args: &[&str]) -> (String, String) {
        let output = self.run(args, "");
        let (stdout, stderr) = texts(&output);
        assert!(
            output.status.success(),
            "`ringstream {}` failed ({})\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}{}",
            args.join(" "),
            output.status,
            self.log_tail()
        );
        (stdout, stderr)
    }

    /// Runs a tool that must fail; returns its stdout and stderr.
    fn fails(&self, args: &[&str]) -> (String, String) {
        let output = self.run(args, "");
        let (stdout, stderr) = texts(&output);
        assert!(
            !output.status.success(),
            "`ringstream {}` succeeded, expected a failure\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
            args.join(" ")
        );
        (stdout, stderr)
    }

    fn produce(&self, topic: &str, partition: i32, records: usize) {
        let lines: String = (0..records).map(|i| format!("record-{i}\n")).collect();
        let output = self.run(&["produce", topic, "-p", &partition.to_string()], &lines);
        assert!(output.status.success(), "produce failed: {}", texts(&output).1);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn texts(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The rows of the table whose header starts with `first_column`, up to the
/// next blank line, split into cells.
fn table(stdout: &str, first_column: &str) -> Vec<Vec<String>> {
    let mut lines = stdout.lines().skip_while(|l| l.split_whitespace().next() != Some(first_column));
    assert!(lines.next().is_some(), "no table headed {first_column} in:\n{stdout}");
    lines.take_while(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().map(str::to_owned).collect()).collect()
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// An admin commit (generation -1, no member); every partition must succeed.
fn admin_commit(client: &mut Client, group: &str, offsets: &[(&str, i32, i64)]) {
    let offsets: BTreeMap<TopicPartition, i64> = offsets.iter().map(|(t, p, o)| (tp(t, *p), *o)).collect();
    let results = client.offset_commit(group, -1, "", &offsets).expect("OffsetCommit");
    assert!(results.values().all(|code| *code == 0), "admin commit for {group} refused: {results:?}");
}

/// The group's committed offsets, all topics (OffsetFetch, topics = null).
fn committed(client: &mut Client, group: &str) -> BTreeMap<TopicPartition, i64> {
    client
        .offset_fetch(group, None)
        .expect("OffsetFetch")
        .into_iter()
        .map(|(tp, offset)| {
            let offset = offset.unwrap_or_else(|code| panic!("OffsetFetch {tp}: error {code}"));
            (tp, offset)
        })
        .collect()
}

fn offsets(entries: &[(&str, i32, i64)]) -> BTreeMap<TopicPartition, i64> {
    entries.iter().map(|(t, p, o)| (tp(t, *p), *o)).collect()
}

#[test]
fn group_tools_on_groups_without_members() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "orders", "-p", "3"]);
    broker.ok(&["topic", "create", "audit", "-p", "1"]);
    broker.produce("orders", 0, 10);
    broker.produce("orders", 1, 5);
    broker.produce("audit", 0, 4);
    let mut client = broker.client();
    admin_commit(&mut client, "g1", &[("orders", 0, 4), ("orders", 1, 5), ("audit", 0, 1)]);
    admin_commit(&mut client, "a-group", &[("orders", 2, 0)]);
    assert_eq!(committed(&mut client, "g1"), offsets(&[("orders", 0, 4), ("orders", 1, 5), ("audit", 0, 1)]));

    // list: sorted, with a header. A group that only has admin-committed
    // offsets is Empty with no protocol type (Kafka lists it so).
    let (stdout, _) = broker.ok(&["group", "list"]);
    assert!(stdout.starts_with("GROUP"), "{stdout}");
    let groups = table(&stdout, "GROUP");
    assert_eq!(groups, vec![row(&["a-group", "Empty", "-"]), row(&["g1", "Empty", "-"])], "{stdout}");

    // describe: committed offsets, log end offsets and lag per partition.
    let (stdout, _) = broker.ok(&["group", "describe", "g1"]);
    assert_eq!(table(&stdout, "GROUP"), vec![row(&["g1", "Empty", "-", "-", "0"])], "{stdout}");
    assert!(stdout.contains("has no active members"), "{stdout}");
    assert_eq!(
        table(&stdout, "TOPIC"),
        vec![
            row(&["audit", "0", "1", "4", "3", "-", "-", "-"]),
            row(&["orders", "0", "4", "10", "6", "-", "-", "-"]),
            row(&["orders", "1", "5", "5", "0", "-", "-", "-"]),
        ],
        "{stdout}"
    );

    // A group that does not exist.
    let (_, stderr) = broker.fails(&["group", "describe", "no-such-group"]);
    assert!(stderr.contains("\"no-such-group\" does not exist"), "{stderr}");

    // reset-offsets dry runs: the plan is printed, nothing is committed.
    let plan = |args: &[&str]| {
        let mut all = vec!["group", "reset-offsets", "g1"];
        all.extend_from_slice(args);
        let (stdout, stderr) = broker.ok(&all);
        assert!(stderr.contains("dry run"), "{stderr}");
        table(&stdout, "TOPIC")
    };
    assert_eq!(
        plan(&["--topic", "orders", "--to-earliest"]),
        vec![row(&["orders", "0", "0"]), row(&["orders", "1", "0"]), row(&["orders", "2", "0"])]
    );
    assert_eq!(
        plan(&["--topic", "orders:0,2", "--to-latest", "--dry-run"]),
        vec![row(&["orders", "0", "10"]), row(&["orders", "2", "0"])]
    );
    // Shifted and absolute offsets are kept within [log start, log end].
    assert_eq!(
        plan(&["--all-topics", "--shift-by", "-2"]),
        vec![row(&["audit", "0", "0"]), row(&["orders", "0", "2"]), row(&["orders", "1", "3"])]
    );
    assert_eq!(plan(&["--topic", "orders:0", "--to-offset", "100"]), vec![row(&["orders", "0", "10"])]);
    assert_eq!(plan(&["--topic", "orders:0", "--to-offset", "-5"]), vec![row(&["orders", "0", "0"])]);
    // By time: every record is newer than 2000; none is as new as 2999
    // (then the log end, as Kafka's tool falls back); an empty partition
    // resets to its end.
    assert_eq!(
        plan(&["--topic", "orders", "--to-datetime", "2000-01-01T00:00:00Z"]),
        vec![row(&["orders", "0", "0"]), row(&["orders", "1", "0"]), row(&["orders", "2", "0"])]
    );
    assert_eq!(plan(&["--topic", "orders:0", "--to-datetime", "0"]), vec![row(&["orders", "0", "0"])]);
    assert_eq!(
        plan(&["--topic", "orders:0,1", "--to-datetime", "2999-01-01T00:00:00.000+01:00"]),
        vec![row(&["orders", "0", "10"]), row(&["orders", "1", "5"])]
    );
    assert_eq!(committed(&mut client, "g1"), offsets(&[("orders", 0, 4), ("orders", 1, 5), ("audit", 0, 1)]));

    // Refused before anything is sent.
    let (_, stderr) = broker.fails(&["group", "reset-offsets", "g1", "--topic", "orders:2", "--shift-by", "1"]);
    assert!(stderr.contains("no committed offset"), "{stderr}");
    let (_, stderr) = broker.fails(&["group", "reset-offsets", "g1", "--topic", "orders:7", "--to-earliest"]);
    assert!(stderr.contains("does not exist"), "{stderr}");
    broker.fails(&["group", "reset-offsets", "g1", "--all-topics"]);
    broker.fails(&["group", "reset-offsets", "g1", "--all-topics", "--to-earliest", "--to-latest"]);
    broker.fails(&["group", "reset-offsets", "g1", "--to-earliest"]);
    broker.fails(&["group", "reset-offsets", "g1", "--all-topics", "--to-datetime", "2024-01-01T00:00:00"]);

    // --execute commits the plan.
    let (stdout, _) = broker.ok(&["group", "reset-offsets", "g1", "--all-topics", "--to-latest", "--execute"]);
    assert_eq!(
        table(&stdout, "TOPIC"),
        vec![row(&["audit", "0", "4"]), row(&["orders", "0", "10"]), row(&["orders", "1", "5"])]
    );
    assert_eq!(committed(&mut client, "g1"), offsets(&[("orders", 0, 10), ("orders", 1, 5), ("audit", 0, 4)]));
    broker.ok(&["group", "reset-offsets", "g1", "--topic", "orders:0", "--shift-by", "-3", "--execute"]);
    assert_eq!(committed(&mut client, "g1"), offsets(&[("orders", 0, 7), ("orders", 1, 5), ("audit", 0, 4)]));
    // A partition the group had no offset for gets one.
    broker.ok(&["group", "reset-offsets", "g1", "--topic", "orders:2", "--to-earliest", "--execute"]);
    assert_eq!(
        committed(&mut client, "g1"),
        offsets(&[("orders", 0, 7), ("orders", 1, 5), ("orders", 2, 0), ("audit", 0, 4)])
    );
    let (stdout, _) = broker.ok(&["group", "describe", "g1"]);
    assert_eq!(
        table(&stdout, "TOPIC"),
        vec![
            row(&["audit", "0", "4", "4", "0", "-", "-", "-"]),
            row(&["orders", "0", "7", "10", "3", "-", "-", "-"]),
            row(&["orders", "1", "5", "5", "0", "-", "-", "-"]),
            row(&["orders", "2", "0", "0", "0", "-", "-", "-"]),
        ],
        "{stdout}"
    );

    // delete: both go, with their offsets; deleting again is GROUP_ID_NOT_FOUND.
    let (stdout, _) = broker.ok(&["group", "delete", "g1", "a-group"]);
    assert!(stdout.contains("deleted group g1") && stdout.contains("deleted group a-group"), "{stdout}");
    let (stdout, _) = broker.ok(&["group", "list"]);
    assert_eq!(table(&stdout, "GROUP"), Vec::<Vec<String>>::new(), "{stdout}");
    assert_eq!(committed(&mut client, "g1"), BTreeMap::new());
    let (_, stderr) = broker.fails(&["group", "describe", "g1"]);
    assert!(stderr.contains("does not exist"), "{stderr}");
    let (stdout, stderr) = broker.fails(&["group", "delete", "g1"]);
    assert!(stdout.contains("GROUP_ID_NOT_FOUND (69)"), "{stdout}");
    assert!(stderr.contains("1 of 1 group(s) not deleted"), "{stderr}");
}

/// One consumer group member, driven by hand.
struct Member {
    client: Client,
    group: String,
    member_id: String,
    generation_id: i32,
}

/// ConsumerProtocolSubscription v0: topics, then null user data.
fn subscription(topics: &[&str]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_i32(topics.len() as i32);
    for topic in topics {
        out.put_i16(topic.len() as i16);
        out.put_slice(topic.as_bytes());
    }
    out.put_i32(-1);
    out.freeze()
}

/// ConsumerProtocolAssignment v0, written by hand (independent of the
/// decoder the tools use): topics with partitions, then null user data.
fn assignment(topics: &[(&str, &[i32])]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(0);
    out.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        out.put_i16(topic.len() as i16);
        out.put_slice(topic.as_bytes());
        out.put_i32(partitions.len() as i32);
        for p in *partitions {
            out.put_i32(*p);
        }
    }
    out.put_i32(-1);
    out.freeze()
}

impl Member {
    /// Joins `group` (the only member, so its leader) and assigns itself
    /// `partitions` of `topic`.
    fn join(broker: &Broker, group: &str, topic: &str, partitions: &[i32]) -> Member {
        let mut client = broker.client();
        let version = client.version(ApiKey::JoinGroup, 7).expect("JoinGroup served");
        let mut member_id = String::new();
        let joined = loop {
            let mut request = JoinGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_session_timeout_ms(session_timeout_ms)
                .with_member_id(s(&member_id))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(subscription(&[topic]))]);
            if version >= 1 {
                request.rebalance_timeout_ms = session_timeout_ms;
            }
            let response: JoinGroupResponse = client.call(ApiKey::JoinGroup, version, &request).expect("JoinGroup");
            match response.error_code {
                0 => break response,
                // KIP-394: the first join gets a member id to join with.
                MEMBER_ID_REQUIRED if member_id.is_empty() => member_id = response.member_id.as_str().to_owned(),
                code => panic!("JoinGroup failed with {code}"),
            }
        };
        let member_id = joined.member_id.as_str().to_owned();
        assert_eq!(joined.leader.as_str(), member_id, "the only member leads");
        assert_eq!(joined.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
        assert_eq!(joined.members.len(), 1);
        let version = client.version(ApiKey::SyncGroup, 5).expect("SyncGroup served");
        let mine = assignment(&[(topic, partitions)]);
        let mut request = SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(joined.generation_id)
            .with_member_id(s(&member_id))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&member_id))
                .with_assignment(mine.clone())]);
        if version >= 5 {
            request.protocol_type = Some(s("consumer"));
            request.protocol_name = Some(s("range"));
        }
        let synced: SyncGroupResponse = client.call(ApiKey::SyncGroup, version, &request).expect("SyncGroup");
        assert_eq!(synced.error_code, 0, "SyncGroup");
        assert_eq!(synced.assignment, mine, "SyncGroup hands back the leader's assignment");
        Member { client, group: group.to_owned(), member_id, generation_id: joined.generation_id }
    }

    fn heartbeat(&mut self) {
        let version = self.client.version(ApiKey::Heartbeat, 4).expect("Heartbeat served");
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_generation_id(self.generation_id)
            .with_member_id(s(&self.member_id));
        let response: HeartbeatResponse = self.client.call(ApiKey::Heartbeat, version, &request).expect("Heartbeat");
        assert_eq!(response.error_code, 0, "Heartbeat");
    }

    /// Commits as the member (its generation and id).
    fn commit(&mut self, entries: &[(&str, i32, i64)]) {
        let results = self
            .client
            .offset_commit(&self.group, self.generation_id, &self.member_id, &offsets(entries))
            .expect("OffsetCommit");
        assert!(results.values().all(|code| *code == 0), "member commit refused: {results:?}");
    }

    fn leave(mut self) {
        let version = self.client.version(ApiKey::LeaveGroup, 4).expect("LeaveGroup served");
        let mut request = LeaveGroupRequest::default().with_group_id(GroupId(s(&self.group)));
        if version >= 3 {
            request.members = vec![MemberIdentity::default().with_member_id(s(&self.member_id))];
        } else {
            request.member_id = s(&self.member_id);
        }
        let response: LeaveGroupResponse = self.client.call(ApiKey::LeaveGroup, version, &request).expect("LeaveGroup");
        assert_eq!(response.error_code, 0, "LeaveGroup");
        assert!(response.members.iter().all(|m| m.error_code == 0), "LeaveGroup: {:?}", response.members);
    }
}

#[test]
fn group_tools_on_a_group_with_an_active_member() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "events", "-p", "2"]);
    broker.produce("events", 0, 3);
    broker.produce("events", 1, 2);
    let mut member = Member::join(&broker, "live", "events", &[0, 1]);
    member.commit(&[("events", 0, 1)]);
    let member_id = member.member_id.clone();

    let (stdout, _) = broker.ok(&["group", "list"]);
    assert_eq!(table(&stdout, "GROUP"), vec![row(&["live", "Stable", "consumer"])], "{stdout}");

    member.heartbeat();
    let (stdout, _) = broker.ok(&["group", "describe", "live"]);
    assert_eq!(table(&stdout, "GROUP"), vec![row(&["live", "Stable", "consumer", "range", "1"])], "{stdout}");
    let members = table(&stdout, "MEMBER-ID");
    assert_eq!(members.len(), 1, "{stdout}");
    let host = members[0][3].clone();
    assert!(host.contains("127.0.0.1"), "member host {host:?}\n{stdout}");
    assert_eq!(members[0], row(&[&member_id, "-", "ringstream-cli", &host, "events:0,1"]), "{stdout}");
    assert_eq!(
        table(&stdout, "TOPIC"),
        vec![
            row(&["events", "0", "1", "3", "2", &member_id, &host, "ringstream-cli"]),
            row(&["events", "1", "-", "2", "-", &member_id, &host, "ringstream-cli"]),
        ],
        "{stdout}"
    );

    // A dry run works (with a warning); --execute is refused by the broker
    // (Kafka: UNKNOWN_MEMBER_ID for an admin commit to a group with members).
    member.heartbeat();
    let (stdout, stderr) = broker.ok(&["group", "reset-offsets", "live", "--all-topics", "--to-earliest"]);
    assert_eq!(table(&stdout, "TOPIC"), vec![row(&["events", "0", "0"])]);
    assert!(stderr.contains("Stable"), "{stderr}");
    let (_, stderr) =
        broker.fails(&["group", "reset-offsets", "live", "--topic", "events", "--to-earliest", "--execute"]);
    assert!(stderr.contains("UNKNOWN_MEMBER_ID (25)"), "{stderr}");
    assert!(stderr.contains("no active members"), "{stderr}");
    // The same refusal, straight from the client.
    let refused = broker.client().offset_commit("live", -1, "", &offsets(&[("events", 0, 0)])).expect("OffsetCommit");
    assert_eq!(refused.values().copied().collect::<Vec<_>>(), vec![UNKNOWN_MEMBER_ID]);
    assert_eq!(committed(&mut member.client, "live"), offsets(&[("events", 0, 1)]));

    // delete: NON_EMPTY_GROUP while the member is in.
    member.heartbeat();
    let (stdout, _) = broker.fails(&["group", "delete", "live"]);
    assert!(stdout.contains("NON_EMPTY_GROUP (68)"), "{stdout}");

    // Once it leaves, the group is Empty and keeps its offsets; now the tools act.
    member.leave();
    let (stdout, _) = broker.ok(&["group", "describe", "live"]);
    let summary = table(&stdout, "GROUP");
    assert_eq!(summary[0][..2], row(&["live", "Empty"])[..], "{stdout}");
    assert_eq!(summary[0][4], "0", "{stdout}");
    assert_eq!(table(&stdout, "TOPIC"), vec![row(&["events", "0", "1", "3", "2", "-", "-", "-"])], "{stdout}");
    broker.ok(&["group", "reset-offsets", "live", "--topic", "events", "--to-latest", "--execute"]);
    let mut client = broker.client();
    assert_eq!(committed(&mut client, "live"), offsets(&[("events", 0, 3), ("events", 1, 2)]));
    let (stdout, _) = broker.ok(&["group", "delete", "live"]);
    assert!(stdout.contains("deleted group live"), "{stdout}");
    assert_eq!(committed(&mut client, "live"), BTreeMap::new());
}
