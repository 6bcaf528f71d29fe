//! Produce (key 0), v3–v11: one record batch per partition (as Kafka requires
//! from v3), appended on the partition's owner with acks 0, 1 or -1. acks=1
//! is answered once the leader's append is durable under the flush policy;
//! acks=-1 once the high watermark passes the batch (every ISR replica has
//! it on disk), with NOT_ENOUGH_REPLICAS before the append when the ISR is
//! smaller than `min.insync.replicas`. Errors are per partition.
//!
//! v10's leader hints (KIP-951) accompany NOT_LEADER_OR_FOLLOWER. v12 (KIP-890
//! part 2: partitions joining a transaction implicitly) belongs to
//! transaction version 2, which is not enabled (ARCHITECTURE.md), and v13
//! (topic ids) comes after it.
//!
//! Transactional batches open their producer's transaction in the
//! partition (storage tracks it for the last stable offset). Control
//! batches are the coordinator's markers: a client's gets INVALID_RECORD,
//! as does a transactional batch without a producer id or sequence.
//!
//! Internal topics (`__consumer_offsets`) refuse client appends with
//! INVALID_TOPIC_EXCEPTION, as Kafka does. A `cleanup.policy=compact` topic
//! refuses a batch holding a record without a key: INVALID_RECORD with one
//! KIP-467 record error per such record (v8+).
//!
//! The ordered part runs in `start`: every partition's batch is queued (its
//! offsets assigned) before the connection reads its next request, so
//! pipelined produce requests land in order.

use std::rc::Rc;

use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, BrokerId, ProduceRequest, ProduceResponse};

use kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage;

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::batch;
use ringstream_core::limits;
use ringstream_core::limits::record_errors_max;
use ringstream_core::types::TopicPartition;
use ringstream_protocol::{decode_body, error_code, Request, WireError};
use ringstream_shard::router::RoutedTicket;

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::Produce, min_version: 3, max_version: 11 };

/// What ApiVersions reports as Produce's oldest version. librdkafka before
/// 2.10 (Debian's kcat has 2.0.2) only compresses with gzip or snappy when
/// the broker lists Produce v0, so, like Kafka 4.0 (KAFKA-18659), we list it;
/// a request older than v3 still closes its connection, and librdkafka never
/// sends one when v3+ is on offer.
pub const advertised_min_version: i16 = 0;

enum Outcome {
    /// Valid, to be submitted with the request's other appends.
    Ready(TopicPartition, bytes::Bytes),
    /// Handed to `submit_many`; its ticket comes back in order.
    Submitting,
    Queued(RoutedTicket),
    Failed(i16),
    /// Led by another broker (or offline): KIP-951's hint from v10.
    NotLeader(crate::broker::LeaderHint),
    /// INVALID_RECORD with KIP-467's details: (batch index, message) per
    /// rejected record, and a message for the whole batch.
    Rejected {
        record_errors: Vec<(i32, String)>,
        message: String,
    },
}

