//! This node in the cluster, on shard 0: the metadata quorum member (when
//! it has the controller role), the active controller's request handling
//! (when it leads the quorum), and the broker's side (registration,
//! heartbeats, forwarding admin requests to the controller).
//!
//! Metadata reaches the data path in one direction: shard 0 applies
//! committed records to its image, opens the local partitions the image
//! places here (the shard placement picks their cores), then sends the new
//! image to every shard, each of which keeps its own copy (`Broker::image`).
//! Handlers read their shard's copy with no lock.
//!
//! Network: the controller listener (`--controller-listen`) carries Raft
//! messages between voters over one outbound connection per peer, and
//! broker-to-controller requests, one connection per request. Frames are
//! `ringstream_cluster::wire`'s, capped before allocation; every connection
//! starts with a `Hello` whose cluster id must match.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use ringstream_cluster::controller::{self, Liveness, Refusal};
use ringstream_cluster::quorum::{self, QuorumNode};
use ringstream_cluster::records::{MetadataImage, MetadataRecord, PartitionInfo, TopicInfo};
use ringstream_cluster::wire::{
    self, FrameError, Hello, NewTopic, QuorumState, Request, RequestBody, Response, ResponseBody,
};
use ringstream_cluster::{NodeId, Voter};
use ringstream_core::error_code;
use ringstream_core::limits;
use ringstream_core::types::{ShardId, TopicPartition};
use ringstream_shard::Shard;
use ringstream_storage::replica::{LeaderAssignment, Role};

use crate::config::ClusterSettings;

/// This node's part in the cluster (shard 0 only).
pub struct ClusterNode {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub settings: ClusterSettings,
    shard: Rc<Shard>,
    /// The endpoint this broker registers (its advertised listener).
    advertised: (String, i32),
    quorum: Option<RefCell<QuorumNode>>,
    /// The image as last applied here (shard 0).
    image: RefCell<Arc<MetadataImage>>,
    /// The offset every shard has the image of.
    published: Cell<u64>,
    /// (index, term) of recently applied entries: a proposal committed as
    /// proposed only if the term at its index is the one it was given.
    applied_terms: RefCell<VecDeque<(u64, u64)>>,
    /// One `drive` at a time, so entries are applied and published in order.
    drive_lock: glommio::sync::Semaphore,
    /// One publication to the shards at a time.
    publish_lock: glommio::sync::Semaphore,
    /// One controller decision at a time (decide, propose, wait for apply).
    decide_lock: glommio::sync::Semaphore,
    peers: RefCell<BTreeMap<NodeId, LocalSender<Vec<u8>>>>,
    liveness: RefCell<Liveness>,
    was_leader: Cell<bool>,
    /// Leader and caught up; liveness was reset then.
    leader_ready: Cell<bool>,
    /// The controller id last given to the shards.
    published_controller: Cell<Option<NodeId>>,
    /// This broker's registration: (epoch, unfenced in the last answer).
    registration: Cell<Option<(i64, bool)>>,
    last_heartbeat_ok: Cell<Option<Instant>>,
    leader_hint: Cell<Option<NodeId>>,
    incarnation: u64,
    next_voter: Cell<usize>,
    /// Producer ids handed to this broker: [next, end).
    producer_ids: RefCell<(i64, i64)>,
    /// Whether this broker serves the partitions it leads (registered,
    /// unfenced and its session with the controller alive).
    serving: Cell<bool>,
    /// Every shard has a view in which this broker serves and is listed.
    published_serving: Cell<bool>,
    stopping: Cell<bool>,
    /// When each peer's last Raft message arrived (ms since the epoch).
    peer_heard: RefCell<BTreeMap<NodeId, i64>>,
    /// When registration was first refused as a duplicate.
    duplicate_since: Cell<Option<Instant>>,
    /// Topics created once this broker serves (see `create_eager_topics`).
    eager_topics: Vec<NewTopic>,
    /// Local topics imported and eager topics created.
    initialized: Cell<bool>,
}

fn now_ms() -> i64 {
    ringstream_core::clock::now_ms()
}

