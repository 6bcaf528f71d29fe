//! The Kafka broker on top of the shards: per-shard broker state, the topic
//! table, listening and connections. Handlers (one per Kafka API) live in
//! `crate::handlers`.
//!
//! Runs on: every shard. Each shard binds the same port (SO_REUSEPORT, set
//! by glommio), accepts its share of connections and serves them; requests
//! for partitions owned elsewhere go through the router. Topic changes go
//! to the active controller (`cluster`); each shard's topic table follows
//! its copy of the metadata image.

pub mod cluster;
pub mod fetch_sessions;
pub mod peer;
pub mod replication;
pub mod topics;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use tracing::info;

use ringstream_core::limits;
use ringstream_core::types::{is_valid_topic_name, ShardId, TopicPartition};
use ringstream_protocol::error_code;
use ringstream_shard::Shard;
use topics::{apply_topic_configs, TopicMeta, TopicTable};

pub use crate::config::BrokerConfig;

/// One shard's broker: its shard, the broker settings and its copy of the
/// topic table.
pub struct Broker {
    pub shard: Rc<Shard>,
    pub config: Arc<BrokerConfig>,
    topics: RefCell<TopicTable>,
    /// Incremental fetch sessions of the connections on this shard.
    pub fetch_sessions: RefCell<fetch_sessions::FetchSessionCache>,
    /// Shard 0 only: one read-modify-write of topic configs at a time from
    /// this broker (IncrementalAlterConfigs reads the current configs, then
    /// asks the controller to set the result).
    control: Rc<glommio::sync::Semaphore>,
    /// This shard's metric cells (connections, request latency, bytes out).
    pub metrics: ringstream_core::metrics::Local,
    /// The metadata offset `topics` was last rebuilt from (the topic table
    /// follows the shard's metadata image, `Shard::metadata`).
    topics_offset: std::cell::Cell<Option<u64>>,
    /// Shard 0 in a cluster: this node's quorum member and controller client.
    cluster_node: RefCell<Option<Rc<cluster::ClusterNode>>>,
    /// Partitions this shard has served consumers as a follower (KIP-392), logged once each.
    follower_reads: RefCell<std::collections::BTreeSet<(String, i32)>>,
}

/// What a shard knows of the cluster: `ringstream_cluster::MetadataView`.
pub type ClusterView = ringstream_cluster::MetadataView;

/// Where a partition is led, for a request that reached another broker.
#[derive(Clone, Debug)]
pub struct LeaderHint {
    pub leader: i32,
    pub leader_epoch: i32,
}

thread_local! {
    /// The broker of the shard running on this thread (thread-per-core).
    static BROKER: RefCell<Option<Rc<Broker>>> = const { RefCell::new(None) };
}

/// The broker installed on this shard.
pub fn local() -> Rc<Broker> {
    BROKER.with(|b| b.borrow().clone()).expect("broker installed on this shard")
}

/// A topic-level failure, as a Kafka error code plus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    pub code: i16,
    pub message: String,
}

impl TopicError {
    pub fn new(code: i16, message: impl Into<String>) -> TopicError {
        TopicError { code, message: message.into() }
    }
}

/// The topic table as consumer groups see it: the coordinator is handed
/// this view at install and never reaches for the broker.
impl crate::groups::consumer::TopicView for Broker {
    fn partitions(&self, topic: &str) -> Option<i32> {
        self.topic(topic).map(|t| t.partitions)
    }

    fn names(&self) -> Vec<String> {
        self.sync_topics();
        self.topics.borrow().iter().map(|t| t.name.clone()).collect()
    }

    fn coordinates(&self, partition: i32) -> bool {
        self.leadership(crate::groups::OFFSETS_TOPIC, partition).is_ok()
    }

    fn offsets_leader_epoch(&self, partition: i32) -> Option<i32> {
        match self.shard.metadata() {
            None => Some(0),
            Some(_) if self.coordinates(partition) => self.leader_epoch(crate::groups::OFFSETS_TOPIC, partition),
            Some(_) => None,
        }
    }
}

