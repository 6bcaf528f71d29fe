//! Frames on the controller listener: `[len u32 BE][kind u8][payload]`,
//! `len` counting the kind byte, capped at
//! `limits::controller_frame_bytes_max` before anything is allocated.
//!
//! Every connection opens with a `Hello` naming the cluster and the sender;
//! a peer of another cluster is told why and dropped. Raft messages are
//! raft-rs's protobuf; requests and responses between a broker and the
//! active controller are JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::{MetadataImage, MetadataRecord};
use crate::NodeId;
use ringstream_core::limits::controller_frame_bytes_max;

pub const KIND_HELLO: u8 = 1;
pub const KIND_RAFT: u8 = 2;
pub const KIND_REQUEST: u8 = 3;
pub const KIND_RESPONSE: u8 = 4;
/// The peer refused this connection; the payload says why (UTF-8).
pub const KIND_REFUSED: u8 = 5;

pub const header_bytes: usize = 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the {max} byte limit", max = controller_frame_bytes_max)]
    TooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed {0}: {1}")]
    Malformed(&'static str, String),
}

/// Reads a frame header: the kind and the payload length that follows.
pub fn decode_header(header: [u8; header_bytes]) -> Result<(u8, usize), FrameError> {
    let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > controller_frame_bytes_max {
        return Err(FrameError::TooLarge(len));
    }
    let kind = header[4];
    if !(KIND_HELLO..=KIND_REFUSED).contains(&kind) {
        return Err(FrameError::UnknownKind(kind));
    }
    Ok((kind, len - 1))
}

pub fn encode_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + header_bytes);
    out.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

pub fn encode_json<T: Serialize>(kind: u8, value: &T) -> Vec<u8> {
    encode_frame(kind, &serde_json::to_vec(value).expect("wire types serialize"))
}

pub fn decode_json<'a, T: Deserialize<'a>>(what: &'static str, payload: &'a [u8]) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::Malformed(what, e.to_string()))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub cluster_id: String,
    pub node_id: NodeId,
}

/// A broker's request to the active controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub body: RequestBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// A topic id to keep (a data dir from a single-node broker brings its
    /// topics' ids along); None: a new random one.
    pub id: Option<[u8; 16]>,
    /// Replicas fixed by the request (an imported topic stays where its
    /// data is); None: the controller places them.
    pub replicas: Option<Vec<NodeId>>,
    /// CreateTopics' manual assignment: the replicas of each partition, in
    /// partition order (checked against the unfenced brokers).
    #[serde(default)]
    pub assignment: Option<Vec<Vec<NodeId>>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    Register {
        id: NodeId,
        incarnation: u64,
        host: String,
        port: i32,
        rack: Option<String>,
    },
    Heartbeat {
        id: NodeId,
        epoch: i64,
        shutting_down: bool,
    },
    CreateTopic {
        topic: NewTopic,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
        validate_only: bool,
    },
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    AllocateProducerIds {
        broker: NodeId,
        /// Ids below this were handed out before the broker joined.
        floor: i64,
    },
    /// Committed metadata from `from` on (broker-only nodes follow the log
    /// this way, as KRaft brokers fetch it).
    FetchMetadata {
        from: u64,
    },
    DescribeQuorum,
    /// Kafka's ElectLeaders: `partitions` None means every partition.
    ElectLeaders {
        partitions: Option<Vec<(String, i32)>>,
        unclean: bool,
    },
    /// Kafka's AlterPartitionReassignments: a target replica list per
    /// partition, or None to cancel.
    Reassign {
        partitions: Vec<(String, i32, Option<Vec<NodeId>>)>,
        allow_rf_change: bool,
    },
    /// A partition leader asks to change the ISR (Kafka's AlterPartition),
    /// naming the leader and partition epochs it saw.
    AlterIsr {
        broker: NodeId,
        topic: String,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    pub body: ResponseBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumState {
    pub leader: NodeId,
    pub term: u64,
    pub high_watermark: u64,
    /// (node, log end offset or -1, ms since last heard from or -1)
    pub voters: Vec<(NodeId, i64, i64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// Done; the change is in the metadata log at `offset` (wait for the
    /// local image to reach it before answering the client).
    Done {
        offset: u64,
    },
    /// A Kafka error code and message. `leader`: the controller to ask
    /// instead, when this node is not it.
    Error {
        code: i16,
        message: String,
        leader: Option<NodeId>,
    },
    Registered {
        epoch: i64,
        offset: u64,
    },
    Heartbeat {
        fenced: bool,
        shutdown_ready: bool,
        offset: u64,
    },
    TopicCreated {
        id: [u8; 16],
        partitions: i32,
        offset: u64,
    },
    ProducerIds {
        start: i64,
        count: i64,
        offset: u64,
    },
    Entries {
        entries: Vec<(u64, Vec<MetadataRecord>)>,
        leader: Option<NodeId>,
    },
    Image {
        image: Box<MetadataImage>,
        leader: Option<NodeId>,
    },
    Quorum(QuorumState),
    /// Per-partition answers (ElectLeaders, Reassign): (topic, partition,
    /// error code, message); for ElectLeaders of all partitions, one per
    /// election attempted.
    PartitionResults {
        results: Vec<(String, i32, i16, String)>,
        offset: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_bounded_before_allocation() {
        assert_eq!(decode_header([0, 0, 0, 3, KIND_RAFT]), Ok((KIND_RAFT, 2)));
        assert_eq!(decode_header([0, 0, 0, 0, KIND_RAFT]), Err(FrameError::Empty));
        assert!(matches!(decode_header([0xff, 0xff, 0xff, 0xff, KIND_RAFT]), Err(FrameError::TooLarge(_))));
        assert_eq!(decode_header([0, 0, 0, 1, 99]), Err(FrameError::UnknownKind(99)));
        let frame = encode_json(KIND_HELLO, &Hello { cluster_id: "c".into(), node_id: 1 });
        let (kind, len) = decode_header(frame[..5].try_into().unwrap()).unwrap();
        assert_eq!(kind, KIND_HELLO);
        let hello: Hello = decode_json("hello", &frame[5..5 + len]).unwrap();
        assert_eq!(hello.node_id, 1);
        assert!(decode_json::<Request>("request", b"{\"id\":1}").is_err());
    }
}
