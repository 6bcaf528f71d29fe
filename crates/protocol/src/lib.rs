//! The Kafka wire protocol: framing, request headers, response encoding and
//! error codes. Pure: no I/O, no shard state. The connection code in
//! `ringstream_broker::connection` feeds it bytes and writes what it returns.
//!
//! Codecs for the request and response bodies come from the
//! `kafka-protocol` crate (generated from Kafka's JSON message specs). This
//! module adds what a broker needs around them: the size-capped frame, a
//! header parser that checks every bound before the crate sees the bytes,
//! and KIP-511's rule for ApiVersions requests newer than we know.
#![allow(non_upper_case_globals)] // limits are named like values: `batch_bytes_max`.

pub use ringstream_core::error_code;
pub mod fetch_response;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// Why a connection's input was rejected; the connection is closed and one
/// line is logged with the client's address.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {size} bytes is outside [{min}, {max}]")]
    FrameSize { size: i64, min: usize, max: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("{api} v{version} is not supported (supported: v{min}..=v{max})")]
    UnsupportedVersion { api: &'static str, version: i16, min: i16, max: i16 },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
}

/// Smallest request: api_key, api_version, correlation_id, client_id length.
pub const request_header_bytes_min: usize = 10;

/// Reads the 4-byte size prefix at the start of `buffer`. Returns the frame
/// length (excluding the prefix) once the prefix is complete. The size is
/// checked against `frame_bytes_max` before anyone allocates for it.
pub fn frame_size(buffer: &[u8], frame_bytes_max: usize) -> Result<Option<usize>, WireError> {
    let [a, b, c, d, ..] = *buffer else { return Ok(None) };
    let size = i32::from_be_bytes([a, b, c, d]);
    if size < request_header_bytes_min as i32 || size as i64 > frame_bytes_max as i64 {
        return Err(WireError::FrameSize {
            size: i64::from(size),
            min: request_header_bytes_min,
            max: frame_bytes_max,
        });
    }
    Ok(Some(size as usize))
}

/// A request frame split into its header and its undecoded body.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// The api key, version and correlation id, read without the crate: enough
/// to answer even a request whose header we cannot fully decode.
pub fn peek_ids(frame: &[u8]) -> Result<(i16, i16, i32), WireError> {
    if frame.len() < 8 {
        return Err(WireError::Malformed { what: "request header", reason: format!("{} bytes", frame.len()) });
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    Ok((api_key, api_version, correlation_id))
}

/// Decodes a request header. `max_version` is the newest version we serve
/// of that API; ApiVersions requests newer than it are decoded with the
/// oldest header that carries the client id (KIP-511), so that we can answer
/// them with our version list.
pub fn decode_request(frame: Bytes, max_version: impl Fn(ApiKey) -> Option<i16>) -> Result<Request, WireError> {
    let (raw_key, api_version, _) = peek_ids(&frame)?;
    let api_key = ApiKey::try_from(raw_key).map_err(|_| WireError::UnknownApiKey { api_key: raw_key })?;
    if api_version < 0 {
        return Err(WireError::Malformed { what: "request header", reason: format!("negative version {api_version}") });
    }
    let header_version = match max_version(api_key) {
        Some(max) if api_version > max && api_key == ApiKey::ApiVersions => 1,
        _ => api_key.request_header_version(api_version),
    };
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, header_version)
        .map_err(|e| WireError::Malformed { what: "request header", reason: e.to_string() })?;
    Ok(Request { api_key, api_version, header, body })
}

/// Decodes a request body of type `T` at `version`. Bytes after the body
/// are ignored, as Kafka's request parser ignores them (confluent-kafka 2.16
/// sends three after an all-topics Metadata v12 request).
pub fn decode_body<T: Decodable>(body: &mut Bytes, version: i16, what: &'static str) -> Result<T, WireError> {
    let value = T::decode(body, version).map_err(|e| WireError::Malformed { what, reason: e.to_string() })?;
    if !body.is_empty() {
        tracing::debug!(request = what, version, trailing_bytes = body.len(), "ignoring bytes after the request body");
    }
    Ok(value)
}

/// Encodes a response frame: size prefix, header (v0 or v1 by API and
/// version), body.
pub fn encode_response<T: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, WireError> {
    let header_version = api_key.response_header_version(api_version);
    encode_response_with_header(header_version, api_version, correlation_id, body)
}

/// As `encode_response`, with an explicit header version (KIP-511 answers
/// use v0 whatever the request said).
pub fn encode_response_with_header<T: Encodable>(
    header_version: i16,
    body_version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, WireError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_size = header.compute_size(header_version).map_err(encode_error)?;
    let body_size = body.compute_size(body_version).map_err(encode_error)?;
    let total = header_size + body_size;
    let mut out = BytesMut::with_capacity(4 + total);
    out.put_i32(
        i32::try_from(total).map_err(|_| WireError::Malformed { what: "response", reason: "too large".into() })?,
    );
    header.encode(&mut out, header_version).map_err(encode_error)?;
    body.encode(&mut out, body_version).map_err(encode_error)?;
    debug_assert_eq!(out.len(), 4 + total);
    Ok(out.freeze())
}

fn encode_error(error: impl std::fmt::Display) -> WireError {
    WireError::Malformed { what: "response", reason: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    fn frame_of<T: Encodable>(api_key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut header = RequestHeader::default();
        header.request_api_key = api_key as i16;
        header.request_api_version = version;
        header.correlation_id = 42;
        header.client_id = Some(StrBytes::from_static_str("test"));
        let mut out = BytesMut::new();
        header.encode(&mut out, api_key.request_header_version(version)).unwrap();
        body.encode(&mut out, version).unwrap();
        out.freeze()
    }

    #[test]
    fn frame_sizes_are_capped_before_allocation() {
        assert_eq!(frame_size(&[0, 0], 100).unwrap(), None);
        assert_eq!(frame_size(&[0, 0, 0, 50, 1, 2], 100).unwrap(), Some(50));
        assert!(frame_size(&[0, 0, 0, 101], 100).is_err());
        assert!(frame_size(&[0xff, 0xff, 0xff, 0xff], 100).is_err(), "negative");
        assert!(frame_size(&[0, 0, 0, 3], 100).is_err(), "smaller than any header");
    }

    #[test]
    fn headers_decode_for_flexible_and_classic_versions() {
        for version in [0i16, 4, 9, 12] {
            let frame = frame_of(ApiKey::Metadata, version, &MetadataRequest::default());
            let request = decode_request(frame, |_| Some(12)).unwrap();
            assert_eq!(request.api_key, ApiKey::Metadata);
            assert_eq!(request.header.correlation_id, 42);
            let mut body = request.body;
            decode_body::<MetadataRequest>(&mut body, version, "metadata").unwrap();
        }
    }

    #[test]
    fn newer_api_versions_requests_still_yield_a_header() {
        // A v3 request (flexible header v2) when we only know up to v2.
        let frame = frame_of(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let request = decode_request(frame, |_| Some(2)).unwrap();
        assert_eq!(request.header.correlation_id, 42);
        assert_eq!(request.api_version, 3);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 99, 0, 0, 0, 0, 0, 1, 0, 0]), |_| None),
            Err(WireError::UnknownApiKey { .. })
        ));
        assert!(decode_request(Bytes::from_static(&[0, 3, 0, 9, 0, 0, 0, 1, 0x7f, 0xff]), |_| Some(12)).is_err());
        let mut state = 0x1234_5678u64;
        for _ in 0..5000 {
            let len = (state % 64) as usize;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(state as u8);
            }
            let _ = decode_request(Bytes::from(bytes), |_| Some(12));
        }
    }
}
