//! WriteTxnMarkers (key 27), v1: a transaction coordinator on another
//! broker asks this partition leader to write COMMIT or ABORT markers
//! (`txn::markers`). Answered per partition once the ISR has the marker.

use std::rc::Rc;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ApiKey, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::limits;
use ringstream_protocol::{decode_body, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::WriteTxnMarkers, min_version: 1, max_version: 1 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let write: WriteTxnMarkersRequest = decode_body(&mut body, version, "WriteTxnMarkers request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut markers = Vec::with_capacity(write.markers.len());
        for marker in write.markers.iter().take(limits::txn_listing_max) {
            let partitions: Vec<(String, i32)> = marker
                .topics
                .iter()
                .flat_map(|t| t.partition_indexes.iter().map(move |p| (t.name.0.as_str().to_owned(), *p)))
                .take(limits::txn_partitions_max)
                .collect();
            let results = crate::txn::markers::write_local(
                &broker,
                marker.producer_id.0,
                marker.producer_epoch,
                marker.transaction_result,
                marker.coordinator_epoch,
                partitions,
            )
            .await;
            let mut topics: Vec<WritableTxnMarkerTopicResult> = Vec::new();
            for ((topic, partition), code) in results {
                let row =
                    WritableTxnMarkerPartitionResult::default().with_partition_index(partition).with_error_code(code);
                match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                    Some(existing) => existing.partitions.push(row),
                    None => topics.push(
                        WritableTxnMarkerTopicResult::default()
                            .with_name(TopicName(str_bytes(&topic)))
                            .with_partitions(vec![row]),
                    ),
                }
            }
            markers.push(WritableTxnMarkerResult::default().with_producer_id(marker.producer_id).with_topics(topics));
        }
        respond(
            ApiKey::WriteTxnMarkers,
            version,
            correlation_id,
            &WriteTxnMarkersResponse::default().with_markers(markers),
        )
    }))
}
