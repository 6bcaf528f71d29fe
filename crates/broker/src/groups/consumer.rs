//! KIP-848 consumer groups (`group.protocol=consumer`): the broker assigns
//! partitions ("uniform" or "range") and each member reconciles toward its
//! target by heartbeats (ConsumerGroupHeartbeat).
//!
//! Epochs: the group epoch moves when membership, a subscription or the
//! subscribed topics' partition counts change; the target assignment is
//! then recomputed for that epoch. A member first gives up (revokes) what
//! its target lacks; only then does its epoch move to the target's, and it
//! gets each new partition once no other member still holds it. So a
//! partition is never owned by two members at once.
//!
//! Pure state, no I/O: the coordinator calls in with the time and a view of
//! the topics, and sends what comes back.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::store::{ConsumerGroupValue, StoredConsumerMember};
use ringstream_core::limits::subscription_regex_bytes_max;
use ringstream_protocol::error_code::*;

/// What the group sees of the topics: partition counts, and the names (for
/// regex subscriptions; only asked when a member has a regex).
pub trait TopicView {
    fn partitions(&self, topic: &str) -> Option<i32>;
    fn names(&self) -> Vec<String>;
    /// Whether this broker coordinates the groups of offsets-log partition
    /// `partition` (in a cluster: whether it leads that partition).
    fn coordinates(&self, _partition: i32) -> bool {
        true
    }
    /// The leader epoch of offsets-log partition `partition` while this
    /// broker leads it (a single node: 0).
    fn offsets_leader_epoch(&self, _partition: i32) -> Option<i32> {
        Some(0)
    }
}

const INVALID_REGULAR_EXPRESSION: i16 = 128;

/// (topic name, partition)
pub type Tp = (String, i32);

pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// Heartbeat interval while a group forms or reconciles.
pub const fast_heartbeat_ms: i32 = 250;
/// How long a group counts as forming after its first member arrives.
pub const forming_ms: i64 = 3000;

pub struct HeartbeatArgs {
    pub member_id: String,
    pub epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// None: unchanged since the last heartbeat.
    pub subscribed: Option<Vec<String>>,
    /// None: unchanged; Some(""): no regex.
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// Partitions the member owns now; None: unchanged.
    pub owned: Option<Vec<Tp>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Clone, Debug, Default)]
pub struct HeartbeatResult {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub epoch: i32,
    /// The member's full assignment, when it changed (None: unchanged).
    pub assignment: Option<Vec<Tp>>,
}

impl HeartbeatResult {
    pub fn error(error: i16, message: &str, member_id: &str) -> HeartbeatResult {
        HeartbeatResult {
            error,
            message: Some(message.to_owned()),
            member_id: member_id.to_owned(),
            epoch: -1,
            assignment: None,
        }
    }
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub subscribed: Vec<String>,
    /// A regex subscription (RE2 syntax, whole-name match, as Kafka's RE2J).
    pub regex: Option<(String, regex::Regex)>,
    /// Topics subscribed by name or by the regex, as of the last refresh.
    pub resolved: Vec<String>,
    pub assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// What the member owns, as last told.
    pub assigned: BTreeSet<Tp>,
    /// Taken away, not yet confirmed released by the member.
    pub revoking: BTreeSet<Tp>,
    pub revoke_deadline_ms: i64,
    pub session_deadline_ms: i64,
    last_sent: Option<BTreeSet<Tp>>,
}

#[derive(Default)]
pub struct ConsumerGroup {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, Member>,
    pub target: HashMap<String, BTreeSet<Tp>>,
    /// Subscribed topics and their partition counts, as last assigned.
    topics_seen: Vec<(String, i32)>,
    /// When the group last went from no members to some.
    pub formed_at_ms: i64,
    /// Membership, an epoch or an assignment changed: the group's record
    /// must be written.
    pub dirty: bool,
}

impl ConsumerGroup {
    /// The heartbeat interval to hand a member now. While the group forms
    /// (its first `forming_ms` with members) or is not Stable, members
    /// heartbeat every `fast_ms` at most, so a member that must give up
    /// partitions hears of it in that time instead of a whole interval
    /// (members usually start together; the first to arrive gets everything).
    pub fn heartbeat_interval_ms(&self, configured_ms: i32, now: i64) -> i32 {
        let forming = now - self.formed_at_ms < forming_ms;
        if forming || self.state_name() != "Stable" {
            configured_ms.min(fast_heartbeat_ms)
        } else {
            configured_ms
        }
    }

