//! Fetch responses framed by hand, so that stored record batches reach the
//! socket without a user-space copy.
//!
//! The encoder lays out a FetchResponse (v4–v17) exactly as Kafka's spec
//! does, but instead of one buffer it produces a list of pieces: small
//! owned buffers for everything around the records, and the record batches
//! themselves as whatever handle the caller gave (for the broker: slices of
//! the batch cache's write buffers or of DMA read buffers). The connection
//! writes the pieces with one vectored write. A test decodes our frames with
//! the `kafka-protocol` crate for every version.
//!
//! Pure: no I/O.

use bytes::{BufMut, Bytes, BytesMut};

/// One piece of a response frame.
#[derive(Clone, Debug)]
pub enum Piece<B> {
    Owned(Bytes),
    Batch(B),
}

impl<B: AsRef<[u8]>> Piece<B> {
    pub fn len(&self) -> usize {
        match self {
            Piece::Owned(bytes) => bytes.len(),
            Piece::Batch(batch) => batch.as_ref().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Piece::Owned(bytes) => bytes,
            Piece::Batch(batch) => batch.as_ref(),
        }
    }
}

pub struct PartitionOut<B> {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Whole record batches, in offset order. Never null on the wire: a
    /// partition with an error carries empty records, as Kafka sends them
    /// (librdkafka rejects a whole response with a size of -1).
    pub batches: Vec<B>,
    /// KIP-951, v12+: the partition's leader (id, epoch) when this broker
    /// answers NOT_LEADER_OR_FOLLOWER; written as tagged field 1.
    pub current_leader: Option<(i32, i32)>,
    /// KIP-320, v12+: (epoch, end offset) where a follower's log diverges
    /// from the leader's; written as tagged field 0.
    pub diverging_epoch: Option<(i32, i64)>,
    /// KIP-392, v11+: the replica the consumer should fetch from (-1: this one).
    pub preferred_read_replica: i32,
    /// A read_committed fetch (v4+): the aborted transactions of the range,
    /// (producer id, first offset); None is written as null.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
}

