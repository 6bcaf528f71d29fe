//! One handler per Kafka API, each declaring the versions it serves, all in
//! one registry (`REGISTRY`) that ApiVersions reports from.
//!
//! Runs on: the shard that holds the client's connection. Handlers reach
//! partitions on other shards through the router (`Shard`), never directly.
//!
//! `start` runs a handler's ordered part inline (Produce queues its batches
//! there, so pipelined produce requests keep their order) and returns the
//! rest as a future that yields the encoded response frame, or None when
//! the request gets no response (Produce with acks=0).

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use crate::broker::Broker;
use ringstream_protocol::fetch_response::Piece;
use ringstream_protocol::{self as protocol, Request, WireError};

/// An API and the versions this broker serves.
#[derive(Clone, Copy, Debug)]
pub struct ApiSpec {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

/// Every API the broker serves. ApiVersions answers from this table.
pub const REGISTRY: &[ApiSpec] = &[
    api_versions::SPEC,
    metadata::SPEC,
    produce::SPEC,
    fetch::SPEC,
    list_offsets::SPEC,
    create_topics::SPEC,
    delete_topics::SPEC,
    create_partitions::SPEC,
    describe_configs::SPEC,
    alter_configs::SPEC,
    incremental_alter_configs::SPEC,
    describe_cluster::SPEC,
    describe_quorum::SPEC,
    init_producer_id::SPEC,
    find_coordinator::SPEC,
    offset_for_leader_epoch::SPEC,
    join_group::SPEC,
    sync_group::SPEC,
    heartbeat::SPEC,
    leave_group::SPEC,
    list_groups::SPEC,
    describe_groups::SPEC,
    delete_groups::SPEC,
    offset_commit::SPEC,
    offset_fetch::SPEC,
    offset_delete::SPEC,
    consumer_group_heartbeat::SPEC,
    consumer_group_describe::SPEC,
    delete_records::SPEC,
    describe_log_dirs::SPEC,
    describe_producers::SPEC,
    describe_topic_partitions::SPEC,
    elect_leaders::SPEC,
    alter_partition_reassignments::SPEC,
    list_partition_reassignments::SPEC,
    add_partitions_to_txn::SPEC,
    add_offsets_to_txn::SPEC,
    end_txn::SPEC,
    write_txn_markers::SPEC,
    txn_offset_commit::SPEC,
    describe_transactions::SPEC,
    list_transactions::SPEC,
];

pub fn spec(key: ApiKey) -> Option<ApiSpec> {
    REGISTRY.iter().copied().find(|spec| spec.key == key)
}

/// The newest version served of `key`, if it is served at all.
pub fn max_version(key: ApiKey) -> Option<i16> {
    spec(key).map(|spec| spec.max_version)
}

/// A response ready to write: one frame, or the pieces of a frame whose
/// record batches are written straight from where they are stored.
pub enum Response {
    Frame(Bytes),
    Pieces(Vec<Piece<FetchBatch>>),
}

/// A record batch in a Fetch response, never copied: a slice on this shard,
/// or one of the batches another shard lent (`LentBatches`, by index).
#[derive(Clone)]
pub enum FetchBatch {
    Local(ringstream_storage::shard_storage::BatchBytes),
    /// Batch `usize` of a vector another shard lent for this fetch.
    Lent(std::rc::Rc<ringstream_shard::router::LentBatches>, usize),
}

impl AsRef<[u8]> for FetchBatch {
    fn as_ref(&self) -> &[u8] {
        match self {
            FetchBatch::Local(batch) => batch,
            FetchBatch::Lent(lent, index) => lent.batch(*index),
        }
    }
}

/// A started request: resolves to the response (None: no response).
pub type Pending = Pin<Box<dyn Future<Output = Option<Response>>>>;

/// Starts a request. Errors close the connection.
pub async fn start(
    broker: &Rc<Broker>,
    request: Request,
    peer: Option<std::net::SocketAddr>,
) -> Result<Pending, WireError> {
    let Some(spec) = spec(request.api_key) else {
        return Err(WireError::UnsupportedVersion {
            api: api_name(request.api_key),
            version: request.api_version,
            min: 0,
            max: -1,
        });
    };
    let version = request.api_version;
    if version < spec.min_version || version > spec.max_version {
        if request.api_key == ApiKey::ApiVersions {
            return Ok(api_versions::unsupported(request.header.correlation_id));
        }
        return Err(WireError::UnsupportedVersion {
            api: api_name(request.api_key),
            version,
            min: spec.min_version,
            max: spec.max_version,
        });
    }
    match request.api_key {
        ApiKey::ApiVersions => api_versions::handle(request),
        ApiKey::Metadata => metadata::handle(broker, request),
        ApiKey::Produce => produce::start(broker, request).await,
        ApiKey::Fetch => fetch::handle(broker, request),
        ApiKey::ListOffsets => list_offsets::handle(broker, request),
        ApiKey::CreateTopics => create_topics::handle(broker, request),
        ApiKey::DeleteTopics => delete_topics::handle(broker, request),
        ApiKey::CreatePartitions => create_partitions::handle(broker, request),
        ApiKey::DescribeConfigs => describe_configs::handle(broker, request),
        ApiKey::AlterConfigs => alter_configs::handle(broker, request),
        ApiKey::IncrementalAlterConfigs => incremental_alter_configs::handle(broker, request),
        ApiKey::DescribeCluster => describe_cluster::handle(broker, request),
        ApiKey::DescribeQuorum => describe_quorum::handle(broker, request),
        ApiKey::InitProducerId => init_producer_id::handle(broker, request),
        ApiKey::FindCoordinator => find_coordinator::handle(broker, request),
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(broker, request),
        ApiKey::JoinGroup => join_group::handle(broker, request, peer),
        ApiKey::SyncGroup => sync_group::handle(broker, request),
        ApiKey::Heartbeat => heartbeat::handle(broker, request),
        ApiKey::LeaveGroup => leave_group::handle(broker, request),
        ApiKey::ListGroups => list_groups::handle(broker, request),
        ApiKey::DescribeGroups => describe_groups::handle(broker, request),
        ApiKey::DeleteGroups => delete_groups::handle(broker, request),
        ApiKey::OffsetCommit => offset_commit::handle(broker, request),
        ApiKey::OffsetFetch => offset_fetch::handle(broker, request),
        ApiKey::OffsetDelete => offset_delete::handle(broker, request),
        ApiKey::ConsumerGroupHeartbeat => consumer_group_heartbeat::handle(broker, request, peer),
        ApiKey::ConsumerGroupDescribe => consumer_group_describe::handle(broker, request),
        ApiKey::DeleteRecords => delete_records::handle(broker, request),
        ApiKey::DescribeLogDirs => describe_log_dirs::handle(broker, request),
        ApiKey::DescribeProducers => describe_producers::handle(broker, request),
        ApiKey::DescribeTopicPartitions => describe_topic_partitions::handle(broker, request),
        ApiKey::ElectLeaders => elect_leaders::handle(broker, request),
        ApiKey::AlterPartitionReassignments => alter_partition_reassignments::handle(broker, request),
        ApiKey::ListPartitionReassignments => list_partition_reassignments::handle(broker, request),
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn::handle(broker, request),
        ApiKey::AddOffsetsToTxn => add_offsets_to_txn::handle(broker, request),
        ApiKey::EndTxn => end_txn::handle(broker, request),
        ApiKey::WriteTxnMarkers => write_txn_markers::handle(broker, request),
        ApiKey::TxnOffsetCommit => txn_offset_commit::handle(broker, request),
        ApiKey::DescribeTransactions => describe_transactions::handle(broker, request),
        ApiKey::ListTransactions => list_transactions::handle(broker, request),
        other => unreachable!("{other:?} is in the registry but has no handler"),
    }
}

/// Encodes `body` as the response to `request`, for handlers' futures.
pub fn respond<T: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Option<Response> {
    match protocol::encode_response(api_key, version, correlation_id, body) {
        Ok(frame) => Some(Response::Frame(frame)),
        Err(e) => {
            tracing::error!(api = ?api_key, version, "could not encode a response: {e}");
            None
        }
    }
}

pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::DescribeQuorum => "DescribeQuorum",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::DescribeProducers => "DescribeProducers",
        ApiKey::DescribeTopicPartitions => "DescribeTopicPartitions",
        ApiKey::ElectLeaders => "ElectLeaders",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        _ => "an API this broker does not serve",
    }
}

/// A Kafka string from a Rust one.
pub fn str_bytes(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_api_has_a_latency_histogram() {
        let cells = ringstream_core::metrics::ShardCells::default();
        for spec in REGISTRY {
            assert!(cells.request_latency(spec.key as i16).is_some(), "{:?}", spec.key);
        }
        assert!(cells.request_latency(-1).is_none());
    }

    #[test]
    fn registry_versions_are_within_what_the_codec_knows() {
        for spec in REGISTRY {
            let known = spec.key.valid_versions();
            assert!(spec.min_version <= spec.max_version, "{spec:?}");
            assert!(spec.min_version >= known.min && spec.max_version <= known.max, "{spec:?} vs {known:?}");
        }
        let mut keys: Vec<i16> = REGISTRY.iter().map(|s| s.key as i16).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), REGISTRY.len(), "one handler per API");
    }

    #[test]
    fn every_served_api_has_its_own_name() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|s| api_name(s.key)).collect();
        assert!(!names.contains(&api_name(ApiKey::Vote)), "a served API is named as unserved");
        names.sort();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
    }
}
