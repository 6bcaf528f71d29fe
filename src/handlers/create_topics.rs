//! CreateTopics (key 19), v2–v7: with topic configs and `validate_only`.
//! Replication factor must be 1 (or -1 for the default) on one broker.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};
use uuid::Uuid;

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use crate::protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::CreateTopics, min_version: 2, max_version: 7 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let create: CreateTopicsRequest = decode_body(&mut body, version, "CreateTopics request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let mut results = Vec::with_capacity(create.topics.len());
        for topic in create.topics {
            let name = topic.name.0.as_str().to_owned();
            let result = CreatableTopicResult::default().with_name(topic.name.clone());
            let mut configs = BTreeMap::new();
            let mut null_config = None;
            for config in &topic.configs {
                match &config.value {
                    Some(value) => {
                        configs.insert(config.name.as_str().to_owned(), value.as_str().to_owned());
                    }
                    None => null_config = Some(config.name.as_str().to_owned()),
                }
            }
            let outcome = if let Some(key) = null_config {
                Err(crate::broker::TopicError { code: error_code::INVALID_CONFIG, message: format!("null value for {key}") })
            } else if !topic.assignments.is_empty() {
                Err(crate::broker::TopicError {
                    code: error_code::INVALID_REQUEST,
                    message: "manual replica assignment is not supported".into(),
                })
            } else {
                broker
                    .create_topic(name, topic.num_partitions, topic.replication_factor, configs, create.validate_only)
                    .await
            };
            results.push(match outcome {
                Ok(meta) => {
                    let mut result = result.with_error_code(error_code::NONE);
                    if version >= 5 {
                        result.num_partitions = meta.partitions;
                        result.replication_factor = 1;
                    }
                    if version >= 7 {
                        result.topic_id = Uuid::from_bytes(meta.id);
                    }
                    result
                }
                Err(e) => result.with_error_code(e.code).with_error_message(Some(str_bytes(&e.message))),
            });
        }
        respond(ApiKey::CreateTopics, version, correlation_id, &CreateTopicsResponse::default().with_topics(results))
    }))
}
