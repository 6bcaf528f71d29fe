#![allow(non_upper_case_globals)]
//! The group coordinator at protocol level, against the real binary: the
//! classic protocol's state machine and its error codes (MEMBER_ID_REQUIRED,
//! REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
//! FENCED_INSTANCE_ID, ...), session expiry, static membership, committed
//! offsets across SIGKILL, deletion, and the offsets log's compaction.
//! Real-client behaviour (librdkafka, kafka-python) is in tests/compat.rs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ringstream_client::Client;

const NONE: i16 = 0;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

/// Session timeout the tests' members use (the broker's minimum is lowered).
const session_ms: i32 = 1500;

struct Broker {
    child: Child,
    address: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &Path, port: u16, extra: &[&str]) -> Broker {
    for _ in 0..50 {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringstream"));
        command
            .args(["serve", "--shards", "2", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--set", "group.initial.rebalance.delay.ms=0", "--set", "group.min.session.timeout.ms=1000"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RINGSTREAM_LOG", "warn")
            .stdout(Stdio::piped());
        for setting in extra {
            command.args(["--set", setting]);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // Words, not the line's tail: `metrics=` may follow `listen=`.
        if let Some(listen) = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("listen=")))
        {
            return Broker { child, address: listen.to_owned() };
        }
        let _ = child.wait();
        thread::sleep(Duration::from_millis(100));
    }
    panic!("broker did not start on port {port}");
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn connect(broker: &Broker) -> Client {
    Client::connect(&broker.address, Duration::from_secs(5)).unwrap()
}

fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request).unwrap();
    assert_eq!(response.topics[0].error_code, NONE);
}

/// A consumer-protocol subscription to `topics` (ConsumerProtocolSubscription v0).
fn subscription(topics: &[&str]) -> Bytes {
    let mut out = vec![0u8, 0];
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes()); // user data: null
    Bytes::from(out)
}

fn join(client: &mut Client, group: &str, member: &str, instance: Option<&str>, topics: &[&str]) -> JoinGroupResponse {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(5000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(subscription(topics)),
            JoinGroupRequestProtocol::default().with_name(s("roundrobin")).with_metadata(subscription(topics)),
        ]);
    client.call(ApiKey::JoinGroup, 7, &request).unwrap()
}

/// Joins as a new dynamic member: MEMBER_ID_REQUIRED first, then the join.
fn join_new(client: &mut Client, group: &str, topics: &[&str]) -> JoinGroupResponse {
    let first = join(client, group, "", None, topics);
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    join(client, group, first.member_id.as_str(), None, topics)
}

fn sync(
    client: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, &[u8])],
) -> SyncGroupResponse {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::copy_from_slice(a))
                })
                .collect(),
        );
    client.call(ApiKey::SyncGroup, 3, &request).unwrap()
}

fn heartbeat(client: &mut Client, group: &str, generation: i32, member: &str, instance: Option<&str>) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s));
    let response: HeartbeatResponse = client.call(ApiKey::Heartbeat, 4, &request).unwrap();
    response.error_code
}

fn commit(
    client: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(
            offsets
                .iter()
                .map(|(p, o)| {
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(*o)
                        .with_committed_metadata(Some(s("m")))
                })
                .collect(),
        )]);
    let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 8, &request).unwrap();
    response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
}

/// Committed offsets of `partitions` (OffsetFetch v7), -1 where none.
fn fetch(client: &mut Client, group: &str, topic: &str, partitions: &[i32]) -> Vec<i64> {
    let request = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(Some(vec![
        OffsetFetchRequestTopic::default().with_name(TopicName(s(topic))).with_partition_indexes(partitions.to_vec()),
    ]));
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 7, &request).unwrap();
    assert_eq!(response.error_code, NONE);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, NONE);
            p.committed_offset
        })
        .collect()
}

fn describe(client: &mut Client, group: &str) -> describe_groups_response::DescribedGroup {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let mut response: DescribeGroupsResponse = client.call(ApiKey::DescribeGroups, 5, &request).unwrap();
    response.groups.remove(0)
}