    /// Kafka's consumer-group states.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.assignment_epoch || !m.revoking.is_empty()) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members.values().flat_map(|m| m.resolved.iter().cloned()).collect()
    }

    /// The assignor the members prefer (the first one named wins ties), or "uniform".
    pub fn assignor(&self) -> &str {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes.into_iter().max_by_key(|(_, n)| *n).map_or("uniform", |(a, _)| a)
    }

    fn bump(&mut self) {
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.dirty = true;
    }

    /// The group as stored in the offsets log.
    pub fn stored(&self) -> ConsumerGroupValue {
        ConsumerGroupValue {
            epoch: self.epoch,
            members: self
                .members
                .values()
                .map(|m| StoredConsumerMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    epoch: m.epoch,
                    previous_epoch: m.previous_epoch,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscribed: m.subscribed.clone(),
                    regex: m.regex.as_ref().map(|(p, _)| p.clone()),
                    assignor: m.assignor.clone(),
                    assigned: m.assigned.iter().cloned().collect(),
                    revoking: m.revoking.iter().cloned().collect(),
                })
                .collect(),
        }
    }

    /// A group read back from the offsets log. Members keep their epochs and
    /// partitions (they carry on heartbeating), their sessions restart at
    /// `now`, and the group epoch moves on so the target assignment is
    /// recomputed, sticking to what members hold.
    pub fn restore(value: ConsumerGroupValue, now: i64, session_timeout_ms: i32) -> ConsumerGroup {
        let mut group = ConsumerGroup {
            epoch: value.epoch,
            assignment_epoch: value.epoch,
            formed_at_ms: now,
            ..ConsumerGroup::default()
        };
        for m in value.members {
            let regex = m.regex.as_deref().and_then(|p| compile_regex(p).ok().flatten());
            let assigned: BTreeSet<Tp> = m.assigned.into_iter().collect();
            group.target.insert(m.member_id.clone(), assigned.clone());
            group.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    rack_id: m.rack_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    epoch: m.epoch,
                    previous_epoch: m.previous_epoch,
                    subscribed: m.subscribed,
                    regex,
                    resolved: Vec::new(),
                    assignor: m.assignor,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    assigned: assigned.clone(),
                    revoking: m.revoking.into_iter().collect(),
                    revoke_deadline_ms: now + i64::from(m.rebalance_timeout_ms.max(1)),
                    session_deadline_ms: now + i64::from(session_timeout_ms),
                    last_sent: Some(assigned),
                },
            );
        }
        if !group.members.is_empty() {
            group.bump();
        }
        group.dirty = false;
        group
    }

    pub fn remove_member(&mut self, id: &str) -> bool {
        let removed = self.members.remove(id).is_some();
        if removed {
            self.target.remove(id);
            self.bump();
        }
        removed
    }

    /// One ConsumerGroupHeartbeat. `topics` gives a topic's partition count.
    pub fn heartbeat(
        &mut self,
        args: HeartbeatArgs,
        new_member_id: impl FnOnce() -> String,
        now: i64,
        session_timeout_ms: i32,
        topics: &dyn TopicView,
    ) -> HeartbeatResult {
        if args.assignor.as_deref().is_some_and(|a| !ASSIGNORS.contains(&a)) {
            return HeartbeatResult::error(
                UNSUPPORTED_ASSIGNOR,
                "supported assignors: uniform, range",
                &args.member_id,
            );
        }
        let regex = match args.regex.as_deref().map(compile_regex).transpose() {
            Ok(regex) => regex,
            Err(message) => return HeartbeatResult::error(INVALID_REGULAR_EXPRESSION, &message, &args.member_id),
        };
        if args.epoch == -1 || args.epoch == -2 {
            // Leaving (-2: a static member leaving for now; its instance
            // id is free again at once here).
            self.remove_member(&args.member_id);
            self.refresh_target(topics);
            return HeartbeatResult { member_id: args.member_id, epoch: args.epoch, ..HeartbeatResult::default() };
        }
        let mut fresh = false;
        let id = if args.epoch == 0 {
            let id = if args.member_id.is_empty() { new_member_id() } else { args.member_id.clone() };
            // A rejoin with epoch 0 starts over; a static instance's new
            // member takes over its previous member's place.
            let replaced = args.instance_id.as_ref().and_then(|i| {
                self.members.values().find(|m| m.instance_id.as_ref() == Some(i) && m.id != id).map(|m| m.id.clone())
            });
            let carried = replaced.and_then(|old| {
                let m = self.members.remove(&old)?;
                self.target.remove(&old);
                Some(m.assigned)
            });
            self.members.remove(&id);
            if self.members.is_empty() {
                self.formed_at_ms = now;
            }
            let subscribed = match (args.subscribed.clone(), &regex) {
                (Some(names), _) => names,
                (None, Some(Some(_))) => Vec::new(),
                (None, _) => {
                    return HeartbeatResult::error(
                        INVALID_REQUEST,
                        "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                        &id,
                    )
                }
            };
            self.members.insert(
                id.clone(),
                Member {
                    id: id.clone(),
                    instance_id: args.instance_id.clone(),
                    rack_id: args.rack_id.clone(),
                    client_id: args.client_id.clone(),
                    client_host: args.client_host.clone(),
                    epoch: 0,
                    previous_epoch: -1,
                    subscribed: normalized(subscribed),
                    regex: regex.clone().flatten(),
                    resolved: Vec::new(),
                    assignor: args.assignor.clone(),
                    rebalance_timeout_ms: args.rebalance_timeout_ms,
                    assigned: carried.unwrap_or_default(),
                    revoking: BTreeSet::new(),
                    revoke_deadline_ms: 0,
                    session_deadline_ms: now + i64::from(session_timeout_ms),
                    last_sent: None,
                },
            );
            self.bump();
            fresh = true;
            id
        } else {
            let Some(m) = self.members.get(&args.member_id) else {
                return HeartbeatResult::error(UNKNOWN_MEMBER_ID, "unknown member id", &args.member_id);
            };
            // The previous epoch is accepted only from a member that missed
            // the last response: it owns nothing it was not given.
            let owned_ok = match &args.owned {
                None => true,
                Some(owned) => owned.iter().all(|tp| m.assigned.contains(tp) || m.revoking.contains(tp)),
            };
            if args.epoch != m.epoch && !(args.epoch == m.previous_epoch && owned_ok) {
                return HeartbeatResult::error(
                    FENCED_MEMBER_EPOCH,
                    "the member epoch is fenced; rejoin",
                    &args.member_id,
                );
            }
            args.member_id.clone()
        };
        let m = self.members.get_mut(&id).expect("member present");
        m.session_deadline_ms = now + i64::from(session_timeout_ms);
        m.client_id = args.client_id;
        m.client_host = args.client_host;
        if args.rebalance_timeout_ms > 0 {
            m.rebalance_timeout_ms = args.rebalance_timeout_ms;
        }
        let mut changed = false;
        if let Some(subscribed) = args.subscribed {
            let subscribed = normalized(subscribed);
            if subscribed != m.subscribed {
                m.subscribed = subscribed;
                changed = true;
            }
        }
        if let Some(regex) = regex.filter(|_| !fresh) {
            if regex.as_ref().map(|r| &r.0) != m.regex.as_ref().map(|r| &r.0) {
                m.regex = regex;
                changed = true;
            }
        }
        if args.assignor.is_some() && args.assignor != m.assignor {
            m.assignor = args.assignor;
            changed = true;
        }
        if changed {
            self.bump();
        }
        self.refresh_target(topics);
        let owned = args.owned;
        self.reconcile(&id, owned.as_deref(), now, fresh)
    }

    /// Recomputes the target assignment if the group epoch moved or the
    /// subscribed topics changed shape.
    pub fn refresh_target(&mut self, topics: &dyn TopicView) {
        let names = if self.members.values().any(|m| m.regex.is_some()) { topics.names() } else { Vec::new() };
        for m in self.members.values_mut() {
            let mut resolved = m.subscribed.clone();
            if let Some((_, regex)) = &m.regex {
                resolved.extend(names.iter().filter(|n| regex.is_match(n)).cloned());
            }
            m.resolved = normalized(resolved);
        }
        let seen: Vec<(String, i32)> =
            self.subscribed_topics().into_iter().filter_map(|t| topics.partitions(&t).map(|n| (t, n))).collect();
        if seen != self.topics_seen {
            self.topics_seen = seen;
            if self.assignment_epoch == self.epoch {
                self.bump();
            }
        }
        if self.assignment_epoch == self.epoch {
            return;
        }
        let counts: HashMap<String, i32> = self.topics_seen.iter().cloned().collect();
        let subscriptions: BTreeMap<String, Vec<String>> =
            self.members.values().map(|m| (m.id.clone(), m.resolved.clone())).collect();
        let current: BTreeMap<String, BTreeSet<Tp>> = self.target.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        self.target = match self.assignor() {
            "range" => assign_range(&subscriptions, &counts),
            _ => assign_uniform(&subscriptions, &counts, &current),
        };
        self.assignment_epoch = self.epoch;
    }

    /// Moves member `id` toward its target: revoke first, then take what
    /// no one else still holds.
    fn reconcile(&mut self, id: &str, owned: Option<&[Tp]>, now: i64, fresh: bool) -> HeartbeatResult {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let held_elsewhere: BTreeSet<Tp> = self
            .members
            .values()
            .filter(|m| m.id != id)
            .flat_map(|m| m.assigned.iter().chain(m.revoking.iter()).cloned())
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let m = self.members.get_mut(id).expect("member present");
        let before = (m.epoch, m.assigned.len(), m.revoking.len());
        if !m.revoking.is_empty() {
            if let Some(owned) = owned {
                if owned.iter().all(|tp| !m.revoking.contains(tp)) {
                    m.revoking.clear();
                }
            }
        }
        if m.revoking.is_empty() {
            let revoke: BTreeSet<Tp> = m.assigned.difference(&target).cloned().collect();
            if !revoke.is_empty() {
                for tp in &revoke {
                    m.assigned.remove(tp);
                }
                m.revoking = revoke;
                m.revoke_deadline_ms = now + i64::from(m.rebalance_timeout_ms.max(1));
            } else {
                for tp in target.difference(&m.assigned).cloned().collect::<Vec<_>>() {
                    if !held_elsewhere.contains(&tp) {
                        m.assigned.insert(tp);
                    }
                }
                if m.epoch != assignment_epoch {
                    m.previous_epoch = m.epoch;
                    m.epoch = assignment_epoch;
                }
            }
        }
        if (m.epoch, m.assigned.len(), m.revoking.len()) != before {
            self.dirty = true;
        }
        let m = self.members.get_mut(id).expect("member present");
        // Sent when it changed, on joining, and when the member reports
        // owning something else (it missed a response).
        let mismatch = owned.is_some_and(|o| o.iter().cloned().collect::<BTreeSet<Tp>>() != m.assigned);
        let send = fresh || m.last_sent.as_ref() != Some(&m.assigned) || mismatch;
        let assignment = if send {
            m.last_sent = Some(m.assigned.clone());
            Some(m.assigned.iter().cloned().collect())
        } else {
            None
        };
        HeartbeatResult { error: NONE, message: None, member_id: m.id.clone(), epoch: m.epoch, assignment }
    }

    /// Members whose session ended, or who kept revoked partitions past
    /// their rebalance timeout, are removed. Returns the ids removed.
    pub fn expire(&mut self, now: i64, topics: &dyn TopicView) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline_ms <= now || (!m.revoking.is_empty() && m.revoke_deadline_ms <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove_member(id);
        }
        if !gone.is_empty() {
            self.refresh_target(topics);
        }
        gone
    }
}

