//! Typed storage errors. Each says what failed and on which input; the
//! protocol layer maps them to Kafka error codes (see `kafka_error_name`).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use ringstream_core::batch::BatchError;
use ringstream_core::error_code;
use ringstream_core::types::{Offset, TopicPartition};

pub type StorageResult<T> = Result<T, StorageError>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("record batch of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    BatchTooLarge { size_bytes: usize, limit_bytes: usize },
    #[error("partition {0} is not owned by this shard")]
    UnknownPartition(TopicPartition),
    #[error("partition {0} already exists")]
    PartitionExists(TopicPartition),
    #[error("offset {offset} of {tp} is out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange { tp: TopicPartition, offset: Offset, log_start: Offset, high_watermark: Offset },
    #[error("no space left on the device holding {path}")]
    NoSpace { path: PathBuf },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("producer {producer_id} sent sequence {found} to {tp}, expected {expected}")]
    OutOfOrderSequence { tp: TopicPartition, producer_id: i64, expected: i32, found: i32 },
    #[error("producer {producer_id} epoch {found} is older than its current epoch {current} on {tp}")]
    InvalidProducerEpoch { tp: TopicPartition, producer_id: i64, current: i16, found: i16 },
    #[error("{0} has too many open transactions")]
    TooManyOpenTransactions(TopicPartition),
    #[error("append to {0} aborted: an earlier append to it failed and was rolled back")]
    AppendAborted(TopicPartition),
    #[error("storage is shutting down")]
    ShuttingDown,
    /// A request reached a shard that no longer owns the partition: it was
    /// moved away meanwhile. The router retries such requests at the new
    /// owner; a client sees it only if that keeps failing.
    #[error("partition {0} moved to another shard")]
    Moved(TopicPartition),
    /// A partition move did not settle within `partition_move_wait_ms_max`.
    #[error("partition {0} is moving between shards and did not settle in time")]
    Moving(TopicPartition),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("corrupt {what} in {path}: {reason}")]
    Corrupt { what: &'static str, path: PathBuf, reason: String },
    /// An append (not a replica's copy) reached a follower replica.
    #[error("this replica of {0} is a follower")]
    NotLeader(TopicPartition),
    /// A follower was handed a batch that does not start at its log end.
    #[error("replica of {tp} expected a batch at offset {expected}, got one at {found}")]
    ReplicaGap { tp: TopicPartition, expected: Offset, found: Offset },
}

impl StorageError {
    /// Wraps an I/O error with the operation and path it came from. ENOSPC
    /// becomes its own variant so callers can keep serving reads.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, error: io::Error) -> StorageError {
        let path = path.into();
        if error.raw_os_error() == Some(libc::ENOSPC) {
            return StorageError::NoSpace { path };
        }
        StorageError::Io { op, path, source: Arc::new(error) }
    }

    /// The Kafka error code this maps to: every variant in one place, typed
    /// (no names in between).
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            StorageError::InvalidBatch(e) if e.is_corruption() => error_code::CORRUPT_MESSAGE,
            StorageError::InvalidBatch(_) => error_code::INVALID_RECORD,
            StorageError::BatchTooLarge { .. } => error_code::MESSAGE_TOO_LARGE,
            StorageError::UnknownPartition(_) => error_code::NOT_LEADER_OR_FOLLOWER,
            StorageError::PartitionExists(_) => error_code::TOPIC_ALREADY_EXISTS,
            StorageError::OffsetOutOfRange { .. } => error_code::OFFSET_OUT_OF_RANGE,
            StorageError::NoSpace { .. } => error_code::KAFKA_STORAGE_ERROR,
            StorageError::Io { .. } => error_code::KAFKA_STORAGE_ERROR,
            StorageError::AppendAborted(_) => error_code::KAFKA_STORAGE_ERROR,
            StorageError::OutOfOrderSequence { .. } => error_code::OUT_OF_ORDER_SEQUENCE_NUMBER,
            StorageError::InvalidProducerEpoch { .. } => error_code::INVALID_PRODUCER_EPOCH,
            StorageError::TooManyOpenTransactions(_) => error_code::CONCURRENT_TRANSACTIONS,
            StorageError::ShuttingDown => error_code::NOT_LEADER_OR_FOLLOWER,
            StorageError::Moved(_) => error_code::NOT_LEADER_OR_FOLLOWER,
            StorageError::Moving(_) => error_code::REQUEST_TIMED_OUT,
            StorageError::Config(_) => error_code::INVALID_CONFIG,
            StorageError::Corrupt { .. } => error_code::KAFKA_STORAGE_ERROR,
            StorageError::ReplicaGap { .. } => error_code::OFFSET_OUT_OF_RANGE,
            StorageError::NotLeader(_) => error_code::NOT_LEADER_OR_FOLLOWER,
        }
    }
}

/// glommio reports `GlommioError`; storage reports `io::Error` with context.
pub(crate) fn glommio_io<T>(error: glommio::GlommioError<T>) -> io::Error {
    io::Error::from(error)
}
