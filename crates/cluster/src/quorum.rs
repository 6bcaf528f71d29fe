//! One member of the metadata quorum: raft-rs's `RawNode` over the durable
//! store, and the image built from what it commits.
//!
//! The caller owns time and the network: it calls `tick` on a timer, `step`
//! with messages from peers, `propose` for the controller's decisions, and
//! then `process`, which persists what raft-rs asks for (fdatasync before
//! anything that depends on it is sent) and returns the messages to send and
//! the entries newly applied. Nothing here blocks on a peer, so the same
//! code runs on shard 0 and in the seeded simulation.

use std::io;
use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{EntryType, Message, MessageType};
use raft::{RawNode, StateRole};

use crate::records::{decode_entry, encode_entry, MetadataImage, MetadataRecord};
use crate::store::DurableStorage;
use crate::NodeId;
use ringstream_core::limits;

/// raft-rs ids start at 1; Kafka node ids at 0.
pub fn raft_id(node: NodeId) -> u64 {
    node as u64 + 1
}

pub fn node_id(raft: u64) -> NodeId {
    (raft - 1) as NodeId
}

/// Ticks between heartbeats and before an election (raft-rs counts ticks;
/// the broker ticks every `tick_ms`).
pub const tick_ms: u64 = 100;
const heartbeat_ticks: usize = 2;
const election_ticks: usize = 10;

/// What one `process` call produced.
#[derive(Default)]
pub struct Output {
    /// Raft messages to send, by destination node.
    pub messages: Vec<(NodeId, Message)>,
    /// Entries applied to the image, in order: (index, term, records).
    pub applied: Vec<(u64, u64, Vec<MetadataRecord>)>,
    /// The image was replaced by a snapshot from the leader, at this index
    /// (before the entries in `applied`).
    pub snapshot_installed: Option<u64>,
}

/// A voter's replication progress, as the leader sees it (DescribeQuorum).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoterState {
    pub id: NodeId,
    /// Highest index known to be on that voter (-1 unknown).
    pub log_end_offset: i64,
}

pub struct QuorumNode {
    pub id: NodeId,
    raw: RawNode<DurableStorage>,
    pub image: MetadataImage,
    /// Set when applying failed (corrupt log or a bug): the node stops
    /// applying rather than diverge, and says why.
    pub broken: Option<String>,
    voters: Vec<NodeId>,
    /// Log entries kept before a snapshot compacts them
    /// (`limits::metadata_log_entries_max`; the simulation lowers it).
    pub compact_after: u64,
    /// Seeded election timeouts (the simulation): raft-rs draws them from
    /// the thread's RNG; with this set, every role or term change replaces
    /// that draw with one from the seed, so a seed replays a run.
    election_rng: Option<ringstream_core::rng::SplitMix64>,
    last_role: (StateRole, u64),
}

/// raft-rs logs through slog; forward to tracing (its info is chatty, so
/// one level down).
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{}", record.msg()),
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::debug!(target: "raft", "{}", record.msg()),
            _ => tracing::trace!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