/// Some(None): the regex is cleared (""); Some(Some(..)): compiled for a
/// whole-name match.
fn compile_regex(pattern: &str) -> Result<Option<(String, regex::Regex)>, String> {
    if pattern.is_empty() {
        return Ok(None);
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(subscription_regex_bytes_max)
        .build()
        .map(|r| Some((pattern.to_owned(), r)))
        .map_err(|e| format!("invalid SubscribedTopicRegex {pattern:?}: {e}"))
}

fn normalized(mut topics: Vec<String>) -> Vec<String> {
    topics.sort();
    topics.dedup();
    topics
}

/// "range": per topic, the members subscribed to it (by id) take
/// contiguous ranges, the first ones one partition more.
pub fn assign_range(
    subscriptions: &BTreeMap<String, Vec<String>>,
    counts: &HashMap<String, i32>,
) -> HashMap<String, BTreeSet<Tp>> {
    let mut out: HashMap<String, BTreeSet<Tp>> = subscriptions.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let mut topics: Vec<(&String, &i32)> = counts.iter().collect();
    topics.sort();
    for (topic, &partitions) in topics {
        let members: Vec<&String> = subscriptions.iter().filter(|(_, t)| t.contains(topic)).map(|(m, _)| m).collect();
        if members.is_empty() {
            continue;
        }
        let (each, extra) = (partitions / members.len() as i32, partitions % members.len() as i32);
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let n = each + i32::from((i as i32) < extra);
            let set = out.get_mut(*m).expect("every member has an entry");
            for p in next..next + n {
                set.insert((topic.clone(), p));
            }
            next += n;
        }
    }
    out
}

