//! Regression tests for the defects third-party client suites found (issue
//! 11), each named after its defect. Each test starts the real binary
//! (`harness::Broker`) and probes it with raw Kafka requests through our own
//! client, so every field on the wire is checked as Kafka's specs define it;
//! the same defects are driven through real clients in
//! `tests/compat/compat_defects.py` (run from the last tests here).

#![allow(non_upper_case_globals)]

mod harness;

use std::time::Duration;

use bytes::Bytes;
use harness::*;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use ringstream_client::Client;
use ringstream_core::batch::{BatchBuilder, Record};

const OFFSET_OUT_OF_RANGE: i16 = 1;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_RECORD: i16 = 87;
const UNKNOWN_TOPIC_ID: i16 = 100;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn client(broker: &Broker) -> Client {
    Client::connect(&broker.bootstrap(), Duration::from_secs(10)).expect("connects")
}

fn create_topic(client: &mut Client, name: &str, partitions: i32, configs: &[(&str, &str)]) -> [u8; 16] {
    let topic = CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig::default().with_name(s(k)).with_value(Some(s(v))))
                .collect(),
        );
    let response: CreateTopicsResponse = client
        .call(ApiKey::CreateTopics, 7, &CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000))
        .unwrap();
    let result = &response.topics[0];
    assert_eq!(result.error_code, 0, "create {name}: {:?}", result.error_message);
    *result.topic_id.as_bytes()
}

/// One batch of `count` keyed records of `value_bytes` each.
fn keyed_batch(count: usize, value_bytes: usize) -> Bytes {
    let value = vec![b'v'; value_bytes];
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    for i in 0..count {
        let key = format!("k{i}");
        builder.push(&Record { key: Some(key.as_bytes()), value: Some(&value), ..Default::default() });
    }
    Bytes::from(builder.build())
}

fn produce(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(records)),
        ]),
    ]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 11, &request).unwrap();
    response.responses[0].partition_responses[0].clone()
}

fn fetch_partition(topic: &str, partition: i32, offset: i64, partition_max_bytes: i32) -> FetchTopic {
    FetchTopic::default().with_topic(TopicName(s(topic))).with_partitions(vec![FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(partition_max_bytes)])
}

fn fetch_request(topics: Vec<FetchTopic>, max_bytes: i32, session: (i32, i32)) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(topics)
}

fn records_len(response: &FetchResponse) -> usize {
    response.responses.iter().flat_map(|t| &t.partitions).map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum()
}

/// Defect 1: a partition with an error (here OFFSET_OUT_OF_RANGE) carried
/// null records (size -1); Kafka sends empty records, and librdkafka
/// rejected the whole response. Every version we serve.
#[test]
fn fetch_error_partition_has_empty_records() {
    let broker = Broker::start();
    let mut c = client(&broker);
    create_topic(&mut c, "oor", 1, &[]);
    assert_eq!(produce(&mut c, "oor", 0, keyed_batch(5, 10)).error_code, 0);
    for version in [4, 11, 12] {
        let request = fetch_request(vec![fetch_partition("oor", 0, 1000, 1 << 20)], 1 << 20, (0, -1));
        let response: FetchResponse = c.call(ApiKey::Fetch, version, &request).unwrap();
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, OFFSET_OUT_OF_RANGE, "v{version}");
        assert_eq!(p.records.as_deref(), Some(&b""[..]), "v{version}: empty records, never null");
    }
}

/// Defect 2: the request's max_bytes was exceeded once a later partition's
/// first batch was returned whole. Kafka's rule (KIP-74): only the first
/// batch of the first non-empty partition may exceed the limits.
#[test]
fn fetch_max_bytes_is_honoured() {
    let broker = Broker::start();
    let mut c = client(&broker);
    create_topic(&mut c, "wide", 3, &[]);
    for partition in 0..3 {
        for _ in 0..4 {
            assert_eq!(produce(&mut c, "wide", partition, keyed_batch(10, 10_000)).error_code, 0);
        }
    }
    let batch_bytes = keyed_batch(10, 10_000).len();
    let everything = || (0..3).map(|p| fetch_partition("wide", p, 0, 1 << 20)).collect::<Vec<_>>();
    for version in [4, 12, 16] {
        for max_bytes in [batch_bytes as i32 * 5 / 2, batch_bytes as i32 * 6, batch_bytes as i32 * 9 + 7] {
            let mut topics = everything();
            if version >= 13 {
                let id = topic_id(&mut c, "wide");
                for t in &mut topics {
                    t.topic_id = id;
                }
            }
            let response: FetchResponse =
                c.call(ApiKey::Fetch, version, &fetch_request(topics, max_bytes, (0, -1))).unwrap();
            let got = records_len(&response);
            assert!(got <= max_bytes as usize, "v{version}: {got} bytes for max_bytes {max_bytes}");
            assert!(
                got + batch_bytes > max_bytes as usize,
                "v{version}: {got} bytes, room for another batch of {batch_bytes}"
            );
        }
        // A first batch larger than max_bytes comes back whole, alone.
        let response: FetchResponse =
            c.call(ApiKey::Fetch, version.min(12), &fetch_request(everything(), 100, (0, -1))).unwrap();
        assert_eq!(records_len(&response), batch_bytes, "v{version}: the first batch whole, nothing else");
    }
    // partition_max_bytes under the same rule: later partitions get only
    // what fits.
    let topics = (0..3).map(|p| fetch_partition("wide", p, 0, batch_bytes as i32 + 10)).collect();
    let response: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request(topics, 1 << 24, (0, -1))).unwrap();
    for p in &response.responses[0].partitions {
        assert_eq!(p.records.as_ref().map_or(0, |r| r.len()), batch_bytes, "one batch per partition");
    }
}

