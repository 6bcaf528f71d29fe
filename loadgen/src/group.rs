//! A consumer group member on the classic group protocol (`--groups`), from
//! the client side, so it works against any Kafka-compatible broker:
//!
//! 1. FindCoordinator on the bootstrap connection;
//! 2. JoinGroup with protocol type "consumer" and one protocol, "range",
//!    whose metadata is a `ConsumerProtocolSubscription` (v0: the topic);
//!    MEMBER_ID_REQUIRED (JoinGroup v4+) is answered by joining again with
//!    the member id the broker gave;
//! 3. the member elected leader computes the range assignment (Kafka's
//!    `RangeAssignor`: members sorted by id, contiguous ranges, the first
//!    `partitions % members` members one partition more) and sends it in
//!    SyncGroup as `ConsumerProtocolAssignment`s (v0); the others send none;
//! 4. OffsetFetch: each assigned partition starts at its committed offset,
//!    else at the log end taken when the run began (ListOffsets latest in
//!    `setup.rs`), so a new group reads everything produced in the run;
//! 5. Fetch from the partitions' leaders, Heartbeat every
//!    `heartbeat_interval_ms`, OffsetCommit every `commit_interval_ms`;
//!    REBALANCE_IN_PROGRESS (or a lost membership) commits what was read and
//!    joins again;
//! 6. at the end a last OffsetCommit and LeaveGroup.
//!
//! Everything runs in one task per member, one request at a time: a fetch
//! waits at most `fetch_wait_ms_max`, well inside the heartbeat interval.
//! Rebalance signals (REBALANCE_IN_PROGRESS, MEMBER_ID_REQUIRED) and
//! retriable coordinator errors are protocol flow, not counted; every other
//! error is counted by its Kafka name as elsewhere.
//!
//! Every group reads every record, so the run's consumed count and e2e
//! histogram hold each record once per group. "Caught up" (when run.rs
//! stops consumers) must mean every group has caught up: `GroupTally`
//! publishes the slowest group's count as the progress line's consumed
//! count.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use kafka_protocol::messages::consumer_protocol_assignment::{self as cpa, ConsumerProtocolAssignment};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolSubscription, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::consumer::{error_backoff_ms, ConsumerSpec, Fetcher, Reading};
use crate::limits::join_rounds_max;
use crate::limits::{group_members_max, request_timeout_ms_max};
use crate::setup::GroupVersions;
use crate::stats::Progress;
use crate::wire::{self, codes};

/// The member's session: the coordinator drops a member it has not heard
/// from for this long (Kafka accepts 6 s to 30 min by default).
const session_timeout_ms: i32 = 10_000;
/// How long the coordinator waits for every member to rejoin in a rebalance.
const rebalance_timeout_ms: i32 = 10_000;
const heartbeat_interval_ms: u64 = 1_000;
const commit_interval_ms: u64 = 1_000;
const protocol_type: &str = "consumer";
const assignor: &str = "range";

const _: () = assert!(heartbeat_interval_ms * 3 <= session_timeout_ms as u64);
const _: () = assert!((rebalance_timeout_ms as u64) < request_timeout_ms_max);

/// One group member's settings (the rest is in its `ConsumerSpec`).
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub group_id: String,
    /// Which of the run's groups (its slot in `tally`).
    pub index: usize,
    /// The group API versions, or why the broker cannot serve a group.
    pub versions: Result<GroupVersions, String>,
    /// Every partition of the topic and its leader.
    pub leaders: BTreeMap<i32, SocketAddr>,
    /// Where a partition with no committed offset starts: the log end when
    /// the run began.
    pub start_offsets: BTreeMap<i32, i64>,
    pub tally: Arc<GroupTally>,
    pub connect_timeout: Duration,
}

/// Records read per group, shared by every member of every group; the
/// progress line's consumed count is kept at the smallest of them.
#[derive(Debug)]
pub struct GroupTally {
    groups: Vec<AtomicU64>,
    published: AtomicU64,
}

impl GroupTally {
    pub fn new(groups: usize) -> GroupTally {
        assert!(groups >= 1);
        GroupTally { groups: (0..groups).map(|_| AtomicU64::new(0)).collect(), published: AtomicU64::new(0) }
    }

