//! ListPartitionReassignments (key 46), v0: one broker never has a
//! reassignment in progress, so the answer lists none, for every topic or
//! the named ones (Kafka's controller skips unknown topics and partitions
//! silently here too).

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse};

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ListPartitionReassignments, min_version: 0, max_version: 0 };

pub fn handle(_broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let _list: ListPartitionReassignmentsRequest =
        decode_body(&mut body, version, "ListPartitionReassignments request")?;
    let correlation_id = request.header.correlation_id;
    Ok(Box::pin(async move {
        let response =
            ListPartitionReassignmentsResponse::default().with_error_code(error_code::NONE).with_error_message(None);
        respond(ApiKey::ListPartitionReassignments, version, correlation_id, &response)
    }))
}