fn topic_id(c: &mut Client, name: &str) -> uuid::Uuid {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(s(name))))]));
    let response: MetadataResponse = c.call(ApiKey::Metadata, 12, &request).unwrap();
    response.topics[0].topic_id
}

/// Defect 8 and KIP-227's state machine, every transition, with a probe
/// client: full fetches with and without a session, incremental fetches,
/// wrong epochs, forgotten topics, closing, and a full fetch that names an
/// existing session (Kafka closes it and opens a new one; we answered
/// INVALID_FETCH_SESSION_EPOCH and franz-go looped forever).
#[test]
fn fetch_full_request_naming_a_session_reopens_it() {
    let broker = Broker::start();
    let mut c = client(&broker);
    create_topic(&mut c, "sess", 2, &[]);
    for p in 0..2 {
        assert_eq!(produce(&mut c, "sess", p, keyed_batch(3, 10)).error_code, 0);
    }
    let both = || {
        vec![FetchTopic::default().with_topic(TopicName(s("sess"))).with_partitions(
            (0..2)
                .map(|p| {
                    FetchPartition::default().with_partition(p).with_fetch_offset(0).with_partition_max_bytes(1 << 20)
                })
                .collect(),
        )]
    };
    let call = |c: &mut Client,
                topics: Vec<FetchTopic>,
                session: (i32, i32),
                forgotten: Vec<ForgottenTopic>|
     -> FetchResponse {
        let request = fetch_request(topics, 1 << 20, session).with_forgotten_topics_data(forgotten);
        c.call(ApiKey::Fetch, 12, &request).unwrap()
    };
    let partitions = |r: &FetchResponse| -> Vec<i32> {
        r.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.partition_index)).collect()
    };

    // Sessionless (id 0, epoch -1): no session.
    let r = call(&mut c, both(), (0, -1), vec![]);
    assert_eq!((r.error_code, r.session_id, partitions(&r)), (0, 0, vec![0, 1]));
    // Open (0, 0).
    let r = call(&mut c, both(), (0, 0), vec![]);
    let first = r.session_id;
    assert!(first > 0 && r.error_code == 0 && records_len(&r) > 0);
    // Incremental: the client moves both fetch offsets to the end (named,
    // so reported), then asks with nothing changed: no partitions.
    let at_end = || {
        vec![FetchTopic::default().with_topic(TopicName(s("sess"))).with_partitions(
            (0..2)
                .map(|p| {
                    FetchPartition::default().with_partition(p).with_fetch_offset(3).with_partition_max_bytes(1 << 20)
                })
                .collect(),
        )]
    };
    let r = call(&mut c, at_end(), (first, 1), vec![]);
    assert_eq!((r.error_code, r.session_id, partitions(&r), records_len(&r)), (0, first, vec![0, 1], 0));
    let r = call(&mut c, vec![], (first, 2), vec![]);
    assert_eq!((r.error_code, r.session_id, partitions(&r)), (0, first, vec![]));
    // A wrong epoch: INVALID_FETCH_SESSION_EPOCH, the session stays.
    let r = call(&mut c, vec![], (first, 7), vec![]);
    assert_eq!((r.error_code, r.session_id), (INVALID_FETCH_SESSION_EPOCH, 0));
    let r = call(&mut c, vec![], (first, 3), vec![]);
    assert_eq!(r.error_code, 0, "the session survived a wrong epoch");
    // A full fetch naming the session (id, 0): closed, and a new one opened.
    let r = call(&mut c, at_end(), (first, 0), vec![]);
    let second = r.session_id;
    assert_eq!(r.error_code, 0);
    assert!(second > 0 && second != first, "a new session, got {second} after {first}");
    assert_eq!(partitions(&r), vec![0, 1]);
    let r = call(&mut c, vec![], (first, 4), vec![]);
    assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND, "the named session was closed");
    // Forgotten topics: partition 1 leaves the session; new data on it is
    // no longer reported, data on partition 0 is.
    let r = call(
        &mut c,
        vec![],
        (second, 1),
        vec![ForgottenTopic::default().with_topic(TopicName(s("sess"))).with_partitions(vec![1])],
    );
    assert_eq!((r.error_code, partitions(&r)), (0, vec![]));
    for p in 0..2 {
        assert_eq!(produce(&mut c, "sess", p, keyed_batch(1, 10)).error_code, 0);
    }
    let r = call(&mut c, vec![], (second, 2), vec![]);
    assert_eq!(partitions(&r), vec![0], "only the partition still in the session");
    assert!(records_len(&r) > 0);
    // Close (id, -1): a sessionless answer, and the session is gone.
    let r = call(&mut c, both(), (second, -1), vec![]);
    assert_eq!((r.error_code, r.session_id, partitions(&r)), (0, 0, vec![0, 1]));
    let r = call(&mut c, vec![], (second, 3), vec![]);
    assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND);
    // Id 0 with an incremental epoch names no session.
    let r = call(&mut c, vec![], (0, 4), vec![]);
    assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND);
}