impl ClusterNode {
    /// Opens the quorum member (controller role), binds the controller
    /// listener and starts the loops. Call on shard 0.
    pub fn start(
        shard: Rc<Shard>,
        node_id: NodeId,
        cluster_id: String,
        settings: ClusterSettings,
        advertised: (String, i32),
        eager_topics: Vec<NewTopic>,
    ) -> Result<Rc<ClusterNode>, String> {
        assert_eq!(shard.id, ShardId(0), "the cluster node runs on shard 0");
        let data_dir = shard.storage.config().data_dir.clone();
        let quorum = if settings.controller_role {
            let voters: Vec<NodeId> = settings.voters.iter().map(|v| v.id).collect();
            let dir = data_dir.join(ringstream_cluster::METADATA_DIR_NAME);
            let node = QuorumNode::open(&dir, node_id, &voters).map_err(|e| format!("{}: {e}", dir.display()))?;
            if let Some(why) = &node.broken {
                return Err(format!("the metadata log cannot be applied: {why}"));
            }
            Some(RefCell::new(node))
        } else {
            None
        };
        // The shards start from nothing; the first publish (below) opens
        // and configures every local replica the stored image names.
        let image = MetadataImage::default();
        let incarnation = {
            let mut rng = ringstream_core::rng::SplitMix64::new(
                (std::process::id() as u64) << 32 ^ now_ms() as u64 ^ (node_id as u64).rotate_left(17),
            );
            rng.next_u64()
        };
        let node = Rc::new(ClusterNode {
            node_id,
            cluster_id,
            settings,
            shard,
            advertised,
            quorum,
            image: RefCell::new(Arc::new(image)),
            published: Cell::new(0),
            applied_terms: RefCell::new(VecDeque::new()),
            drive_lock: glommio::sync::Semaphore::new(1),
            decide_lock: glommio::sync::Semaphore::new(1),
            publish_lock: glommio::sync::Semaphore::new(1),
            peers: RefCell::new(BTreeMap::new()),
            liveness: RefCell::new(Liveness::default()),
            was_leader: Cell::new(false),
            leader_ready: Cell::new(false),
            published_controller: Cell::new(None),
            registration: Cell::new(None),
            last_heartbeat_ok: Cell::new(None),
            leader_hint: Cell::new(None),
            incarnation,
            next_voter: Cell::new(0),
            producer_ids: RefCell::new((0, 0)),
            serving: Cell::new(false),
            published_serving: Cell::new(false),
            stopping: Cell::new(false),
            duplicate_since: Cell::new(None),
            peer_heard: RefCell::new(BTreeMap::new()),
            eager_topics,
            initialized: Cell::new(false),
        });
        if let Some(listen) = node.settings.controller_listen {
            let listener = TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            glommio::spawn_local(accept_loop(node.clone(), listener)).detach();
        } else if node.settings.controller_role && node.settings.voters.len() > 1 {
            return Err("a controller in a multi-voter quorum needs --controller-listen".into());
        }
        if node.quorum.is_some() {
            for voter in node.settings.voters.clone() {
                if voter.id != node_id {
                    let (sender, receiver) = local_channel::new_bounded(limits::controller_peer_queue_max);
                    node.peers.borrow_mut().insert(voter.id, sender);
                    glommio::spawn_local(peer_loop(node.clone(), voter, receiver)).detach();
                }
            }
            let first = node.clone();
            glommio::spawn_local(async move {
                let Ok(_turn) = first.drive_lock.acquire_permit(1).await else { return };
                let stored = first.quorum.as_ref().map(|q| q.borrow().image.clone()).unwrap_or_default();
                first.publish(Arc::new(stored)).await;
            })
            .detach();
            glommio::spawn_local(tick_loop(node.clone())).detach();
        } else {
            glommio::spawn_local(follow_loop(node.clone())).detach();
        }
        if node.settings.broker_role {
            glommio::spawn_local(broker_loop(node.clone())).detach();
            glommio::spawn_local(lease_loop(node.clone())).detach();
        }
        Ok(node)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// The image controller decisions are made on: everything the quorum
    /// has applied (the published image may lag it while shard 0 opens
    /// partitions or copies it to the shards).
    fn decision_image(&self) -> MetadataImage {
        match &self.quorum {
            Some(q) => q.borrow().image.clone(),
            None => (*self.image()).clone(),
        }
    }

    /// The active controller as this node knows it.
    pub fn controller_id(&self) -> Option<NodeId> {
        match &self.quorum {
            Some(q) => q.borrow().leader(),
            None => self.leader_hint.get(),
        }
    }

    /// The cluster gauges for the metrics endpoint.
    pub fn metrics(&self) -> ringstream_cluster::ClusterMetrics {
        let image = self.image();
        let (leader, term) = match &self.quorum {
            Some(q) => (q.borrow().is_leader(), q.borrow().term()),
            None => (false, 0),
        };
        ringstream_cluster::ClusterMetrics {
            controller_active: u64::from(leader),
            metadata_offset: image.offset,
            brokers: image.brokers.len() as u64,
            brokers_fenced: image.brokers.values().filter(|b| b.fenced).count() as u64,
            serving: u64::from(self.serving.get()),
            quorum_term: term,
            under_replicated: image
                .topics
                .values()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.leader == self.node_id && p.isr.len() < p.replicas.len())
                .count() as u64,
            offline: image.topics.values().flat_map(|t| &t.partitions).filter(|p| p.leader < 0).count() as u64,
        }
    }

    pub fn is_serving(&self) -> bool {
        self.serving.get()
    }

    /// What this node waits for before it is ready, or None when ready:
    /// a broker is ready once registered, unfenced and caught up; a
    /// controller-only node once the quorum has a leader.
    pub fn waiting_for(&self) -> Option<String> {
        if self.controller_id().is_none() {
            let voters: Vec<String> =
                self.settings.voters.iter().map(|v| format!("{}@{}", v.id, v.address())).collect();
            return Some(format!("a quorum leader among the voters {}", voters.join(",")));
        }
        if self.settings.broker_role && !(self.serving.get() && self.published_serving.get()) {
            return Some("registration with the active controller (unfenced)".to_owned());
        }
        if self.settings.broker_role && !self.initialized.get() {
            return Some("this data dir's topics in the cluster metadata".to_owned());
        }
        None
    }

    // ---- The quorum (controller role) ----

    /// Persists, sends and applies what the quorum has ready, until nothing is.
    async fn drive(self: &Rc<Self>) {
        let Some(quorum) = &self.quorum else { return };
        let Ok(_turn) = self.drive_lock.acquire_permit(1).await else { return };
        loop {
            let out = match quorum.borrow_mut().process() {
                Ok(out) => out,
                Err(e) => {
                    // The log could not be written: this member cannot go on safely.
                    tracing::error!(error = %e, "metadata log write failed; exiting");
                    std::process::exit(1);
                }
            };
            let idle = out.messages.is_empty() && out.applied.is_empty() && out.snapshot_installed.is_none();
            for (to, message) in out.messages {
                let frame = wire::encode_frame(wire::KIND_RAFT, &QuorumNode::encode_message(&message));
                if let Some(peer) = self.peers.borrow().get(&to) {
                    let _ = peer.try_send(frame); // full: Raft resends
                }
            }
            if !out.applied.is_empty() || out.snapshot_installed.is_some() {
                {
                    let mut terms = self.applied_terms.borrow_mut();
                    for (index, term, _) in &out.applied {
                        terms.push_back((*index, *term));
                        if terms.len() > limits::controller_proposals_max {
                            terms.pop_front();
                        }
                    }
                }
                let image = quorum.borrow().image.clone();
                self.publish(Arc::new(image)).await;
            }
            if idle {
                break;
            }
        }
        let known = quorum.borrow().leader();
        if known != self.published_controller.get() {
            // Clients learn the new controller from Metadata and DescribeCluster.
            self.published_controller.set(known);
            let node = self.clone();
            glommio::spawn_local(async move { node.publish_to_shards().await }).detach();
        }
        let leader = quorum.borrow().is_leader();
        if leader != self.was_leader.get() {
            self.was_leader.set(leader);
            let term = quorum.borrow().term();
            if leader {
                info!(node = self.node_id, term, "this node is the active controller");
            } else {
                info!(node = self.node_id, term, leader = ?quorum.borrow().leader(), "this node is no longer the active controller");
            }
        }
    }

    /// Opens what the new image places here, removes what it took away,
    /// then gives every shard the new image.
    async fn publish(self: &Rc<Self>, new: Arc<MetadataImage>) {
        let old = self.image();
        if new.offset <= old.offset && new.offset != 0 {
            return;
        }
        if let Err(e) = reconcile(&self.shard, self.node_id, &old, &new).await {
            warn!(error = %e, "could not bring local partitions in line with the metadata");
        }
        *self.image.borrow_mut() = new.clone();
        self.publish_to_shards().await;
        self.published.set(self.published.get().max(new.offset));
    }