impl QuorumNode {
    /// Opens the node's store in `dir` and rebuilds the image from the
    /// snapshot and the committed entries after it.
    pub fn open(dir: &Path, id: NodeId, voters: &[NodeId]) -> io::Result<QuorumNode> {
        let raft_voters: Vec<u64> = voters.iter().map(|v| raft_id(*v)).collect();
        let store = DurableStorage::open(dir, &raft_voters)?;
        let mut image = MetadataImage::default();
        let snapshot = store.latest_snapshot();
        if !snapshot.get_data().is_empty() {
            image = serde_json::from_slice(snapshot.get_data())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("metadata snapshot: {e}")))?;
        }
        image.offset = image.offset.max(snapshot.get_metadata().index);
        let commit = store.hard_state().commit;
        let mut broken = None;
        let mut next = image.offset + 1;
        while next <= commit {
            let entries = store.committed(next, commit + 1, limits::metadata_fetch_entries_max);
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                next = entry.index + 1;
                if let Err(e) = apply_one(&mut image, &entry) {
                    broken.get_or_insert(e);
                }
            }
        }
        let config = raft::Config {
            id: raft_id(id),
            election_tick: election_ticks,
            heartbeat_tick: heartbeat_ticks,
            applied: image.offset,
            max_size_per_msg: limits::raft_message_bytes_max,
            max_inflight_msgs: limits::raft_inflight_messages_max,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        config.validate().map_err(|e| io::Error::other(e.to_string()))?;
        let logger = slog::Logger::root(slog::Drain::fuse(TracingDrain), slog::o!());
        let mut raw = RawNode::new(&config, store, &logger).map_err(|e| io::Error::other(e.to_string()))?;
        if voters == [id] {
            // A one-node quorum need not wait out an election timeout.
            raw.campaign().map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(QuorumNode {
            id,
            raw,
            image,
            broken,
            voters: voters.to_vec(),
            compact_after: limits::metadata_log_entries_max,
            election_rng: None,
            last_role: (StateRole::Follower, u64::MAX),
        })
    }

    /// Draws election timeouts from `seed` from now on (see `election_rng`).
    pub fn seed_elections(&mut self, seed: u64) {
        self.election_rng = Some(ringstream_core::rng::SplitMix64::new(seed));
        self.last_role = (StateRole::Follower, u64::MAX);
        self.reseed_timeout();
    }

    fn reseed_timeout(&mut self) {
        let Some(rng) = &mut self.election_rng else { return };
        let now = (self.raw.raft.state, self.raw.raft.term);
        if now != self.last_role {
            self.last_role = now;
            let t = election_ticks + rng.below(election_ticks as u64) as usize;
            self.raw.raft.set_randomized_election_timeout(t);
        }
    }

    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    pub fn tick(&mut self) {
        self.raw.tick();
        self.reseed_timeout();
    }

    /// A message from a peer. Messages from nodes outside the quorum, or
    /// local-only message types, are refused.
    pub fn step(&mut self, message: Message) -> Result<(), String> {
        if !self.voters.contains(&node_id(message.from.max(1))) || message.from == 0 {
            return Err(format!("raft message from {}, not a voter", message.from));
        }
        if raft::raw_node::is_local_msg(message.get_msg_type()) {
            return Err("local raft message type from the network".into());
        }
        let stepped = self.raw.step(message).map_err(|e| e.to_string());
        self.reseed_timeout();
        stepped
    }

    /// Proposes one decision; returns the (index, term) it will have if it
    /// commits. Only the leader accepts.
    pub fn propose(&mut self, records: &[MetadataRecord]) -> Result<(u64, u64), String> {
        if !self.is_leader() {
            return Err("not the leader".into());
        }
        self.raw.propose(Vec::new(), encode_entry(records)).map_err(|e| e.to_string())?;
        Ok((self.raw.raft.raft_log.last_index(), self.raw.raft.term))
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Whether this node may make controller decisions: it leads, an entry
    /// of its own term is committed, and its image holds everything
    /// committed. A new leader first replays what earlier leaders committed
    /// (a restart rebuilds the image only up to the commit index it stored).
    pub fn ready_to_decide(&self) -> bool {
        self.is_leader() && self.raw.raft.commit_to_current_term() && self.image.offset >= self.commit_index()
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        let leader = self.raw.raft.leader_id;
        (leader != 0).then(|| node_id(leader))
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// Each voter's log end, as far as this node knows (exact on the leader).
    pub fn voter_states(&self) -> Vec<VoterState> {
        let leader = self.is_leader();
        self.voters
            .iter()
            .map(|&id| {
                let log_end_offset = if id == self.id {
                    self.last_index() as i64
                } else if leader {
                    self.raw.raft.prs().get(raft_id(id)).map_or(-1, |p| p.matched as i64)
                } else {
                    -1
                };
                VoterState { id, log_end_offset }
            })
            .collect()
    }

    /// Committed entries still in the log from `from` on (broker-only nodes
    /// fetch these), or None when `from` was compacted away (they take the
    /// image instead).
    pub fn committed_since(&self, from: u64) -> Option<Vec<(u64, Vec<u8>)>> {
        let store = self.raw.store();
        let first = store.latest_snapshot().get_metadata().index + 1;
        if from < first {
            return None;
        }
        let applied = self.image.offset;
        Some(
            store
                .committed(from, applied + 1, limits::metadata_fetch_entries_max)
                .into_iter()
                .filter(|e| e.get_entry_type() == EntryType::EntryNormal)
                .map(|e| (e.index, e.get_data().to_vec()))
                .collect(),
        )
    }

    /// Persists and applies whatever raft-rs has ready; returns what to send
    /// and what was applied.
    pub fn process(&mut self) -> io::Result<Output> {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return Ok(out);
        }
        let mut ready = self.raw.ready();
        // A leader's messages may go before its own append is durable.
        self.collect(&mut out, ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.raw.mut_store().install_snapshot(&snapshot)?;
            let mut image: MetadataImage = serde_json::from_slice(snapshot.get_data())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("metadata snapshot: {e}")))?;
            image.offset = snapshot.get_metadata().index;
            self.image = image;
            out.snapshot_installed = Some(self.image.offset);
        }
        let committed = ready.take_committed_entries();
        self.apply(&mut out, committed);
        self.raw.mut_store().append(ready.entries())?;
        if let Some(hs) = ready.hs() {
            self.raw.mut_store().set_hard_state(hs)?;
        }
        // Votes and follower acknowledgements: only after the fsyncs above.
        self.collect(&mut out, ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.collect(&mut out, light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(&mut out, committed);
        self.raw.advance_apply();
        // A snapshot counts as sent once handed over: raft-rs then probes
        // the follower, and resends it if it never arrived. (Left in the
        // Snapshot state, a leader would wait forever for a lost one.)
        let snapshots_to: Vec<u64> = out
            .messages
            .iter()
            .filter(|(_, m)| m.get_msg_type() == MessageType::MsgSnapshot)
            .map(|(_, m)| m.to)
            .collect();
        for to in snapshots_to {
            self.raw.report_snapshot(to, raft::SnapshotStatus::Finish);
        }
        self.reseed_timeout();
        self.maybe_compact()?;
        Ok(out)
    }

    fn collect(&self, out: &mut Output, messages: Vec<Message>) {
        out.messages.extend(messages.into_iter().map(|m| (node_id(m.to), m)));
    }

    fn apply(&mut self, out: &mut Output, entries: Vec<raft::eraftpb::Entry>) {
        for entry in entries {
            if entry.index <= self.image.offset {
                continue;
            }
            if self.broken.is_some() {
                return;
            }
            match apply_one(&mut self.image, &entry) {
                Ok(records) => out.applied.push((entry.index, entry.term, records)),
                Err(e) => {
                    tracing::error!(index = entry.index, error = %e, "metadata entry cannot be applied; this node stops applying");
                    self.broken = Some(e);
                }
            }
        }
    }

    fn maybe_compact(&mut self) -> io::Result<()> {
        let store = self.raw.store();
        if store.log_len() <= self.compact_after {
            return Ok(());
        }
        let index = self.image.offset;
        let data = serde_json::to_vec(&self.image).map_err(io::Error::other)?;
        self.raw.mut_store().compact(index, data)
    }

    /// Encodes a raft message for the wire.
    pub fn encode_message(message: &Message) -> Vec<u8> {
        message.write_to_bytes().expect("raft message encodes")
    }

    pub fn decode_message(bytes: &[u8]) -> Result<Message, String> {
        Message::parse_from_bytes(bytes).map_err(|e| e.to_string())
    }
}

/// Applies one committed entry (empty and configuration entries carry no
/// records, but still advance the offset).
fn apply_one(image: &mut MetadataImage, entry: &raft::eraftpb::Entry) -> Result<Vec<MetadataRecord>, String> {
    if entry.get_entry_type() != EntryType::EntryNormal || entry.get_data().is_empty() {
        image.offset = entry.index;
        return Ok(Vec::new());
    }
    let records = decode_entry(entry.get_data())?;
    image.apply_entry(entry.index, &records).map_err(|e| e.to_string())?;
    Ok(records)
}
