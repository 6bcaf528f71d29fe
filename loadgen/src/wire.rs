//! Kafka framing on glommio sockets: requests encoded with the
//! kafka-protocol codecs behind a 4-byte size, responses read size-capped.
//! No state: the connection tasks own sockets and correlation ids.

use std::os::fd::RawFd;

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};
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
pub fn decode_response<T: Decodable>(api: ApiKey, version: i16, correlation_id: i32, mut frame: Bytes) -> Result<T, String> {
    let header = ResponseHeader::decode(&mut frame, api.response_header_version(version)).map_err(|e| format!("{api:?} response header: {e}"))?;
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
    ringstream::client::error_name(code)
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
