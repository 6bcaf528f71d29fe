//! Kafka error codes used by the broker (from Kafka's `Errors` table).

pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const INVALID_FETCH_SIZE: i16 = 4;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const RECORD_LIST_TOO_LARGE: i16 = 18;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REQUEST: i16 = 42;
pub const INVALID_CONFIG: i16 = 40;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const UNKNOWN_TOPIC_ID: i16 = 100;
pub const INVALID_RECORD: i16 = 87;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const POLICY_VIOLATION: i16 = 44;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;

/// The code for a storage error's Kafka name (see `StorageError::kafka_error_name`).
pub fn from_name(name: &str) -> i16 {
    match name {
        "CORRUPT_MESSAGE" => CORRUPT_MESSAGE,
        "INVALID_RECORD" => INVALID_RECORD,
        "MESSAGE_TOO_LARGE" => MESSAGE_TOO_LARGE,
        "NOT_LEADER_OR_FOLLOWER" => NOT_LEADER_OR_FOLLOWER,
        "TOPIC_ALREADY_EXISTS" => TOPIC_ALREADY_EXISTS,
        "OFFSET_OUT_OF_RANGE" => OFFSET_OUT_OF_RANGE,
        "KAFKA_STORAGE_ERROR" => KAFKA_STORAGE_ERROR,
        "INVALID_CONFIG" => INVALID_CONFIG,
        "UNKNOWN_TOPIC_OR_PARTITION" => UNKNOWN_TOPIC_OR_PARTITION,
        "OUT_OF_ORDER_SEQUENCE_NUMBER" => OUT_OF_ORDER_SEQUENCE_NUMBER,
        "INVALID_PRODUCER_EPOCH" => INVALID_PRODUCER_EPOCH,
        _ => UNKNOWN_SERVER_ERROR,
    }
}