    /// Adds `records` read by a member of `group`, and raises the published
    /// count to the new minimum. `fetch_max` makes the increments sum to the
    /// final minimum whatever the interleaving.
    pub fn add(&self, group: usize, records: u64, progress: &Progress) {
        self.groups[group].fetch_add(records, Ordering::Relaxed);
        let minimum = self.groups.iter().map(|g| g.load(Ordering::Relaxed)).min().unwrap_or(0);
        let previous = self.published.fetch_max(minimum, Ordering::Relaxed);
        if minimum > previous {
            Progress::add(&progress.consumed_records, minimum - previous);
        }
    }
}

/// A request failed without a Kafka error: the kind to count and why.
struct CallError {
    kind: &'static str,
    message: String,
}

/// One connection for group requests, one request at a time.
struct Conn {
    stream: TcpStream,
    address: SocketAddr,
    correlation_id: i32,
}

impl Conn {
    fn new(stream: TcpStream, address: SocketAddr) -> Conn {
        Conn { stream, address, correlation_id: 0 }
    }

    async fn connect(address: SocketAddr, timeout: Duration) -> Result<Conn, CallError> {
        let stream = TcpStream::connect_timeout(address, timeout)
            .await
            .map_err(|e| CallError { kind: "CONNECTION_FAILED", message: format!("connect to {address}: {e}") })?;
        let _ = stream.set_nodelay(true);
        Ok(Conn::new(stream, address))
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, CallError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let frame = wire::encode_request(api, version, correlation_id, request, 512)
            .map_err(|message| CallError { kind: "ENCODE_FAILED", message })?;
        let stream = &mut self.stream;
        let exchanged = glommio::timer::timeout(Duration::from_millis(request_timeout_ms_max), async {
            stream.write_all(&frame).await?;
            Ok(wire::read_frame(stream).await)
        })
        .await;
        let connection =
            |message: String| CallError { kind: "CONNECTION_FAILED", message: format!("{api:?}: {message}") };
        let frame = match exchanged {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Err(connection("connection closed by the broker".into())),
            Ok(Err(e)) => return Err(connection(e)),
            Err(e) => return Err(connection(e.to_string())),
        };
        wire::decode_response(api, version, correlation_id, frame)
            .map_err(|message| CallError { kind: "BAD_RESPONSE", message })
    }
}

/// What a group request's error code means for the member.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Fine,
    /// Join again (a rebalance, or the membership is gone).
    Rejoin,
    /// Find the coordinator again, then join.
    Rediscover,
}

struct Member<'a> {
    spec: &'a ConsumerSpec,
    group: &'a GroupSpec,
    versions: GroupVersions,
    reading: &'a Reading,
    bootstrap: Option<Conn>,
    coordinator: Option<Conn>,
    member_id: String,
    generation_id: i32,
    /// Assigned partitions and their positions, by leader.
    assigned: BTreeMap<SocketAddr, Vec<(i32, i64)>>,
    fetchers: BTreeMap<SocketAddr, (TcpStream, Fetcher)>,
}

/// Runs one member until `stop`, then commits and leaves.
pub async fn run(spec: &ConsumerSpec, stream: TcpStream, reading: &Reading, stop: &AtomicBool) {
    let group = spec.group.as_ref().expect("a group member");
    let versions = match &group.versions {
        Ok(versions) => *versions,
        Err(message) => {
            eprintln!("{}: cannot join group {}: {message}", spec.name, group.group_id);
            reading.error("UNSUPPORTED_VERSION", 1);
            return;
        }
    };
    let mut member = Member {
        spec,
        group,
        versions,
        reading,
        bootstrap: Some(Conn::new(stream, spec.address)),
        coordinator: None,
        member_id: String::new(),
        generation_id: -1,
        assigned: BTreeMap::new(),
        fetchers: BTreeMap::new(),
    };
    let mut joined = false;
    let mut next_heartbeat = Instant::now();
    let mut next_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if !joined {
            if member.join().await {
                joined = true;
                next_heartbeat = Instant::now() + Duration::from_millis(heartbeat_interval_ms);
                next_commit = Instant::now() + Duration::from_millis(commit_interval_ms);
            } else {
                glommio::timer::sleep(Duration::from_millis(error_backoff_ms)).await;
            }
            continue;
        }
        let now = Instant::now();
        if now >= next_heartbeat {
            next_heartbeat = now + Duration::from_millis(heartbeat_interval_ms);
            if member.heartbeat().await != Outcome::Fine {
                // Commit what was read (allowed while the group prepares to
                // rebalance), so the next owner does not read it again.
                member.commit().await;
                joined = false;
                continue;
            }
        }
        if now >= next_commit {
            next_commit = now + Duration::from_millis(commit_interval_ms);
            if member.commit().await != Outcome::Fine {
                joined = false;
                continue;
            }
        }
        if member.assigned.is_empty() {
            glommio::timer::sleep(Duration::from_millis(error_backoff_ms)).await;
            continue;
        }
        member.fetch_all().await;
    }
    if joined {
        member.commit().await;
        member.leave().await;
    }
}

