//! The cluster's metadata, without I/O scheduling or sockets.
//!
//! - `records`: the metadata records (Kafka's KRaft model: brokers, topics,
//!   partitions, configs) and the image built by applying them in order.
//! - `placement`: which brokers hold a new partition's replicas.
//! - `controller`: the active controller's decisions, as pure functions
//!   from (image, request) to records.
//! - `store`: the durable Raft log in `<data-dir>/__cluster_metadata-0/`.
//! - `quorum`: one Raft node (raft-rs `RawNode`) over that store; it takes
//!   messages and ticks and hands back messages to send and committed
//!   records to apply. The broker drives it on shard 0; the simulation in
//!   `tests/cluster_sim.rs` drives three of them over a faulty network.
//! - `wire`: frames and requests of the controller listener.
//! - `meta_properties`: `meta.properties` (node.id, cluster.id).
//!
//! Consensus is raft-rs's, never ours: this crate is the glue (storage,
//! snapshots, apply) around it.

#![allow(non_upper_case_globals)] // limits and tuning constants read as values, as in ringstream-core

pub mod controller;
pub mod meta_properties;
pub mod placement;
pub mod quorum;
pub mod records;
pub mod store;
pub mod wire;

pub use records::{BrokerInfo, MetadataImage, MetadataRecord, PartitionInfo, TopicInfo};

/// What every shard holds of the cluster: the metadata image, the
/// controller id to give clients, and whether this broker may serve the
/// partitions it leads. Sent to each shard as a router message; read
/// there with no lock.
#[derive(Clone, Debug)]
pub struct MetadataView {
    pub image: std::sync::Arc<MetadataImage>,
    pub controller: NodeId,
    pub serving: bool,
}

/// The metadata log's directory under the data dir, as Kafka names it.
pub const METADATA_DIR_NAME: &str = "__cluster_metadata-0";

/// A node id (`node.id`), as Kafka's int32.
pub type NodeId = i32;

/// One voter of `controller.quorum.voters`: `ID@HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
}

impl Voter {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// This node's part in the cluster, as the metrics endpoint shows it.
#[derive(Clone, Debug, Default)]
pub struct ClusterMetrics {
    /// 1 when this node is the active controller.
    pub controller_active: u64,
    /// The metadata offset this node has applied.
    pub metadata_offset: u64,
    /// Brokers registered, and how many of them are fenced.
    pub brokers: u64,
    pub brokers_fenced: u64,
    /// 1 when this broker serves the partitions it leads.
    pub serving: u64,
    /// The quorum's term, as this node knows it (0 for broker-only nodes).
    pub quorum_term: u64,
    /// Partitions this broker leads with fewer replicas in the ISR than
    /// assigned (Kafka's UnderReplicatedPartitions).
    pub under_replicated: u64,
    /// Partitions of the cluster with no leader (Kafka's OfflinePartitionsCount).
    pub offline: u64,
}

/// Parses `controller.quorum.voters` (`1@h1:9093,2@h2:9093`).
pub fn parse_voters(text: &str) -> Result<Vec<Voter>, String> {
    let mut voters: Vec<Voter> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, address) = item.split_once('@').ok_or_else(|| format!("voter {item:?} is not ID@HOST:PORT"))?;
        let id: NodeId =
            id.trim().parse().ok().filter(|id| *id >= 0).ok_or_else(|| format!("voter {item:?}: bad node id"))?;
        let (host, port) = address.rsplit_once(':').ok_or_else(|| format!("voter {item:?} is not ID@HOST:PORT"))?;
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("voter {item:?}: bad port"))?;
        if host.is_empty() {
            return Err(format!("voter {item:?}: empty host"));
        }
        if voters.iter().any(|v| v.id == id) {
            return Err(format!("node id {id} appears twice in controller.quorum.voters"));
        }
        voters.push(Voter { id, host: host.trim_matches(['[', ']']).to_owned(), port });
    }
    if voters.is_empty() {
        return Err("controller.quorum.voters is empty".into());
    }
    if voters.len() > ringstream_core::limits::quorum_voters_max {
        return Err(format!("more than {} voters", ringstream_core::limits::quorum_voters_max));
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_and_refuse() {
        let v = parse_voters("1@127.0.0.1:9093, 2@localhost:9193,3@[::1]:9293").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[2], Voter { id: 3, host: "::1".into(), port: 9293 });
        assert_eq!(v[1].address(), "localhost:9193");
        for bad in ["", "1@h", "x@h:1", "1@h:0", "1@:9", "1@h:1,1@h:2", "-1@h:1"] {
            assert!(parse_voters(bad).is_err(), "{bad:?}");
        }
    }
}
