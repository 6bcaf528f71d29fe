//! Bootstrap, before any executor starts: ApiVersions, Metadata, CreateTopics
//! when the topic is missing, and ListOffsets (log end) for consumers; also
//! the versions of the group and InitProducerId APIs, which the connection
//! tasks speak later (`group.rs`, `producer.rs`). Uses
//! the project's blocking client (`ringstream_client`), which negotiates
//! versions and size-caps responses; the data path does not use it.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use ringstream_client::{describe_error, Client};

/// Produce and Fetch versions this client speaks. Fetch stops at 12, the
/// last version that names topics (13+ use topic ids).
pub const produce_version_min: i16 = 3;
pub const produce_version_max: i16 = 9;
pub const fetch_version_min: i16 = 4;
pub const fetch_version_max: i16 = 12;

/// The classic group protocol's APIs, in the version ranges `group.rs`
/// speaks: each request sets a field only from the version that has it.
/// FindCoordinator v4+ batches keys; OffsetFetch v8+ batches groups (not
/// spoken); OffsetCommit from v2 (the oldest the codec encodes) to v8 (v9
/// is KIP-848's).
const group_api_ranges: [(ApiKey, i16, i16); 7] = [
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
];
/// InitProducerId for idempotent producers (v3+ would also bump an epoch).
pub const init_producer_id_version_max: i16 = 4;

/// The versions both sides speak of each group API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupVersions {
    pub find_coordinator: i16,
    pub join_group: i16,
    pub sync_group: i16,
    pub heartbeat: i16,
    pub leave_group: i16,
    pub offset_commit: i16,
    pub offset_fetch: i16,
}

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION and LEADER_NOT_AVAILABLE.
const unknown_topic_or_partition: i16 = 3;
const leader_not_available: i16 = 5;
/// How long a new topic may take to show leaders for every partition.
const topic_ready_ms_max: u64 = 10_000;

/// Where each partition lives, and the versions to speak.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Partition index → leader address, for every partition of the topic.
    pub leaders: BTreeMap<i32, SocketAddr>,
    pub produce_version: i16,
    pub fetch_version: i16,
    /// Log end offset per partition when the run starts (consumers begin there).
    pub start_offsets: BTreeMap<i32, i64>,
    pub created: bool,
    /// Group API versions; an error naming the API when the broker lacks one.
    pub group_versions: Result<GroupVersions, String>,
    /// InitProducerId's version; None when the broker does not serve it.
    pub init_producer_id_version: Option<i16>,
}

/// The layout for a raw-TCP sink: every partition at `sink`.
pub fn sink_layout(sink: SocketAddr, partitions: i32) -> Layout {
    assert!(partitions > 0);
    Layout {
        leaders: (0..partitions).map(|p| (p, sink)).collect(),
        produce_version: produce_version_max,
        fetch_version: fetch_version_max,
        start_offsets: BTreeMap::new(),
        created: false,
        group_versions: Err("the raw-TCP sink has no groups".into()),
        init_producer_id_version: None,
    }
}

/// The group API versions `client` and this load generator share.
fn group_versions(client: &Client) -> Result<GroupVersions, String> {
    let mut found = [0i16; group_api_ranges.len()];
    for (slot, &(api, min, max)) in found.iter_mut().zip(group_api_ranges.iter()) {
        *slot =
            client.version_in(api, min, max).map_err(|_| format!("the broker does not serve {api:?} v{min}-{max}"))?;
    }
    let [find_coordinator, join_group, sync_group, heartbeat, leave_group, offset_commit, offset_fetch] = found;
    Ok(GroupVersions { find_coordinator, join_group, sync_group, heartbeat, leave_group, offset_commit, offset_fetch })
}