impl Member<'_> {
    fn count(&self, kind: &str) {
        self.reading.error(kind, 1);
    }

    fn failed(&mut self, e: CallError) {
        eprintln!("{} (group {}): {}", self.spec.name, self.group.group_id, e.message);
        self.count(e.kind);
    }

    /// Classifies a group request's error code, counting real errors.
    fn outcome(&mut self, code: i16) -> Outcome {
        match code {
            0 => Outcome::Fine,
            codes::rebalance_in_progress => Outcome::Rejoin,
            codes::not_coordinator | codes::coordinator_not_available | codes::coordinator_load_in_progress => {
                self.coordinator = None;
                Outcome::Rediscover
            }
            codes::unknown_member_id => {
                // Our session ended (e.g. we were too slow): a new member id.
                self.count(&wire::error_kind(code));
                self.member_id.clear();
                self.generation_id = -1;
                Outcome::Rejoin
            }
            code => {
                self.count(&wire::error_kind(code));
                Outcome::Rejoin
            }
        }
    }

    /// The coordinator connection, found (FindCoordinator on the bootstrap
    /// broker) and connected if need be.
    async fn coordinator(&mut self) -> Option<&mut Conn> {
        if self.coordinator.is_none() {
            match self.find_coordinator().await {
                Ok(conn) => self.coordinator = Some(conn),
                Err(e) => {
                    self.failed(e);
                    return None;
                }
            }
        }
        self.coordinator.as_mut()
    }

    async fn find_coordinator(&mut self) -> Result<Conn, CallError> {
        let version = self.versions.find_coordinator;
        let mut bootstrap = match self.bootstrap.take() {
            Some(conn) => conn,
            None => Conn::connect(self.spec.address, self.group.connect_timeout).await?,
        };
        let group_id = StrBytes::from_string(self.group.group_id.clone());
        let mut request = FindCoordinatorRequest::default(); // key type 0: a group
        if version >= 4 {
            request.coordinator_keys = vec![group_id.clone()];
        } else {
            request.key = group_id.clone();
        }
        let response: FindCoordinatorResponse = bootstrap.call(ApiKey::FindCoordinator, version, &request).await?;
        let (code, host, port) = if version >= 4 {
            let found = response.coordinators.iter().find(|c| c.key == group_id);
            let found = found.ok_or_else(|| CallError {
                kind: "BAD_RESPONSE",
                message: "FindCoordinator: no answer for the group".into(),
            })?;
            (found.error_code, found.host.to_string(), found.port)
        } else {
            (response.error_code, response.host.to_string(), response.port)
        };
        if code != 0 {
            let retriable = wire::is_retriable(code);
            self.bootstrap = Some(bootstrap);
            return Err(CallError {
                kind: if retriable { "COORDINATOR_NOT_AVAILABLE" } else { "BAD_RESPONSE" },
                message: format!("FindCoordinator: {}", ringstream_client::describe_error(code, None)),
            });
        }
        let port = u16::try_from(port)
            .map_err(|_| CallError { kind: "BAD_RESPONSE", message: format!("coordinator port {port}") })?;
        // Resolving a name blocks this executor; brokers usually advertise addresses.
        let address = (host.as_str(), port).to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| {
            CallError { kind: "CONNECTION_FAILED", message: format!("coordinator {host}:{port} does not resolve") }
        })?;
        if address == bootstrap.address {
            return Ok(bootstrap); // one node: one connection serves both
        }
        self.bootstrap = Some(bootstrap);
        Conn::connect(address, self.group.connect_timeout).await
    }

    /// Joins (or rejoins) the group and takes up the assignment; false when
    /// it did not get there (counted where it is an error).
    async fn join(&mut self) -> bool {
        self.assigned.clear();
        for _ in 0..join_rounds_max {
            if self.coordinator().await.is_none() {
                return false;
            }
            let (generation_id, leader, members) = match self.join_group().await {
                Ok(Some(joined)) => joined,
                Ok(None) => continue, // MEMBER_ID_REQUIRED or a rebalance: again
                Err(()) => return false,
            };
            self.generation_id = generation_id;
            let assignments = if leader == self.member_id { self.assign(&members) } else { Vec::new() };
            let assignment = match self.sync_group(assignments).await {
                Ok(Some(assignment)) => assignment,
                Ok(None) => continue,
                Err(()) => return false,
            };
            let Some(partitions) = self.partitions_of(&assignment) else { return false };
            return self.take_up(partitions).await;
        }
        false
    }

    /// One JoinGroup: Ok(Some(generation, leader, members)) when joined,
    /// Ok(None) to ask again at once, Err(()) to back off.
    async fn join_group(&mut self) -> Result<Option<(i32, String, Vec<JoinGroupResponseMember>)>, ()> {
        let version = self.versions.join_group;
        let mut request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.group_id.clone())))
            .with_session_timeout_ms(session_timeout_ms)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str(protocol_type))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(assignor))
                .with_metadata(subscription(&self.spec.topic))]);
        if version >= 1 {
            request.rebalance_timeout_ms = rebalance_timeout_ms;
        }
        let conn = self.coordinator.as_mut().expect("found above");
        let response: JoinGroupResponse = match conn.call(ApiKey::JoinGroup, version, &request).await {
            Ok(response) => response,
            Err(e) => {
                self.coordinator = None;
                self.failed(e);
                return Err(());
            }
        };
        if response.error_code == codes::member_id_required {
            self.member_id = response.member_id.to_string();
            return Ok(None);
        }
        match self.outcome(response.error_code) {
            Outcome::Fine => {}
            Outcome::Rejoin => return Ok(None),
            Outcome::Rediscover => return Err(()),
        }
        if response.members.len() > group_members_max {
            self.count("BAD_RESPONSE");
            eprintln!(
                "{}: JoinGroup lists {} members (at most {group_members_max})",
                self.spec.name,
                response.members.len()
            );
            return Err(());
        }
        if let Some(name) = response.protocol_name.as_ref().filter(|n| n.as_str() != assignor) {
            self.count("BAD_RESPONSE");
            eprintln!("{}: the group chose protocol {name:?}, not {assignor:?}", self.spec.name);
            return Err(());
        }
        self.member_id = response.member_id.to_string();
        Ok(Some((response.generation_id, response.leader.to_string(), response.members)))
    }

    /// The leader's range assignment for every member, encoded.
    fn assign(&mut self, members: &[JoinGroupResponseMember]) -> Vec<SyncGroupRequestAssignment> {
        let partitions: Vec<i32> = self.group.leaders.keys().copied().collect();
        let (assignment, undecodable) = range_assignment(members, &self.spec.topic, &partitions);
        if undecodable > 0 {
            eprintln!(
                "{}: {undecodable} member(s) sent subscriptions that do not decode; they get nothing",
                self.spec.name
            );
            self.reading.error("BAD_SUBSCRIPTION", undecodable);
        }
        assignment
            .into_iter()
            .map(|(member_id, partitions)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member_id))
                    .with_assignment(encode_assignment(&self.spec.topic, &partitions))
            })
            .collect()
    }

    /// SyncGroup: Ok(Some(assignment bytes)) when the generation is set up,
    /// Ok(None) to join again at once, Err(()) to back off.
    async fn sync_group(&mut self, assignments: Vec<SyncGroupRequestAssignment>) -> Result<Option<Bytes>, ()> {
        let version = self.versions.sync_group;
        let mut request = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.group_id.clone())))
            .with_generation_id(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_assignments(assignments);
        if version >= 5 {
            request.protocol_type = Some(StrBytes::from_static_str(protocol_type));
            request.protocol_name = Some(StrBytes::from_static_str(assignor));
        }
        let conn = self.coordinator.as_mut().expect("found before joining");
        let response: SyncGroupResponse = match conn.call(ApiKey::SyncGroup, version, &request).await {
            Ok(response) => response,
            Err(e) => {
                self.coordinator = None;
                self.failed(e);
                return Err(());
            }
        };
        match self.outcome(response.error_code) {
            Outcome::Fine => Ok(Some(response.assignment)),
            Outcome::Rejoin => Ok(None),
            Outcome::Rediscover => Err(()),
        }
    }

    /// This member's partitions of the topic from its assignment bytes
    /// (none when empty); None when they do not decode (counted).
    fn partitions_of(&mut self, assignment: &[u8]) -> Option<Vec<i32>> {
        if assignment.is_empty() {
            return Some(Vec::new());
        }
        match ringstream_client::decode_consumer_assignment(assignment) {
            Ok(decoded) => Some(
                decoded
                    .partitions
                    .iter()
                    .filter(|tp| tp.topic == self.spec.topic && self.group.leaders.contains_key(&tp.partition.0))
                    .map(|tp| tp.partition.0)
                    .collect(),
            ),
            Err(e) => {
                eprintln!("{}: assignment: {e}", self.spec.name);
                self.count("BAD_RESPONSE");
                None
            }
        }
    }

    /// Positions for `partitions`: committed offsets, else the run's start.
    async fn take_up(&mut self, partitions: Vec<i32>) -> bool {
        if partitions.is_empty() {
            return true;
        }
        let version = self.versions.offset_fetch;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.group_id.clone())))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.spec.topic.clone())))
                .with_partition_indexes(partitions.clone())]));
        let conn = self.coordinator.as_mut().expect("joined through it");
        let response: OffsetFetchResponse = match conn.call(ApiKey::OffsetFetch, version, &request).await {
            Ok(response) => response,
            Err(e) => {
                self.coordinator = None;
                self.failed(e);
                return false;
            }
        };
        if self.outcome(response.error_code) != Outcome::Fine {
            return false;
        }
        let mut committed = BTreeMap::new();
        for topic in response.topics.iter().filter(|t| t.name.0.as_str() == self.spec.topic) {
            for partition in &topic.partitions {
                if partition.error_code != 0 {
                    self.count(&wire::error_kind(partition.error_code));
                } else if partition.committed_offset >= 0 {
                    committed.insert(partition.partition_index, partition.committed_offset);
                }
            }
        }
        for partition in partitions {
            let Some(start) = committed.get(&partition).or_else(|| self.group.start_offsets.get(&partition)).copied()
            else {
                eprintln!("{}: partition {partition} has no committed offset and no start offset", self.spec.name);
                self.count("NO_START_OFFSET");
                continue;
            };
            let leader = self.group.leaders[&partition];
            self.assigned.entry(leader).or_default().push((partition, start));
        }
        true
    }

    async fn heartbeat(&mut self) -> Outcome {
        let version = self.versions.heartbeat;
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.group_id.clone())))
            .with_generation_id(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let Some(conn) = self.coordinator.as_mut() else { return Outcome::Rediscover };
        match conn.call::<_, HeartbeatResponse>(ApiKey::Heartbeat, version, &request).await {
            Ok(response) => self.outcome(response.error_code),
            Err(e) => {
                self.coordinator = None;
                self.failed(e);
                Outcome::Rediscover
            }
        }
    }

    /// Commits every assigned partition's position.
    async fn commit(&mut self) -> Outcome {
        let partitions: Vec<OffsetCommitRequestPartition> = self
            .assigned
            .values()
            .flatten()
            .map(|&(partition, offset)| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(StrBytes::default()))
            })
            .collect();
        if partitions.is_empty() {
            return Outcome::Fine;
        }
        let version = self.versions.offset_commit;
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.group_id.clone())))
            .with_generation_id_or_member_epoch(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.spec.topic.clone())))
                .with_partitions(partitions)]);
        let Some(conn) = self.coordinator.as_mut() else { return Outcome::Rediscover };
        let response: OffsetCommitResponse = match conn.call(ApiKey::OffsetCommit, version, &request).await {
            Ok(response) => response,
            Err(e) => {
                self.coordinator = None;
                self.failed(e);
                return Outcome::Rediscover;
            }
        };
        let mut outcome = Outcome::Fine;
        for partition in response.topics.iter().flat_map(|t| t.partitions.iter()) {
            let this = self.outcome(partition.error_code);
            if outcome == Outcome::Fine {
                outcome = this;
            }
        }
        outcome
    }

    async fn leave(&mut self) {
        let version = self.versions.leave_group;
        let mut request =
            LeaveGroupRequest::default().with_group_id(GroupId(StrBytes::from_string(self.group.group_id.clone())));
        if version >= 3 {
            let mut identity = MemberIdentity::default().with_member_id(StrBytes::from_string(self.member_id.clone()));
            if version >= 5 {
                identity.reason = Some(StrBytes::from_static_str("ringstream-loadgen run ended"));
            }
            request.members = vec![identity];
        } else {
            request.member_id = StrBytes::from_string(self.member_id.clone());
        }
        let Some(conn) = self.coordinator.as_mut() else { return };
        match conn.call::<_, LeaveGroupResponse>(ApiKey::LeaveGroup, version, &request).await {
            Ok(response) => {
                // UNKNOWN_MEMBER_ID: already gone (and counted when found out).
                let codes = std::iter::once(response.error_code).chain(response.members.iter().map(|m| m.error_code));
                for code in codes.filter(|&c| c != 0 && c != codes::unknown_member_id) {
                    self.count(&wire::error_kind(code));
                }
            }
            Err(e) => self.failed(e),
        }
    }

    /// One Fetch to each leader of the assigned partitions.
    async fn fetch_all(&mut self) {
        let leaders: Vec<SocketAddr> = self.assigned.keys().copied().collect();
        for leader in leaders {
            if !self.fetchers.contains_key(&leader) {
                match Conn::connect(leader, self.group.connect_timeout).await {
                    Ok(conn) => {
                        self.fetchers.insert(leader, (conn.stream, Fetcher::new(self.spec)));
                    }
                    Err(e) => {
                        self.failed(e);
                        glommio::timer::sleep(Duration::from_millis(error_backoff_ms)).await;
                        continue;
                    }
                }
            }
            let (stream, fetcher) = self.fetchers.get_mut(&leader).expect("connected above");
            let offsets = self.assigned.get_mut(&leader).expect("listed above");
            match fetcher.fetch(stream, offsets, self.reading).await {
                Ok(false) => {}
                Ok(true) => glommio::timer::sleep(Duration::from_millis(error_backoff_ms)).await,
                Err(()) => {
                    self.fetchers.remove(&leader); // counted; connect again next time
                    glommio::timer::sleep(Duration::from_millis(error_backoff_ms)).await;
                }
            }
        }
    }
}

