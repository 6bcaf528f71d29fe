//! Incremental fetch sessions (KIP-227), one cache per shard.
//!
//! A consumer fetching many partitions opens a session with a full fetch
//! (session id 0, epoch 0); later fetches send only what changed (new fetch
//! offsets, forgotten partitions) and get back only partitions with news
//! (records, an error, a moved high watermark or log start). The cache holds
//! the partitions, their fetch positions and what was last reported.
//!
//! Sessions live on the shard of the connection that opened them. A client
//! that reconnects to another shard gets FETCH_SESSION_ID_NOT_FOUND for its
//! next incremental fetch and starts a new session with a full fetch, as
//! KIP-227 intends; the session it left behind on the old shard is stale
//! and is the first to be evicted there. Ids carry their shard, so the id
//! it names is never another client's session on the new shard.
//!
//! The request modes follow Kafka's FetchManager: epoch -1 is sessionless
//! (closing the named session, if any); epoch 0 is a full fetch that opens
//! a session, closing the named one first (franz-go recovers from a session
//! error with exactly id X, epoch 0); any other epoch is incremental.
//!
//! Pure: no I/O. Bounded: at most `fetch_sessions_max` sessions per shard,
//! `session_partitions_max` partitions each. Eviction is Kafka's
//! (FetchSessionCache): a new session may take the place of a stale one
//! (unused for `fetch_session_eviction_ms`); failing that, of the smallest
//! session that has existed for `fetch_session_eviction_ms`, when the new one
//! is at least as large; privileged (follower) sessions may evict any
//! non-privileged one. Otherwise the new fetch is served without a session
//! (id 0), so busy consumers' sessions are never pulled from under them.

use ringstream_core::limits::fetch_sessions_max;
use ringstream_core::limits::session_partitions_max;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Kafka's `min.incremental.fetch.session.eviction.ms` default.
pub const fetch_session_eviction_ms: u64 = 120_000;

pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// Where one partition of a session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPartition {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// What the last response reported; None before the first.
    pub reported: Option<(i64, i64, i64)>,
}

#[derive(Debug)]
pub struct FetchSession {
    /// (topic, partition) in the order the client added them.
    pub order: Vec<(String, i32)>,
    pub partitions: BTreeMap<(String, i32), SessionPartition>,
    next_epoch: i32,
    last_used: Instant,
    created: Instant,
    /// A follower's session (replication): evictable only by another
    /// privileged one. Consumers' sessions are not privileged.
    privileged: bool,
}

impl FetchSession {
    /// Kafka's EvictableKey order: non-privileged before privileged, then
    /// smaller before larger.
    fn worth(&self) -> (bool, usize) {
        (self.privileged, self.partitions.len())
    }
}

/// What a fetch request asks of the session cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionRequest {
    /// No session (before v7, or id 0 with epoch -1): a full fetch.
    Sessionless,
    /// Id 0, epoch 0: a full fetch that opens a session.
    Open,
    /// An existing session's next incremental fetch.
    Incremental { id: i32, epoch: i32 },
    /// Id X, epoch -1: close X, then a full sessionless fetch.
    Close { id: i32 },
    /// Id X, epoch 0: close X, then a full fetch that opens a new session.
    Reopen { id: i32 },
}

impl SessionRequest {
    pub fn of(version: i16, id: i32, epoch: i32) -> SessionRequest {
        match (version >= 7, id, epoch) {
            (false, _, _) => SessionRequest::Sessionless,
            (true, 0, -1) => SessionRequest::Sessionless,
            (true, 0, 0) => SessionRequest::Open,
            (true, id, -1) => SessionRequest::Close { id },
            (true, id, 0) => SessionRequest::Reopen { id },
            // Id 0 is never a session's: FETCH_SESSION_ID_NOT_FOUND.
            (true, id, epoch) => SessionRequest::Incremental { id, epoch },
        }
    }
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// Session ids carry their shard in the low bits (`shard_id_bits`), so ids
/// are unique across the broker: a client whose reconnect lands on another
/// shard names a session that shard cannot hold, never another client's.
const shard_id_bits: u32 = 10;
const _: () = assert!(ringstream_core::limits::shards_max <= 1 << shard_id_bits);
/// The per-shard sequence part of an id; `seq << shard_id_bits | shard`
/// stays a positive i32.
const session_seq_max: i32 = (1 << (31 - shard_id_bits)) - 1;

#[derive(Default)]
pub struct FetchSessionCache {
    sessions: HashMap<i32, FetchSession>,
    shard: u16,
    last_seq: i32,
}

impl FetchSessionCache {
    /// The cache of shard `shard`, whose session ids only it hands out.
    pub fn for_shard(shard: u16) -> FetchSessionCache {
        assert!(usize::from(shard) < ringstream_core::limits::shards_max);
        FetchSessionCache { shard, ..FetchSessionCache::default() }
    }

    pub fn close(&mut self, id: i32) {
        self.sessions.remove(&id);
    }

