//! Transactions with real clients against the real binary: the scenarios
//! of `tests/compat/transactions.py` (confluent-kafka and kafka-python
//! transactional producers, read_committed and read_uncommitted consumers
//! of both clients), each on a fresh broker. The coordinator checks for
//! timed-out transactions every 500 ms here (Kafka's default is 10 s).
//! The three-node failover scenario is in `tests/replication.rs`'s harness
//! (`transactions_survive_coordinator_and_leader_failover`).

#![allow(non_upper_case_globals)] // as in the crate: constants are named like values.

mod harness;

use harness::*;

const fast_abort: [&str; 2] = ["--set", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500"];

fn scenario(name: &str) {
    Broker::start_with(&fast_abort).run("transactions", &["--scenario", name]);
}

/// Commit and abort visibility at both isolation levels (both clients'
/// consumers), control batches never handed out, an open transaction
/// holding back read_committed readers and ListOffsets(read_committed).
#[test]
fn commit_abort_and_open_transactions_as_consumers_see_them() {
    scenario("visibility");
}

/// kafka-python's transactional producer: commit, abort, commit.
#[test]
fn kafka_python_transactional_producer() {
    scenario("kafka_python");
}

/// A second producer with the same transactional.id fences the first.
#[test]
fn a_new_instance_fences_the_zombie() {
    scenario("fencing");
}

/// A hanging transaction holds the last stable offset until the
/// coordinator aborts it at its timeout; its producer is fenced.
#[test]
fn a_hanging_transaction_is_aborted_at_its_timeout() {
    scenario("timeout");
}

/// Consume-transform-produce with send_offsets_to_transaction, exactly
/// once across a broker SIGKILL and restart: confluent-kafka.
#[test]
fn consume_transform_produce_is_exactly_once_across_a_sigkill() {
    eos_across_sigkill("confluent");
}

/// The same with kafka-python's consumer and transactional producer.
#[test]
fn kafka_python_consume_transform_produce_is_exactly_once_across_a_sigkill() {
    eos_across_sigkill("kafka-python");
}

fn eos_across_sigkill(client: &str) {
    let broker = Broker::start_with(&fast_abort);
    let command = json_string_array(&broker.restart_command());
    let (log, pids) = (broker.log_path(), broker.pid_file());
    broker.run(
        "transactions",
        &[
            "--scenario",
            "eos",
            "--client",
            client,
            "--records",
            "3000",
            "--broker-cmd",
            &command,
            "--broker-log",
            &log.to_string_lossy(),
            "--pid-file",
            &pids.to_string_lossy(),
        ],
    );
}
