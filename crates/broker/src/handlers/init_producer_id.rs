//! InitProducerId (key 22), v0–v5 (v5 only allows the TRANSACTION_ABORTABLE code): a producer id and epoch for idempotent
//! producers (Java 3.x and franz-go turn idempotence on by default). Ids come
//! from shard 0's persisted allocator and are never reused. A producer that
//! presents its current id and epoch (v3+, KIP-360) gets the epoch bumped,
//! or a new id when the epoch is exhausted. Transactions are not supported
//! yet: a request with a transactional id gets INVALID_REQUEST and a log
//! line, rather than an id that would pretend to be transactional.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::warn;

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
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
        let response = if let Some(id) = &init.transactional_id {
            warn!(transactional_id = %id.0.as_str(), "transactions are not supported");
            response.with_error_code(error_code::INVALID_REQUEST)
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
