//! DescribeTransactions (key 65), v0: each id's state at its coordinator:
//! producer id and epoch, state, timeout, start time and partitions.
//! NOT_COORDINATOR when another broker coordinates it,
//! TRANSACTIONAL_ID_NOT_FOUND when no coordinator knows it.

use std::rc::Rc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::limits;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeTransactions, min_version: 0, max_version: 0 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let describe: DescribeTransactionsRequest = decode_body(&mut body, version, "DescribeTransactions request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut states = Vec::with_capacity(describe.transactional_ids.len());
        for requested in describe.transactional_ids.iter().take(limits::txn_listing_max) {
            let id = requested.0.as_str().to_owned();
            let key = id.clone();
            let answer = crate::txn::on_coordinator(&broker.shard, &key, move |c, _| async move {
                c.describe(&id).ok_or(error_code::TRANSACTIONAL_ID_NOT_FOUND)
            })
            .await;
            let state = TransactionState::default().with_transactional_id(requested.clone());
            states.push(match answer {
                Err(code) => {
                    state.with_error_code(code).with_transaction_state(str_bytes("")).with_producer_id(ProducerId(-1))
                }
                Ok(meta) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (topic, partition) in &meta.partitions {
                        match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                            Some(existing) => existing.partitions.push(*partition),
                            None => topics.push(
                                TopicData::default()
                                    .with_topic(TopicName(str_bytes(topic)))
                                    .with_partitions(vec![*partition]),
                            ),
                        }
                    }
                    state
                        .with_error_code(error_code::NONE)
                        .with_transaction_state(str_bytes(meta.state.name()))
                        .with_transaction_timeout_ms(meta.timeout_ms)
                        .with_transaction_start_time_ms(meta.start_ms)
                        .with_producer_id(ProducerId(meta.producer_id))
                        .with_producer_epoch(meta.producer_epoch)
                        .with_topics(topics)
                }
            });
        }
        let response = DescribeTransactionsResponse::default().with_transaction_states(states);
        respond(ApiKey::DescribeTransactions, version, correlation_id, &response)
    }))
}
