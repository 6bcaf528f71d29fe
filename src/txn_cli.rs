//! `ringstream transactions`: list, describe, find-hanging and abort, as
//! Kafka's `kafka-transactions.sh` does, over the Kafka protocol.
//!
//! - `list`: every broker's ListTransactions (each lists the ids it coordinates).
//! - `describe ID`: DescribeTransactions at the id's coordinator.
//! - `find-hanging`: per partition of the named topics (or all), the
//!   producers with an open transaction (DescribeProducers at the leader)
//!   whose coordinator has no matching open transaction, or whose
//!   transaction has run longer than `--max-transaction-timeout` minutes.
//! - `abort`: writes an ABORT marker for one producer's open transaction in
//!   one partition (WriteTxnMarkers at the leader): the operator's way out
//!   of a hanging transaction.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Subcommand;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ringstream_client::Client;

use crate::cli::{print_table, CliError, Connection};

#[derive(Subcommand)]
pub enum TxnCommand {
    /// Transactional ids: coordinator, producer id, state.
    List,
    /// One transactional id: producer id and epoch, state, timeout, start
    /// time, partitions.
    Describe {
        #[arg(long = "transactional-id")]
        transactional_id: String,
    },
    /// Open transactions in partitions that their coordinator does not know
    /// as open, or that run longer than the given timeout.
    FindHanging {
        /// Topics to look in (default: every topic).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Minutes; open transactions older than this count as hanging.
        #[arg(long, default_value_t = 15)]
        max_transaction_timeout: i64,
    },
    /// Aborts one producer's open transaction in one partition.
    Abort {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The open transaction's first offset (find-hanging prints it);
        /// the producer is looked up with DescribeProducers.
        #[arg(long)]
        start_offset: i64,
    },
}

pub fn run(connection: &Connection, command: TxnCommand) -> Result<(), CliError> {
    match command {
        TxnCommand::List => list(connection),
        TxnCommand::Describe { transactional_id } => describe(connection, &transactional_id),
        TxnCommand::FindHanging { topics, max_transaction_timeout } => {
            find_hanging(connection, topics, max_transaction_timeout)
        }
        TxnCommand::Abort { topic, partition, start_offset } => abort(connection, &topic, partition, start_offset),
    }
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn kafka(what: &str, code: i16) -> Result<(), CliError> {
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::Kafka { what: what.to_owned(), code, message: None })
    }
}

/// (node id, host:port) of every broker.
fn brokers(client: &mut Client) -> Result<Vec<(i32, String)>, CliError> {
    let version = client.version(ApiKey::Metadata, 12)?;
    let response: MetadataResponse =
        client.call(ApiKey::Metadata, version, &MetadataRequest::default().with_topics(Some(Vec::new())))?;
    Ok(response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect())
}

fn list_at(address: &str) -> Result<Vec<(String, i64, String)>, CliError> {
    let mut client = Client::connect(address, Duration::from_secs(5))?;
    let version = client.version(ApiKey::ListTransactions, 2)?;
    let response: ListTransactionsResponse =
        client.call(ApiKey::ListTransactions, version, &ListTransactionsRequest::default().with_duration_filter(-1))?;
    kafka("ListTransactions", response.error_code)?;
    Ok(response
        .transaction_states
        .iter()
        .map(|t| (t.transactional_id.0.as_str().to_owned(), t.producer_id.0, t.transaction_state.as_str().to_owned()))
        .collect())
}

fn list(connection: &Connection) -> Result<(), CliError> {
    let mut client = connection.connect()?;
    let mut rows = Vec::new();
    for (id, address) in brokers(&mut client)? {
        for (txn, producer, state) in list_at(&address)? {
            rows.push(vec![txn, id.to_string(), producer.to_string(), state]);
        }
    }
    rows.sort();
    print_table(&["TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE"], &rows);
    Ok(())
}

/// DescribeTransactions for one id at its coordinator: (coordinator, state).
fn describe_one(
    connection: &Connection,
    id: &str,
) -> Result<(i32, describe_transactions_response::TransactionState), CliError> {
    let mut client = connection.connect()?;
    let (node, address) = client.coordinator(id, 1)?;
    let mut coordinator = Client::connect(&address, Duration::from_secs(5))?;
    let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]);
    let response: DescribeTransactionsResponse = coordinator.call(ApiKey::DescribeTransactions, 0, &request)?;
    let state = response
        .transaction_states
        .into_iter()
        .next()
        .ok_or_else(|| CliError::BadResponse("DescribeTransactions answered no state".into()))?;
    if state.error_code == 105 {
        return Err(CliError::NotFound(format!("transactional id {id:?} not found")));
    }
    kafka(&format!("describing transactional id {id:?}"), state.error_code)?;
    Ok((node, state))
}

fn describe(connection: &Connection, id: &str) -> Result<(), CliError> {
    let (node, state) = describe_one(connection, id)?;
    let partitions: Vec<String> = state
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| format!("{}-{p}", t.topic.0.as_str())))
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let duration = if state.transaction_start_time_ms >= 0 {
        format!("{}", now - state.transaction_start_time_ms)
    } else {
        "-".into()
    };
    print_table(
        &[
            "COORDINATOR",
            "TRANSACTIONAL-ID",
            "PRODUCER-ID",
            "EPOCH",
            "STATE",
            "TIMEOUT-MS",
            "START-MS",
            "DURATION-MS",
            "PARTITIONS",
        ],
        &[vec![
            node.to_string(),
            id.to_owned(),
            state.producer_id.0.to_string(),
            state.producer_epoch.to_string(),
            state.transaction_state.as_str().to_owned(),
            state.transaction_timeout_ms.to_string(),
            state.transaction_start_time_ms.to_string(),
            duration,
            partitions.join(","),
        ]],
    );
    Ok(())
}

