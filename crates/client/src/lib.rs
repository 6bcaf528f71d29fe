//! A small blocking Kafka client for the `ringstream` command-line tools
//! (`topic`, `produce`, `consume`, `group`). It speaks the Kafka protocol to
//! any broker: versions are negotiated with ApiVersions, requests and
//! responses use the `kafka-protocol` codecs, and responses are size-capped
//! before any allocation. Not used by the broker itself.
//!
//! The consumer-group requests (`group_coordinator`, `list_groups`,
//! `describe_group`, `delete_groups`, `offset_fetch`, `offset_commit`) and
//! `list_offsets` return plain data; a per-partition or per-group Kafka error
//! stays in the data (the caller decides), a whole-request error is
//! `ClientError::Kafka`.

#![allow(non_upper_case_globals)] // limits are named like values: `batch_bytes_max`.

pub mod metrics_text;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use ringstream_core::limits::client_coordinator_attempts_max;
use ringstream_core::limits::client_response_bytes_max;
use ringstream_core::types::TopicPartition;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("I/O with the broker: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker does not serve {api:?} in a version this tool speaks")]
    Unsupported { api: ApiKey },
    #[error("bad response to {api:?}: {reason}")]
    Protocol { api: ApiKey, reason: String },
    /// The broker refused a whole request with a Kafka error code.
    #[error("{what}: {}", describe_error(*code, message.as_deref()))]
    Kafka { what: String, code: i16, message: Option<String> },
}

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
    /// The broker's version range per API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl Client {
    pub fn connect(address: &str, timeout: Duration) -> Result<Client, ClientError> {
        let connect_error = |source| ClientError::Connect { address: address.to_owned(), source };
        let resolved = address
            .to_socket_addrs()
            .map_err(connect_error)?
            .next()
            .ok_or_else(|| connect_error(std::io::Error::other("no address")))?;
        let stream = TcpStream::connect_timeout(&resolved, timeout).map_err(connect_error)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        let mut client = Client { stream, correlation_id: 0, versions: HashMap::new() };
        let response: ApiVersionsResponse = client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        if response.error_code != 0 {
            return Err(ClientError::Protocol {
                api: ApiKey::ApiVersions,
                reason: format!("error {}", response.error_code),
            });
        }
        client.versions = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(client)
    }

    /// The newest version of `api` both sides speak, up to `ours`.
    pub fn version(&self, api: ApiKey, ours: i16) -> Result<i16, ClientError> {
        let (min, max) = *self.versions.get(&(api as i16)).ok_or(ClientError::Unsupported { api })?;
        let version = max.min(ours);
        if version < min {
            return Err(ClientError::Unsupported { api });
        }
        Ok(version)
    }

    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let protocol = |reason: String| ClientError::Protocol { api, reason };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("ringstream-cli"));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header.encode(&mut frame, api.request_header_version(version)).map_err(|e| protocol(e.to_string()))?;
        request.encode(&mut frame, version).map_err(|e| protocol(e.to_string()))?;
        let size = i32::try_from(frame.len() - 4).map_err(|_| protocol("request too large".into()))?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&frame)?;

        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix)?;
        let size = i32::from_be_bytes(prefix);
        if size < 4 || size as usize > client_response_bytes_max {
            return Err(protocol(format!("response size {size}")));
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| protocol(e.to_string()))?;
        if header.correlation_id != self.correlation_id {
            return Err(protocol(format!(
                "correlation id {} for request {}",
                header.correlation_id, self.correlation_id
            )));
        }
        Resp::decode(&mut body, version).map_err(|e| protocol(e.to_string()))
    }
}

// Consumer-group administration, for `ringstream group ...`.

/// Newest versions the group tools speak; each request sets a field only
/// from the version that has it (the codec refuses the others).
const find_coordinator_version_max: i16 = 4;
const list_groups_version_max: i16 = 5;
const describe_groups_version_max: i16 = 5;
const delete_groups_version_max: i16 = 2;
/// v8 and later batch groups; the tools ask about one group at a time.
const offset_fetch_version_max: i16 = 7;
/// The first version in which topics = null means "every committed offset".
const offset_fetch_version_min: i16 = 2;
const offset_commit_version_max: i16 = 8;
/// The oldest version the codec encodes.
const offset_commit_version_min: i16 = 2;
const list_offsets_version_max: i16 = 7;
/// The oldest version the codec encodes (v0 answered with offset lists).
const list_offsets_version_min: i16 = 1;
const metadata_version_max: i16 = 12;
const coordinator_retry_backoff_ms: u64 = 250;

