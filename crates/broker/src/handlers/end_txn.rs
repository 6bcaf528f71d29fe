//! EndTxn (key 26), v0–v5: commits or aborts the producer's transaction.
//! Answered once the coordinator's decision (PrepareCommit/PrepareAbort) is
//! durable; the markers are written after. v5's producer id and epoch are
//! the producer's own: the epoch is not bumped per transaction (KIP-890's
//! transaction version 2 is not enabled, so clients do not expect it).

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, EndTxnRequest, EndTxnResponse, ProducerId};

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::EndTxn, min_version: 0, max_version: 5 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let end: EndTxnRequest = decode_body(&mut body, version, "EndTxn request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let id = end.transactional_id.0.as_str().to_owned();
        let (producer_id, epoch, commit) = (end.producer_id.0, end.producer_epoch, end.committed);
        let key = id.clone();
        let answer = crate::txn::on_coordinator(&broker.shard, &key, move |c, partition| async move {
            c.end_txn(&id, partition, producer_id, epoch, commit).await
        })
        .await;
        let response = match answer {
            Ok((id, epoch)) => EndTxnResponse::default()
                .with_error_code(error_code::NONE)
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            Err(code) => EndTxnResponse::default()
                .with_error_code(crate::txn::fenced_for(code, version, 2))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        };
        respond(ApiKey::EndTxn, version, correlation_id, &response)
    }))
}
