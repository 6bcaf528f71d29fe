//! A small blocking Kafka client for the `ringstream` command-line tools
//! (`topic`, `produce`, `consume`). It speaks the Kafka protocol to any
//! broker: versions are negotiated with ApiVersions, requests and responses
//! use the `kafka-protocol` codecs, and responses are size-capped before any
//! allocation. Not used by the broker itself.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Largest response the tools accept.
pub const response_bytes_max: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("I/O with the broker: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker does not serve {api:?} in a version this tool speaks")]
    Unsupported { api: ApiKey },
    #[error("bad response to {api:?}: {reason}")]
    Protocol { api: ApiKey, reason: String },
}

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
    /// The broker's version range per API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl Client {
    pub fn connect(address: &str, timeout: Duration) -> Result<Client, ClientError> {
        let connect_error = |source| ClientError::Connect { address: address.to_owned(), source };
        let resolved = address
            .to_socket_addrs()
            .map_err(connect_error)?
            .next()
            .ok_or_else(|| connect_error(std::io::Error::other("no address")))?;
        let stream = TcpStream::connect_timeout(&resolved, timeout).map_err(connect_error)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        let mut client = Client { stream, correlation_id: 0, versions: HashMap::new() };
        let response: ApiVersionsResponse = client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        if response.error_code != 0 {
            return Err(ClientError::Protocol { api: ApiKey::ApiVersions, reason: format!("error {}", response.error_code) });
        }
        client.versions = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(client)
    }

    /// The newest version of `api` both sides speak, up to `ours`.
    pub fn version(&self, api: ApiKey, ours: i16) -> Result<i16, ClientError> {
        let (min, max) = *self.versions.get(&(api as i16)).ok_or(ClientError::Unsupported { api })?;
        let version = max.min(ours);
        if version < min {
            return Err(ClientError::Unsupported { api });
        }
        Ok(version)
    }

    pub fn call<Req: Encodable, Resp: Decodable>(&mut self, api: ApiKey, version: i16, request: &Req) -> Result<Resp, ClientError> {
        let protocol = |reason: String| ClientError::Protocol { api, reason };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("ringstream-cli"));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header.encode(&mut frame, api.request_header_version(version)).map_err(|e| protocol(e.to_string()))?;
        request.encode(&mut frame, version).map_err(|e| protocol(e.to_string()))?;
        let size = i32::try_from(frame.len() - 4).map_err(|_| protocol("request too large".into()))?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&frame)?;

        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix)?;
        let size = i32::from_be_bytes(prefix);
        if size < 4 || size as usize > response_bytes_max {
            return Err(protocol(format!("response size {size}")));
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version)).map_err(|e| protocol(e.to_string()))?;
        if header.correlation_id != self.correlation_id {
            return Err(protocol(format!("correlation id {} for request {}", header.correlation_id, self.correlation_id)));
        }
        Resp::decode(&mut body, version).map_err(|e| protocol(e.to_string()))
    }
}

/// Kafka's default partitioner for keyed records: murmur2 of the key,
/// made positive, modulo the partition count, so the tools place keys where
/// the Java client (and librdkafka's `murmur2_random`) would.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0);
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// MurmurHash2 as Kafka uses it (seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> u32 {
    const m: u32 = 0x5bd1_e995;
    const r: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> r;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Values from Kafka's UtilsTest.testMurmur2 (hash of the ASCII bytes).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58897971);
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }
}
