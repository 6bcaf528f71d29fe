//! ApiVersions (key 18), v0–v4: the APIs and versions this broker serves,
//! straight from the handler registry. A request newer than v4 gets a v0
//! response with UNSUPPORTED_VERSION and the same list (KIP-511), so a
//! client can retry with a version we know.

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{respond, ApiSpec, Pending, REGISTRY};
use ringstream_protocol::{self as protocol, decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::ApiVersions, min_version: 0, max_version: 4 };

fn versions() -> Vec<ApiVersion> {
    REGISTRY
        .iter()
        .map(|spec| {
            let min_version =
                if spec.key == ApiKey::Produce { super::produce::advertised_min_version } else { spec.min_version };
            ApiVersion::default()
                .with_api_key(spec.key as i16)
                .with_min_version(min_version)
                .with_max_version(spec.max_version)
        })
        .collect()
}

pub fn handle(request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    // v3 requests carry the client's software name and version; we only
    // need them to be well formed.
    let _: ApiVersionsRequest = decode_body(&mut body, version, "ApiVersions request")?;
    let response = ApiVersionsResponse::default().with_error_code(error_code::NONE).with_api_keys(versions());
    let correlation_id = request.header.correlation_id;
    Ok(Box::pin(async move { respond(ApiKey::ApiVersions, version, correlation_id, &response) }))
}

/// KIP-511: the answer to an ApiVersions request newer than we serve.
pub fn unsupported(correlation_id: i32) -> Pending {
    let response =
        ApiVersionsResponse::default().with_error_code(error_code::UNSUPPORTED_VERSION).with_api_keys(versions());
    let frame: Option<Bytes> = protocol::encode_response_with_header(0, 0, correlation_id, &response).ok();
    Box::pin(async move { frame.map(super::Response::Frame) })
}
