//! DeleteTopics (key 20), v1–v6: by name, and from v6 by topic id.
//!
//! Rows Kafka refuses before deleting anything get INVALID_REQUEST with
//! Kafka's message: neither name nor id, both name and id, a name or id given
//! more than once (answered once), a name whose topic's id another row gives.
//! Unknown names get UNKNOWN_TOPIC_OR_PARTITION, unknown ids
//! UNKNOWN_TOPIC_ID. Results come in request order.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::{Broker, TopicError};
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DeleteTopics, min_version: 1, max_version: 6 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let delete: DeleteTopicsRequest = decode_body(&mut body, version, "DeleteTopics request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        // (name, id) per row; v1–v5 send names only.
        let rows: Vec<(Option<String>, Uuid)> = if version >= 6 {
            delete.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.as_str().to_owned()), t.topic_id)).collect()
        } else {
            delete.topic_names.iter().map(|n| (Some(n.0.as_str().to_owned()), Uuid::nil())).collect()
        };
        let mut name_rows: HashMap<&str, usize> = HashMap::new();
        let mut id_rows: HashMap<Uuid, usize> = HashMap::new();
        for (name, id) in &rows {
            match (name, id.is_nil()) {
                (Some(name), true) => *name_rows.entry(name.as_str()).or_default() += 1,
                (None, false) => *id_rows.entry(*id).or_default() += 1,
                _ => {}
            }
        }
        // Names of the topics given by id.
        let names_given_by_id: HashSet<String> =
            id_rows.keys().filter_map(|id| broker.topic_by_id(id.as_bytes())).map(|topic| topic.name).collect();
        let mut answered_names = HashSet::new();
        let mut answered_ids = HashSet::new();
        let mut results = Vec::with_capacity(rows.len());
        for (name, id) in &rows {
            let result = match (name, id.is_nil()) {
                (None, true) => Some(refused(None, *id, "Neither topic name nor id were specified.")),
                (Some(name), false) => {
                    Some(refused(Some(name), *id, "You may not specify both topic name and topic id."))
                }
                (Some(name), true) => {
                    if !answered_names.insert(name.as_str()) {
                        None
                    } else if name_rows[name.as_str()] > 1 {
                        Some(refused(Some(name), *id, "Duplicate topic name."))
                    } else if names_given_by_id.contains(name) {
                        let id = broker.topic(name).map_or(Uuid::nil(), |t| Uuid::from_bytes(t.id));
                        Some(refused(
                            Some(name),
                            id,
                            "The provided topic name maps to an ID that was already supplied.",
                        ))
                    } else {
                        let topic_id = broker.topic(name).map_or(Uuid::nil(), |t| Uuid::from_bytes(t.id));
                        Some(outcome(Some(name), topic_id, broker.delete_topic(name.clone()).await))
                    }
                }
                (None, false) => {
                    if !answered_ids.insert(*id) {
                        None
                    } else if id_rows[id] > 1 {
                        Some(refused(None, *id, "Duplicate topic id."))
                    } else {
                        match broker.topic_by_id(id.as_bytes()) {
                            None => Some(outcome(
                                None,
                                *id,
                                Err(TopicError {
                                    code: error_code::UNKNOWN_TOPIC_ID,
                                    message: format!("unknown topic id {id}"),
                                }),
                            )),
                            Some(topic) => {
                                let name = topic.name.clone();
                                Some(outcome(Some(&name), *id, broker.delete_topic(topic.name).await))
                            }
                        }
                    }
                }
            };
            if let Some(result) = result {
                results.push(encode_result(result, version));
            }
        }
        respond(ApiKey::DeleteTopics, version, correlation_id, &DeleteTopicsResponse::default().with_responses(results))
    }))
}

/// One row's answer before encoding: name, id, error.
struct RowResult {
    name: Option<String>,
    id: Uuid,
    error: Option<TopicError>,
}

fn refused(name: Option<&String>, id: Uuid, message: &str) -> RowResult {
    RowResult {
        name: name.cloned(),
        id,
        error: Some(TopicError { code: error_code::INVALID_REQUEST, message: message.to_owned() }),
    }
}

fn outcome(name: Option<&String>, id: Uuid, result: Result<(), TopicError>) -> RowResult {
    RowResult { name: name.cloned(), id, error: result.err() }
}

/// Fields a version lacks stay at their defaults.
fn encode_result(row: RowResult, version: i16) -> DeletableTopicResult {
    let mut result = DeletableTopicResult::default()
        .with_name(row.name.map(|n| TopicName(str_bytes(&n))))
        .with_error_code(row.error.as_ref().map_or(error_code::NONE, |e| e.code));
    if version < 6 && result.name.is_none() {
        // Names are not nullable before v6 (and every row there has one).
        result.name = Some(TopicName(str_bytes("")));
    }
    if version >= 5 {
        result.error_message = row.error.map(|e| str_bytes(&e.message));
    }
    if version >= 6 {
        result.topic_id = row.id;
    }
    result
}