    async fn publish_to_shards(self: &Rc<Self>) {
        // One at a time, each reading the newest state under the lock, so
        // no shard ever gets an older view after a newer one.
        let Ok(_turn) = self.publish_lock.acquire_permit(1).await else { return };
        let image = self.image();
        // Clients send admin requests to the id they get as controller, and
        // any broker forwards them: name the active controller when it is a
        // serving broker, else this broker (Kafka's brokers in KRaft mode
        // likewise name a broker, not the quorum leader).
        let controller =
            self.controller_id().filter(|id| image.brokers.get(id).is_some_and(|b| !b.fenced)).unwrap_or(self.node_id);
        let serving = self.serving.get();
        let listed = image.brokers.get(&self.node_id).is_some_and(|b| !b.fenced);
        let view = ringstream_cluster::MetadataView { image, controller, serving };
        match self.shard.publish_metadata(view).await {
            // Clients are let in only once every shard lists this broker
            // (`waiting_for`): a Metadata answer without it makes librdkafka
            // drop the broker and its cached coordinators.
            Ok(()) => self.published_serving.set(serving && listed),
            Err(_) => debug!("metadata not published: shutting down"),
        }
    }

    fn set_serving(self: &Rc<Self>, serving: bool) {
        if self.serving.replace(serving) != serving {
            if serving {
                info!(node = self.node_id, "serving: registered and unfenced");
            } else {
                warn!(node = self.node_id, "not serving partitions: fenced, or no contact with the controller");
            }
            let node = self.clone();
            glommio::spawn_local(async move { node.publish_to_shards().await }).detach();
        }
    }