/// "uniform": spreads all subscribed partitions evenly (counts differ by at
/// most one where subscriptions are alike), keeping each partition with its
/// current owner wherever that keeps the balance.
pub fn assign_uniform(
    subscriptions: &BTreeMap<String, Vec<String>>,
    counts: &HashMap<String, i32>,
    current: &BTreeMap<String, BTreeSet<Tp>>,
) -> HashMap<String, BTreeSet<Tp>> {
    let mut out: HashMap<String, BTreeSet<Tp>> = subscriptions.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    if subscriptions.is_empty() {
        return out;
    }
    let mut all: Vec<Tp> = Vec::new();
    let mut topics: Vec<(&String, &i32)> = counts.iter().collect();
    topics.sort();
    for (topic, &n) in topics {
        if subscriptions.values().any(|t| t.contains(topic)) {
            all.extend((0..n).map(|p| (topic.clone(), p)));
        }
    }
    let members = subscriptions.len();
    let floor = all.len() / members;
    let mut ceil_slots = all.len() % members;
    let eligible = |m: &str, tp: &Tp| subscriptions.get(m).is_some_and(|t| t.contains(&tp.0));
    let mut taken: BTreeSet<Tp> = BTreeSet::new();
    // 1. Keep up to `floor` of each member's current partitions.
    for (m, held) in current {
        if !subscriptions.contains_key(m) {
            continue;
        }
        let set = out.get_mut(m).expect("entry");
        for tp in held.iter().filter(|tp| eligible(m, tp) && all.binary_search(tp).is_ok()) {
            if set.len() >= floor {
                break;
            }
            if taken.insert(tp.clone()) {
                set.insert(tp.clone());
            }
        }
    }
    // 2. Members that held more keep one extra while ceil slots last.
    for (m, held) in current {
        if ceil_slots == 0 {
            break;
        }
        if !subscriptions.contains_key(m) {
            continue;
        }
        if let Some(tp) =
            held.iter().find(|tp| eligible(m, tp) && all.binary_search(tp).is_ok() && !taken.contains(*tp))
        {
            let set = out.get_mut(m).expect("entry");
            if set.len() == floor {
                taken.insert(tp.clone());
                set.insert(tp.clone());
                ceil_slots -= 1;
            }
        }
    }
    // 3. The rest go to the least-loaded eligible member (by id on ties).
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let best =
            subscriptions.keys().filter(|m| eligible(m, tp)).min_by_key(|m| (out[*m].len(), (*m).clone())).cloned();
        if let Some(m) = best {
            out.get_mut(&m).expect("entry").insert(tp.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[&str], topics: &[&str]) -> BTreeMap<String, Vec<String>> {
        members.iter().map(|m| (m.to_string(), topics.iter().map(|t| t.to_string()).collect())).collect()
    }

    fn sizes(a: &HashMap<String, BTreeSet<Tp>>) -> Vec<usize> {
        let mut v: Vec<usize> = a.values().map(BTreeSet::len).collect();
        v.sort();
        v
    }

    #[test]
    fn uniform_balances_and_is_sticky() {
        let counts: HashMap<String, i32> = [("t".to_string(), 4)].into();
        let two = assign_uniform(&subs(&["a", "b"], &["t"]), &counts, &BTreeMap::new());
        assert_eq!(sizes(&two), [2, 2]);
        let current: BTreeMap<String, BTreeSet<Tp>> = two.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let three = assign_uniform(&subs(&["a", "b", "c"], &["t"]), &counts, &current);
        assert_eq!(sizes(&three), [1, 1, 2]);
        // a and b lost at most one partition each: only moved ones moved.
        for m in ["a", "b"] {
            assert!(three[m].is_subset(&current[m]), "{m} kept only its own");
        }
        let all: BTreeSet<Tp> = three.values().flatten().cloned().collect();
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let counts: HashMap<String, i32> = [("t".to_string(), 5)].into();
        let a = assign_range(&subs(&["a", "b"], &["t"]), &counts);
        assert_eq!(a["a"].iter().map(|t| t.1).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(a["b"].iter().map(|t| t.1).collect::<Vec<_>>(), [3, 4]);
    }

    fn beat(g: &mut ConsumerGroup, id: &str, epoch: i32, owned: Option<Vec<Tp>>, now: i64) -> HeartbeatResult {
        struct OneTopic;
        impl TopicView for OneTopic {
            fn partitions(&self, t: &str) -> Option<i32> {
                (t == "t").then_some(4)
            }
            fn names(&self) -> Vec<String> {
                vec!["t".into()]
            }
        }
        g.heartbeat(
            HeartbeatArgs {
                member_id: id.into(),
                epoch,
                instance_id: None,
                rack_id: None,
                rebalance_timeout_ms: 1000,
                subscribed: (epoch == 0).then(|| vec!["t".to_string()]),
                regex: None,
                assignor: None,
                owned,
                client_id: "c".into(),
                client_host: "h".into(),
            },
            || unreachable!(),
            now,
            45_000,
            &OneTopic,
        )
    }

    #[test]
    fn a_partition_moves_only_after_its_owner_released_it() {
        let mut g = ConsumerGroup::default();
        let a = beat(&mut g, "a", 0, None, 0);
        assert_eq!(a.assignment.as_ref().map(Vec::len), Some(4));
        let a_epoch = a.epoch;
        // b joins: the target splits, but a still owns everything.
        let b = beat(&mut g, "b", 0, None, 1);
        assert_eq!(b.assignment, Some(vec![]), "nothing is free yet");
        assert_eq!(g.state_name(), "Reconciling");
        // a is told to revoke two, keeping its epoch until it confirms.
        let a = beat(&mut g, "a", a_epoch, Some((0..4).map(|p| ("t".into(), p)).collect()), 2);
        let kept = a.assignment.clone().unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(a.epoch, a_epoch);
        // b still gets nothing while a has not released them.
        assert_eq!(beat(&mut g, "b", b.epoch, None, 3).assignment, None);
        // a confirms; it moves to the new epoch.
        let a2 = beat(&mut g, "a", a_epoch, Some(kept.clone()), 4);
        assert!(a2.epoch > a_epoch);
        let b2 = beat(&mut g, "b", b.epoch, Some(vec![]), 5);
        let got = b2.assignment.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|tp| !kept.contains(tp)));
        assert_eq!(g.state_name(), "Stable");
        // A stale epoch is fenced.
        assert_eq!(beat(&mut g, "a", a2.epoch + 7, None, 6).error, FENCED_MEMBER_EPOCH);
        assert_eq!(beat(&mut g, "zz", 3, None, 6).error, UNKNOWN_MEMBER_ID);
    }

    #[test]
    fn members_heartbeat_fast_while_the_group_forms_or_reconciles() {
        let mut g = ConsumerGroup::default();
        let a = beat(&mut g, "a", 0, None, 10_000);
        assert_eq!(g.heartbeat_interval_ms(5000, 10_001), fast_heartbeat_ms, "forming");
        assert_eq!(g.heartbeat_interval_ms(100, 10_001), 100, "never slower than configured");
        assert_eq!(g.heartbeat_interval_ms(5000, 10_000 + forming_ms), 5000, "formed and stable");
        beat(&mut g, "b", 0, None, 20_000);
        assert_eq!(g.state_name(), "Reconciling");
        assert_eq!(g.heartbeat_interval_ms(5000, 20_000), fast_heartbeat_ms, "reconciling");
        let _ = a;
    }
}
