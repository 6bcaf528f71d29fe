//! AddOffsetsToTxn (key 25), v0–v4: adds the group's offsets-log partition
//! to the producer's transaction, so its TxnOffsetCommit offsets are
//! decided by the transaction's marker.

use std::rc::Rc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ApiKey};

use super::{respond, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::AddOffsetsToTxn, min_version: 0, max_version: 4 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let add: AddOffsetsToTxnRequest = decode_body(&mut body, version, "AddOffsetsToTxn request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let id = add.transactional_id.0.as_str().to_owned();
        let group = add.group_id.0.as_str();
        let partition = crate::groups::group_partition(group, crate::groups::coordinator::partitions_configured());
        let offsets = vec![(crate::groups::OFFSETS_TOPIC.to_owned(), partition)];
        let (producer_id, epoch) = (add.producer_id.0, add.producer_epoch);
        let key = id.clone();
        let answer = crate::txn::on_coordinator(&broker.shard, &key, move |c, txn_partition| async move {
            c.add_partitions(&id, txn_partition, producer_id, epoch, &offsets).await
        })
        .await;
        let code = match answer {
            Ok(()) => error_code::NONE,
            Err(code) => crate::txn::fenced_for(code, version, 2),
        };
        respond(
            ApiKey::AddOffsetsToTxn,
            version,
            correlation_id,
            &AddOffsetsToTxnResponse::default().with_error_code(code),
        )
    }))
}