/// A member's JoinGroup metadata: ConsumerProtocolSubscription v0 (the
/// version, then the topics and null user data).
fn subscription(topic: &str) -> Bytes {
    let subscription =
        ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_string(topic.to_owned())]);
    let mut out = BytesMut::with_capacity(16 + topic.len());
    out.put_i16(0);
    subscription.encode(&mut out, 0).expect("v0 subscription encodes");
    out.freeze()
}

/// A member's SyncGroup assignment: ConsumerProtocolAssignment v0.
fn encode_assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let topics = if partitions.is_empty() {
        Vec::new()
    } else {
        vec![cpa::TopicPartition::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(partitions.to_vec())]
    };
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(topics);
    let mut out = BytesMut::with_capacity(16 + topic.len() + 4 * partitions.len());
    out.put_i16(0);
    assignment.encode(&mut out, 0).expect("v0 assignment encodes");
    out.freeze()
}

/// The topics a member's JoinGroup metadata subscribes to. Like Kafka, a
/// newer subscription version is read as the newest this codec knows.
fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut bytes = Bytes::copy_from_slice(metadata);
    let version = i16::from_be_bytes([*metadata.first()?, *metadata.get(1)?]);
    if version < 0 {
        return None;
    }
    bytes = bytes.slice(2..);
    let subscription = ConsumerProtocolSubscription::decode(&mut bytes, version.min(3)).ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

