//! Kafka framing on glommio sockets: requests encoded with the
//! kafka-protocol codecs behind a 4-byte size, responses read size-capped.
//! No state: the connection tasks own sockets and correlation ids.

use std::os::fd::RawFd;

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::limits::response_bytes_max;

pub const client_id: &str = "ringstream-loadgen";

/// One request as a frame: size, header, body.
/// `capacity_bytes`: the expected frame size, so the buffer never grows
/// (growing copies, and large fresh allocations fault their pages in).
pub fn encode_request<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &R,
    capacity_bytes: usize,
) -> Result<Bytes, String> {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str(client_id));
    let mut frame = BytesMut::with_capacity(capacity_bytes);
    frame.put_i32(0);
    header.encode(&mut frame, api.request_header_version(version)).map_err(|e| format!("{api:?} header: {e}"))?;
    request.encode(&mut frame, version).map_err(|e| format!("{api:?} v{version}: {e}"))?;
    let size = i32::try_from(frame.len() - 4).map_err(|_| format!("{api:?} request of {} bytes", frame.len()))?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}

/// A Produce request (v3–v9, one topic, no transactional id) as pieces to
/// send in order: small framing pieces around each partition's batch, which
/// is sent from its own buffer, not copied into the frame (kafka-protocol's
/// encoder would copy every batch once more). The pieces concatenated are
/// byte for byte what `encode_request` writes (tested below).
pub fn produce_pieces(
    version: i16,
    correlation_id: i32,
    acks: i16,
    timeout_ms: i32,
    topic: &str,
    partitions: &[(i32, Bytes)],
) -> Result<Vec<Bytes>, String> {
    if !(3..=9).contains(&version) {
        return Err(format!("Produce v{version}: the zero-copy framing covers v3 to v9"));
    }
    let flexible = version >= 9;
    let topic_len = i16::try_from(topic.len()).map_err(|_| format!("topic name of {} bytes", topic.len()))?;
    let mut pieces = Vec::with_capacity(2 * partitions.len() + 1);
    let mut head = BytesMut::with_capacity(64 + topic.len());
    head.put_i32(0); // size, patched below
    head.put_i16(ApiKey::Produce as i16);
    head.put_i16(version);
    head.put_i32(correlation_id);
    head.put_i16(client_id.len() as i16);
    head.put_slice(client_id.as_bytes());
    if flexible {
        head.put_u8(0); // header tagged fields
        head.put_u8(0); // transactional_id: compact null
    } else {
        head.put_i16(-1); // transactional_id: null
    }
    head.put_i16(acks);
    head.put_i32(timeout_ms);
    if flexible {
        put_uvarint(&mut head, 2); // one topic
        put_uvarint(&mut head, topic.len() as u64 + 1);
    } else {
        head.put_i32(1);
        head.put_i16(topic_len);
    }
    head.put_slice(topic.as_bytes());
    let count = partitions.len();
    if flexible {
        put_uvarint(&mut head, count as u64 + 1);
    } else {
        head.put_i32(i32::try_from(count).map_err(|_| format!("{count} partitions"))?);
    }
    let mut framing = head;
    for (index, records) in partitions {
        framing.put_i32(*index);
        if flexible {
            put_uvarint(&mut framing, records.len() as u64 + 1);
        } else {
            framing.put_i32(i32::try_from(records.len()).map_err(|_| format!("batch of {} bytes", records.len()))?);
        }
        pieces.push(framing.split().freeze());
        pieces.push(records.clone());
        if flexible {
            framing.put_u8(0); // partition tagged fields
        }
    }
    if flexible {
        framing.put_u8(0); // topic tagged fields
        framing.put_u8(0); // request tagged fields
    }
    if !framing.is_empty() {
        pieces.push(framing.freeze());
    }
    // The first piece starts with the size prefix, which counts itself out.
    let size = pieces.iter().map(Bytes::len).sum::<usize>() - 4;
    let size = i32::try_from(size).map_err(|_| format!("Produce request of {size} bytes"))?;
    let mut first = BytesMut::from(&pieces[0][..]);
    first[..4].copy_from_slice(&size.to_be_bytes());
    pieces[0] = first.freeze();
    Ok(pieces)
}

/// Pieces this large are written from their own buffers; smaller ones
/// (framing, tiny batches such as S4's) are gathered into one write.
const piece_direct_bytes_min: usize = 4096;