/// Kafka's name for an error code as its docs and tools spell it
/// (`NON_EMPTY_GROUP`), from the codec's table; `NONE` for 0.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_ERROR_CODE_{code}"),
        Some(known) => {
            // The codec names kinds in CamelCase (`NonEmptyGroup`), none with
            // an acronym, so every capital after the first starts a word.
            let camel = known.to_string();
            let mut name = String::with_capacity(camel.len() + 8);
            for (i, c) in camel.char_indices() {
                if i > 0 && c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

/// `NON_EMPTY_GROUP (68)`, with the broker's message after a colon if any.
pub fn describe_error(code: i16, message: Option<&str>) -> String {
    let detail = message.filter(|m| !m.is_empty()).map(|m| format!(": {m}")).unwrap_or_default();
    format!("{} ({code}){detail}", error_name(code))
}

/// A group as ListGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedGroup {
    pub group_id: String,
    /// None before ListGroups v4, which added the state.
    pub state: Option<String>,
    pub protocol_type: String,
}

/// A group as DescribeGroups reports it.
#[derive(Clone, Debug)]
pub struct GroupDescription {
    pub group_id: String,
    /// The group's own error (GROUP_ID_NOT_FOUND from newer brokers).
    pub error_code: i16,
    pub error_message: Option<String>,
    /// `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance` or
    /// `Dead` (older brokers describe an unknown group as `Dead`).
    pub state: String,
    pub protocol_type: String,
    /// The chosen protocol; for consumer groups, the assignor (`range`, ...).
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

#[derive(Clone, Debug)]
pub struct GroupMember {
    pub member_id: String,
    /// Static membership (KIP-345); None before DescribeGroups v4.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    /// As the leader assigned it; `decode_consumer_assignment` reads a
    /// consumer group's.
    pub assignment: Bytes,
}

/// A partition's offset, or the Kafka error code answered for it.
pub type PartitionOffset = Result<i64, i16>;

fn text(s: &StrBytes) -> String {
    s.as_str().to_owned()
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Partitions grouped by topic, in order: the shape requests want.
pub fn by_topic<'a>(partitions: impl IntoIterator<Item = &'a TopicPartition>) -> BTreeMap<String, Vec<i32>> {
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics.entry(tp.topic.clone()).or_default().push(tp.partition.0);
    }
    for partitions in topics.values_mut() {
        partitions.sort_unstable();
        partitions.dedup();
    }
    topics
}

impl Client {
    /// The newest version of `api` both sides speak within `ours_min..=ours_max`.
    pub fn version_in(&self, api: ApiKey, ours_min: i16, ours_max: i16) -> Result<i16, ClientError> {
        assert!(ours_min <= ours_max);
        let version = self.version(api, ours_max)?;
        if version < ours_min {
            return Err(ClientError::Unsupported { api });
        }
        Ok(version)
    }

    /// The `host:port` of `group`'s coordinator, asking again (a bounded
    /// number of times) while it loads or is not yet available.
    pub fn group_coordinator(&mut self, group: &str) -> Result<String, ClientError> {
        self.coordinator(group, 0).map(|(_, address)| address)
    }

    /// The coordinator of `key`: a group (key type 0) or a transactional id
    /// (1), as (node id, `host:port`).
    pub fn coordinator(&mut self, key: &str, key_type: i8) -> Result<(i32, String), ClientError> {
        let api = ApiKey::FindCoordinator;
        let version = self.version(api, find_coordinator_version_max)?;
        let mut attempts = 0u32;
        let what = if key_type == 1 { "transactional id" } else { "group" };
        loop {
            attempts += 1;
            let mut request = FindCoordinatorRequest::default();
            if version >= 1 {
                request.key_type = key_type;
            }
            if version >= 4 {
                request.coordinator_keys = vec![str_bytes(key)];
            } else {
                request.key = str_bytes(key);
            }
            let response: FindCoordinatorResponse = self.call(api, version, &request)?;
            let (code, message, node, host, port) = if version >= 4 {
                let found = response
                    .coordinators
                    .iter()
                    .find(|c| c.key.as_str() == key)
                    .ok_or_else(|| ClientError::Protocol { api, reason: format!("no coordinator for {key:?}") })?;
                (found.error_code, found.error_message.clone(), found.node_id.0, found.host.clone(), found.port)
            } else {
                (
                    response.error_code,
                    response.error_message.clone(),
                    response.node_id.0,
                    response.host.clone(),
                    response.port,
                )
            };
            if code == 0 {
                let host = host.as_str();
                let address = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
                return Ok((node, address));
            }
            let retriable = code == ResponseError::CoordinatorLoadInProgress.code()
                || code == ResponseError::CoordinatorNotAvailable.code();
            if !retriable || attempts >= client_coordinator_attempts_max {
                return Err(ClientError::Kafka {
                    what: format!("finding the coordinator of {what} {key:?}"),
                    code,
                    message: message.as_ref().map(text),
                });
            }
            std::thread::sleep(Duration::from_millis(coordinator_retry_backoff_ms));
        }
    }

    /// Every broker's `host:port`, from Metadata asking for no topics.
    pub fn brokers(&mut self) -> Result<Vec<String>, ClientError> {
        let version = self.version_in(ApiKey::Metadata, 1, metadata_version_max)?;
        let mut request = MetadataRequest::default().with_topics(Some(Vec::<MetadataRequestTopic>::new()));
        if version >= 4 {
            request.allow_auto_topic_creation = false;
        }
        let response: MetadataResponse = self.call(ApiKey::Metadata, version, &request)?;
        Ok(response
            .brokers
            .iter()
            .map(|b| {
                let host = b.host.as_str();
                if host.contains(':') {
                    format!("[{host}]:{}", b.port)
                } else {
                    format!("{host}:{}", b.port)
                }
            })
            .collect())
    }

    /// The groups this broker coordinates (ListGroups, no filters).
    pub fn list_groups(&mut self) -> Result<Vec<ListedGroup>, ClientError> {
        let api = ApiKey::ListGroups;
        let version = self.version(api, list_groups_version_max)?;
        let response: ListGroupsResponse = self.call(api, version, &ListGroupsRequest::default())?;
        if response.error_code != 0 {
            return Err(ClientError::Kafka { what: "ListGroups".into(), code: response.error_code, message: None });
        }
        Ok(response
            .groups
            .iter()
            .map(|g| ListedGroup {
                group_id: text(&g.group_id.0),
                state: (version >= 4).then(|| text(&g.group_state)),
                protocol_type: text(&g.protocol_type),
            })
            .collect())
    }

    /// DescribeGroups for one group (ask its coordinator).
    pub fn describe_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        let api = ApiKey::DescribeGroups;
        let version = self.version(api, describe_groups_version_max)?;
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]);
        let response: DescribeGroupsResponse = self.call(api, version, &request)?;
        let described = response
            .groups
            .iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| ClientError::Protocol { api, reason: format!("no answer for group {group:?}") })?;
        Ok(GroupDescription {
            group_id: group.to_owned(),
            error_code: described.error_code,
            error_message: described.error_message.as_ref().map(text),
            state: text(&described.group_state),
            protocol_type: text(&described.protocol_type),
            protocol: text(&described.protocol_data),
            members: described
                .members
                .iter()
                .map(|m| GroupMember {
                    member_id: text(&m.member_id),
                    group_instance_id: m.group_instance_id.as_ref().map(text),
                    client_id: text(&m.client_id),
                    host: text(&m.client_host),
                    assignment: m.member_assignment.clone(),
                })
                .collect(),
        })
    }

    /// DeleteGroups (ask the groups' coordinator): each group with its error
    /// code, 0 when deleted.
    pub fn delete_groups(&mut self, groups: &[String]) -> Result<Vec<(String, i16)>, ClientError> {
        let api = ApiKey::DeleteGroups;
        let version = self.version(api, delete_groups_version_max)?;
        let request =
            DeleteGroupsRequest::default().with_groups_names(groups.iter().map(|g| GroupId(str_bytes(g))).collect());
        let response: DeleteGroupsResponse = self.call(api, version, &request)?;
        groups
            .iter()
            .map(|group| {
                let result = response.results.iter().find(|r| r.group_id.0.as_str() == group);
                let result = result
                    .ok_or_else(|| ClientError::Protocol { api, reason: format!("no result for group {group:?}") })?;
                Ok((group.clone(), result.error_code))
            })
            .collect()
    }

    /// A group's committed offsets (OffsetFetch; ask its coordinator): for
    /// `topics` (topic to partitions), or every partition it has committed
    /// when None. Partitions without a committed offset are left out.
    pub fn offset_fetch(
        &mut self,
        group: &str,
        topics: Option<&BTreeMap<String, Vec<i32>>>,
    ) -> Result<BTreeMap<TopicPartition, PartitionOffset>, ClientError> {
        let api = ApiKey::OffsetFetch;
        let version = self.version_in(api, offset_fetch_version_min, offset_fetch_version_max)?;
        let mut request = OffsetFetchRequest::default().with_group_id(GroupId(str_bytes(group)));
        request.topics = topics.map(|topics| {
            topics
                .iter()
                .map(|(name, partitions)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(str_bytes(name)))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        });
        let response: OffsetFetchResponse = self.call(api, version, &request)?;
        if response.error_code != 0 {
            return Err(ClientError::Kafka {
                what: format!("OffsetFetch for group {group:?}"),
                code: response.error_code,
                message: None,
            });
        }
        let mut offsets = BTreeMap::new();
        for topic in &response.topics {
            for partition in &topic.partitions {
                let tp = TopicPartition::new(text(&topic.name.0), partition.partition_index);
                if partition.error_code != 0 {
                    offsets.insert(tp, Err(partition.error_code));
                } else if partition.committed_offset >= 0 {
                    offsets.insert(tp, Ok(partition.committed_offset));
                }
            }
        }
        Ok(offsets)
    }

    /// Commits `offsets` for `group` (OffsetCommit; ask its coordinator) as
    /// member `member_id` of generation `generation_id`; generation -1 and
    /// member "" is an admin commit, which Kafka takes only while the group
    /// has no members. Each partition with its error code, 0 when committed.
    pub fn offset_commit(
        &mut self,
        group: &str,
        generation_id: i32,
        member_id: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, i16>, ClientError> {
        let api = ApiKey::OffsetCommit;
        let version = self.version_in(api, offset_commit_version_min, offset_commit_version_max)?;
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, offset) in offsets {
            topics.entry(tp.topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition.0)
                    .with_committed_offset(*offset)
                    .with_committed_metadata(Some(StrBytes::default())),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id_or_member_epoch(generation_id)
            .with_member_id(str_bytes(member_id))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(str_bytes(name)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response: OffsetCommitResponse = self.call(api, version, &request)?;
        let mut results = BTreeMap::new();
        for topic in &response.topics {
            for partition in &topic.partitions {
                results
                    .insert(TopicPartition::new(text(&topic.name.0), partition.partition_index), partition.error_code);
            }
        }
        if let Some(missing) = offsets.keys().find(|tp| !results.contains_key(*tp)) {
            return Err(ClientError::Protocol { api, reason: format!("no result for partition {missing}") });
        }
        Ok(results)
    }

    /// Offsets at `timestamp` (ListOffsets; -2 log start, -1 log end, else
    /// the first offset at or after that time in ms, -1 when none is), per
    /// partition of `topics`.
    pub fn list_offsets(
        &mut self,
        topics: &BTreeMap<String, Vec<i32>>,
        timestamp: i64,
    ) -> Result<BTreeMap<TopicPartition, PartitionOffset>, ClientError> {
        let api = ApiKey::ListOffsets;
        let version = self.version_in(api, list_offsets_version_min, list_offsets_version_max)?;
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    ListOffsetsTopic::default().with_name(TopicName(str_bytes(name))).with_partitions(
                        partitions
                            .iter()
                            .map(|p| ListOffsetsPartition::default().with_partition_index(*p).with_timestamp(timestamp))
                            .collect(),
                    )
                })
                .collect(),
        );
        let response: ListOffsetsResponse = self.call(api, version, &request)?;
        let mut offsets = BTreeMap::new();
        for topic in &response.topics {
            for partition in &topic.partitions {
                let tp = TopicPartition::new(text(&topic.name.0), partition.partition_index);
                offsets.insert(
                    tp,
                    if partition.error_code == 0 { Ok(partition.offset) } else { Err(partition.error_code) },
                );
            }
        }
        Ok(offsets)
    }
}