/// Fetch v13+ names topics by id; an unknown id gets UNKNOWN_TOPIC_ID.
#[test]
fn fetch_by_topic_id_from_v13() {
    let broker = Broker::start();
    let mut c = client(&broker);
    let id = create_topic(&mut c, "ids", 1, &[]);
    assert_eq!(produce(&mut c, "ids", 0, keyed_batch(2, 10)).error_code, 0);
    for version in 13..=17 {
        let known = FetchTopic::default().with_topic_id(uuid::Uuid::from_bytes(id)).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20),
        ]);
        let unknown = known.clone().with_topic_id(uuid::Uuid::from_bytes([0xab; 16]));
        let response: FetchResponse =
            c.call(ApiKey::Fetch, version, &fetch_request(vec![known, unknown], 1 << 20, (0, -1))).unwrap();
        assert_eq!(response.responses.len(), 2, "v{version}");
        assert_eq!(response.responses[0].topic_id, uuid::Uuid::from_bytes(id));
        assert_eq!(response.responses[0].partitions[0].error_code, 0);
        assert!(records_len(&response) > 0);
        assert_eq!(response.responses[1].partitions[0].error_code, UNKNOWN_TOPIC_ID, "v{version}");
        assert_eq!(response.responses[1].partitions[0].records.as_deref(), Some(&b""[..]));
    }
}

/// Defect 3: CreateTopics answered error_message "" on success; Kafka sends
/// null (aiokafka asserts it). Defect 4: manual assignments.
#[test]
fn create_topics_null_error_message_and_manual_assignment() {
    let broker = Broker::start();
    let mut c = client(&broker);
    for version in 2..=7 {
        let name = format!("plain-{version}");
        let topic =
            CreatableTopic::default().with_name(TopicName(s(&name))).with_num_partitions(2).with_replication_factor(1);
        let response: CreateTopicsResponse =
            c.call(ApiKey::CreateTopics, version, &CreateTopicsRequest::default().with_topics(vec![topic])).unwrap();
        assert_eq!(response.topics[0].error_code, 0);
        assert_eq!(response.topics[0].error_message, None, "v{version}: null on success");
    }
    let assigned = |name: &str, replicas: Vec<Vec<i32>>| {
        CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                replicas
                    .into_iter()
                    .enumerate()
                    .map(|(p, brokers)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(p as i32)
                            .with_broker_ids(brokers.into_iter().map(BrokerId).collect())
                    })
                    .collect(),
            )
    };
    let request = CreateTopicsRequest::default().with_topics(vec![
        assigned("manual-ok", vec![vec![0], vec![0], vec![0]]),
        assigned("manual-bad", vec![vec![0], vec![5]]),
    ]);
    let response: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &request).unwrap();
    assert_eq!((response.topics[0].error_code, response.topics[0].num_partitions), (0, 3));
    assert_eq!(response.topics[1].error_code, INVALID_REPLICA_ASSIGNMENT);
    assert!(response.topics[1].error_message.as_deref().is_some_and(|m| m.contains("broker 5")));
}