    /// Opens a session over `partitions` (in request order); returns its id,
    /// or None when the request is too large to cache or the cache is full
    /// of sessions worth keeping (served sessionless).
    pub fn open(&mut self, partitions: Vec<((String, i32), SessionPartition)>, now: Instant) -> Option<i32> {
        self.open_as(partitions, false, now)
    }

    pub fn open_as(
        &mut self,
        partitions: Vec<((String, i32), SessionPartition)>,
        privileged: bool,
        now: Instant,
    ) -> Option<i32> {
        if partitions.len() > session_partitions_max {
            return None;
        }
        if self.sessions.len() >= fetch_sessions_max && !self.evict_for((privileged, partitions.len()), now) {
            return None;
        }
        let id = loop {
            self.last_seq = if self.last_seq == session_seq_max { 1 } else { self.last_seq + 1 };
            let id = self.last_seq << shard_id_bits | i32::from(self.shard);
            if !self.sessions.contains_key(&id) {
                break id;
            }
        };
        let order = partitions.iter().map(|(key, _)| key.clone()).collect();
        self.sessions.insert(
            id,
            FetchSession {
                order,
                partitions: partitions.into_iter().collect(),
                next_epoch: 1,
                last_used: now,
                created: now,
                privileged,
            },
        );
        Some(id)
    }

