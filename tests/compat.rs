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

mod harness;

use harness::*;

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

/// confluent-kafka producer (acks=all, not idempotent, pipelined) and
/// consumer at full speed while `ringstream partition move` moves both
/// partitions back and forth between the shards: every record acknowledged
/// once, read once, in order, at its acknowledged offset; no delivery or
/// client errors; `ringstream partition list` shows each move.
#[test]
fn partition_moves_under_confluent_kafka_load() {
    let broker = Broker::start_with(&["--metrics-listen", "127.0.0.1:0"]);
    let admin = broker.metrics.clone().expect("the ready line names the metrics address");
    broker.run("partition_move", &["--ringstream", bin(), "--admin", &admin]);
}

/// aiokafka: admin CreateTopics (null message on success) and describe, an
/// idempotent producer with every codec, a group consumer reading every
/// record at its acknowledged offset and committing, a second consumer
/// resuming at the commits, DeleteRecords moving the earliest offset.
#[test]
fn aiokafka_admin_produce_group_consume() {
    Broker::start().run("aiokafka_client", &[]);
}

#[test]
fn harness_helpers() {
    assert_eq!(strip_ansi("\u{1b}[2mtime\u{1b}[0m INFO x"), "time INFO x");
    let ready = "ready shards=2 listen=127.0.0.1:9092 metrics=127.0.0.1:9644";
    assert_eq!(ready_field(ready, "listen"), Some("127.0.0.1:9092"));
    assert_eq!(ready_field(ready, "metrics"), Some("127.0.0.1:9644"));
    assert_eq!(ready_field("ready shards=1 listen=127.0.0.1:1", "metrics"), None);
    assert_eq!(json_string_array(&["a\"b".into(), "c\\d".into()]), r#"["a\"b","c\\d"]"#);
}