/// KIP-951, v16+: where a leader named in `current_leader` listens.
pub struct NodeEndpointOut {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

pub struct TopicOut<B> {
    pub name: String,
    /// The topic id, written instead of the name from v13 (KIP-516).
    pub topic_id: [u8; 16],
    pub partitions: Vec<PartitionOut<B>>,
}

pub struct FetchOut<B> {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<TopicOut<B>>,
    /// Written as tagged field 0 from v16 (KIP-951).
    pub node_endpoints: Vec<NodeEndpointOut>,
}

/// The served version range of this encoder.
pub const version_min: i16 = 4;
pub const version_max: i16 = 17;

fn put_uvarint(out: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn put_array_len(out: &mut BytesMut, flexible: bool, len: usize) {
    let len = u32::try_from(len).expect("array length fits u32");
    if flexible {
        put_uvarint(out, len + 1);
    } else {
        out.put_i32(i32::try_from(len).expect("array length fits i32"));
    }
}

fn put_string(out: &mut BytesMut, flexible: bool, s: &str) {
    if flexible {
        put_uvarint(out, s.len() as u32 + 1);
    } else {
        out.put_i16(i16::try_from(s.len()).expect("topic names are short"));
    }
    out.put_slice(s.as_bytes());
}

/// Encodes a whole response frame (size prefix, response header, body) as
/// pieces. Panics only on values no caller can produce (a version outside
/// `version_min..=version_max`, lengths beyond 2 GiB).
pub fn encode<B: AsRef<[u8]> + Clone>(version: i16, correlation_id: i32, response: &FetchOut<B>) -> Vec<Piece<B>> {
    assert!((version_min..=version_max).contains(&version));
    let flexible = version >= 12;
    let mut pieces: Vec<Piece<B>> = Vec::new();
    let mut out = BytesMut::with_capacity(256);
    // Response header: v1 (tagged fields) for flexible versions.
    out.put_i32(correlation_id);
    if flexible {
        put_uvarint(&mut out, 0);
    }
    out.put_i32(response.throttle_time_ms);
    if version >= 7 {
        out.put_i16(response.error_code);
        out.put_i32(response.session_id);
    }
    put_array_len(&mut out, flexible, response.topics.len());
    for topic in &response.topics {
        if version >= 13 {
            out.put_slice(&topic.topic_id);
        } else {
            put_string(&mut out, flexible, &topic.name);
        }
        put_array_len(&mut out, flexible, topic.partitions.len());
        for p in &topic.partitions {
            out.put_i32(p.partition_index);
            out.put_i16(p.error_code);
            out.put_i64(p.high_watermark);
            out.put_i64(p.last_stable_offset);
            if version >= 5 {
                out.put_i64(p.log_start_offset);
            }
            match &p.aborted_transactions {
                None if flexible => put_uvarint(&mut out, 0),
                None => out.put_i32(-1),
                Some(aborted) => {
                    put_array_len(&mut out, flexible, aborted.len());
                    for (producer_id, first_offset) in aborted {
                        out.put_i64(*producer_id);
                        out.put_i64(*first_offset);
                        if flexible {
                            put_uvarint(&mut out, 0); // tagged fields
                        }
                    }
                }
            }
            if version >= 11 {
                out.put_i32(p.preferred_read_replica);
            }
            let len: usize = p.batches.iter().map(|b| b.as_ref().len()).sum();
            let len = u32::try_from(len).expect("records fit u32");
            if flexible {
                put_uvarint(&mut out, len + 1);
            } else {
                out.put_i32(i32::try_from(len).expect("records fit i32"));
            }
            if !p.batches.is_empty() {
                pieces.push(Piece::Owned(out.split().freeze()));
                pieces.extend(p.batches.iter().cloned().map(Piece::Batch));
            }
            if flexible {
                // Partition tagged fields, in tag order.
                let count = u32::from(p.diverging_epoch.is_some()) + u32::from(p.current_leader.is_some());
                put_uvarint(&mut out, count);
                if let Some((epoch, end_offset)) = p.diverging_epoch {
                    // Tag 0: DivergingEpoch { epoch, end offset, no tags }.
                    put_uvarint(&mut out, 0);
                    put_uvarint(&mut out, 13);
                    out.put_i32(epoch);
                    out.put_i64(end_offset);
                    put_uvarint(&mut out, 0);
                }
                if let Some((leader, epoch)) = p.current_leader {
                    // Tag 1: CurrentLeader { leader id, epoch, no tags }.
                    put_uvarint(&mut out, 1);
                    put_uvarint(&mut out, 9);
                    out.put_i32(leader);
                    out.put_i32(epoch);
                    put_uvarint(&mut out, 0);
                }
            }
        }
        if flexible {
            put_uvarint(&mut out, 0); // topic tagged fields
        }
    }
    if flexible {
        // Response tagged fields: v16's NodeEndpoints (KIP-951), tag 0.
        if version >= 16 && !response.node_endpoints.is_empty() {
            let mut field = BytesMut::new();
            put_array_len(&mut field, true, response.node_endpoints.len());
            for node in &response.node_endpoints {
                field.put_i32(node.node_id);
                put_string(&mut field, true, &node.host);
                field.put_i32(node.port);
                match &node.rack {
                    Some(rack) => put_string(&mut field, true, rack),
                    None => put_uvarint(&mut field, 0), // null compact string
                }
                put_uvarint(&mut field, 0);
            }
            put_uvarint(&mut out, 1);
            put_uvarint(&mut out, 0);
            put_uvarint(&mut out, u32::try_from(field.len()).expect("endpoints fit u32"));
            out.put_slice(&field);
        } else {
            put_uvarint(&mut out, 0);
        }
    }
    pieces.push(Piece::Owned(out.freeze()));
    let total: usize = pieces.iter().map(Piece::len).sum();
    let mut size = BytesMut::with_capacity(4);
    size.put_i32(i32::try_from(total).expect("responses fit i32"));
    pieces.insert(0, Piece::Owned(size.freeze()));
    pieces.retain(|piece| !piece.is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;

    fn concat(pieces: &[Piece<Bytes>]) -> Bytes {
        let mut all = BytesMut::new();
        for piece in pieces {
            all.put_slice(piece.as_slice());
        }
        all.freeze()
    }

    #[test]
    fn frames_decode_with_the_crate_for_every_version() {
        let batch_a = Bytes::from(ringstream_core::batch::build_test_batch(3, 50, 1, 1000));
        let batch_b = Bytes::from(ringstream_core::batch::build_test_batch(1, 7, 2, 2000));
        for version in version_min..=version_max {
            let response = FetchOut {
                throttle_time_ms: 0,
                error_code: 0,
                session_id: if version >= 7 { 77 } else { 0 },
                topics: vec![
                    TopicOut {
                        name: "alpha".into(),
                        topic_id: [7; 16],
                        partitions: vec![
                            PartitionOut {
                                partition_index: 0,
                                error_code: 0,
                                high_watermark: 10,
                                last_stable_offset: 10,
                                log_start_offset: 2,
                                batches: vec![batch_a.clone(), batch_b.clone()],
                                current_leader: None,
                                diverging_epoch: None,
                                preferred_read_replica: 3,
                                aborted_transactions: Some(vec![(17, 4), (18, 6)]),
                            },
                            PartitionOut {
                                partition_index: 3,
                                error_code: 6,
                                high_watermark: -1,
                                last_stable_offset: -1,
                                log_start_offset: -1,
                                batches: vec![],
                                current_leader: Some((2, 5)),
                                diverging_epoch: Some((4, 123)),
                                preferred_read_replica: -1,
                                aborted_transactions: None,
                            },
                        ],
                    },
                    TopicOut {
                        name: "b".into(),
                        topic_id: [9; 16],
                        partitions: vec![PartitionOut {
                            partition_index: 1,
                            error_code: 0,
                            high_watermark: 0,
                            last_stable_offset: 0,
                            log_start_offset: 0,
                            batches: vec![],
                            current_leader: None,
                            diverging_epoch: None,
                            preferred_read_replica: -1,
                            aborted_transactions: None,
                        }],
                    },
                ],
                node_endpoints: vec![NodeEndpointOut { node_id: 2, host: "h2".into(), port: 9093, rack: None }],
            };
            let pieces = encode(version, 42, &response);
            assert!(pieces.iter().any(|p| matches!(p, Piece::Batch(_))), "batches are pieces of their own");
            let frame = concat(&pieces);
            let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(size, frame.len() - 4);
            let mut body = frame.slice(4..);
            let header_version = if version >= 12 { 1 } else { 0 };
            let header = ResponseHeader::decode(&mut body, header_version).unwrap();
            assert_eq!(header.correlation_id, 42);
            let decoded = FetchResponse::decode(&mut body, version).unwrap();
            assert!(body.is_empty(), "v{version}: {} bytes left", body.len());
            assert_eq!(decoded.responses.len(), 2);
            let p0 = &decoded.responses[0].partitions[0];
            if version >= 13 {
                assert_eq!(decoded.responses[0].topic_id, uuid::Uuid::from_bytes([7; 16]));
            } else {
                assert_eq!(decoded.responses[0].topic.0.as_str(), "alpha");
            }
            assert_eq!(p0.high_watermark, 10);
            let aborted: Vec<(i64, i64)> =
                p0.aborted_transactions.iter().flatten().map(|a| (a.producer_id.0, a.first_offset)).collect();
            assert_eq!(aborted, vec![(17, 4), (18, 6)], "v{version}: aborted transactions");
            assert!(decoded.responses[0].partitions[1].aborted_transactions.is_none());
            if version >= 11 {
                assert_eq!(p0.preferred_read_replica.0, 3);
            }
            if version >= 5 {
                assert_eq!(p0.log_start_offset, 2);
            }
            if version >= 7 {
                assert_eq!(decoded.session_id, 77);
            }
            let p1 = &decoded.responses[0].partitions[1];
            if version >= 12 {
                assert_eq!((p1.current_leader.leader_id.0, p1.current_leader.leader_epoch), (2, 5));
                assert_eq!((p1.diverging_epoch.epoch, p1.diverging_epoch.end_offset), (4, 123));
            }
            if version >= 16 {
                assert_eq!(decoded.node_endpoints.len(), 1);
                assert_eq!(decoded.node_endpoints[0].host.as_str(), "h2");
                assert_eq!(decoded.node_endpoints[0].port, 9093);
            } else {
                assert!(decoded.node_endpoints.is_empty());
            }
            let mut expected = BytesMut::new();
            expected.put_slice(&batch_a);
            expected.put_slice(&batch_b);
            assert_eq!(p0.records.as_deref(), Some(&expected[..]), "v{version}");
            let p1 = &decoded.responses[0].partitions[1];
            // An error carries empty records, never null (regression:
            // fetch_error_partition_has_empty_records).
            assert_eq!((p1.partition_index, p1.error_code), (3, 6));
            assert_eq!(p1.records.as_deref(), Some(&b""[..]), "v{version}");
            assert_eq!(decoded.responses[1].partitions[0].records.as_deref(), Some(&b""[..]));
        }
    }
}
