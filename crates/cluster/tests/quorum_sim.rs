//! A seeded simulation of a 3-node metadata quorum: our glue (durable
//! store, snapshots and compaction, apply) around raft-rs, over an in-memory
//! network that drops, duplicates, delays (so reorders) and partitions
//! messages, with nodes crashing (their memory lost, their files kept, a
//! torn tail added to the log) and restarting.
//!
//! Checked on every step: no two nodes ever apply different records at the
//! same index (state-machine safety), and a node never applies an index
//! twice or out of order. At the end, with faults healed: one leader, every
//! image equal, and every proposal that any node applied is in it.
//!
//! `RINGSTREAM_SIM_SEED=N` replays one seed; `RINGSTREAM_SIM_SEEDS=K` runs
//! K seeds (default 40). Time is steps, not wall clock: each step is one
//! Raft tick, so a run is deterministic for its seed.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use ringstream_cluster::quorum::QuorumNode;
use ringstream_cluster::records::MetadataRecord;
use ringstream_core::rng::SplitMix64;

const NODES: [i32; 3] = [1, 2, 3];
const FAULT_STEPS: u64 = 1500;
const HEAL_STEPS: u64 = 600;

struct InFlight {
    deliver_at: u64,
    to: i32,
    bytes: Vec<u8>,
}

struct Sim {
    rng: SplitMix64,
    dirs: BTreeMap<i32, PathBuf>,
    nodes: BTreeMap<i32, Option<QuorumNode>>,
    network: VecDeque<InFlight>,
    /// Nodes cut off from the others until the step given.
    cut_until: BTreeMap<i32, u64>,
    /// What each index holds, as first applied anywhere.
    applied: BTreeMap<u64, String>,
    /// Per node: the last index it applied in this incarnation.
    last_applied: BTreeMap<i32, u64>,
    proposals: u64,
    trace: bool,
}

impl Sim {
    fn new(seed: u64, root: &std::path::Path) -> Sim {
        let mut sim = Sim {
            rng: SplitMix64::new(seed),
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            network: VecDeque::new(),
            cut_until: BTreeMap::new(),
            applied: BTreeMap::new(),
            last_applied: BTreeMap::new(),
            proposals: 0,
            trace: std::env::var_os("RINGSTREAM_SIM_TRACE").is_some(),
        };
        for id in NODES {
            sim.dirs.insert(id, root.join(format!("node-{id}")));
            sim.start(id);
        }
        sim
    }

    fn start(&mut self, id: i32) {
        let mut node = QuorumNode::open(&self.dirs[&id], id, &NODES).expect("open");
        node.compact_after = 20; // snapshots and installs happen often
        node.seed_elections(self.rng.next_u64());
        // A restart re-applies nothing: the image is rebuilt from disk.
        self.last_applied.insert(id, node.image.offset);
        self.check_prefix(id, &node);
        self.nodes.insert(id, Some(node));
    }

    /// A restarted node's image must be a prefix of what was committed.
    fn check_prefix(&self, id: i32, node: &QuorumNode) {
        for (name, _) in node.image.topics.iter() {
            assert!(
                self.applied.values().any(|v| v.contains(&format!("\"{name}\""))),
                "node {id} restarted with topic {name} that no node applied"
            );
        }
    }

