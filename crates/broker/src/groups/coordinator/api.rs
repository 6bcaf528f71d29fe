//! What callers send to the coordinator and get back. These cross shards
//! (a request runs on its group's coordinator shard), so they are Send.

use bytes::Bytes;

use crate::groups::consumer;
use ringstream_core::error_code::{
    COORDINATOR_NOT_AVAILABLE, GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, NOT_COORDINATOR, UNKNOWN_MEMBER_ID,
    UNKNOWN_SERVER_ERROR,
};

pub struct JoinArgs {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

#[derive(Clone, Debug)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

impl JoinResult {
    pub(super) fn error(error: i16, member_id: &str) -> JoinResult {
        JoinResult { error, generation: -1, member_id: member_id.to_owned(), ..JoinResult::default() }
    }
}

pub struct SyncArgs {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Clone, Debug, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub(super) fn error(error: i16) -> SyncResult {
        SyncResult { error, ..SyncResult::default() }
    }
}

pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// Kafka's state name ("Stable", "Reconciling", ...).
    pub state: &'static str,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
}

pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

pub struct GroupDescription {
    pub group_id: String,
    /// None: no such group (Kafka reports it as Dead).
    pub state: Option<&'static str>,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

pub struct CommitArgs {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub offsets: Vec<CommitOffset>,
    /// TxnOffsetCommit: the transactional producer (id, epoch). The offsets
    /// are written in its transaction and stay pending until its marker.
    pub txn: Option<(i64, i16)>,
}

pub struct CommitOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Per partition of a commit: (topic, partition, error).
pub type CommitResult = Vec<(String, i32, i16)>;

/// A committed offset as OffsetFetch reports it.
#[derive(Clone, Debug)]
pub struct FetchedOffset {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error: i16,
}

pub struct ConsumerGroupDescription {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberDescription>,
}

pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub assigned: Vec<consumer::Tp>,
    pub target: Vec<consumer::Tp>,
}

/// Why a group operation failed as a whole. Per-member and per-partition
/// outcomes stay Kafka codes (they are answers, one each); this is the
/// group-level failure, and `code` is the one place it becomes a Kafka code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Loading, shutting down, deleted meanwhile, or its offsets log failed.
    #[error("the group coordinator is not available")]
    CoordinatorNotAvailable,
    /// The offsets-log partition went to another shard.
    #[error("this shard is not the group's coordinator")]
    NotCoordinator,
    #[error("the group does not exist")]
    GroupIdNotFound,
    #[error("the group has members and is not a consumer group")]
    NonEmptyGroup,
    #[error("the member is not in the group")]
    UnknownMemberId,
    /// A group record too large to store.
    #[error("a group record is too large to store")]
    RecordTooLarge,
}

impl GroupError {
    /// The Kafka error code a response carries for it.
    pub fn code(self) -> i16 {
        match self {
            GroupError::CoordinatorNotAvailable => COORDINATOR_NOT_AVAILABLE,
            GroupError::NotCoordinator => NOT_COORDINATOR,
            GroupError::GroupIdNotFound => GROUP_ID_NOT_FOUND,
            GroupError::NonEmptyGroup => NON_EMPTY_GROUP,
            GroupError::UnknownMemberId => UNKNOWN_MEMBER_ID,
            GroupError::RecordTooLarge => UNKNOWN_SERVER_ERROR,
        }
    }
}