    /// Proposes `records` and waits until they are applied here; returns
    /// the offset. Only on the leader, under `decide_lock`.
    async fn propose(self: &Rc<Self>, records: Vec<MetadataRecord>) -> Result<u64, Refusal> {
        let not_controller = |node: &ClusterNode| Refusal {
            code: error_code::NOT_CONTROLLER,
            message: format!("node {} is not the active controller", node.node_id),
        };
        let Some(quorum) = &self.quorum else { return Err(not_controller(self)) };
        if records.is_empty() {
            return Ok(self.image().offset);
        }
        let (index, term) = quorum.borrow_mut().propose(&records).map_err(|_| not_controller(self))?;
        self.drive().await;
        let deadline = Instant::now() + Duration::from_millis(limits::controller_request_ms_max);
        while quorum.borrow().image.offset < index {
            if Instant::now() > deadline || !quorum.borrow().is_leader() {
                return Err(Refusal {
                    code: error_code::REQUEST_TIMED_OUT,
                    message: "the metadata change was not committed in time (leadership may have moved)".into(),
                });
            }
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
        let committed_term = self.applied_terms.borrow().iter().find(|(i, _)| *i == index).map(|(_, t)| *t);
        match committed_term {
            Some(t) if t == term => Ok(index),
            _ => Err(not_controller(self)),
        }
    }

    /// Waits (bounded) until this leader has applied everything committed
    /// before its term; false when it is not, or no longer, the leader.
    async fn caught_up_as_leader(&self) -> bool {
        let Some(quorum) = &self.quorum else { return false };
        let deadline = Instant::now() + Duration::from_millis(limits::controller_request_ms_max / 3);
        loop {
            let (leader, ready) = {
                let q = quorum.borrow();
                (q.is_leader(), q.ready_to_decide())
            };
            if ready {
                return true;
            }
            if !leader || Instant::now() > deadline {
                return false;
            }
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Answers a request addressed to the active controller.
    async fn handle(self: &Rc<Self>, body: RequestBody) -> ResponseBody {
        let leader = self.quorum.as_ref().is_some_and(|q| q.borrow().is_leader());
        match body {
            RequestBody::FetchMetadata { from } => return self.fetch_metadata(from),
            RequestBody::DescribeQuorum => return self.describe_quorum(),
            _ if !leader => {
                return ResponseBody::Error {
                    code: error_code::NOT_CONTROLLER,
                    message: format!("node {} is not the active controller", self.node_id),
                    leader: self.controller_id(),
                }
            }
            _ => {}
        }
        let Ok(_decision) = self.decide_lock.acquire_permit(1).await else {
            return refused(error_code::NOT_CONTROLLER, "shutting down");
        };
        if !self.caught_up_as_leader().await {
            return ResponseBody::Error {
                code: error_code::NOT_CONTROLLER,
                message: format!("node {} is not (yet) the active controller", self.node_id),
                leader: self.controller_id().filter(|l| *l != self.node_id),
            };
        }
        let image = self.decision_image();
        let session = self.settings.session_timeout_ms;
        let result: Result<ResponseBody, Refusal> = match body {
            RequestBody::Register { id, incarnation, host, port, rack } => {
                if id == self.node_id && incarnation == self.incarnation {
                    // This very process: the session the new leader granted
                    // its old registration is no reason to refuse it.
                    self.liveness.borrow_mut().forget(id);
                }
                let decided = controller::register(
                    &image,
                    &self.liveness.borrow(),
                    now_ms(),
                    session,
                    (id, incarnation, host, port, rack),
                );
                match decided {
                    Ok((records, epoch)) => {
                        self.liveness.borrow_mut().heard(id, now_ms());
                        self.propose(records).await.map(|offset| ResponseBody::Registered { epoch, offset })
                    }
                    Err(e) => Err(e),
                }
            }
            RequestBody::Heartbeat { id, epoch, shutting_down } => {
                match controller::heartbeat(&image, id, epoch, shutting_down) {
                    Ok(records) => {
                        self.liveness.borrow_mut().heard(id, now_ms());
                        let offset = self.propose(records).await;
                        offset.map(|offset| {
                            let fenced = self.decision_image().brokers.get(&id).map_or(true, |b| b.fenced);
                            ResponseBody::Heartbeat { fenced, shutdown_ready: shutting_down && fenced, offset }
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            RequestBody::CreateTopic { mut topic, validate_only } => {
                if crate::broker::Broker::is_internal(&topic.name) && topic.replicas.is_none() {
                    // offsets.topic.replication.factor (or the transaction
                    // log's), capped at the live brokers.
                    let live = image.unfenced().count().max(1);
                    topic.replication_factor = topic.replication_factor.min(live as i16).max(1);
                }
                match controller::create_topic(&image, &topic, crate::broker::topics::new_topic_id()) {
                    Ok(_) if validate_only => Ok(ResponseBody::Done { offset: image.offset }),
                    Ok(records) => {
                        let id = match &records[0] {
                            MetadataRecord::Topic { id, .. } => *id,
                            _ => unreachable!("a topic's first record names it"),
                        };
                        self.propose(records).await.map(|offset| ResponseBody::TopicCreated {
                            id,
                            partitions: topic.partitions,
                            offset,
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            RequestBody::DeleteTopic { name } => match controller::delete_topic(&image, &name) {
                Ok(records) => self.propose(records).await.map(|offset| ResponseBody::Done { offset }),
                Err(e) => Err(e),
            },
            RequestBody::CreatePartitions { name, count, validate_only } => {
                match controller::create_partitions(&image, &name, count) {
                    Ok(_) if validate_only => Ok(ResponseBody::Done { offset: image.offset }),
                    Ok(records) => self.propose(records).await.map(|offset| ResponseBody::Done { offset }),
                    Err(e) => Err(e),
                }
            }
            RequestBody::SetTopicConfigs { name, configs } => {
                match controller::set_topic_configs(&image, &name, configs) {
                    Ok(records) => self.propose(records).await.map(|offset| ResponseBody::Done { offset }),
                    Err(e) => Err(e),
                }
            }
            RequestBody::AllocateProducerIds { broker, floor } => {
                let (records, start) = controller::allocate_producer_ids(&image, broker, floor);
                self.propose(records).await.map(|offset| ResponseBody::ProducerIds {
                    start,
                    count: controller::producer_id_block,
                    offset,
                })
            }
            RequestBody::ElectLeaders { partitions, unclean } => {
                let (records, results) = controller::elect_leaders(&image, partitions.as_deref(), unclean);
                if unclean && !records.is_empty() {
                    warn!(
                        partitions = records.len(),
                        "unclean leader election requested: acknowledged records may be lost"
                    );
                }
                if records.is_empty() {
                    Ok(ResponseBody::PartitionResults { results, offset: image.offset })
                } else {
                    self.propose(records).await.map(|offset| ResponseBody::PartitionResults { results, offset })
                }
            }
            RequestBody::Reassign { partitions, allow_rf_change } => {
                let mut records = Vec::new();
                let mut results = Vec::new();
                for (topic, partition, target) in partitions {
                    match controller::reassign(&image, &topic, partition, target.as_deref(), allow_rf_change) {
                        Ok(more) => {
                            if !more.is_empty() {
                                info!(topic = %topic, partition, target = ?target, "partition reassignment");
                            }
                            records.extend(more);
                            results.push((topic, partition, error_code::NONE, String::new()));
                        }
                        Err(e) => results.push((topic, partition, e.code, e.message)),
                    }
                }
                if records.is_empty() {
                    Ok(ResponseBody::PartitionResults { results, offset: image.offset })
                } else {
                    self.propose(records).await.map(|offset| ResponseBody::PartitionResults { results, offset })
                }
            }
            RequestBody::AlterIsr { broker, topic, partition, leader_epoch, partition_epoch, isr } => {
                match controller::alter_isr(&image, broker, &topic, partition, leader_epoch, partition_epoch, &isr) {
                    Ok(records) => {
                        info!(topic = %topic, partition, isr = ?isr, "ISR changed");
                        self.propose(records).await.map(|offset| ResponseBody::Done { offset })
                    }
                    Err(e) => Err(e),
                }
            }
            RequestBody::FetchMetadata { .. } | RequestBody::DescribeQuorum => unreachable!("answered above"),
        };
        result.unwrap_or_else(|e| ResponseBody::Error {
            code: e.code,
            message: e.message,
            leader: self.controller_id(),
        })
    }

    fn fetch_metadata(&self, from: u64) -> ResponseBody {
        let Some(quorum) = &self.quorum else {
            return refused(error_code::NOT_CONTROLLER, "not a controller");
        };
        let quorum = quorum.borrow();
        let leader = quorum.leader();
        match quorum.committed_since(from) {
            Some(raw) => {
                let mut entries = Vec::with_capacity(raw.len());
                for (index, data) in raw {
                    if data.is_empty() {
                        entries.push((index, Vec::new())); // a new leader's empty entry
                        continue;
                    }
                    match ringstream_cluster::records::decode_entry(&data) {
                        Ok(records) => entries.push((index, records)),
                        Err(e) => return refused(error_code::UNKNOWN_SERVER_ERROR, &format!("entry {index}: {e}")),
                    }
                }
                if entries.is_empty() && from <= quorum.image.offset {
                    // Only configuration or empty entries: the image's offset moves on.
                    return ResponseBody::Image { image: Box::new(quorum.image.clone()), leader };
                }
                ResponseBody::Entries { entries, leader }
            }
            None => ResponseBody::Image { image: Box::new(quorum.image.clone()), leader },
        }
    }

    fn describe_quorum(&self) -> ResponseBody {
        let Some(quorum) = &self.quorum else {
            return refused(error_code::NOT_CONTROLLER, "not a controller");
        };
        let q = quorum.borrow();
        if !q.is_leader() {
            return ResponseBody::Error {
                code: error_code::NOT_CONTROLLER,
                message: "ask the quorum leader".into(),
                leader: q.leader(),
            };
        }
        let now = now_ms();
        let heard = self.peer_heard.borrow();
        let voters = q
            .voter_states()
            .into_iter()
            .map(|v| {
                let ago = if v.id == self.node_id { 0 } else { heard.get(&v.id).map_or(-1, |t| now - t) };
                (v.id, v.log_end_offset, ago)
            })
            .collect();
        ResponseBody::Quorum(QuorumState {
            leader: self.node_id,
            term: q.term(),
            high_watermark: q.commit_index(),
            voters,
        })
    }

    /// Leader chores each tick: fence brokers whose session expired.
    async fn expire_sessions(self: &Rc<Self>) {
        let records = controller::expire(
            &self.decision_image(),
            &self.liveness.borrow(),
            now_ms(),
            self.settings.session_timeout_ms,
        );
        if records.is_empty() {
            return;
        }
        let Ok(_decision) = self.decide_lock.acquire_permit(1).await else { return };
        let records = controller::expire(
            &self.decision_image(),
            &self.liveness.borrow(),
            now_ms(),
            self.settings.session_timeout_ms,
        );
        for record in &records {
            if let MetadataRecord::FenceBroker { id, .. } = record {
                warn!(broker = id, "fencing a broker that missed heartbeats");
            }
        }
        let _ = self.propose(records).await;
    }

    /// Kafka's automatic leader rebalance (`auto.leader.rebalance.enable`):
    /// partitions go back to their preferred leaders where a broker leads
    /// too few of its preferred ones.
    async fn rebalance_leaders(self: &Rc<Self>) {
        let percent = self.settings.leader_imbalance_per_broker_percentage;
        if controller::rebalance_leaders(&self.decision_image(), percent).is_empty() {
            return;
        }
        let Ok(_decision) = self.decide_lock.acquire_permit(1).await else { return };
        let records = controller::rebalance_leaders(&self.decision_image(), percent);
        if !records.is_empty() {
            info!(partitions = records.len(), "moving partitions back to their preferred leaders");
            let _ = self.propose(records).await;
        }
    }

    // ---- The broker's side ----

    /// Sends `body` to the active controller (itself when it is), following
    /// NOT_CONTROLLER hints, until answered or the deadline passes.
    pub async fn call_controller(self: &Rc<Self>, body: RequestBody) -> ResponseBody {
        self.call_controller_within(body, Duration::from_millis(limits::controller_request_ms_max)).await
    }

    /// `call_controller`, giving up after `limit`.
    pub async fn call_controller_within(self: &Rc<Self>, body: RequestBody, limit: Duration) -> ResponseBody {
        let deadline = Instant::now() + limit;
        let mut last_error = String::from("no controller reachable");
        while Instant::now() < deadline && !self.stopping.get() {
            let target = self.controller_id().or_else(|| {
                let voters = &self.settings.voters;
                let i = self.next_voter.get();
                self.next_voter.set(i.wrapping_add(1));
                voters.get(i % voters.len()).map(|v| v.id)
            });
            let Some(target) = target else {
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let answer = if target == self.node_id && self.quorum.is_some() {
                Ok(self.handle(body.clone()).await)
            } else {
                let voter = self.settings.voters.iter().find(|v| v.id == target).cloned();
                // A stopped (not dead) controller keeps connections open and
                // answers nothing: each try gets a third of the limit, so a
                // heartbeat still reaches a new controller within a session.
                let attempt = deadline.saturating_duration_since(Instant::now()).min(limit / 3);
                match voter {
                    Some(voter) => self.request_over_network(&voter, body.clone(), attempt).await,
                    None => Err(format!("controller {target} is not among the voters")),
                }
            };
            match answer {
                Ok(ResponseBody::Error { code, leader, message }) if code == error_code::NOT_CONTROLLER => {
                    self.leader_hint.set(leader.filter(|l| *l != target));
                    last_error = message;
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
                Ok(answer) => {
                    if self.quorum.is_none() {
                        self.leader_hint.set(Some(target));
                    }
                    return answer;
                }
                Err(e) => {
                    debug!(controller = target, error = %e, "controller request failed");
                    last_error = e;
                    self.leader_hint.set(None);
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        refused(error_code::REQUEST_TIMED_OUT, &format!("no answer from the active controller: {last_error}"))
    }

    async fn request_over_network(
        &self,
        voter: &Voter,
        body: RequestBody,
        limit: Duration,
    ) -> Result<ResponseBody, String> {
        let exchange = async {
            let mut stream = TcpStream::connect(voter.address()).await.map_err(|e| e.to_string())?;
            let hello = Hello { cluster_id: self.cluster_id.clone(), node_id: self.node_id };
            stream.write_all(&wire::encode_json(wire::KIND_HELLO, &hello)).await.map_err(|e| e.to_string())?;
            let request = Request { id: 1, body };
            stream.write_all(&wire::encode_json(wire::KIND_REQUEST, &request)).await.map_err(|e| e.to_string())?;
            let (kind, payload) = read_frame(&mut stream).await.map_err(|e| e.to_string())?;
            match kind {
                wire::KIND_RESPONSE => {
                    let response: Response = wire::decode_json("response", &payload).map_err(|e| e.to_string())?;
                    Ok(response.body)
                }
                wire::KIND_REFUSED => Err(format!("refused: {}", String::from_utf8_lossy(&payload))),
                other => Err(format!("unexpected frame kind {other}")),
            }
        };
        let timeout = async {
            glommio::timer::sleep(limit.min(Duration::from_millis(limits::controller_request_ms_max / 2))).await;
            Err("timed out".to_owned())
        };
        futures_lite::future::or(exchange, timeout).await
    }

    /// Registers the broker if it is not (again, after an epoch error).
    async fn register(self: &Rc<Self>) -> bool {
        let body = RequestBody::Register {
            id: self.node_id,
            incarnation: self.incarnation,
            host: self.advertised.0.clone(),
            port: self.advertised.1,
            rack: self.settings.rack.clone(),
        };
        match self.call_controller(body).await {
            ResponseBody::Registered { epoch, offset } => {
                info!(node = self.node_id, epoch, "registered with the active controller");
                self.registration.set(Some((epoch, false)));
                self.wait_for_offset(offset).await;
                true
            }
            ResponseBody::Error { code, message, .. } if code == error_code::DUPLICATE_BROKER_REGISTRATION => {
                // A restart within the old session looks the same until
                // that session expires: retry for two sessions, then give up.
                let first = self.duplicate_since.get().unwrap_or_else(Instant::now);
                self.duplicate_since.set(Some(first));
                if first.elapsed() > Duration::from_millis(2 * self.settings.session_timeout_ms as u64) {
                    tracing::error!("{message}");
                    eprintln!("ringstream: {message}");
                    std::process::exit(1);
                }
                warn!("{message}; retrying until the old registration's session ends");
                glommio::timer::sleep(Duration::from_millis(self.settings.heartbeat_interval_ms as u64)).await;
                false
            }
            other => {
                warn!(answer = ?other, "registration failed; retrying");
                false
            }
        }
    }

    /// Waits (bounded) until every shard of this node has the image at
    /// `offset` or later.
    pub async fn wait_for_offset(&self, offset: u64) {
        let deadline = Instant::now() + Duration::from_millis(limits::controller_request_ms_max);
        while self.published.get() < offset && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A block of producer ids from the controller, one id at a time.
    pub async fn producer_id(self: &Rc<Self>) -> Result<i64, Refusal> {
        {
            let mut ids = self.producer_ids.borrow_mut();
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        let floor = legacy_producer_id_floor(&self.shard.storage.config().data_dir);
        match self.call_controller(RequestBody::AllocateProducerIds { broker: self.node_id, floor }).await {
            ResponseBody::ProducerIds { start, count, .. } => {
                let mut ids = self.producer_ids.borrow_mut();
                if ids.0 >= ids.1 {
                    *ids = (start, start + count);
                }
                ids.0 += 1;
                Ok(ids.0 - 1)
            }
            ResponseBody::Error { code, message, .. } => Err(Refusal { code, message }),
            other => Err(Refusal { code: error_code::UNKNOWN_SERVER_ERROR, message: format!("unexpected {other:?}") }),
        }
    }

    /// Controlled shutdown: asks the controller to fence this broker (its
    /// partitions lose it as leader) and waits, bounded, until it has.
    pub async fn shut_down(self: &Rc<Self>) {
        let Some((epoch, _)) = self.registration.get() else { return };
        let deadline = Instant::now() + Duration::from_millis(self.settings.session_timeout_ms.max(1000) as u64);
        while Instant::now() < deadline {
            let body = RequestBody::Heartbeat { id: self.node_id, epoch, shutting_down: true };
            if let ResponseBody::Heartbeat { shutdown_ready: true, offset, .. } = self.call_controller(body).await {
                self.wait_for_offset(offset).await;
                info!(node = self.node_id, "controlled shutdown: the controller has moved leadership away");
                break;
            }
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        self.stopping.set(true);
        self.set_serving(false);
    }
}

/// Where a single-node broker recorded the producer ids it handed out.
pub const PRODUCER_IDS_FILE_NAME: &str = "producer-ids";

/// Producer ids a single-node data dir already handed out (its
/// `producer-ids` file): the cluster's blocks start above them.
fn legacy_producer_id_floor(data_dir: &std::path::Path) -> i64 {
    std::fs::read_to_string(data_dir.join(PRODUCER_IDS_FILE_NAME))
        .ok()
        .and_then(|text| text.strip_prefix("next_block ").and_then(|v| v.trim_end().parse::<i64>().ok()))
        .unwrap_or(0)
        .max(0)
}

fn refused(code: i16, message: &str) -> ResponseBody {
    ResponseBody::Error { code, message: message.to_owned(), leader: None }
}

/// Opens the replicas of `topic` placed on `me` that this node does not
/// hold yet (those whose replica count `wanted` accepts).
async fn open_replicas(
    shard: &Rc<Shard>,
    me: NodeId,
    topic: &TopicInfo,
    log: ringstream_storage::log::LogConfig,
    wanted: impl Fn(usize) -> bool,
) -> Result<(), String> {
    let missing: Vec<TopicPartition> = topic
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.replicas.contains(&me) && wanted(p.replicas.len()))
        .map(|(i, _)| TopicPartition::new(topic.name.clone(), i as i32))
        .filter(|tp| shard.owner(tp).is_none())
        .collect();
    if !missing.is_empty() {
        shard.create_partitions(missing, log).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Brings local storage in line with the image: opens partitions placed on
/// this node, deletes those of removed topics, applies changed configs.
async fn reconcile(shard: &Rc<Shard>, me: NodeId, old: &MetadataImage, new: &MetadataImage) -> Result<(), String> {
    let defaults = crate::config::log_defaults(&shard.storage);
    for topic in new.topics.values() {
        if topic.name == crate::groups::OFFSETS_TOPIC {
            // Every replica of a replicated offsets-log partition holds it,
            // with the coordinator's log settings, so followers copy it; the
            // leader's coordinator loads its groups (`ensure_loaded`). A
            // partition with one replica opens on its first write, as on a
            // single broker (50 idle partitions cost a start nothing).
            let log = crate::groups::coordinator::local().log_config();
            open_replicas(shard, me, topic, log, |replicas| replicas > 1).await?;
            set_roles(shard, me, old, topic).await?;
            continue;
        }
        if topic.name == crate::broker::topics::TXN_TOPIC {
            // Every replica of the transaction log is opened, with the
            // coordinator's log settings; the leader's coordinator loads it.
            let log = crate::config::txn_log_config(&crate::broker::local().config.txn);
            open_replicas(shard, me, topic, log, |_| true).await?;
            set_roles(shard, me, old, topic).await?;
            continue;
        }
        let meta = crate::broker::topics::TopicMeta {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.len() as i32,
            configs: topic.configs.clone(),
        };
        let log = meta.log_config(&defaults).map_err(|e| format!("topic {}: {e}", topic.name))?;
        open_replicas(shard, me, topic, log.clone(), |_| true).await?;
        set_roles(shard, me, old, topic).await?;
        // A reassignment moved replicas off this node: they go (Kafka's
        // StopReplica with deletion), once the metadata says so.
        let removed: Vec<TopicPartition> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                !p.replicas.contains(&me)
                    && old
                        .topics
                        .get(&topic.name)
                        .filter(|b| b.id == topic.id)
                        .and_then(|b| b.partitions.get(*i))
                        .is_some_and(|b| b.replicas.contains(&me))
            })
            .map(|(i, _)| TopicPartition::new(topic.name.clone(), i as i32))
            .filter(|tp| shard.owner(tp).is_some())
            .collect();
        if !removed.is_empty() {
            info!(partitions = ?removed, "replicas moved off this broker; deleting them");
            shard.delete_partitions(removed).await.map_err(|e| e.to_string())?;
        }
        // Replicas that were open before (a restart, or a topic whose
        // configs changed) take the topic's configs.
        let configured = old.topics.get(&topic.name).is_some_and(|b| b.id == topic.id && b.configs == topic.configs);
        if !configured {
            for (i, p) in topic.partitions.iter().enumerate() {
                let tp = TopicPartition::new(topic.name.clone(), i as i32);
                if p.replicas.contains(&me) && shard.owner(&tp).is_some() {
                    shard.set_log_config(&tp, log.clone()).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
    for topic in old.topics.values() {
        let gone = new.topics.get(&topic.name).map_or(true, |t| t.id != topic.id);
        if gone && !crate::broker::Broker::is_internal(&topic.name) {
            let local: Vec<TopicPartition> = (0..topic.partitions.len() as i32)
                .map(|p| TopicPartition::new(topic.name.clone(), p))
                .filter(|tp| shard.owner(tp).is_some())
                .collect();
            if !local.is_empty() {
                shard.delete_partitions(local).await.map_err(|e| e.to_string())?;
                info!(topic = %topic.name, "topic deleted");
            }
            crate::groups::forget_committed_offsets(shard, &topic.name).await;
        }
    }
    Ok(())
}

/// Gives each local replica of `topic` its role from the metadata (sole
/// replica, leader with its ISR, or follower of a leader) when its
/// assignment changed, so batches, OffsetForLeaderEpoch, Metadata and the
/// high watermark agree with the quorum.
async fn set_roles(shard: &Rc<Shard>, me: NodeId, old: &MetadataImage, topic: &TopicInfo) -> Result<(), String> {
    for (i, p) in topic.partitions.iter().enumerate() {
        if !p.replicas.contains(&me) {
            continue;
        }
        let before = old.topics.get(&topic.name).filter(|b| b.id == topic.id).and_then(|b| b.partitions.get(i));
        if before == Some(p) {
            continue;
        }
        let tp = TopicPartition::new(topic.name.clone(), i as i32);
        if shard.owner(&tp).is_none() {
            continue;
        }
        let role = replica_role(me, p);
        if let (Role::Leader(_), Some(b)) = (&role, before) {
            if b.leader != me && !b.isr.contains(&me) {
                warn!(partition = %tp, "unclean leader election: this replica leads without having been in the ISR");
            }
        }
        shard.set_role(&tp, role).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// This node's role for a partition it holds a replica of.
pub(crate) fn replica_role(me: NodeId, p: &PartitionInfo) -> Role {
    let epoch = ringstream_core::types::LeaderEpoch(p.leader_epoch);
    if p.leader != me {
        return Role::Follower { leader: p.leader, epoch };
    }
    if p.replicas.len() == 1 {
        return Role::Sole { epoch };
    }
    Role::Leader(LeaderAssignment {
        local: me,
        epoch,
        partition_epoch: p.partition_epoch,
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
    })
}

/// Reads one frame: (kind, payload), the length checked before allocating.
async fn read_frame(stream: &mut TcpStream) -> Result<(u8, Vec<u8>), FrameError> {
    let mut header = [0u8; wire::header_bytes];
    stream.read_exact(&mut header).await.map_err(|e| FrameError::Malformed("frame", e.to_string()))?;
    let (kind, len) = wire::decode_header(header)?;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.map_err(|e| FrameError::Malformed("frame", e.to_string()))?;
    Ok((kind, payload))
}

async fn tick_loop(node: Rc<ClusterNode>) {
    let mut last_expire = Instant::now();
    let mut last_rebalance = Instant::now();
    while !node.stopping.get() {
        glommio::timer::sleep(Duration::from_millis(quorum::tick_ms)).await;
        if let Some(q) = &node.quorum {
            q.borrow_mut().tick();
        }
        node.drive().await;
        let (leader, ready) =
            node.quorum.as_ref().map_or((false, false), |q| (q.borrow().is_leader(), q.borrow().ready_to_decide()));
        if !leader {
            node.leader_ready.set(false);
        } else if ready && !node.leader_ready.get() {
            // Caught up as the new leader: every registered broker gets a
            // fresh session to reach it (Kafka's controller does the same).
            node.leader_ready.set(true);
            node.liveness.borrow_mut().reset(&node.decision_image(), now_ms());
            last_expire = Instant::now();
        }
        if leader && node.leader_ready.get() && last_expire.elapsed() >= Duration::from_millis(250) {
            last_expire = Instant::now();
            let n = node.clone();
            glommio::spawn_local(async move { n.expire_sessions().await }).detach();
        }
        let rebalance_every = Duration::from_millis(node.settings.leader_imbalance_check_interval_ms as u64);
        if leader && node.leader_ready.get() && node.settings.auto_leader_rebalance {
            if last_rebalance.elapsed() >= rebalance_every {
                last_rebalance = Instant::now();
                let n = node.clone();
                glommio::spawn_local(async move { n.rebalance_leaders().await }).detach();
            }
        } else {
            last_rebalance = Instant::now();
        }
    }
}

/// One outbound connection to a voter, carrying this node's Raft messages.
async fn peer_loop(node: Rc<ClusterNode>, voter: Voter, queue: local_channel::LocalReceiver<Vec<u8>>) {
    let mut logged = false;
    while !node.stopping.get() {
        let connected = async {
            let mut stream = TcpStream::connect(voter.address()).await.map_err(|e| e.to_string())?;
            let hello = Hello { cluster_id: node.cluster_id.clone(), node_id: node.node_id };
            stream.write_all(&wire::encode_json(wire::KIND_HELLO, &hello)).await.map_err(|e| e.to_string())?;
            Ok::<TcpStream, String>(stream)
        }
        .await;
        let mut stream = match connected {
            Ok(stream) => {
                debug!(peer = voter.id, "connected to voter");
                logged = false;
                stream
            }
            Err(e) => {
                if !logged {
                    info!(peer = voter.id, address = %voter.address(), error = %e, "voter unreachable; retrying");
                    logged = true;
                }
                glommio::timer::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while let Some(frame) = queue.recv().await {
            if stream.write_all(&frame).await.is_err() {
                break;
            }
        }
    }
}

async fn accept_loop(node: Rc<ClusterNode>, listener: TcpListener) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                warn!(error = %e, "controller listener accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.get() >= limits::controller_connections_max {
            warn!("too many controller connections; closing a new one");
            continue;
        }
        open.set(open.get() + 1);
        let (node, open) = (node.clone(), open.clone());
        glommio::spawn_local(async move {
            let peer = stream.peer_addr().ok();
            if let Err(e) = serve_connection(&node, stream).await {
                debug!(peer = ?peer, error = %e, "controller connection closed");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

async fn serve_connection(node: &Rc<ClusterNode>, mut stream: TcpStream) -> Result<(), String> {
    let (kind, payload) = read_frame(&mut stream).await.map_err(|e| e.to_string())?;
    if kind != wire::KIND_HELLO {
        warn!(kind, "controller connection did not start with a hello; closing");
        return Err("no hello".into());
    }
    let hello: Hello = wire::decode_json("hello", &payload).map_err(|e| e.to_string())?;
    if hello.cluster_id != node.cluster_id {
        let why = format!(
            "INCONSISTENT_CLUSTER_ID: node {} belongs to cluster.id {:?}, this node to {:?}",
            hello.node_id, hello.cluster_id, node.cluster_id
        );
        warn!("{why}");
        let _ = stream.write_all(&wire::encode_frame(wire::KIND_REFUSED, why.as_bytes())).await;
        return Err(why);
    }
    loop {
        let (kind, payload) = match read_frame(&mut stream).await {
            Ok(frame) => frame,
            Err(FrameError::Malformed(_, _)) => return Ok(()), // closed
            Err(e) => {
                warn!(peer = hello.node_id, error = %e, "bad controller frame; closing the connection");
                return Err(e.to_string());
            }
        };
        match kind {
            wire::KIND_RAFT => {
                let Some(quorum) = &node.quorum else {
                    return Err("raft message to a node without the controller role".into());
                };
                let message = QuorumNode::decode_message(&payload).map_err(|e| {
                    warn!(peer = hello.node_id, error = %e, "malformed raft message; closing the connection");
                    e
                })?;
                node.peer_heard.borrow_mut().insert(quorum::node_id(message.from.max(1)), now_ms());
                if let Err(e) = quorum.borrow_mut().step(message) {
                    debug!(peer = hello.node_id, error = %e, "raft message refused");
                }
                node.drive().await;
            }
            wire::KIND_REQUEST => {
                let request: Request = wire::decode_json("request", &payload).map_err(|e| {
                    warn!(peer = hello.node_id, error = %e, "malformed controller request; closing the connection");
                    e.to_string()
                })?;
                let body = node.handle(request.body).await;
                let response = Response { id: request.id, body };
                stream
                    .write_all(&wire::encode_json(wire::KIND_RESPONSE, &response))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            other => {
                warn!(peer = hello.node_id, kind = other, "unexpected controller frame; closing the connection");
                return Err(format!("unexpected frame kind {other}"));
            }
        }
    }
}

/// The broker's loop: register, then heartbeat; tracks whether this broker
/// may serve (unfenced, and its session with the controller alive).
async fn broker_loop(node: Rc<ClusterNode>) {
    let interval = Duration::from_millis(node.settings.heartbeat_interval_ms as u64);
    let session = Duration::from_millis(node.settings.session_timeout_ms as u64);
    let mut imported = false;
    while !node.stopping.get() {
        if node.registration.get().is_none() && !node.register().await {
            glommio::timer::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let Some((epoch, _)) = node.registration.get() else { continue };
        let started = Instant::now();
        // A heartbeat is worth sending for a session at most.
        let heartbeat = RequestBody::Heartbeat { id: node.node_id, epoch, shutting_down: false };
        let answer = node.call_controller_within(heartbeat, session).await;
        if node.stopping.get() {
            break;
        }
        match answer {
            ResponseBody::Heartbeat { fenced, offset, .. } => {
                node.last_heartbeat_ok.set(Some(started));
                node.registration.set(Some((epoch, !fenced)));
                node.wait_for_offset(offset).await;
                node.set_serving(!fenced);
                if !fenced && !imported {
                    imported = import_local_topics(&node).await && create_eager_topics(&node).await;
                    node.initialized.set(imported);
                }
            }
            ResponseBody::Error { code, message, .. }
                if code == error_code::STALE_BROKER_EPOCH || code == error_code::BROKER_ID_NOT_REGISTERED =>
            {
                warn!(%message, "registering again");
                node.registration.set(None);
                node.set_serving(false);
                continue;
            }
            other => debug!(answer = ?other, "heartbeat not answered"),
        }
        glommio::timer::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

/// Without a heartbeat answer for a whole session the controller has
/// fenced this broker (or will): stop serving rather than serve leadership
/// it may have given away. Checked every tick, apart from the heartbeats,
/// which may be stuck waiting for an answer.
async fn lease_loop(node: Rc<ClusterNode>) {
    let session = Duration::from_millis(node.settings.session_timeout_ms as u64);
    while !node.stopping.get() {
        glommio::timer::sleep(Duration::from_millis(quorum::tick_ms)).await;
        let expired = node.last_heartbeat_ok.get().map_or(true, |t| t.elapsed() > session);
        if expired && node.serving.get() {
            warn!(session_ms = node.settings.session_timeout_ms, "no answer from the active controller for a session");
            node.set_serving(false);
        }
    }
}

/// A data dir from a single-node broker keeps its topics: each topic in the
/// local topic table that the cluster does not know is created with its id
/// and with this broker as its only replica. Returns whether all went in.
async fn import_local_topics(node: &Rc<ClusterNode>) -> bool {
    let data_dir = node.shard.storage.config().data_dir.clone();
    let Ok(table) = crate::broker::topics::TopicTable::load(&data_dir) else { return true };
    if table.is_empty() {
        return true;
    }
    let mut all = true;
    for topic in table.iter() {
        if node.image().topics.contains_key(&topic.name) {
            continue;
        }
        let new = NewTopic {
            name: topic.name.clone(),
            partitions: topic.partitions,
            replication_factor: 1,
            configs: topic.configs.clone(),
            id: Some(topic.id),
            replicas: Some(vec![node.node_id]),
            assignment: None,
        };
        match node.call_controller(RequestBody::CreateTopic { topic: new, validate_only: false }).await {
            ResponseBody::TopicCreated { offset, .. } => {
                info!(topic = %topic.name, "imported a topic from this data dir into the cluster metadata");
                node.wait_for_offset(offset).await;
            }
            ResponseBody::Error { code, .. } if code == error_code::TOPIC_ALREADY_EXISTS => {}
            other => {
                warn!(topic = %topic.name, answer = ?other, "could not import a local topic into the cluster");
                all = false;
            }
        }
    }
    if all {
        // The metadata log is the topic table from now on.
        let from = data_dir.join(crate::broker::topics::TOPICS_FILE_NAME);
        let to = data_dir.join(format!("{}.imported", crate::broker::topics::TOPICS_FILE_NAME));
        if let Err(e) = std::fs::rename(&from, &to).and_then(|_| std::fs::File::open(&data_dir)?.sync_all()) {
            warn!(error = %e, "could not retire the imported topics file");
            return false;
        }
    }
    all
}

/// Topics this node makes sure exist once it serves (the offsets topic in
/// a one-node quorum, so groups work from the first request).
async fn create_eager_topics(node: &Rc<ClusterNode>) -> bool {
    for topic in node.eager_topics.clone() {
        if node.image().topics.contains_key(&topic.name) {
            continue;
        }
        match node.call_controller(RequestBody::CreateTopic { topic: topic.clone(), validate_only: false }).await {
            ResponseBody::TopicCreated { offset, .. } => node.wait_for_offset(offset).await,
            ResponseBody::Error { code, .. } if code == error_code::TOPIC_ALREADY_EXISTS => {}
            other => {
                warn!(topic = %topic.name, answer = ?other, "could not create an internal topic");
                return false;
            }
        }
    }
    true
}

/// A node without the controller role follows the metadata log by fetching
/// committed entries from the controllers, as KRaft brokers do.
async fn follow_loop(node: Rc<ClusterNode>) {
    let mut image = (*node.image()).clone();
    while !node.stopping.get() {
        let answer = node.call_controller(RequestBody::FetchMetadata { from: image.offset + 1 }).await;
        let mut changed = false;
        match answer {
            ResponseBody::Entries { entries, leader } => {
                if leader.is_some() && leader != node.leader_hint.get() {
                    node.leader_hint.set(leader);
                    changed = true;
                }
                for (index, records) in entries {
                    if index <= image.offset {
                        continue;
                    }
                    if let Err(e) = image.apply_entry(index, &records) {
                        tracing::error!(index, error = %e, "fetched metadata cannot be applied");
                        break;
                    }
                    changed = true;
                }
            }
            ResponseBody::Image { image: fetched, leader } => {
                node.leader_hint.set(leader.or(node.leader_hint.get()));
                if fetched.offset > image.offset {
                    image = *fetched;
                    changed = true;
                }
            }
            other => debug!(answer = ?other, "metadata fetch failed"),
        }
        if changed {
            node.publish(Arc::new(image.clone())).await;
        } else {
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
    }
}