pub fn discover(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want_offsets: bool,
    timeout: Duration,
) -> Result<Layout, String> {
    let mut client = Client::connect(brokers, timeout).map_err(|e| format!("cannot reach broker {e}"))?;
    let produce_version = client
        .version_in(ApiKey::Produce, produce_version_min, produce_version_max)
        .map_err(|e| format!("{brokers}: {e}"))?;
    let fetch_version = client
        .version_in(ApiKey::Fetch, fetch_version_min, fetch_version_max)
        .map_err(|e| format!("{brokers}: {e}"))?;

    let mut created = false;
    let started = Instant::now();
    let (leaders, hosts) = loop {
        let response = metadata(&mut client, topic)?;
        let found = response.topics.iter().find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic));
        let code = found.map(|t| t.error_code).unwrap_or(unknown_topic_or_partition);
        if code == unknown_topic_or_partition && !created {
            create_topic(&mut client, topic, partitions)?;
            created = true;
            continue;
        }
        let retry = code == unknown_topic_or_partition || code == leader_not_available;
        if code != 0 && !retry {
            return Err(format!("Metadata for topic {topic:?}: {}", describe_error(code, None)));
        }
        if let Some(found) = found.filter(|_| code == 0) {
            let leaders: Vec<(i32, i32, i16)> =
                found.partitions.iter().map(|p| (p.partition_index, p.leader_id.0, p.error_code)).collect();
            if !leaders.is_empty() && leaders.iter().all(|&(_, leader, code)| leader >= 0 && code == 0) {
                let hosts: HashMap<i32, String> =
                    response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
                break (leaders, hosts);
            }
        }
        if started.elapsed() > Duration::from_millis(topic_ready_ms_max) {
            return Err(format!("topic {topic:?} has no leader for every partition after {topic_ready_ms_max} ms"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !created && leaders.len() != partitions as usize {
        eprintln!(
            "note: topic {topic:?} exists with {} partitions; using them (--partitions {partitions} applies only when creating it)",
            leaders.len()
        );
    }

    let mut addresses = BTreeMap::new();
    for (partition, leader, _) in &leaders {
        let host =
            hosts.get(leader).ok_or_else(|| format!("partition {partition}: leader {leader} not among the brokers"))?;
        let address = host
            .to_socket_addrs()
            .map_err(|e| format!("leader {leader} at {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("leader {leader} at {host}: no address"))?;
        addresses.insert(*partition, address);
    }

    let mut start_offsets = BTreeMap::new();
    if want_offsets {
        // Every partition's leader is the bootstrap broker on one node; on a
        // cluster ListOffsets would go to each leader (not done yet).
        let mut topics = BTreeMap::new();
        topics.insert(topic.to_owned(), addresses.keys().copied().collect::<Vec<i32>>());
        let offsets = client.list_offsets(&topics, -1).map_err(|e| format!("ListOffsets: {e}"))?;
        for (tp, offset) in offsets {
            let offset = offset.map_err(|code| format!("ListOffsets {tp:?}: {}", describe_error(code, None)))?;
            start_offsets.insert(tp.partition.0, offset);
        }
        if start_offsets.len() != addresses.len() {
            return Err(format!("ListOffsets answered {} of {} partitions", start_offsets.len(), addresses.len()));
        }
    }
    Ok(Layout {
        leaders: addresses,
        produce_version,
        fetch_version,
        start_offsets,
        created,
        group_versions: group_versions(&client),
        init_producer_id_version: client.version(ApiKey::InitProducerId, init_producer_id_version_max).ok(),
    })
}

fn metadata(client: &mut Client, topic: &str) -> Result<MetadataResponse, String> {
    let version = client.version(ApiKey::Metadata, 12).map_err(|e| e.to_string())?;
    let mut request = MetadataRequest::default();
    request.topics =
        Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.to_owned()))))]);
    if version >= 4 {
        request.allow_auto_topic_creation = false;
    }
    client.call(ApiKey::Metadata, version, &request).map_err(|e| format!("Metadata: {e}"))
}

fn create_topic(client: &mut Client, topic: &str, partitions: i32) -> Result<(), String> {
    let version = client.version(ApiKey::CreateTopics, 5).map_err(|e| e.to_string())?;
    // -1 asks for the broker's default replication factor (v4 and later).
    let replication_factor = if version >= 4 { -1 } else { 1 };
    let creatable = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor);
    let request = CreateTopicsRequest::default().with_topics(vec![creatable]).with_timeout_ms(30_000);
    let response: CreateTopicsResponse =
        client.call(ApiKey::CreateTopics, version, &request).map_err(|e| format!("CreateTopics: {e}"))?;
    let result = response.topics.first().ok_or("empty CreateTopics response")?;
    // 36: TOPIC_ALREADY_EXISTS (another client won the race): fine.
    if result.error_code != 0 && result.error_code != 36 {
        return Err(format!(
            "CreateTopics {topic:?}: {}",
            describe_error(result.error_code, result.error_message.as_ref().map(|m| m.as_str()))
        ));
    }
    Ok(())
}