fn delete_group(client: &mut Client, group: &str) -> i16 {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    let response: DeleteGroupsResponse = client.call(ApiKey::DeleteGroups, 2, &request).unwrap();
    response.results[0].error_code
}

fn leave(client: &mut Client, group: &str, member: &str) -> i16 {
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_members(vec![MemberIdentity::default().with_member_id(s(member))]);
    let response: LeaveGroupResponse = client.call(ApiKey::LeaveGroup, 4, &request).unwrap();
    assert_eq!(response.error_code, NONE);
    response.members[0].error_code
}

#[test]
fn rebalances_fence_generations_and_members() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), 0, &[]);
    let mut admin = connect(&broker);
    create_topic(&mut admin, "orders", 4);

    // Bad joins are refused with the right codes.
    let mut a = connect(&broker);
    let bad = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range"))]);
    let refused: JoinGroupResponse = a.call(ApiKey::JoinGroup, 7, &bad).unwrap();
    assert_eq!(refused.error_code, INVALID_SESSION_TIMEOUT);
    assert_eq!(join(&mut a, "g", "no-such-member", None, &["orders"]).error_code, UNKNOWN_MEMBER_ID);

    // One member: it leads, assigns, and the group is stable.
    let first = join_new(&mut a, "g", &["orders"]);
    assert_eq!(first.error_code, NONE);
    let member_a = first.member_id.as_str().to_owned();
    assert_eq!(first.leader, first.member_id);
    assert_eq!(first.members.len(), 1);
    assert_eq!(first.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    let generation = first.generation_id;
    let synced = sync(&mut a, "g", generation, &member_a, &[(&member_a, b"all-four")]);
    assert_eq!((synced.error_code, &synced.assignment[..]), (NONE, &b"all-four"[..]));
    assert_eq!(describe(&mut admin, "g").group_state.as_str(), "Stable");

    // Wrong generation, unknown member, admin commit into a live group.
    assert_eq!(heartbeat(&mut a, "g", generation + 1, &member_a, None), ILLEGAL_GENERATION);
    assert_eq!(heartbeat(&mut a, "g", generation, "stranger", None), UNKNOWN_MEMBER_ID);
    assert_eq!(commit(&mut a, "g", generation + 1, &member_a, "orders", &[(0, 5)]), [ILLEGAL_GENERATION]);
    assert_eq!(commit(&mut admin, "g", -1, "", "orders", &[(0, 5)]), [UNKNOWN_MEMBER_ID]);
    assert_eq!(
        commit(&mut a, "g", generation, &member_a, "orders", &[(0, 5), (9, 1)]),
        [NONE, UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(fetch(&mut admin, "g", "orders", &[0, 1]), [5, -1]);
    assert_eq!(delete_group(&mut admin, "g"), NON_EMPTY_GROUP);

    // A member with another protocol type cannot join.
    let mut other = connect(&broker);
    let mismatched = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(session_ms)
        .with_protocol_type(s("connect"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range"))]);
    let refused: JoinGroupResponse = other.call(ApiKey::JoinGroup, 7, &mismatched).unwrap();
    assert_eq!(refused.error_code, INCONSISTENT_GROUP_PROTOCOL);

    // A second member: its join waits until the first rejoins (told by its
    // heartbeat), and both get the next generation.
    let address = broker.address.clone();
    let second = thread::spawn(move || {
        let mut b = Client::connect(&address, Duration::from_secs(5)).unwrap();
        let joined = join_new(&mut b, "g", &["orders"]);
        (b, joined)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while heartbeat(&mut a, "g", generation, &member_a, None) != REBALANCE_IN_PROGRESS {
        assert!(Instant::now() < deadline, "no rebalance announced");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        commit(&mut a, "g", generation, &member_a, "orders", &[(1, 7)]),
        [NONE],
        "commits are allowed while preparing"
    );
    let rejoined = join(&mut a, "g", &member_a, None, &["orders"]);
    let (mut b, joined_b) = second.join().unwrap();
    assert_eq!((rejoined.error_code, joined_b.error_code), (NONE, NONE));
    assert_eq!(rejoined.generation_id, generation + 1);
    assert_eq!(joined_b.generation_id, generation + 1);
    assert_eq!(rejoined.leader.as_str(), member_a, "the leader stays");
    assert_eq!(rejoined.members.len(), 2);
    assert!(joined_b.members.is_empty(), "only the leader gets the member list");
    let member_b = joined_b.member_id.as_str().to_owned();
    let generation = generation + 1;
    // The follower's sync waits for the leader's.
    let follower = thread::spawn(move || {
        let synced = sync(&mut b, "g", generation, &member_b, &[]);
        (b, member_b, synced)
    });
    thread::sleep(Duration::from_millis(200));
    let leader =
        sync(&mut a, "g", generation, &member_a, &[(&member_a, b"p0,p1"), (joined_b.member_id.as_str(), b"p2,p3")]);
    let (mut b, member_b, synced_b) = follower.join().unwrap();
    assert_eq!(&leader.assignment[..], b"p0,p1");
    assert_eq!(&synced_b.assignment[..], b"p2,p3");
    let described = describe(&mut admin, "g");
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.members.len(), 2);

    // The second member stops heartbeating: after its session it is expired
    // and the leader is told to rebalance, then owns the group alone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let code = heartbeat(&mut a, "g", generation, &member_a, None);
        if code == REBALANCE_IN_PROGRESS {
            break;
        }
        assert_eq!(code, NONE);
        assert!(Instant::now() < deadline, "expired member never removed");
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(heartbeat(&mut b, "g", generation, &member_b, None), UNKNOWN_MEMBER_ID);
    let alone = join(&mut a, "g", &member_a, None, &["orders"]);
    assert_eq!((alone.error_code, alone.generation_id, alone.members.len()), (NONE, generation + 1, 1));

    // OffsetDelete refuses a subscribed topic; leaving empties the group,
    // which then can be deleted with its offsets.
    let deletion = OffsetDeleteRequest::default().with_group_id(GroupId(s("g"))).with_topics(vec![
        OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
    ]);
    let refused: OffsetDeleteResponse = admin.call(ApiKey::OffsetDelete, 0, &deletion).unwrap();
    assert_eq!(refused.topics[0].partitions[0].error_code, GROUP_SUBSCRIBED_TO_TOPIC);
    assert_eq!(leave(&mut a, "g", &member_a), NONE);
    assert_eq!(describe(&mut admin, "g").group_state.as_str(), "Empty");
    let deleted: OffsetDeleteResponse = admin.call(ApiKey::OffsetDelete, 0, &deletion).unwrap();
    assert_eq!((deleted.error_code, deleted.topics[0].partitions[0].error_code), (NONE, NONE));
    assert_eq!(fetch(&mut admin, "g", "orders", &[0, 1]), [-1, 7]);
    assert_eq!(delete_group(&mut admin, "g"), NONE);
    assert_eq!(delete_group(&mut admin, "g"), GROUP_ID_NOT_FOUND);
    assert_eq!(fetch(&mut admin, "g", "orders", &[1]), [-1]);
    assert_eq!(describe(&mut admin, "g").group_state.as_str(), "Dead");
}

#[test]
fn static_members_rejoin_without_a_rebalance_and_fence_their_old_id() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), 0, &[]);
    let mut admin = connect(&broker);
    create_topic(&mut admin, "events", 2);
    let mut a = connect(&broker);
    let joined = join(&mut a, "static", "", Some("instance-1"), &["events"]);
    assert_eq!(joined.error_code, NONE, "static members get their id at once");
    let old_id = joined.member_id.as_str().to_owned();
    let generation = joined.generation_id;
    assert_eq!(sync(&mut a, "static", generation, &old_id, &[(&old_id, b"both")]).error_code, NONE);

    // "Restart": the same instance joins with no member id.
    let mut again = connect(&broker);
    let rejoined = join(&mut again, "static", "", Some("instance-1"), &["events"]);
    assert_eq!(rejoined.error_code, NONE);
    assert_eq!(rejoined.generation_id, generation, "no rebalance");
    let new_id = rejoined.member_id.as_str().to_owned();
    assert_ne!(new_id, old_id);
    let synced = sync(&mut again, "static", generation, &new_id, &[]);
    assert_eq!((synced.error_code, &synced.assignment[..]), (NONE, &b"both"[..]), "keeps its assignment");
    assert_eq!(heartbeat(&mut again, "static", generation, &new_id, Some("instance-1")), NONE);
    assert_eq!(heartbeat(&mut a, "static", generation, &old_id, Some("instance-1")), FENCED_INSTANCE_ID);
    assert_eq!(describe(&mut admin, "static").group_state.as_str(), "Stable");
}

#[test]
fn committed_offsets_survive_sigkill_and_deleted_topics_take_theirs_along() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = start(dir.path(), 0, &[]);
    let port: u16 = broker.address.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut admin = connect(&broker);
    create_topic(&mut admin, "kept", 3);
    create_topic(&mut admin, "doomed", 1);
    for (i, group) in ["g1", "g2", "g3", "g4"].iter().enumerate() {
        let base = 100 * i as i64;
        assert_eq!(commit(&mut admin, group, -1, "", "kept", &[(0, base), (1, base + 1), (2, base + 2)]), [NONE; 3]);
        assert_eq!(commit(&mut admin, group, -1, "", "doomed", &[(0, base + 9)]), [NONE]);
    }
    // A group with live members, to come back Stable.
    let mut m = connect(&broker);
    let joined = join_new(&mut m, "live", &["kept"]);
    let member = joined.member_id.as_str().to_owned();
    assert_eq!(sync(&mut m, "live", joined.generation_id, &member, &[(&member, b"x")]).error_code, NONE);

    drop(broker); // SIGKILL
    broker = start(dir.path(), port, &[]);
    let mut admin = connect(&broker);
    for (i, group) in ["g1", "g2", "g3", "g4"].iter().enumerate() {
        let base = 100 * i as i64;
        assert_eq!(fetch(&mut admin, group, "kept", &[0, 1, 2]), [base, base + 1, base + 2], "{group}");
        assert_eq!(fetch(&mut admin, group, "doomed", &[0]), [base + 9]);
    }
    let live = describe(&mut admin, "live");
    assert_eq!((live.group_state.as_str(), live.members.len()), ("Stable", 1));
    let mut m = connect(&broker);
    assert_eq!(heartbeat(&mut m, "live", joined.generation_id, &member, None), NONE, "the member carries on");

    let request = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("doomed"))]).with_timeout_ms(10_000);
    let deleted: DeleteTopicsResponse = admin.call(ApiKey::DeleteTopics, 4, &request).unwrap();
    assert_eq!(deleted.responses[0].error_code, NONE);
    let all = OffsetFetchRequest::default()
        .with_groups(vec![OffsetFetchRequestGroup::default().with_group_id(GroupId(s("g2"))).with_topics(None)]);
    let response: OffsetFetchResponse = admin.call(ApiKey::OffsetFetch, 8, &all).unwrap();
    let topics: Vec<&str> = response.groups[0].topics.iter().map(|t| t.name.0.as_str()).collect();
    assert_eq!(topics, ["kept"], "the deleted topic's offsets are gone");
    // v8 with several groups, one unknown: -1 and no error.
    let many = OffsetFetchRequest::default().with_groups(
        ["g1", "never-seen"]
            .iter()
            .map(|g| {
                OffsetFetchRequestGroup::default().with_group_id(GroupId(s(g))).with_topics(Some(vec![
                    OffsetFetchRequestTopics::default().with_name(TopicName(s("kept"))).with_partition_indexes(vec![2]),
                ]))
            })
            .collect(),
    );
    let response: OffsetFetchResponse = admin.call(ApiKey::OffsetFetch, 8, &many).unwrap();
    let got: Vec<(i16, i64)> =
        response.groups.iter().map(|g| (g.error_code, g.topics[0].partitions[0].committed_offset)).collect();
    assert_eq!(got, [(NONE, 2), (NONE, -1)]);
}