    /// Makes room for a new session worth `worth`, Kafka's way; false when
    /// no session may go.
    fn evict_for(&mut self, worth: (bool, usize), now: Instant) -> bool {
        let eviction = Duration::from_millis(fetch_session_eviction_ms);
        let stale = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_used) > eviction)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(id, _)| *id);
        if let Some(id) = stale {
            self.sessions.remove(&id);
            return true;
        }
        let privileged = worth.0;
        let least = self
            .sessions
            .iter()
            .filter(
                |(_, s)| if privileged { !s.privileged } else { now.saturating_duration_since(s.created) > eviction },
            )
            .min_by_key(|(id, s)| (s.worth(), **id))
            .map(|(id, s)| (*id, s.worth()));
        match least {
            Some((id, least)) if worth >= least => {
                self.sessions.remove(&id);
                true
            }
            _ => false,
        }
    }

    /// Applies an incremental request to its session: `updates` (added or
    /// moved partitions) and `forgotten` ones. Errors are Kafka codes.
    pub fn update(
        &mut self,
        id: i32,
        epoch: i32,
        updates: Vec<((String, i32), i64, i32)>,
        forgotten: Vec<(String, i32)>,
        now: Instant,
    ) -> Result<&mut FetchSession, i16> {
        let session = self.sessions.get_mut(&id).ok_or(FETCH_SESSION_ID_NOT_FOUND)?;
        if epoch != session.next_epoch {
            return Err(INVALID_FETCH_SESSION_EPOCH);
        }
        for key in forgotten {
            session.partitions.remove(&key);
            session.order.retain(|k| k != &key);
        }
        for (key, fetch_offset, partition_max_bytes) in updates {
            match session.partitions.get_mut(&key) {
                Some(p) => {
                    p.fetch_offset = fetch_offset;
                    p.partition_max_bytes = partition_max_bytes;
                }
                None => {
                    if session.partitions.len() >= session_partitions_max {
                        return Err(ringstream_protocol::error_code::INVALID_REQUEST);
                    }
                    session.order.push(key.clone());
                    session
                        .partitions
                        .insert(key, SessionPartition { fetch_offset, partition_max_bytes, reported: None });
                }
            }
        }
        session.next_epoch = next_epoch(epoch);
        session.last_used = now;
        Ok(session)
    }

    pub fn get_mut(&mut self, id: i32) -> Option<&mut FetchSession> {
        self.sessions.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// Whether an incremental response must carry a partition: it was named in
/// the request, or it has records, an error, or offsets that moved since the
/// last report.
pub fn has_news(
    mentioned: bool,
    records: bool,
    error: bool,
    reported: Option<(i64, i64, i64)>,
    now: (i64, i64, i64),
) -> bool {
    mentioned || records || error || reported != Some(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(offset: i64) -> SessionPartition {
        SessionPartition { fetch_offset: offset, partition_max_bytes: 1000, reported: None }
    }

    #[test]
    fn session_modes_follow_kip_227() {
        assert_eq!(SessionRequest::of(6, 5, 3), SessionRequest::Sessionless);
        assert_eq!(SessionRequest::of(7, 0, 0), SessionRequest::Open);
        assert_eq!(SessionRequest::of(7, 0, -1), SessionRequest::Sessionless);
        assert_eq!(SessionRequest::of(12, 9, -1), SessionRequest::Close { id: 9 });
        assert_eq!(SessionRequest::of(12, 9, 4), SessionRequest::Incremental { id: 9, epoch: 4 });
        // Regression (fetch_full_request_naming_a_session_reopens_it): Kafka
        // closes the named session and opens a new one; we used to answer
        // INVALID_FETCH_SESSION_EPOCH, and franz-go looped forever.
        assert_eq!(SessionRequest::of(16, 9, 0), SessionRequest::Reopen { id: 9 });
        assert_eq!(SessionRequest::of(16, 0, 3), SessionRequest::Incremental { id: 0, epoch: 3 });
        let mut cache = FetchSessionCache::default();
        assert_eq!(cache.update(0, 3, vec![], vec![], Instant::now()).unwrap_err(), FETCH_SESSION_ID_NOT_FOUND);
    }

    #[test]
    fn incremental_updates_check_epochs_and_track_partitions() {
        let now = Instant::now();
        let mut cache = FetchSessionCache::default();
        let id = cache.open(vec![(("t".into(), 0), part(5)), (("t".into(), 1), part(7))], now).unwrap();
        assert_eq!(cache.update(id, 2, vec![], vec![], now).unwrap_err(), INVALID_FETCH_SESSION_EPOCH);
        assert_eq!(cache.update(id + 1, 1, vec![], vec![], now).unwrap_err(), FETCH_SESSION_ID_NOT_FOUND);
        let session = cache
            .update(id, 1, vec![(("t".into(), 0), 9, 500), (("u".into(), 0), 0, 500)], vec![("t".into(), 1)], now)
            .unwrap();
        assert_eq!(session.order, vec![("t".to_owned(), 0), ("u".to_owned(), 0)]);
        assert_eq!(session.partitions[&("t".to_owned(), 0)].fetch_offset, 9);
        assert!(cache.update(id, 2, vec![], vec![], now).is_ok(), "epochs advance by one");
        cache.close(id);
        assert!(cache.is_empty());
    }

    /// Two shards never hand out the same id, so a reconnect landing on the
    /// other shard cannot touch another client's session there.
    #[test]
    fn session_ids_are_unique_across_shards() {
        let now = Instant::now();
        let mut a = FetchSessionCache::for_shard(0);
        let mut b = FetchSessionCache::for_shard(1);
        let ids_a: Vec<i32> = (0..100).map(|_| a.open(vec![], now).unwrap()).collect();
        let ids_b: Vec<i32> = (0..100).map(|_| b.open(vec![], now).unwrap()).collect();
        assert!(ids_a.iter().chain(&ids_b).all(|id| *id > 0));
        assert!(ids_a.iter().all(|id| !ids_b.contains(id)));
        assert_eq!(b.update(ids_a[0], 1, vec![], vec![], now).unwrap_err(), FETCH_SESSION_ID_NOT_FOUND);
        let mut last = FetchSessionCache::for_shard((ringstream_core::limits::shards_max - 1) as u16);
        last.last_seq = session_seq_max - 1;
        let high = last.open(vec![], now).unwrap();
        let wrapped = last.open(vec![], now).unwrap();
        assert!(high > 0 && wrapped > 0 && wrapped < high, "{high} then {wrapped}");
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_as_kafka_does() {
        let now = Instant::now();
        let eviction = Duration::from_millis(fetch_session_eviction_ms);
        let mut cache = FetchSessionCache::default();
        let first = cache.open(vec![(("t".into(), 0), part(0))], now).unwrap();
        let others: Vec<i32> = (1..fetch_sessions_max)
            .map(|i| cache.open(vec![(("t".into(), 0), part(0))], now + Duration::from_millis(i as u64)).unwrap())
            .collect();
        assert_eq!(cache.len(), fetch_sessions_max);
        // Full of young, active sessions: a new one is served sessionless
        // rather than evicting one in use (regression:
        // fetch_session_not_evicted_under_load).
        let soon = now + Duration::from_secs(1);
        assert_eq!(cache.open(vec![(("t".into(), 1), part(0))], soon), None);
        assert!(cache.get_mut(first).is_some());
        // A stale session (unused past the eviction time) makes room.
        let later = now + eviction + Duration::from_millis(500);
        for id in &others {
            cache.update(*id, 1, vec![], vec![], later).unwrap();
        }
        let new = cache.open(vec![], later + Duration::from_millis(1)).unwrap();
        assert!(cache.get_mut(first).is_none(), "the stale session went");
        assert_eq!(cache.len(), fetch_sessions_max);
        // No stale session: an old enough session goes only for one at
        // least as large; an empty one cannot evict a one-partition one.
        let t = later + Duration::from_millis(2);
        assert_eq!(cache.open(vec![], t), None);
        assert!(cache.open(vec![(("t".into(), 0), part(0)), (("t".into(), 1), part(0))], t).is_some());
        assert!(cache.get_mut(new).is_some(), "the young session stays");
        // Privileged (follower) sessions evict non-privileged ones at once.
        assert!(cache.open_as(vec![], true, t).is_some());
        assert_eq!(cache.len(), fetch_sessions_max);
        assert!(!has_news(false, false, false, Some((5, 0, 5)), (5, 0, 5)));
        assert!(has_news(false, false, false, Some((5, 0, 5)), (6, 0, 6)));
        assert!(has_news(false, false, false, None, (5, 0, 5)));
    }
}