/// Writes `pieces` in order: each large piece straight from its buffer,
/// runs of small ones gathered first (glommio has no vectored send, and a
/// write per 20-byte piece would cost more than copying it).
pub async fn write_pieces<W: AsyncWrite + Unpin>(writer: &mut W, pieces: &[Bytes]) -> std::io::Result<()> {
    let mut gathered = BytesMut::new();
    for piece in pieces {
        if piece.len() < piece_direct_bytes_min {
            gathered.extend_from_slice(piece);
            continue;
        }
        if !gathered.is_empty() {
            writer.write_all(&gathered).await?;
            gathered.clear();
        }
        writer.write_all(piece).await?;
    }
    if !gathered.is_empty() {
        writer.write_all(&gathered).await?;
    }
    Ok(())
}

fn put_uvarint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Reads one size-prefixed frame (without the prefix). `Ok(None)` on a clean
/// end of stream before the prefix.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Bytes>, String> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read: {e}")),
    }
    let size = i32::from_be_bytes(prefix);
    if size < 4 || size as usize > response_bytes_max {
        return Err(format!("response size {size} out of bounds (4..={response_bytes_max})"));
    }
    let mut body = BytesMut::zeroed(size as usize);
    reader.read_exact(&mut body).await.map_err(|e| format!("read: {e}"))?;
    Ok(Some(body.freeze()))
}

/// Decodes a response frame, checking its correlation id.
pub fn decode_response<T: Decodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> Result<T, String> {
    let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
        .map_err(|e| format!("{api:?} response header: {e}"))?;
    if header.correlation_id != correlation_id {
        return Err(format!("{api:?}: correlation id {} for request {correlation_id}", header.correlation_id));
    }
    T::decode(&mut frame, version).map_err(|e| format!("{api:?} v{version} response: {e}"))
}

/// The correlation id of a response frame (its first 4 bytes).
pub fn correlation_of(frame: &[u8]) -> Option<i32> {
    frame.get(..4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Shuts a socket down both ways, which ends a read pending on it.
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown on a descriptor the caller's connection still owns.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Kafka's error name for a code, e.g. "NOT_LEADER_OR_FOLLOWER".
pub fn error_kind(code: i16) -> String {
    ringstream_client::error_name(code)
}

/// Whether Kafka defines the error `code` as retriable (a coordinator
/// loading, a leader moving, ...).
pub fn is_retriable(code: i16) -> bool {
    kafka_protocol::error::ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

/// Kafka's error codes the group client acts on.
pub mod codes {
    pub const coordinator_load_in_progress: i16 = 14;
    pub const coordinator_not_available: i16 = 15;
    pub const not_coordinator: i16 = 16;
    pub const unknown_member_id: i16 = 25;
    pub const rebalance_in_progress: i16 = 27;
    pub const member_id_required: i16 = 79;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};

    #[test]
    fn produce_pieces_are_the_encoders_bytes() {
        let batches: Vec<(i32, Bytes)> = vec![
            (0, Bytes::from(vec![7u8; 300])),
            (5, Bytes::from(vec![9u8; 70])),
            (11, Bytes::from((0..=255u8).cycle().take(20_000).collect::<Vec<u8>>())),
        ];
        for version in 3..=9 {
            for partitions in [&batches[..0], &batches[..1], &batches[..]] {
                let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("lg-topic")))
                        .with_partition_data(
                            partitions
                                .iter()
                                .map(|(index, records)| {
                                    PartitionProduceData::default()
                                        .with_index(*index)
                                        .with_records(Some(records.clone()))
                                })
                                .collect(),
                        ),
                ]);
                let expected = encode_request(ApiKey::Produce, version, 42, &request, 1024).unwrap();
                let pieces = produce_pieces(version, 42, -1, 30_000, "lg-topic", partitions).unwrap();
                let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
                assert_eq!(joined, expected.to_vec(), "v{version}, {} partitions", partitions.len());
                // The batches are the callers' buffers, not copies.
                for (index, records) in partitions {
                    let _ = index;
                    assert!(pieces.iter().any(|p| p.as_ptr() == records.as_ptr() && p.len() == records.len()));
                }
            }
        }
        assert!(produce_pieces(10, 1, -1, 1, "t", &batches).is_err());
    }
}