pub async fn start(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let correlation_id = request.header.correlation_id;
    let mut body = request.body;
    let produce: ProduceRequest = decode_body(&mut body, version, "Produce request")?;
    let acks = produce.acks;
    let acks_valid = matches!(acks, -1..=1);
    let mut topics = Vec::with_capacity(produce.topic_data.len());
    for topic_data in produce.topic_data {
        let name = topic_data.name.0.as_str().to_owned();
        let topic = if !acks_valid {
            None
        } else if Broker::is_internal(&name) {
            Some(Err(crate::broker::TopicError::new(
                error_code::INVALID_TOPIC_EXCEPTION,
                format!("cannot append to internal topic {name:?}"),
            )))
        } else {
            Some(broker.topic_or_create(&name, true).await)
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for partition in topic_data.partition_data {
            let outcome = match &topic {
                None => Outcome::Failed(error_code::INVALID_REQUIRED_ACKS),
                Some(Err(e)) => Outcome::Failed(e.code),
                Some(Ok(meta)) if partition.index < 0 || partition.index >= meta.partitions => {
                    Outcome::Failed(error_code::UNKNOWN_TOPIC_OR_PARTITION)
                }
                Some(Ok(meta)) => match broker.leadership(&name, partition.index) {
                    Err(hint) => Outcome::NotLeader(hint),
                    Ok(()) if acks == -1 && !enough_in_sync(broker, &name, partition.index, &meta.configs) => {
                        Outcome::Failed(error_code::NOT_ENOUGH_REPLICAS)
                    }
                    Ok(()) => {
                        let compact = meta
                            .configs
                            .get("cleanup.policy")
                            .is_some_and(|p| p.split(',').any(|p| p.trim() == "compact"));
                        queue(&name, partition.index, partition.records, compact)
                    }
                },
            };
            partitions.push((partition.index, outcome));
        }
        topics.push((topic_data.name, partitions));
    }
    // Every valid append at once: one message per other shard.
    let mut ready = Vec::new();
    for (_, partitions) in &mut topics {
        for (_, outcome) in partitions.iter_mut() {
            if let Outcome::Ready(..) = outcome {
                if let Outcome::Ready(tp, batch) = std::mem::replace(outcome, Outcome::Submitting) {
                    ready.push((tp, batch));
                }
            }
        }
    }
    if !ready.is_empty() {
        let mut tickets = broker.shard.submit_many(ready).await.into_iter();
        for (_, partitions) in &mut topics {
            for (_, outcome) in partitions.iter_mut() {
                if let Outcome::Submitting = outcome {
                    *outcome = match tickets.next().expect("one ticket per append") {
                        Ok(ticket) => Outcome::Queued(ticket),
                        Err(e) => Outcome::Failed(e.kafka_error_code()),
                    };
                }
            }
        }
    }
    let cluster = broker.cluster();
    let broker = broker.clone();
    let timeout = std::time::Duration::from_millis(produce.timeout_ms.max(0) as u64);
    Ok(Box::pin(async move {
        let mut leaders_named = std::collections::BTreeSet::new();
        let mut responses = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let mut partition_responses = Vec::with_capacity(partitions.len());
            for (index, outcome) in partitions {
                let response = PartitionProduceResponse::default().with_index(index).with_log_append_time_ms(-1);
                let response = match outcome {
                    // Every one was submitted above; never answered as such.
                    Outcome::Ready(..) | Outcome::Submitting => response
                        .with_error_code(error_code::UNKNOWN_SERVER_ERROR)
                        .with_base_offset(-1)
                        .with_log_start_offset(-1),
                    Outcome::Failed(code) => {
                        response.with_error_code(code).with_base_offset(-1).with_log_start_offset(-1)
                    }
                    Outcome::NotLeader(hint) => {
                        let mut response = response
                            .with_error_code(error_code::NOT_LEADER_OR_FOLLOWER)
                            .with_base_offset(-1)
                            .with_log_start_offset(-1);
                        if version >= 10 && hint.leader >= 0 {
                            response.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(hint.leader))
                                .with_leader_epoch(hint.leader_epoch);
                            leaders_named.insert(hint.leader);
                        }
                        response
                    }
                    Outcome::Rejected { record_errors, message } => {
                        let response = response
                            .with_error_code(error_code::INVALID_RECORD)
                            .with_base_offset(-1)
                            .with_log_start_offset(-1);
                        if version >= 8 {
                            let errors = record_errors
                                .into_iter()
                                .map(|(index, message)| {
                                    BatchIndexAndErrorMessage::default()
                                        .with_batch_index(index)
                                        .with_batch_index_error_message(Some(str_bytes(&message)))
                                })
                                .collect();
                            response.with_record_errors(errors).with_error_message(Some(str_bytes(&message)))
                        } else {
                            response
                        }
                    }
                    Outcome::Queued(ticket) => match ticket.wait().await {
                        Ok(info) if acks == -1 => {
                            // acks=all: once every ISR replica has the batch.
                            let code = broker.committed(name.0.as_str(), index, info.last_offset, timeout).await;
                            if code == error_code::NONE {
                                response
                                    .with_error_code(error_code::NONE)
                                    .with_log_append_time_ms(info.log_append_time_ms)
                                    .with_base_offset(info.base_offset.0)
                                    .with_log_start_offset(if version >= 5 { info.log_start_offset.0 } else { -1 })
                            } else {
                                response.with_error_code(code).with_base_offset(-1).with_log_start_offset(-1)
                            }
                        }
                        Ok(info) => response
                            .with_error_code(error_code::NONE)
                            .with_log_append_time_ms(info.log_append_time_ms)
                            .with_base_offset(info.base_offset.0)
                            .with_log_start_offset(if version >= 5 { info.log_start_offset.0 } else { -1 }),
                        Err(e) => response
                            .with_error_code(e.kafka_error_code())
                            .with_base_offset(-1)
                            .with_log_start_offset(-1),
                    },
                };
                partition_responses.push(response);
            }
            responses
                .push(TopicProduceResponse::default().with_name(name).with_partition_responses(partition_responses));
        }
        if acks == 0 {
            return None; // the client expects no response
        }
        let mut response = ProduceResponse::default().with_responses(responses);
        if let Some(view) = cluster.filter(|_| version >= 10) {
            // KIP-951: where the named leaders are, so the client re-routes
            // without a Metadata round trip.
            response.node_endpoints = leaders_named
                .iter()
                .filter_map(|id| view.image.brokers.get(id))
                .map(|b| {
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(b.id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                })
                .collect();
        }
        respond(ApiKey::Produce, version, correlation_id, &response)
    }))
}
/// Whether a partition has at least `min.insync.replicas` in its ISR (acks=all).
fn enough_in_sync(
    broker: &Broker,
    topic: &str,
    partition: i32,
    configs: &std::collections::BTreeMap<String, String>,
) -> bool {
    let Some(view) = broker.cluster() else { return true };
    view.image.partition(topic, partition).map_or(true, |p| p.isr.len() >= crate::broker::min_insync(configs))
}