    fn crash(&mut self, id: i32) {
        if self.nodes[&id].is_none() {
            return;
        }
        self.nodes.insert(id, None);
        // Sometimes a torn frame is left at the log's end, as a crash mid-write leaves it.
        if self.rng.chance(500_000) {
            use std::io::Write;
            let path = self.dirs[&id].join(ringstream_cluster::METADATA_DIR_NAME).join("raft.log");
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
                let _ = f.write_all(&[40, 0, 0, 0, 1, 2, 3]);
            }
        }
        if self.trace {
            eprintln!("crash {id}");
        }
    }

    fn linked(&self, from: i32, to: i32, step: u64) -> bool {
        let cut = |n: i32| self.cut_until.get(&n).is_some_and(|until| step < *until);
        !(cut(from) || cut(to))
    }

    fn step(&mut self, step: u64, faults: bool, proposing: bool) {
        // Faults: crashes, restarts, cuts.
        if faults {
            for id in NODES {
                let up = self.nodes[&id].is_some();
                if up && self.rng.chance(2_000) {
                    self.crash(id);
                } else if !up && self.rng.chance(20_000) {
                    self.start(id);
                }
                if self.rng.chance(2_000) {
                    let len = 20 + self.rng.below(200);
                    self.cut_until.insert(id, step + len);
                }
            }
        }
        // Deliveries due now.
        let mut due = Vec::new();
        let mut later = VecDeque::new();
        for m in self.network.drain(..) {
            if m.deliver_at <= step {
                due.push(m);
            } else {
                later.push_back(m);
            }
        }
        self.network = later;
        for m in due {
            let message = QuorumNode::decode_message(&m.bytes).expect("decode");
            if !self.linked(ringstream_cluster::quorum::node_id(message.from), m.to, step) {
                continue;
            }
            if let Some(Some(node)) = self.nodes.get_mut(&m.to) {
                let _ = node.step(message);
            }
        }
        // Ticks, proposals, and each node's ready.
        for id in NODES {
            let propose = self.rng.chance(100_000) && proposing;
            let Some(node) = self.nodes.get_mut(&id).and_then(Option::as_mut) else { continue };
            node.tick();
            if propose && node.is_leader() {
                self.proposals += 1;
                let name = format!("t{step}-{id}");
                let record = MetadataRecord::Topic { name, id: [0; 16], configs: Default::default() };
                let _ = node.propose(&[record]);
            }
            let out = node.process().expect("process");
            let node_last = self.last_applied.get_mut(&id).expect("known node");
            if let Some(index) = out.snapshot_installed {
                *node_last = (*node_last).max(index);
            }
            for (index, _term, records) in &out.applied {
                assert!(*index > *node_last, "node {id} applied {index} after {node_last}");
                *node_last = *index;
                let text = serde_json::to_string(records).unwrap();
                match self.applied.get(index) {
                    Some(first) => assert_eq!(first, &text, "node {id} applied different records at {index}"),
                    None => {
                        self.applied.insert(*index, text);
                    }
                }
            }
            for (to, message) in out.messages {
                let copies = if self.rng.chance(20_000) { 2 } else { 1 };
                for _ in 0..copies {
                    if faults && self.rng.chance(100_000) {
                        continue; // dropped
                    }
                    let delay = 1 + self.rng.below(if faults { 8 } else { 2 });
                    self.network.push_back(InFlight {
                        deliver_at: step + delay,
                        to,
                        bytes: QuorumNode::encode_message(&message),
                    });
                }
            }
        }
    }
}

fn run(seed: u64) {
    let root = tempfile::tempdir().unwrap();
    let mut sim = Sim::new(seed, root.path());
    for step in 0..FAULT_STEPS {
        sim.step(step, true, true);
    }
    // Heal: everyone up, no cuts, no drops.
    sim.cut_until.clear();
    for id in NODES {
        if sim.nodes[&id].is_none() {
            sim.start(id);
        }
    }
    for step in FAULT_STEPS..FAULT_STEPS + HEAL_STEPS {
        sim.step(step, false, step < FAULT_STEPS + HEAL_STEPS / 2);
    }
    let nodes: Vec<&QuorumNode> = sim.nodes.values().map(|n| n.as_ref().unwrap()).collect();
    let leaders = nodes.iter().filter(|n| n.is_leader()).count();
    assert_eq!(leaders, 1, "seed {seed}: {leaders} leaders after healing");
    let image = &nodes[0].image;
    for node in nodes.iter().filter(|_| sim.trace) {
        eprintln!(
            "node {} leader={} offset={} commit={} last={} topics={} broken={:?}",
            node.id,
            node.is_leader(),
            node.image.offset,
            node.commit_index(),
            node.last_index(),
            node.image.topics.len(),
            node.broken
        );
    }
    for node in &nodes[1..] {
        assert_eq!(node.image.topics, image.topics, "seed {seed}: images differ after healing");
    }
    for records in sim.applied.values() {
        let records: Vec<MetadataRecord> = serde_json::from_str(records).unwrap();
        for record in records {
            if let MetadataRecord::Topic { name, .. } = record {
                assert!(image.topics.contains_key(&name), "seed {seed}: applied {name} is lost");
            }
        }
    }
    assert!(sim.proposals == 0 || !image.topics.is_empty() || sim.applied.is_empty());
}

#[test]
fn quorum_survives_crashes_cuts_and_a_lossy_network() {
    if let Some(seed) = std::env::var("RINGSTREAM_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        run(seed);
        return;
    }
    let seeds: u64 = std::env::var("RINGSTREAM_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    for seed in 0..seeds {
        eprintln!("seed {seed}");
        run(seed);
    }
}
