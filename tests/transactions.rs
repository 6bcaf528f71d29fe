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

/// aiokafka's transactional producer (commit, abort, send_offsets_to_transaction)
/// and read_committed consumer.
#[test]
fn aiokafka_transactions() {
    scenario("aiokafka");
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

mod bad_input {
    //! Transactional requests in the wrong state, with the wrong producer,
    //! or out of bounds get Kafka's error codes, and nothing is written to
    //! the transaction log for them.

    use std::time::Duration;

    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use ringstream_client::Client;

    use super::harness::Broker;

    const INVALID_TXN_STATE: i16 = 48;
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    const INVALID_RECORD: i16 = 87;
    const PRODUCER_FENCED: i16 = 90;

    fn s(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_owned())
    }

    fn init(client: &mut Client, id: &str, timeout_ms: i32) -> InitProducerIdResponse {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(id))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        client.call(ApiKey::InitProducerId, 4, &request).unwrap()
    }

    fn end(client: &mut Client, id: &str, producer: i64, epoch: i16, commit: bool, version: i16) -> i16 {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(producer))
            .with_producer_epoch(epoch)
            .with_committed(commit);
        let response: EndTxnResponse = client.call(ApiKey::EndTxn, version, &request).unwrap();
        response.error_code
    }

    fn add(client: &mut Client, id: &str, producer: i64, epoch: i16, version: i16) -> i16 {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(id)))
            .with_v3_and_below_producer_id(ProducerId(producer))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s("bad-txn")))
                .with_partitions(vec![0])]);
        let response: AddPartitionsToTxnResponse = client.call(ApiKey::AddPartitionsToTxn, version, &request).unwrap();
        response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    }

    /// The end offsets of every transaction-log partition (1 partition here).
    fn txn_log_end(client: &mut Client) -> i64 {
        let request =
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(s("__transaction_state")))
                .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)])]);
        let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 5, &request).unwrap();
        response.topics.first().map_or(-1, |t| t.partitions[0].offset)
    }

    #[test]
    fn wrong_state_wrong_producer_and_bad_bounds_get_kafkas_codes_and_write_nothing() {
        let broker = Broker::start_with(&[
            "--set",
            "transaction.state.log.num.partitions=1",
            "--set",
            "transaction.max.timeout.ms=60000",
        ]);
        let mut client = Client::connect(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
        let topic = create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s("bad-txn")))
            .with_num_partitions(1)
            .with_replication_factor(1);
        let created: CreateTopicsResponse = client
            .call(
                ApiKey::CreateTopics,
                7,
                &CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000),
            )
            .unwrap();
        assert_eq!(created.topics[0].error_code, 0);
        // As clients do: find the coordinator first (the log is created then).
        client.coordinator("nobody", 1).unwrap();
        // Unknown id: EndTxn and AddPartitionsToTxn.
        assert_eq!(end(&mut client, "nobody", 1, 0, true, 3), INVALID_PRODUCER_ID_MAPPING);
        assert_eq!(add(&mut client, "nobody", 1, 0, 3), INVALID_PRODUCER_ID_MAPPING);
        // A timeout above transaction.max.timeout.ms.
        assert_eq!(init(&mut client, "t1", 60_001).error_code, INVALID_TRANSACTION_TIMEOUT);
        let first = init(&mut client, "t1", 30_000);
        assert_eq!(first.error_code, 0);
        let (producer, epoch) = (first.producer_id.0, first.producer_epoch);
        let written = txn_log_end(&mut client);
        assert!(written > 0, "InitProducerId wrote the id's state");
        // EndTxn with no open transaction: INVALID_TXN_STATE.
        assert_eq!(end(&mut client, "t1", producer, epoch, true, 3), INVALID_TXN_STATE);
        // Another producer id: INVALID_PRODUCER_ID_MAPPING; an old epoch:
        // PRODUCER_FENCED from v2 (KIP-588), INVALID_PRODUCER_EPOCH before.
        assert_eq!(end(&mut client, "t1", producer + 1, epoch, false, 3), INVALID_PRODUCER_ID_MAPPING);
        let second = init(&mut client, "t1", 30_000);
        assert_eq!((second.producer_id.0, second.producer_epoch), (producer, epoch + 1), "the epoch is bumped");
        let written = txn_log_end(&mut client);
        assert_eq!(add(&mut client, "t1", producer, epoch, 3), PRODUCER_FENCED);
        assert_eq!(add(&mut client, "t1", producer, epoch, 1), INVALID_PRODUCER_EPOCH);
        assert_eq!(end(&mut client, "t1", producer, epoch, true, 3), PRODUCER_FENCED);
        assert_eq!(end(&mut client, "t1", producer, epoch, true, 1), INVALID_PRODUCER_EPOCH);
        assert_eq!(txn_log_end(&mut client), written, "refused requests wrote nothing");
        // A client's control batch is refused.
        let marker = ringstream_core::batch::build_marker(producer, epoch + 1, true, 0, 0);
        let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
            TopicProduceData::default().with_name(TopicName(s("bad-txn"))).with_partition_data(vec![
                PartitionProduceData::default().with_index(0).with_records(Some(bytes::Bytes::from(marker))),
            ]),
        ]);
        let response: ProduceResponse = client.call(ApiKey::Produce, 9, &produce).unwrap();
        assert_eq!(response.responses[0].partition_responses[0].error_code, INVALID_RECORD);

        // A transaction that added a group's offsets but committed none
        // ends (its offsets partition was never opened), and the id can
        // start again.
        let (producer, epoch) = (second.producer_id.0, second.producer_epoch);
        let add_offsets = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s("t1")))
            .with_producer_id(ProducerId(producer))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(s("never-committed")));
        let added: AddOffsetsToTxnResponse = client.call(ApiKey::AddOffsetsToTxn, 3, &add_offsets).unwrap();
        assert_eq!(added.error_code, 0);
        assert_eq!(end(&mut client, "t1", producer, epoch, false, 3), 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let again = init(&mut client, "t1", 30_000);
            if again.error_code == 0 {
                assert_eq!(again.producer_epoch, epoch + 1);
                break;
            }
            assert_eq!(again.error_code, 51, "CONCURRENT_TRANSACTIONS while the abort completes");
            assert!(std::time::Instant::now() < deadline, "the abort never completed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A hanging transaction (its producer vanished, its timeout 15 minutes)
/// holds the last stable offset: the metrics show it, `ringstream
/// transactions find-hanging` finds it and `abort` ends it, after which
/// read_committed readers move on and the metrics return to zero.
#[test]
fn a_hanging_transaction_shows_in_the_metrics_and_the_tool_aborts_it() {
    use ringstream_client::metrics_text as text;
    let broker = Broker::start_with(&["--metrics-listen", "127.0.0.1:0"]);
    let metrics = broker.metrics.clone().expect("a metrics address");
    let gauge = |name: &str| -> f64 {
        let (status, body) = ringstream_client::status::http_get(&metrics, "/metrics").expect("scrape");
        assert_eq!(status, 200);
        let exposition = text::parse(&body).unwrap();
        (0..2).filter_map(|s| exposition.value(name, &[("shard", s.to_string().as_str())])).fold(0.0, f64::max)
    };
    broker.run("transactions", &["--scenario", "hang"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(gauge("ringstream_transactions_open") >= 1.0, "the open transaction is counted");
    assert!(gauge("ringstream_last_stable_offset_lag_ms") >= 300.0, "the last stable offset is held");
    let tool = |args: &[&str]| -> String {
        let out = std::process::Command::new(bin())
            .arg("transactions")
            .args(args)
            .args(["-b", &broker.bootstrap()])
            .output()
            .expect("ringstream runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = tool(&["list"]);
    assert!(listed.contains("hang-1") && listed.contains("Ongoing"), "{listed}");
    let hanging = tool(&["find-hanging", "--max-transaction-timeout", "0"]);
    let row = hanging.lines().find(|l| l.starts_with("txn-hang")).unwrap_or_else(|| panic!("{hanging}"));
    let start = row.split_whitespace().nth(4).unwrap().to_owned();
    assert_eq!(start, "0", "the hanging transaction starts at offset 0: {row}");
    let aborted = tool(&["abort", "--topic", "txn-hang", "--partition", "0", "--start-offset", &start]);
    assert!(aborted.starts_with("aborted producer"), "{aborted}");
    assert_eq!(gauge("ringstream_last_stable_offset_lag_ms"), 0.0, "the last stable offset is released");
    let again = tool(&["find-hanging", "--max-transaction-timeout", "0"]);
    assert!(!again.contains("txn-hang"), "{again}");
    broker.run("transactions", &["--scenario", "released"]);
}
