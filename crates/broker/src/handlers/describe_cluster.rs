//! DescribeCluster (key 60), v0–v2: the cluster id, this node as controller
//! and as the one broker (never fenced). A request for another endpoint
//! type than brokers (v1+) is refused as Kafka's brokers refuse it.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeCluster, min_version: 0, max_version: 2 };

/// Endpoint types (KIP-919): brokers and controllers.
const ENDPOINT_TYPE_BROKER: i8 = 1;
/// MISMATCHED_ENDPOINT_TYPE (not in `error_code`).
const MISMATCHED_ENDPOINT_TYPE: i16 = 114;

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let describe: DescribeClusterRequest = decode_body(&mut body, version, "DescribeCluster request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let config = &broker.config;
        // Fields a version lacks stay at their defaults (endpoint_type 1).
        let mut response = DescribeClusterResponse::default()
            .with_cluster_id(str_bytes(&config.cluster_id))
            .with_controller_id(BrokerId(config.node_id))
            .with_cluster_authorized_operations(i32::MIN);
        if version >= 1 && describe.endpoint_type != ENDPOINT_TYPE_BROKER {
            response.error_code = MISMATCHED_ENDPOINT_TYPE;
            response.error_message = Some(str_bytes(&format!(
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type {}",
                match describe.endpoint_type {
                    2 => "CONTROLLER".to_owned(),
                    other => other.to_string(),
                }
            )));
        } else {
            response.error_code = error_code::NONE;
            response.brokers = match broker.cluster() {
                // In a cluster: every registered broker, fenced ones marked (v2).
                Some(view) => {
                    response.controller_id = BrokerId(view.controller);
                    view.image
                        .brokers
                        .values()
                        .map(|b| {
                            let mut out = DescribeClusterBroker::default()
                                .with_broker_id(BrokerId(b.id))
                                .with_host(str_bytes(&b.host))
                                .with_port(b.port)
                                .with_rack(b.rack.as_deref().map(str_bytes));
                            if version >= 2 {
                                out.is_fenced = b.fenced;
                            }
                            out
                        })
                        .collect()
                }
                None => vec![DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(config.node_id))
                    .with_host(str_bytes(&config.advertised_host))
                    .with_port(config.advertised_port)
                    .with_rack(None)],
            };
        }
        respond(ApiKey::DescribeCluster, version, correlation_id, &response)
    }))
}