/// Per partition (topic, partition, leader address) of `topics` (all when empty).
fn partitions(client: &mut Client, topics: &[String]) -> Result<Vec<(String, i32, String)>, CliError> {
    let version = client.version(ApiKey::Metadata, 12)?;
    let mut request = MetadataRequest::default().with_topics(None);
    if !topics.is_empty() {
        request.topics = Some(
            topics
                .iter()
                .map(|t| metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(t)))))
                .collect(),
        );
    }
    let response: MetadataResponse = client.call(ApiKey::Metadata, version, &request)?;
    let addresses: BTreeMap<i32, String> =
        response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
    let mut out = Vec::new();
    for topic in response.topics.iter().filter(|t| !t.is_internal || !topics.is_empty()) {
        let name = topic.name.as_ref().map(|n| n.0.as_str().to_owned()).unwrap_or_default();
        if topic.error_code != 0 {
            return Err(CliError::NotFound(format!("topic {name:?}: error {}", topic.error_code)));
        }
        for p in &topic.partitions {
            if let Some(address) = addresses.get(&p.leader_id.0) {
                out.push((name.clone(), p.partition_index, address.clone()));
            }
        }
    }
    Ok(out)
}

/// (producer id, epoch, open transaction's first offset) per producer with
/// one open in `topic`/`partition`, from its leader.
fn open_producers(address: &str, topic: &str, partition: i32) -> Result<Vec<(i64, i32, i64)>, CliError> {
    let mut client = Client::connect(address, Duration::from_secs(5))?;
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(s(topic)))
        .with_partition_indexes(vec![partition])]);
    let response: DescribeProducersResponse = client.call(ApiKey::DescribeProducers, 0, &request)?;
    let mut out = Vec::new();
    for t in &response.topics {
        for p in &t.partitions {
            kafka(&format!("DescribeProducers {topic}-{partition}"), p.error_code)?;
            for producer in p.active_producers.iter().filter(|a| a.current_txn_start_offset >= 0) {
                out.push((producer.producer_id.0, producer.producer_epoch, producer.current_txn_start_offset));
            }
        }
    }
    Ok(out)
}

fn find_hanging(connection: &Connection, topics: Vec<String>, max_timeout_minutes: i64) -> Result<(), CliError> {
    let mut client = connection.connect()?;
    // Every coordinator's view: producer id -> (transactional id, state).
    let mut known: BTreeMap<i64, (String, String)> = BTreeMap::new();
    for (_, address) in brokers(&mut client)? {
        for (id, producer, state) in list_at(&address)? {
            known.insert(producer, (id, state));
        }
    }
    let mut rows = Vec::new();
    for (topic, partition, leader) in partitions(&mut client, &topics)? {
        for (producer, epoch, start) in open_producers(&leader, &topic, partition)? {
            let (hanging, why, id) = match known.get(&producer) {
                Some((id, state)) if state == "Ongoing" || state.starts_with("Prepare") => {
                    let (_, described) = describe_one(connection, id)?;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    let age = now - described.transaction_start_time_ms;
                    (age > max_timeout_minutes * 60_000, format!("open {age} ms"), id.clone())
                }
                Some((id, state)) => (true, format!("coordinator state {state}"), id.clone()),
                None => (true, "no coordinator knows the producer".to_owned(), "-".to_owned()),
            };
            if hanging {
                rows.push(vec![
                    topic.clone(),
                    partition.to_string(),
                    producer.to_string(),
                    epoch.to_string(),
                    start.to_string(),
                    id,
                    why,
                ]);
            }
        }
    }
    print_table(&["TOPIC", "PARTITION", "PRODUCER-ID", "EPOCH", "START-OFFSET", "TRANSACTIONAL-ID", "WHY"], &rows);
    Ok(())
}

fn abort(connection: &Connection, topic: &str, partition: i32, start_offset: i64) -> Result<(), CliError> {
    let mut client = connection.connect()?;
    let leader = partitions(&mut client, &[topic.to_owned()])?
        .into_iter()
        .find(|(_, p, _)| *p == partition)
        .map(|(_, _, leader)| leader)
        .ok_or_else(|| CliError::NotFound(format!("{topic}-{partition} has no leader")))?;
    let (producer, epoch, _) = open_producers(&leader, topic, partition)?
        .into_iter()
        .find(|(_, _, start)| *start == start_offset)
        .ok_or_else(|| {
            CliError::NotFound(format!("no open transaction starts at offset {start_offset} in {topic}-{partition}"))
        })?;
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(producer))
        .with_producer_epoch(i16::try_from(epoch).unwrap_or(i16::MAX))
        .with_transaction_result(false)
        .with_coordinator_epoch(-1)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![partition])]);
    let mut at_leader = Client::connect(&leader, Duration::from_secs(5))?;
    let response: WriteTxnMarkersResponse =
        at_leader.call(ApiKey::WriteTxnMarkers, 1, &WriteTxnMarkersRequest::default().with_markers(vec![marker]))?;
    for m in &response.markers {
        for t in &m.topics {
            for p in &t.partitions {
                kafka(&format!("aborting producer {producer}'s transaction in {topic}-{partition}"), p.error_code)?;
            }
        }
    }
    println!(
        "aborted producer {producer} (epoch {epoch})'s transaction starting at {start_offset} in {topic}-{partition}"
    );
    Ok(())
}