/// Kafka's RangeAssignor for one topic: the members subscribed to it,
/// sorted by member id, get contiguous ranges of the sorted partitions, the
/// first `partitions % members` one more. Every member is listed (others
/// with nothing). Also returns how many subscriptions did not decode.
fn range_assignment(
    members: &[JoinGroupResponseMember],
    topic: &str,
    partitions: &[i32],
) -> (Vec<(String, Vec<i32>)>, u64) {
    let mut undecodable = 0;
    let mut subscribed: Vec<&str> = Vec::new();
    for member in members {
        match subscribed_topics(&member.metadata) {
            Some(topics) if topics.iter().any(|t| t == topic) => subscribed.push(member.member_id.as_str()),
            Some(_) => {}
            None => undecodable += 1,
        }
    }
    subscribed.sort_unstable();
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    let mut ranges: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    if !subscribed.is_empty() {
        let per_member = sorted.len() / subscribed.len();
        let extra = sorted.len() % subscribed.len();
        for (i, member) in subscribed.iter().enumerate() {
            let start = i * per_member + i.min(extra);
            let length = per_member + usize::from(i < extra);
            ranges.insert(member, sorted[start..start + length].to_vec());
        }
    }
    let assignment = members
        .iter()
        .map(|m| (m.member_id.to_string(), ranges.get(m.member_id.as_str()).cloned().unwrap_or_default()))
        .collect();
    (assignment, undecodable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, metadata: Bytes) -> JoinGroupResponseMember {
        JoinGroupResponseMember::default().with_member_id(StrBytes::from_string(id.to_owned())).with_metadata(metadata)
    }

    #[test]
    fn range_assignment_matches_kafkas_range_assignor() {
        let members = vec![
            member("c-3", subscription("orders")),
            member("a-1", subscription("orders")),
            member("b-2", subscription("orders")),
            member("z-other", subscription("audit")),
            member("bad", Bytes::from_static(&[0, 0, 0])),
        ];
        let (assignment, undecodable) = range_assignment(&members, "orders", &[3, 0, 1, 2]);
        assert_eq!(undecodable, 1);
        let by_member: BTreeMap<String, Vec<i32>> = assignment.into_iter().collect();
        // 4 partitions over 3 members sorted by id: 2, 1, 1.
        assert_eq!(by_member["a-1"], vec![0, 1]);
        assert_eq!(by_member["b-2"], vec![2]);
        assert_eq!(by_member["c-3"], vec![3]);
        assert_eq!(by_member["z-other"], Vec::<i32>::new());
        assert_eq!(by_member["bad"], Vec::<i32>::new());
        // More members than partitions: the last get nothing.
        let many: Vec<_> = (0..5).map(|i| member(&format!("m{i}"), subscription("t"))).collect();
        let (assignment, _) = range_assignment(&many, "t", &[0, 1]);
        let counts: Vec<usize> = assignment.iter().map(|(_, p)| p.len()).collect();
        assert_eq!(counts, vec![1, 1, 0, 0, 0]);
    }

    #[test]
    fn assignments_and_subscriptions_decode() {
        let bytes = encode_assignment("orders", &[4, 5]);
        let decoded = ringstream_client::decode_consumer_assignment(&bytes).unwrap();
        assert_eq!(decoded.version, 0);
        let partitions: Vec<(String, i32)> =
            decoded.partitions.iter().map(|tp| (tp.topic.clone(), tp.partition.0)).collect();
        assert_eq!(partitions, vec![("orders".to_owned(), 4), ("orders".to_owned(), 5)]);
        assert!(ringstream_client::decode_consumer_assignment(&encode_assignment("orders", &[]))
            .unwrap()
            .partitions
            .is_empty());
        assert_eq!(subscribed_topics(&subscription("orders")), Some(vec!["orders".to_owned()]));
        // A v3 subscription (what the Java client sends) reads too.
        let v3 = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("x"), StrBytes::from_static_str("y")])
            .with_generation_id(7);
        let mut out = BytesMut::new();
        out.put_i16(3);
        v3.encode(&mut out, 3).unwrap();
        assert_eq!(subscribed_topics(&out), Some(vec!["x".to_owned(), "y".to_owned()]));
        assert_eq!(subscribed_topics(&[]), None);
        assert_eq!(subscribed_topics(&[0xff, 0xff]), None);
    }

    #[test]
    fn tally_publishes_the_slowest_group() {
        let progress = Progress::default();
        let tally = GroupTally::new(2);
        tally.add(0, 10, &progress);
        assert_eq!(Progress::get(&progress.consumed_records), 0);
        tally.add(1, 4, &progress);
        assert_eq!(Progress::get(&progress.consumed_records), 4);
        tally.add(1, 20, &progress);
        assert_eq!(Progress::get(&progress.consumed_records), 10);
        tally.add(0, 14, &progress);
        assert_eq!(Progress::get(&progress.consumed_records), 24);
    }
}
