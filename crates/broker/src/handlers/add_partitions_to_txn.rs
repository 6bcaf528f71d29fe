//! AddPartitionsToTxn (key 24), v0–v5: adds partitions to a producer's open
//! transaction at its coordinator, durably, before the producer writes to
//! them. v4+ is batched (brokers' KIP-890 verification; `verify_only`
//! checks membership without adding). Partitions of unknown topics get
//! UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as
//! in Kafka.

use std::rc::Rc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, TopicName};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::limits;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::AddPartitionsToTxn, min_version: 0, max_version: 5 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let add: AddPartitionsToTxnRequest = decode_body(&mut body, version, "AddPartitionsToTxn request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let response = if version >= 4 {
            let mut results = Vec::with_capacity(add.transactions.len());
            for txn in add.transactions.iter().take(limits::txn_listing_max) {
                let id = txn.transactional_id.0.as_str().to_owned();
                let partitions = add_one(
                    &broker,
                    id.clone(),
                    txn.producer_id.0,
                    txn.producer_epoch,
                    &txn.topics,
                    txn.verify_only,
                    version,
                )
                .await;
                results.push(
                    AddPartitionsToTxnResult::default()
                        .with_transactional_id(txn.transactional_id.clone())
                        .with_topic_results(partitions),
                );
            }
            AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
        } else {
            let id = add.v3_and_below_transactional_id.0.as_str().to_owned();
            let results = add_one(
                &broker,
                id,
                add.v3_and_below_producer_id.0,
                add.v3_and_below_producer_epoch,
                &add.v3_and_below_topics,
                false,
                version,
            )
            .await;
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
        };
        respond(ApiKey::AddPartitionsToTxn, version, correlation_id, &response)
    }))
}

async fn add_one(
    broker: &Rc<Broker>,
    id: String,
    producer_id: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut asked: Vec<(String, i32)> = Vec::new();
    let mut unknown = Vec::new();
    for topic in topics {
        let name = topic.name.0.as_str();
        let meta = broker.topic(name);
        for &p in topic.partitions.iter().take(limits::txn_partitions_max) {
            let known = meta.as_ref().is_some_and(|m| (0..m.partitions).contains(&p))
                || (name == crate::groups::OFFSETS_TOPIC && (0..broker.offsets_topic().partitions).contains(&p));
            if known {
                asked.push((name.to_owned(), p));
            } else {
                unknown.push((name.to_owned(), p));
            }
        }
    }
    let codes: Vec<i16> = if !unknown.is_empty() {
        vec![error_code::OPERATION_NOT_ATTEMPTED; asked.len()]
    } else {
        let partitions = asked.clone();
        let key = id.clone();
        let answer = crate::txn::on_coordinator(&broker.shard, &key, move |c, partition| async move {
            if verify_only {
                return Ok(c.verify_partitions(&id, producer_id, epoch, &partitions));
            }
            c.add_partitions(&id, partition, producer_id, epoch, &partitions)
                .await
                .map(|()| vec![error_code::NONE; partitions.len()])
        })
        .await;
        match answer {
            Ok(codes) => codes,
            Err(code) => vec![crate::txn::fenced_for(code, version, 2); asked.len()],
        }
    };
    let rows =
        asked.into_iter().zip(codes).chain(unknown.into_iter().map(|tp| (tp, error_code::UNKNOWN_TOPIC_OR_PARTITION)));
    let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in rows {
        let row = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(code);
        match results.iter_mut().find(|r| r.name.0.as_str() == topic) {
            Some(existing) => existing.results_by_partition.push(row),
            None => results.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(str_bytes(&topic)))
                    .with_results_by_partition(vec![row]),
            ),
        }
    }
    results
}