impl Broker {
    /// Takes shard 0's control-plane lock.
    async fn control_lock(&self) -> Result<glommio::sync::StaticPermit, TopicError> {
        assert_eq!(self.shard.id, ShardId(0), "topic changes run on shard 0");
        self.control
            .acquire_static_permit(1)
            .await
            .map_err(|_| TopicError::new(error_code::NOT_LEADER_OR_FOLLOWER, "broker is shutting down"))
    }
}

fn storage_error(e: ringstream_storage::StorageError) -> TopicError {
    TopicError::new(e.kafka_error_code(), e.to_string())
}

impl Broker {
    /// Installs the broker on the current shard and applies topic configs to
    /// the partitions this shard owns.
    pub fn install(shard: Rc<Shard>, config: Arc<BrokerConfig>, topics: TopicTable) -> Result<Rc<Broker>, String> {
        let shard_id = shard.id;
        let defaults = crate::config::log_defaults(&shard.storage);
        for tp in shard.storage.partitions() {
            if let Some(topic) = topics.get(&tp.topic) {
                let log = topic.log_config(&defaults).map_err(|e| format!("topic {}: {e}", topic.name))?;
                shard.storage.set_log_config(&tp, log).map_err(|e| e.to_string())?;
            }
        }
        let broker = Rc::new(Broker {
            shard,
            config,
            topics: RefCell::new(topics),
            fetch_sessions: RefCell::new(fetch_sessions::FetchSessionCache::for_shard(shard_id.0)),
            control: Rc::new(glommio::sync::Semaphore::new(1)),
            metrics: ringstream_core::metrics::local_or_detached(shard_id),
            topics_offset: std::cell::Cell::new(None),
            cluster_node: RefCell::new(None),
            follower_reads: RefCell::new(std::collections::BTreeSet::new()),
        });
        BROKER.with(|b| *b.borrow_mut() = Some(broker.clone()));
        Ok(broker)
    }

    /// Shard 0: attaches this node's cluster member.
    pub fn attach_cluster(&self, node: Rc<cluster::ClusterNode>) {
        assert_eq!(self.shard.id, ShardId(0));
        *self.cluster_node.borrow_mut() = Some(node);
    }

    /// Shard 0 in a cluster: this node's cluster member.
    pub fn cluster_node(&self) -> Option<Rc<cluster::ClusterNode>> {
        self.cluster_node.borrow().clone()
    }

    /// This shard's view of the cluster (None until the first image arrives).
    pub fn cluster(&self) -> Option<ClusterView> {
        self.shard.metadata()
    }

    /// Rebuilds this shard's topic table when its metadata image moved on.
    fn sync_topics(&self) {
        let Some(view) = self.shard.metadata() else { return };
        if self.topics_offset.get() == Some(view.image.offset) {
            return;
        }
        let image = view.image;
        let mut table = TopicTable::default();
        for topic in image.topics.values() {
            if Broker::is_internal(&topic.name) {
                continue;
            }
            table.insert(TopicMeta {
                name: topic.name.clone(),
                id: topic.id,
                partitions: topic.partitions.len() as i32,
                configs: topic.configs.clone(),
            });
        }
        *self.topics.borrow_mut() = table;
        self.topics_offset.set(Some(image.offset));
    }

    /// Whether this broker leads `topic`/`partition` and may serve it; if
    /// not, where it is led (leader -1: offline or unknown).
    pub fn leadership(&self, topic: &str, partition: i32) -> Result<(), LeaderHint> {
        let Some(view) = self.shard.metadata() else { return Ok(()) };
        let me = self.config.node_id;
        match view.image.partition(topic, partition) {
            Some(p) if p.leader == me && view.serving => Ok(()),
            Some(p) if p.leader == me => Err(LeaderHint { leader: -1, leader_epoch: p.leader_epoch }),
            Some(p) => Err(LeaderHint { leader: p.leader, leader_epoch: p.leader_epoch }),
            None => Err(LeaderHint { leader: -1, leader_epoch: -1 }),
        }
    }

