//! One Kafka request to another broker's listener and its response, with
//! the response size capped before it is read and the whole exchange
//! bounded in time. Replica fetchers and the transaction coordinator's
//! marker writers use it.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Sends `request` as `key` v`version` and decodes the response.
#[allow(clippy::too_many_arguments)]
pub async fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
    request: &Req,
    timeout: Duration,
    response_bytes_max: usize,
) -> Result<Resp, String> {
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    header.encode(&mut frame, key.request_header_version(version)).map_err(|e| e.to_string())?;
    request.encode(&mut frame, version).map_err(|e| e.to_string())?;
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    let io = async {
        stream.write_all(&frame).await.map_err(|e| e.to_string())?;
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).await.map_err(|e| e.to_string())?;
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > response_bytes_max {
            return Err(format!("{key:?} response of {size} bytes"));
        }
        let mut body = vec![0u8; size as usize];
        stream.read_exact(&mut body).await.map_err(|e| e.to_string())?;
        Ok(Bytes::from(body))
    };
    let timeout = async {
        glommio::timer::sleep(timeout).await;
        Err("timed out".to_owned())
    };
    let mut body = futures_lite::future::or(io, timeout).await?;
    let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
        .map_err(|e| format!("response header: {e}"))?;
    if header.correlation_id != correlation_id {
        return Err(format!("correlation id {} for {correlation_id}", header.correlation_id));
    }
    Resp::decode(&mut body, version).map_err(|e| format!("{key:?} response: {e}"))
}

/// Connects to `endpoint` (host:port) with Nagle off.
pub async fn connect(endpoint: &str) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(endpoint).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