/// A consumer group member's assignment as Kafka's consumer protocol
/// encodes it (`ConsumerProtocolAssignment`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerAssignment {
    pub version: i16,
    /// In the order the leader wrote them.
    pub partitions: Vec<TopicPartition>,
    /// Bytes of the assignor's user data (None: null).
    pub user_data_bytes: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("{what} at byte {offset}: need {need} byte(s), have {have}")]
    Short { what: &'static str, offset: usize, need: usize, have: usize },
    #[error("{what} at byte {offset} is {value}")]
    Invalid { what: &'static str, offset: usize, value: i64 },
}

/// Reads big-endian fields off a byte slice, bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, need: usize, what: &'static str) -> Result<&'a [u8], AssignmentError> {
        let have = self.bytes.len() - self.offset;
        if need > have {
            return Err(AssignmentError::Short { what, offset: self.offset, need, have });
        }
        let taken = &self.bytes[self.offset..self.offset + need];
        self.offset += need;
        Ok(taken)
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, AssignmentError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, AssignmentError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A count or length read at `offset`: never negative, -1 (None) where `nullable`.
fn checked_length(
    value: i64,
    offset: usize,
    what: &'static str,
    nullable: bool,
) -> Result<Option<usize>, AssignmentError> {
    match value {
        -1 if nullable => Ok(None),
        v if v < 0 => Err(AssignmentError::Invalid { what, offset, value }),
        v => Ok(Some(v as usize)),
    }
}

/// Decodes a consumer group member's assignment: version (i16), topics
/// (i32 count of: i16-length topic name, i32 count of i32 partitions), then
/// user data (i32-length bytes, -1 null). Versions 0–3 share this layout;
/// Kafka reads a newer version as its newest, so bytes after the user data
/// are ignored. Empty input is an error (a member not yet assigned has no
/// assignment at all; callers check for that first). Never panics.
pub fn decode_consumer_assignment(bytes: &[u8]) -> Result<ConsumerAssignment, AssignmentError> {
    let mut reader = Reader { bytes, offset: 0 };
    let at = reader.offset;
    let version = reader.i16("version")?;
    if version < 0 {
        return Err(AssignmentError::Invalid { what: "version", offset: at, value: i64::from(version) });
    }
    let at = reader.offset;
    let count = reader.i32("topic count")?;
    let topics = checked_length(i64::from(count), at, "topic count", false)?.unwrap_or(0);
    let mut partitions = Vec::new();
    for _ in 0..topics {
        // Each topic takes at least 6 bytes, so a bogus count fails here, early.
        let at = reader.offset;
        let length = reader.i16("topic name length")?;
        let length = checked_length(i64::from(length), at, "topic name length", false)?.unwrap_or(0);
        let at = reader.offset;
        let name = reader.take(length, "topic name")?;
        let name = std::str::from_utf8(name).map_err(|e| AssignmentError::Invalid {
            what: "topic name (UTF-8)",
            offset: at,
            value: e.valid_up_to() as i64,
        })?;
        let at = reader.offset;
        let count = reader.i32("partition count")?;
        let count = checked_length(i64::from(count), at, "partition count", false)?.unwrap_or(0);
        let need = count.saturating_mul(4);
        let indexes = reader.take(need, "partitions")?;
        for index in indexes.chunks_exact(4) {
            partitions.push(TopicPartition::new(name, i32::from_be_bytes([index[0], index[1], index[2], index[3]])));
        }
    }
    let at = reader.offset;
    let length = reader.i32("user data length")?;
    let user_data_bytes = checked_length(i64::from(length), at, "user data length", true)?;
    if let Some(length) = user_data_bytes {
        reader.take(length, "user data")?;
    }
    Ok(ConsumerAssignment { version, partitions, user_data_bytes })
}

/// Kafka's default partitioner for keyed records: murmur2 of the key,
/// made positive, modulo the partition count, so the tools place keys where
/// the Java client (and librdkafka's `murmur2_random`) would.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0);
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// MurmurHash2 as Kafka uses it (seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> u32 {
    const m: u32 = 0x5bd1_e995;
    const r: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> r;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Values from Kafka's UtilsTest.testMurmur2 (hash of the ASCII bytes).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58897971);
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(25), "UNKNOWN_MEMBER_ID");
        assert_eq!(error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(error_name(68), "NON_EMPTY_GROUP");
        assert_eq!(error_name(69), "GROUP_ID_NOT_FOUND");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
        assert_eq!(describe_error(68, Some("")), "NON_EMPTY_GROUP (68)");
        assert_eq!(describe_error(69, Some("no such group")), "GROUP_ID_NOT_FOUND (69): no such group");
    }

    /// An assignment as the Java consumer writes it: version, then the body.
    fn encoded_assignment(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        use kafka_protocol::messages::consumer_protocol_assignment::{self as cpa, ConsumerProtocolAssignment};
        let assignment = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        cpa::TopicPartition::default().with_topic(TopicName(str_bytes(t))).with_partitions(ps.to_vec())
                    })
                    .collect(),
            )
            .with_user_data(user_data.map(Bytes::copy_from_slice));
        let mut out = BytesMut::new();
        out.put_i16(version);
        assignment.encode(&mut out, version.min(3)).unwrap();
        out.to_vec()
    }

    #[test]
    fn consumer_assignments_decode_in_every_version() {
        let topics: &[(&str, &[i32])] = &[("orders", &[0, 2, 5]), ("audit", &[]), ("x", &[7])];
        let partitions = vec![
            TopicPartition::new("orders", 0),
            TopicPartition::new("orders", 2),
            TopicPartition::new("orders", 5),
            TopicPartition::new("x", 7),
        ];
        for version in 0..=3 {
            for user_data in [None, Some(&b""[..]), Some(&b"sticky"[..])] {
                let bytes = encoded_assignment(version, topics, user_data);
                let decoded = decode_consumer_assignment(&bytes).unwrap();
                assert_eq!(decoded.version, version);
                assert_eq!(decoded.partitions, partitions);
                assert_eq!(decoded.user_data_bytes, user_data.map(<[u8]>::len));
            }
        }
        // A newer version starts with the same fields; what follows is ignored.
        let mut newer = encoded_assignment(9, topics, None);
        newer.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_consumer_assignment(&newer).unwrap().partitions, partitions);
        let empty = encoded_assignment(0, &[], None);
        assert_eq!(decode_consumer_assignment(&empty).unwrap().partitions, vec![]);
    }

    #[test]
    fn bad_consumer_assignments_are_errors_not_panics() {
        let bytes = encoded_assignment(1, &[("orders", &[0, 1]), ("audit", &[3])], Some(b"data"));
        for cut in 0..bytes.len() {
            let error = decode_consumer_assignment(&bytes[..cut]).unwrap_err();
            assert!(matches!(error, AssignmentError::Short { .. }), "cut at {cut}: {error}");
        }
        assert_eq!(
            decode_consumer_assignment(&[0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            AssignmentError::Invalid { what: "version", offset: 0, value: -1 }
        );
        // Huge counts fail on the bytes they would need, before allocating.
        let huge_topics = [0, 0, 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(decode_consumer_assignment(&huge_topics), Err(AssignmentError::Short { .. })));
        let huge_partitions = [0, 0, 0, 0, 0, 1, 0, 1, b't', 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert_eq!(
            decode_consumer_assignment(&huge_partitions).unwrap_err(),
            AssignmentError::Short { what: "partitions", offset: 13, need: 0x7fff_ffff * 4, have: 4 }
        );
        let negative_partitions = [0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(decode_consumer_assignment(&negative_partitions), Err(AssignmentError::Invalid { .. })));
        let bad_utf8 = [0, 0, 0, 0, 0, 1, 0, 1, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(decode_consumer_assignment(&bad_utf8), Err(AssignmentError::Invalid { .. })));
        // Arbitrary bytes (a fixed xorshift sequence) decode or fail, never panic.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let noise: Vec<u8> = (0..len).map(|i| (state >> ((i % 8) * 8)) as u8 ^ i as u8).collect();
            let _ = decode_consumer_assignment(&noise);
            let mut framed = bytes.clone();
            let at = (state % framed.len() as u64) as usize;
            framed[at] ^= (state >> 32) as u8 | 1;
            let _ = decode_consumer_assignment(&framed);
        }
    }
}