    /// ElectLeaders through the controller: (topic, partition, code,
    /// message) per partition.
    pub async fn elect_leaders(
        &self,
        partitions: Option<Vec<(String, i32)>>,
        unclean: bool,
    ) -> Result<Vec<(String, i32, i16, String)>, TopicError> {
        self.partition_results(ringstream_cluster::wire::RequestBody::ElectLeaders { partitions, unclean }).await
    }

    /// A controller request answered partition by partition.
    async fn partition_results(
        &self,
        body: ringstream_cluster::wire::RequestBody,
    ) -> Result<Vec<(String, i32, i16, String)>, TopicError> {
        use ringstream_cluster::wire::ResponseBody;
        match self.ask_controller(body).await? {
            ResponseBody::PartitionResults { results, .. } => Ok(results),
            other => Err(TopicError::new(error_code::UNKNOWN_SERVER_ERROR, format!("unexpected answer {other:?}"))),
        }
    }

    /// AlterPartitionReassignments through the controller: (topic,
    /// partition, code, message) per partition.
    pub async fn reassign(
        &self,
        partitions: Vec<(String, i32, Option<Vec<i32>>)>,
        allow_rf_change: bool,
    ) -> Result<Vec<(String, i32, i16, String)>, TopicError> {
        self.partition_results(ringstream_cluster::wire::RequestBody::Reassign { partitions, allow_rf_change }).await
    }

    /// Whether this node holds a replica of the partition (KIP-392: a
    /// follower serves consumers that fetch from it).
    pub fn holds_replica(&self, topic: &str, partition: i32) -> bool {
        let Some(view) = self.shard.metadata() else { return false };
        let me = self.config.node_id;
        view.serving
            && view.image.partition(topic, partition).is_some_and(|p| p.replicas.contains(&me))
            && self.shard.owner(&TopicPartition::new(topic, partition)).is_some()
    }

    /// KIP-392 with `replica.selector.class` rack-aware: the in-sync replica
    /// in the consumer's rack, if the leader (this node) is not in it; -1
    /// to read here.
    pub fn preferred_read_replica(&self, topic: &str, partition: i32, rack: &str) -> i32 {
        if !self.config.cluster.rack_aware_reads || rack.is_empty() {
            return -1;
        }
        let Some(view) = self.shard.metadata() else { return -1 };
        let in_rack =
            |id: &i32| view.image.brokers.get(id).is_some_and(|b| !b.fenced && b.rack.as_deref() == Some(rack));
        if in_rack(&self.config.node_id) {
            return -1;
        }
        let Some(p) = view.image.partition(topic, partition) else { return -1 };
        p.isr.iter().copied().find(|r| *r != self.config.node_id && in_rack(r)).unwrap_or(-1)
    }

    /// Logs the first consumer fetch this follower serves per partition.
    pub fn note_follower_read(&self, topic: &str, partition: i32) {
        let key = (topic.to_owned(), partition);
        if self.follower_reads.borrow().contains(&key)
            || self.follower_reads.borrow().len() >= limits::topic_partitions_max as usize
        {
            return;
        }
        info!(topic, partition, "serving consumers as a follower (KIP-392)");
        self.follower_reads.borrow_mut().insert(key);
    }

    /// The leader epoch of a partition as the metadata has it, if known.
    pub fn leader_epoch(&self, topic: &str, partition: i32) -> Option<i32> {
        let view = self.shard.metadata()?;
        view.image.partition(topic, partition).map(|p| p.leader_epoch)
    }