/// Defect 5: a compacted topic accepted records without a key. Kafka
/// rejects the batch with INVALID_RECORD and KIP-467 record errors.
#[test]
fn compacted_topic_rejects_keyless_records() {
    let broker = Broker::start();
    let mut c = client(&broker);
    create_topic(&mut c, "compacted", 1, &[("cleanup.policy", "compact")]);
    let mut builder = BatchBuilder::new(1_700_000_000_000);
    builder.push(&Record { key: Some(b"a"), value: Some(b"1"), ..Default::default() });
    builder.push(&Record { key: None, value: Some(b"2"), ..Default::default() });
    let response = produce(&mut c, "compacted", 0, Bytes::from(builder.build()));
    assert_eq!(response.error_code, INVALID_RECORD);
    assert_eq!(response.record_errors.len(), 1);
    assert_eq!(response.record_errors[0].batch_index, 1);
    assert!(response.error_message.as_deref().is_some_and(|m| m.contains("key")));
    assert_eq!(produce(&mut c, "compacted", 0, keyed_batch(3, 10)).error_code, 0, "keyed records are accepted");
    // A delete-policy topic takes keyless records as before.
    create_topic(&mut c, "plain", 1, &[]);
    assert_eq!(produce(&mut c, "plain", 0, Bytes::from(builder.build())).error_code, 0);
}

/// Defect 6: `__consumer_offsets` was missing from Metadata. Kafka lists it
/// with is_internal, and refuses client produces and deletes.
#[test]
fn metadata_lists_consumer_offsets_as_internal() {
    let broker = Broker::start();
    let mut c = client(&broker);
    create_topic(&mut c, "visible", 1, &[]);
    for version in [1, 9, 12, 13] {
        let response: MetadataResponse =
            c.call(ApiKey::Metadata, version, &MetadataRequest::default().with_topics(None)).unwrap();
        let offsets = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "__consumer_offsets"))
            .expect("listed");
        assert!(offsets.is_internal, "v{version}");
        assert!(!offsets.partitions.is_empty());
        let visible =
            response.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "visible")).expect("listed");
        assert!(!visible.is_internal);
    }
    let by_name = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(s("__consumer_offsets"))))]));
    let response: MetadataResponse = c.call(ApiKey::Metadata, 12, &by_name).unwrap();
    assert_eq!((response.topics[0].error_code, response.topics[0].is_internal), (0, true));
    let id = response.topics[0].topic_id;
    let response: MetadataResponse = c.call(ApiKey::Metadata, 12, &by_name).unwrap();
    assert_eq!(response.topics[0].topic_id, id, "a stable id");
    assert_eq!(produce(&mut c, "__consumer_offsets", 0, keyed_batch(1, 10)).error_code, INVALID_TOPIC_EXCEPTION);
    let delete = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(s("__consumer_offsets"))])
        .with_timeout_ms(10_000);
    let response: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 4, &delete).unwrap();
    assert_eq!(response.responses[0].error_code, INVALID_TOPIC_EXCEPTION);
}

/// Kafka 4.1's versions: ApiVersions advertises them, and each answers.
#[test]
fn api_versions_are_kafka_4_1s() {
    let broker = Broker::start();
    let mut c = client(&broker);
    let response: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default()).unwrap();
    let max = |key: ApiKey| response.api_keys.iter().find(|k| k.api_key == key as i16).map(|k| k.max_version);
    assert!(max(ApiKey::Fetch) >= Some(16));
    assert!(max(ApiKey::Produce) >= Some(11));
    assert!(max(ApiKey::ListOffsets) >= Some(9));
    assert!(max(ApiKey::Metadata) >= Some(12));
    assert_eq!(max(ApiKey::Produce), Some(11), "v12 waits for transactions (KIP-890)");
}

/// Defect 9: logs to a file carried ANSI colour escapes; JSON on request.
#[test]
fn logs_to_a_file_have_no_colour_and_json_is_structured() {
    for json in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr");
        let mut child = std::process::Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--data-dir"])
            .arg(dir.path().join("data"))
            .env_remove("NO_COLOR")
            .env("RINGSTREAM_LOG", "info")
            .env("RINGSTREAM_LOG_FORMAT", if json { "json" } else { "text" })
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(line.starts_with("ready "), "{line}");
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.is_empty());
        assert!(!text.contains('\u{1b}'), "no escapes in a log file:\n{text}");
        if json {
            for line in text.lines() {
                assert!(line.starts_with('{') && line.ends_with('}') && line.contains("\"level\""), "{line}");
            }
        }
    }
}

/// The same defects through real clients: confluent-kafka (librdkafka)
/// after an out-of-range offset with auto.offset.reset=latest, compacted
/// topics, internal topics and CreateTopics' message through kafka-python.
#[test]
fn real_clients_see_kafka_behaviour() {
    Broker::start().run("compat_defects", &[]);
}
