//! InitProducerId (key 22), v0–v5 (v5 only allows the TRANSACTION_ABORTABLE code): a producer id and epoch for idempotent
//! producers (Java 3.x and franz-go turn idempotence on by default). Ids come
//! from shard 0's persisted allocator and are never reused. A producer that
//! presents its current id and epoch (v3+, KIP-360) gets the epoch bumped,
//! or a new id when the epoch is exhausted. A request with a transactional
//! id goes to the id's transaction coordinator (`txn`): the epoch is
//! bumped (fencing older producers of the id), an open transaction is
//! aborted first (CONCURRENT_TRANSACTIONS until it is), and a timeout above
//! `transaction.max.timeout.ms` gets INVALID_TRANSACTION_TIMEOUT.

use std::rc::Rc;

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::InitProducerId, min_version: 0, max_version: 5 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let init: InitProducerIdRequest = decode_body(&mut body, version, "InitProducerId request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
        let response = if let Some(id) = init.transactional_id.as_ref().map(|id| id.0.as_str().to_owned()) {
            let expected =
                (version >= 3 && init.producer_id.0 >= 0).then_some((init.producer_id.0, init.producer_epoch));
            let timeout_ms = init.transaction_timeout_ms;
            let key = id.clone();
            let answer = crate::txn::on_coordinator(&broker.shard, &key, move |c, partition| async move {
                c.init_producer_id(&id, partition, timeout_ms, expected).await
            })
            .await;
            match answer {
                Ok((producer_id, epoch)) => response
                    .with_error_code(error_code::NONE)
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch),
                Err(code) => response.with_error_code(crate::txn::fenced_for(code, version, 4)),
            }
        } else if init.producer_id.0 >= 0 && init.producer_epoch >= 0 && init.producer_epoch < i16::MAX - 1 {
            // KIP-360: the producer keeps its id with the next epoch.
            response
                .with_error_code(error_code::NONE)
                .with_producer_id(init.producer_id)
                .with_producer_epoch(init.producer_epoch + 1)
        } else {
            match broker.allocate_producer_id().await {
                Ok(id) => {
                    response.with_error_code(error_code::NONE).with_producer_id(ProducerId(id)).with_producer_epoch(0)
                }
                Err(e) => response.with_error_code(e.code),
            }
        };
        respond(ApiKey::InitProducerId, version, correlation_id, &response)
    }))
}