/// Checks one partition's records; `Ready` when they may be appended.
fn queue(topic: &str, partition: i32, records: Option<bytes::Bytes>, compact: bool) -> Outcome {
    let Some(records) = records else { return Outcome::Failed(error_code::CORRUPT_MESSAGE) };
    // From v3 a partition's records are exactly one batch.
    let mut batches = batch::split_batches(&records, limits::batch_bytes_max);
    match (batches.next(), batches.next()) {
        (Some(Ok(one)), None) if one.len() == records.len() => {}
        (Some(Ok(_)), Some(_)) => return Outcome::Failed(error_code::INVALID_RECORD),
        _ => return Outcome::Failed(error_code::CORRUPT_MESSAGE),
    }
    let header = batch::BatchHeader::ref_from_prefix(&records);
    if header.is_some_and(|h| h.is_control()) {
        // Markers are the transaction coordinator's (WriteTxnMarkers).
        return Outcome::Rejected {
            record_errors: Vec::new(),
            message: "clients may not write control batches".to_owned(),
        };
    }
    if header.is_some_and(|h| h.is_transactional() && (h.producer_id() < 0 || h.base_sequence() < 0)) {
        return Outcome::Rejected {
            record_errors: Vec::new(),
            message: "a transactional batch needs a producer id and a sequence".to_owned(),
        };
    }
    let tp = TopicPartition::new(topic, partition);
    if compact {
        match keyless_records(&records, limits::decompressed_batch_bytes_max) {
            Ok(keyless) if keyless.is_empty() => {}
            Ok(keyless) => {
                let record_errors: Vec<(i32, String)> = keyless
                    .iter()
                    .take(record_errors_max)
                    .map(|&index| {
                        (index, format!("Compacted topic cannot accept message without key in topic partition {tp}."))
                    })
                    .collect();
                let shown: Vec<String> =
                    record_errors.iter().take(3).map(|(i, m)| format!("(batch index {i}: {m})")).collect();
                let message = format!(
                    "{} record(s) rejected: a compacted topic needs a key on every record; the first: {}",
                    keyless.len(),
                    shown.join(", ")
                );
                return Outcome::Rejected { record_errors, message };
            }
            Err(code) => return Outcome::Failed(code),
        }
    }
    Outcome::Ready(tp, records)
}