    /// Runs `call` with this node's cluster member, on shard 0.
    async fn with_cluster<T, F, Fut>(&self, call: F) -> Result<T, TopicError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<cluster::ClusterNode>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        // A closure (see `Shard::run_on`): the cluster member is the broker's, on shard 0.
        self.shard
            .run_on(ShardId(0), move |_| async move {
                let node = local().cluster_node.borrow().clone().expect("cluster node on shard 0");
                call(node).await
            })
            .await
            .map_err(storage_error)
    }

    /// Sends a request to the active controller and waits until this
    /// node's shards have the metadata it produced.
    async fn ask_controller(
        &self,
        body: ringstream_cluster::wire::RequestBody,
    ) -> Result<ringstream_cluster::wire::ResponseBody, TopicError> {
        use ringstream_cluster::wire::ResponseBody;
        let answer = self
            .with_cluster(move |node| async move {
                let answer = node.call_controller(body).await;
                let offset = match &answer {
                    ResponseBody::Done { offset }
                    | ResponseBody::TopicCreated { offset, .. }
                    | ResponseBody::PartitionResults { offset, .. } => Some(*offset),
                    _ => None,
                };
                if let Some(offset) = offset {
                    node.wait_for_offset(offset).await;
                }
                answer
            })
            .await?;
        match answer {
            ResponseBody::Error { code, message, .. } => Err(TopicError::new(code, message)),
            answer => Ok(answer),
        }
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.sync_topics();
        self.topics.borrow().get(name).cloned()
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<TopicMeta> {
        self.sync_topics();
        self.topics.borrow().by_id(id).cloned()
    }

    pub fn topics(&self) -> Vec<TopicMeta> {
        self.sync_topics();
        self.topics.borrow().iter().cloned().collect()
    }

    /// The internal offsets topic as clients see it in Metadata
    /// (`is_internal`): its partition count, and a topic id derived from
    /// the cluster id, so it is stable across restarts. It is not in the
    /// topic table: clients cannot produce to it, delete it or create it.
    pub fn offsets_topic(&self) -> TopicMeta {
        self.internal_topic(crate::groups::OFFSETS_TOPIC)
    }

    /// An internal topic (`__consumer_offsets` or `__transaction_state`)
    /// as clients see it.
    pub fn internal_topic(&self, name: &str) -> TopicMeta {
        let seed = format!("{name}/{}", self.config.cluster_id);
        let mut id = [0u8; 16];
        for (i, chunk) in id.chunks_mut(4).enumerate() {
            let word = crc32c::crc32c_append(i as u32, seed.as_bytes());
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        id[6] = (id[6] & 0x0f) | 0x40; // RFC 4122 version 4 layout
        id[8] = (id[8] & 0x3f) | 0x80;
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
        let partitions = if name == crate::broker::topics::TXN_TOPIC {
            self.txn_partitions()
        } else {
            self.config.groups.offsets_topic_partitions
        };
        TopicMeta { name: name.to_owned(), id, partitions, configs }
    }

    /// acks=all after the local append: waits until the high watermark passes
    /// `last_offset` (every ISR replica has the batch), up to the request's
    /// timeout. Kafka's answers: REQUEST_TIMED_OUT when it does not in time,
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below
    /// `min.insync.replicas` meanwhile, NOT_LEADER_OR_FOLLOWER when this
    /// broker lost the leadership (the batch may yet be truncated away).
    pub async fn committed(
        &self,
        topic: &str,
        partition: i32,
        last_offset: ringstream_core::types::Offset,
        timeout: std::time::Duration,
    ) -> i16 {
        let Some(view) = self.cluster() else { return error_code::NONE };
        let Some(info) = view.image.partition(topic, partition) else { return error_code::NONE };
        if info.replicas.len() <= 1 {
            return error_code::NONE; // the sole replica: durable is committed
        }
        let tp = TopicPartition::new(topic, partition);
        match self.shard.wait_committed(&tp, last_offset, timeout).await {
            Ok(true) => {}
            Ok(false) => return error_code::REQUEST_TIMED_OUT,
            Err(e) => return e.kafka_error_code(),
        }
        let Some(view) = self.cluster() else { return error_code::NONE };
        let Some(info) = view.image.partition(topic, partition) else { return error_code::UNKNOWN_TOPIC_OR_PARTITION };
        let configs = view.image.topics.get(topic).map(|t| t.configs.clone()).unwrap_or_default();
        if info.leader != self.config.node_id {
            return error_code::NOT_LEADER_OR_FOLLOWER;
        }
        if info.isr.len() < min_insync(&configs) {
            return error_code::NOT_ENOUGH_REPLICAS_AFTER_APPEND;
        }
        error_code::NONE
    }

    /// A topic by name, internal ones included once the controller has
    /// placed them (Fetch and ListOffsets serve them, as Kafka does).
    pub fn topic_or_internal(&self, name: &str) -> Option<TopicMeta> {
        self.topic(name).or_else(|| {
            let placed = Broker::is_internal(name) && self.cluster().is_some_and(|v| v.image.topics.contains_key(name));
            placed.then(|| self.internal_topic(name))
        })
    }

    /// The transaction log's partition count: as created (changing
    /// `transaction.state.log.num.partitions` later would move ids), or as
    /// configured before it exists.
    pub fn txn_partitions(&self) -> i32 {
        self.cluster()
            .and_then(|view| view.image.topics.get(crate::broker::topics::TXN_TOPIC).map(|t| t.partitions.len() as i32))
            .filter(|n| *n > 0)
            .unwrap_or(self.config.txn.state_log_partitions)
    }

    /// Whether `name` is an internal topic (Kafka's `Topic.isInternal`).
    pub fn is_internal(name: &str) -> bool {
        name == crate::groups::OFFSETS_TOPIC || name == crate::broker::topics::TXN_TOPIC
    }

    /// Creates a topic (on shard 0, wherever it is called from). With
    /// `validate_only`, only checks. Returns the topic as created.
    pub async fn create_topic(
        &self,
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicError> {
        self.create_topic_assigned(name, partitions, replication_factor, configs, validate_only, None).await
    }

    /// `create_topic` with CreateTopics' manual assignment, when given: the
    /// replicas of each partition.
    pub async fn create_topic_assigned(
        &self,
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        assignment: Option<Vec<Vec<i32>>>,
    ) -> Result<TopicMeta, TopicError> {
        let partitions = if partitions == -1 { self.config.num_partitions } else { partitions };
        let replication_factor =
            if replication_factor == -1 { self.config.default_replication_factor } else { replication_factor };
        if !is_valid_topic_name(&name) {
            return Err(TopicError::new(error_code::INVALID_TOPIC_EXCEPTION, format!("invalid topic name {name:?}")));
        }
        if Broker::is_internal(&name) {
            return Err(TopicError::new(error_code::TOPIC_ALREADY_EXISTS, format!("{name:?} is an internal topic")));
        }
        if !(1..=limits::topic_partitions_max).contains(&partitions) {
            return Err(TopicError::new(
                error_code::INVALID_PARTITIONS,
                format!("partition count {partitions} out of range"),
            ));
        }
        let defaults = crate::config::log_defaults(&self.shard.storage);
        apply_topic_configs(&defaults, &configs).map_err(|e| TopicError::new(error_code::INVALID_CONFIG, e))?;
        if self.topic(&name).is_some() {
            return Err(TopicError::new(error_code::TOPIC_ALREADY_EXISTS, format!("topic {name:?} already exists")));
        }
        // The controller places it (and refuses what it cannot place).
        self.create_topic_in_cluster(name, partitions, replication_factor, configs, validate_only, assignment).await
    }

    /// In a cluster, where the coordinator of offsets-log partition
    /// `partition` is: Ok((node, host, port)), or the error to answer
    /// FindCoordinator with. The offsets topic is created (placed across
    /// the brokers by the controller) on first use, as Kafka creates it.
    pub async fn offsets_coordinator(&self, partition: i32) -> Result<(i32, String, i32), TopicError> {
        self.internal_coordinator(crate::groups::OFFSETS_TOPIC, partition).await
    }

    /// `offsets_coordinator` for either internal topic: the leader of
    /// `topic`/`partition`, the topic created on first use.
    pub async fn internal_coordinator(&self, topic: &str, partition: i32) -> Result<(i32, String, i32), TopicError> {
        let Some(view) = self.cluster() else {
            return Ok((self.config.node_id, self.config.advertised_host.clone(), self.config.advertised_port));
        };
        let not_available = |why: &str| TopicError::new(error_code::COORDINATOR_NOT_AVAILABLE, why);
        let Some(placed) = view.image.topics.get(topic) else {
            use ringstream_cluster::wire::RequestBody;
            let new = self.internal_new_topic(topic);
            match self.ask_controller(RequestBody::CreateTopic { topic: new, validate_only: false }).await {
                Ok(_) => {}
                Err(e) if e.code == error_code::TOPIC_ALREADY_EXISTS => {}
                Err(e) => return Err(not_available(&format!("creating {topic}: {}", e.message))),
            }
            // Created and on every shard: answer from the new image.
            return match self.cluster().and_then(|v| v.image.topics.get(topic).cloned()) {
                Some(_) => Box::pin(self.internal_coordinator(topic, partition)).await,
                None => Err(not_available(&format!("{topic} is being created"))),
            };
        };
        let leader = placed.partitions.get(partition as usize).map_or(-1, |p| p.leader);
        match view.image.brokers.get(&leader) {
            Some(b) if !b.fenced => Ok((b.id, b.host.clone(), b.port)),
            _ => Err(not_available("the coordinator's partition has no leader")),
        }
    }

    /// The quorum's state from its leader, the registered brokers that are
    /// not voters (observers), and the voters' controller endpoints.
    pub async fn describe_quorum(
        &self,
    ) -> Result<(ringstream_cluster::wire::QuorumState, Vec<i32>, Vec<ringstream_cluster::Voter>), TopicError> {
        use ringstream_cluster::wire::{RequestBody, ResponseBody};
        let view = self.cluster().ok_or_else(|| TopicError::new(error_code::NOT_CONTROLLER, "no quorum"))?;
        let voters = self.config.cluster.voters.clone();
        match self.ask_controller(RequestBody::DescribeQuorum).await? {
            ResponseBody::Quorum(state) => {
                let observers =
                    view.image.brokers.keys().copied().filter(|id| !voters.iter().any(|v| v.id == *id)).collect();
                Ok((state, observers, voters))
            }
            other => Err(TopicError::new(error_code::UNKNOWN_SERVER_ERROR, format!("unexpected answer {other:?}"))),
        }
    }

    /// The offsets topic as the controller creates it (placed across the
    /// brokers, its id derived from the cluster id as for a single node).
    pub fn offsets_new_topic(&self) -> ringstream_cluster::wire::NewTopic {
        self.internal_new_topic(crate::groups::OFFSETS_TOPIC)
    }

    /// An internal topic as the controller creates it.
    pub fn internal_new_topic(&self, name: &str) -> ringstream_cluster::wire::NewTopic {
        let meta = self.internal_topic(name);
        let replication_factor = if name == crate::broker::topics::TXN_TOPIC {
            self.config.txn.state_log_replication_factor
        } else {
            self.config.cluster.offsets_topic_replication_factor
        };
        ringstream_cluster::wire::NewTopic {
            name: meta.name,
            partitions: meta.partitions,
            replication_factor,
            configs: meta.configs,
            id: Some(meta.id),
            replicas: None,
            assignment: None,
        }
    }

    async fn create_topic_in_cluster(
        &self,
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        assignment: Option<Vec<Vec<i32>>>,
    ) -> Result<TopicMeta, TopicError> {
        use ringstream_cluster::wire::{NewTopic, RequestBody, ResponseBody};
        let topic = NewTopic {
            name: name.clone(),
            partitions,
            replication_factor,
            configs: configs.clone(),
            id: None,
            replicas: None,
            assignment,
        };
        match self.ask_controller(RequestBody::CreateTopic { topic, validate_only }).await? {
            ResponseBody::TopicCreated { id, partitions, .. } => {
                info!(topic = %name, partitions, "topic created");
                Ok(TopicMeta { name, id, partitions, configs })
            }
            _ => Ok(TopicMeta { name, id: [0; 16], partitions, configs }),
        }
    }

    /// Deletes a topic: it disappears from every shard's table first (no new
    /// request finds it), then its partitions and their data go.
    pub async fn delete_topic(&self, name: String) -> Result<(), TopicError> {
        if Broker::is_internal(&name) {
            return Err(TopicError::new(
                error_code::INVALID_TOPIC_EXCEPTION,
                format!("{name:?} is an internal topic and cannot be deleted"),
            ));
        }
        if self.topic(&name).is_none() {
            return Err(TopicError::new(error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown topic {name:?}")));
        }
        // Every broker drops the topic's data and committed offsets when it
        // applies the removal (`cluster::reconcile`).
        self.ask_controller(ringstream_cluster::wire::RequestBody::DeleteTopic { name }).await?;
        Ok(())
    }

    /// Raises a topic's partition count (Kafka never lowers it).
    pub async fn add_partitions(&self, name: String, count: i32, validate_only: bool) -> Result<(), TopicError> {
        let Some(topic) = self.topic(&name) else {
            return Err(TopicError::new(error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown topic {name:?}")));
        };
        if count <= topic.partitions {
            return Err(TopicError::new(
                error_code::INVALID_PARTITIONS,
                format!("topic {name:?} has {} partitions; the count can only grow", topic.partitions),
            ));
        }
        if count > limits::topic_partitions_max {
            return Err(TopicError::new(error_code::INVALID_PARTITIONS, format!("{count} partitions is too many")));
        }
        let body = ringstream_cluster::wire::RequestBody::CreatePartitions { name, count, validate_only };
        self.ask_controller(body).await.map(|_| ())
    }

    /// Replaces a topic's config overrides and applies them to its
    /// partitions' logs on their owners.
    pub async fn set_topic_configs(
        &self,
        name: String,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        self.update_topic_configs(name, validate_only, move |_, _| Ok(configs)).await
    }

    /// Read-modify-write of a topic's config overrides, done on shard 0 with
    /// no await between the read and the write, so concurrent changes (two
    /// IncrementalAlterConfigs from different shards) cannot lose one
    /// another. `update` gets the current overrides and the broker defaults.
    pub async fn update_topic_configs<F>(&self, name: String, validate_only: bool, update: F) -> Result<(), TopicError>
    where
        F: FnOnce(
                &BTreeMap<String, String>,
                &ringstream_storage::log::LogConfig,
            ) -> Result<BTreeMap<String, String>, TopicError>
            + Send
            + 'static,
    {
        if self.topic(&name).is_none() {
            return Err(TopicError::new(error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown topic {name:?}")));
        }
        // A closure (see `Shard::run_on`): topic changes are the broker's (shard 0 under its lock, then every shard).
        self.shard
            .run_on(ShardId(0), move |shard| async move {
                let broker = local();
                let _control = broker.control_lock().await?;
                let Some(topic) = broker.topic(&name) else {
                    return Err(TopicError::new(
                        error_code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("unknown topic {name:?}"),
                    ));
                };
                let defaults = crate::config::log_defaults(&shard.storage);
                let configs = update(&topic.configs, &defaults)?;
                apply_topic_configs(&defaults, &configs).map_err(|e| TopicError::new(error_code::INVALID_CONFIG, e))?;
                if validate_only {
                    return Ok(());
                }
                // The controller records it; every replica applies it from the metadata.
                let body = ringstream_cluster::wire::RequestBody::SetTopicConfigs { name, configs };
                broker.ask_controller(body).await.map(|_| ())
            })
            .await
            .map_err(storage_error)?
    }

    /// A new producer id for an idempotent producer: from a block the
    /// controller handed this broker, unique across the cluster.
    pub async fn allocate_producer_id(&self) -> Result<i64, TopicError> {
        self.with_cluster(|node| async move { node.producer_id().await })
            .await?
            .map_err(|e| TopicError::new(e.code, e.message))
    }

    /// The topic, created with broker defaults if it does not exist and
    /// auto-creation is on (and `allowed` by the request).
    pub async fn topic_or_create(&self, name: &str, allowed: bool) -> Result<TopicMeta, TopicError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        if !(allowed && self.config.auto_create_topics) {
            return Err(TopicError::new(error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown topic {name:?}")));
        }
        match self.create_topic(name.to_owned(), -1, -1, BTreeMap::new(), false).await {
            Ok(topic) => Ok(topic),
            // Another request created it meanwhile.
            Err(e) if e.code == error_code::TOPIC_ALREADY_EXISTS => self.topic(name).ok_or(e),
            Err(e) => Err(e),
        }
    }
}

/// A topic's `min.insync.replicas` (Kafka's default: 1).
pub fn min_insync(configs: &std::collections::BTreeMap<String, String>) -> usize {
    configs.get("min.insync.replicas").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).max(1)
}
