//! ListTransactions (key 66), v0–v2: the transactional ids this broker
//! coordinates (every shard's), filtered by state, producer id, (v1+)
//! running longer than a duration and (v2+) an id pattern (a regular
//! expression; an invalid one gets INVALID_REGULAR_EXPRESSION). Unknown
//! state names are reported back, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ApiKey, ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::txn::state::TxnMeta;
use ringstream_core::clock::now_ms;
use ringstream_core::limits;
use ringstream_core::types::ShardId;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ListTransactions, min_version: 0, max_version: 2 };

const INVALID_REGULAR_EXPRESSION: i16 = 123;
const STATES: [&str; 6] = ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"];

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let list: ListTransactionsRequest = decode_body(&mut body, version, "ListTransactions request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let pattern = match list.transactional_id_pattern.as_ref().filter(|_| version >= 2) {
            Some(p) if !p.is_empty() => match regex::Regex::new(&format!("^(?:{})$", p.as_str())) {
                Ok(re) => Some(re),
                Err(_) => {
                    let response = ListTransactionsResponse::default().with_error_code(INVALID_REGULAR_EXPRESSION);
                    return respond(ApiKey::ListTransactions, version, correlation_id, &response);
                }
            },
            _ => None,
        };
        let mut all: Vec<(String, TxnMeta)> = Vec::new();
        for i in 0..broker.shard.shard_count() {
            // A closure (see `Shard::run_on`): each shard's coordinator lives above the router.
            if let Ok(listed) =
                broker.shard.run_on(ShardId(i as u16), |_| async move { crate::txn::coordinator::local().list() }).await
            {
                all.extend(listed);
            }
        }
        let now = now_ms();
        let unknown: Vec<_> = list.state_filters.iter().filter(|s| !STATES.contains(&s.as_str())).cloned().collect();
        let states: Vec<TransactionState> = all
            .into_iter()
            .filter(|(_, m)| {
                list.state_filters.is_empty() || list.state_filters.iter().any(|s| s.as_str() == m.state.name())
            })
            .filter(|(_, m)| {
                list.producer_id_filters.is_empty() || list.producer_id_filters.iter().any(|p| p.0 == m.producer_id)
            })
            .filter(|(_, m)| {
                version < 1 || list.duration_filter < 0 || (m.start_ms >= 0 && now - m.start_ms >= list.duration_filter)
            })
            .filter(|(id, _)| pattern.as_ref().map_or(true, |re| re.is_match(id)))
            .take(limits::txn_listing_max)
            .map(|(id, m)| {
                TransactionState::default()
                    .with_transactional_id(TransactionalId(str_bytes(&id)))
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_transaction_state(str_bytes(m.state.name()))
            })
            .collect();
        let response = ListTransactionsResponse::default()
            .with_error_code(error_code::NONE)
            .with_unknown_state_filters(unknown)
            .with_transaction_states(states);
        respond(ApiKey::ListTransactions, version, correlation_id, &response)
    }))
}