/// The batch indexes of the records without a key in one validated batch:
/// walked in place when uncompressed, inflated at most
/// `decompressed_bytes_max` otherwise (a batch that inflates
/// past it is refused). Errors are Kafka codes.
fn keyless_records(bytes: &bytes::Bytes, decompressed_bytes_max: usize) -> Result<Vec<i32>, i16> {
    let header = batch::BatchHeader::ref_from_prefix(bytes).ok_or(error_code::CORRUPT_MESSAGE)?;
    if header.is_control() {
        return Ok(Vec::new());
    }
    let mut keyless = Vec::new();
    batch::for_each_record(bytes, decompressed_bytes_max, |record| {
        if record.key.is_none() {
            keyless.push(record.offset_delta);
        }
    })
    .map_err(|e| if e.is_corruption() { error_code::CORRUPT_MESSAGE } else { error_code::INVALID_RECORD })?;
    Ok(keyless)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (compacted_topic_rejects_keyless_records): which records
    /// of a batch lack a key.
    #[test]
    fn compacted_topic_rejects_keyless_records() {
        let mut builder = batch::BatchBuilder::new(1000);
        builder.push(&batch::Record { key: Some(b"k"), value: Some(b"v"), ..Default::default() });
        builder.push(&batch::Record { key: None, value: Some(b"v"), ..Default::default() });
        builder.push(&batch::Record { key: None, value: None, ..Default::default() });
        let plain = builder.build();
        let max = limits::decompressed_batch_bytes_max;
        assert_eq!(keyless_records(&bytes::Bytes::from(plain.clone()), max), Ok(vec![1, 2]));
        let mut keyed = batch::BatchBuilder::new(1000);
        keyed.push(&batch::Record { key: Some(b"a"), value: None, ..Default::default() });
        assert_eq!(keyless_records(&bytes::Bytes::from(keyed.build()), max), Ok(vec![]));
        // Compressed: inflated, within the bound.
        let gzip = |records: &[u8]| {
            use std::io::Write;
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(records).unwrap();
            encoder.finish().unwrap()
        };
        let compressed = bytes::Bytes::from(recompress(&plain, 1, &gzip(&plain[61..])));
        assert_eq!(keyless_records(&compressed, max), Ok(vec![1, 2]));
        // A bomb: its records inflate past the bound, and it is refused
        // without inflating further.
        let mut bomb_records = plain[61..].to_vec();
        bomb_records.resize(bomb_records.len() + (4 << 20), 0);
        let bomb = bytes::Bytes::from(recompress(&plain, 1, &gzip(&bomb_records)));
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        assert_eq!(keyless_records(&bomb, 1 << 20), Err(error_code::INVALID_RECORD));
    }

    /// `plain` with its records replaced by `records`, compressed with
    /// `codec`: the attributes, length and CRC set to match.
    fn recompress(plain: &[u8], codec: u8, records: &[u8]) -> Vec<u8> {
        let mut out = plain[..61].to_vec();
        out.extend_from_slice(records);
        let length = (out.len() - 12) as i32;
        out[8..12].copy_from_slice(&length.to_be_bytes());
        let attributes = i16::from_be_bytes([out[21], out[22]]) & !0x07 | i16::from(codec);
        out[21..23].copy_from_slice(&attributes.to_be_bytes());
        batch::write_crc(&mut out);
        out
    }
}