#[test]
fn the_offsets_log_is_compacted_and_replays_to_the_latest_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let small = ["offsets.topic.segment.bytes=16384", "offsets.topic.num.partitions=1"];
    let mut broker = start(dir.path(), 0, &small);
    let port: u16 = broker.address.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut admin = connect(&broker);
    create_topic(&mut admin, "busy", 2);
    let commits = 3000;
    for i in 0..commits {
        assert_eq!(commit(&mut admin, "churn", -1, "", "busy", &[(0, i), (1, 2 * i)]), [NONE, NONE]);
    }
    let segments = || {
        std::fs::read_dir(dir.path().join("__consumer_offsets-0"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"))
            .count()
    };
    // 3000 commits of ~150 bytes would fill ~28 segments of 16 KiB.
    assert!(segments() <= 8, "{} segments: not compacted", segments());
    drop(broker);
    broker = start(dir.path(), port, &small);
    let mut admin = connect(&broker);
    assert_eq!(fetch(&mut admin, "churn", "busy", &[0, 1]), [commits - 1, 2 * (commits - 1)]);
}

#[test]
fn committed_offsets_expire_after_offsets_retention_minutes() {
    // One minute, Kafka's smallest setting; checked every 500 ms.
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), 0, &["offsets.retention.minutes=1", "offsets.retention.check.interval.ms=500"]);
    let mut admin = connect(&broker);
    create_topic(&mut admin, "kept", 1);
    create_topic(&mut admin, "dropped", 1);
    let committed_at = Instant::now();
    // A group that only stores offsets: each expires a minute after its commit.
    assert_eq!(commit(&mut admin, "simple", -1, "", "kept", &[(0, 11)]), [NONE]);
    // A consumer group that empties: its offsets expire a minute after that,
    // and the group goes with them.
    let mut leaver = connect(&broker);
    let joined = join_new(&mut leaver, "emptied", &["kept"]);
    let leaver_id = joined.member_id.as_str().to_owned();
    assert_eq!(sync(&mut leaver, "emptied", joined.generation_id, &leaver_id, &[(&leaver_id, b"x")]).error_code, NONE);
    assert_eq!(commit(&mut leaver, "emptied", joined.generation_id, &leaver_id, "kept", &[(0, 22)]), [NONE]);
    assert_eq!(leave(&mut leaver, "emptied", &leaver_id), NONE);
    // A stable group keeps offsets of what it subscribes to, and loses
    // those of topics it does not.
    let mut stayer = connect(&broker);
    let joined = join_new(&mut stayer, "stable", &["kept"]);
    let (generation, stayer_id) = (joined.generation_id, joined.member_id.as_str().to_owned());
    assert_eq!(sync(&mut stayer, "stable", generation, &stayer_id, &[(&stayer_id, b"x")]).error_code, NONE);
    assert_eq!(commit(&mut stayer, "stable", generation, &stayer_id, "kept", &[(0, 33)]), [NONE]);
    assert_eq!(commit(&mut stayer, "stable", generation, &stayer_id, "dropped", &[(0, 44)]), [NONE]);

    let deadline = committed_at + Duration::from_secs(120);
    loop {
        assert_eq!(heartbeat(&mut stayer, "stable", generation, &stayer_id, None), NONE);
        let state = (
            fetch(&mut admin, "simple", "kept", &[0])[0],
            fetch(&mut admin, "emptied", "kept", &[0])[0],
            fetch(&mut admin, "stable", "kept", &[0])[0],
            fetch(&mut admin, "stable", "dropped", &[0])[0],
        );
        if committed_at.elapsed() < Duration::from_secs(45) {
            assert_eq!(state, (11, 22, 33, 44), "expired before the retention");
        } else if state == (-1, -1, 33, -1) {
            break;
        }
        assert!(Instant::now() < deadline, "offsets never expired: {state:?}");
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(describe(&mut admin, "emptied").group_state.as_str(), "Dead", "the emptied group is gone");
    assert_eq!(describe(&mut admin, "stable").group_state.as_str(), "Stable");
}
