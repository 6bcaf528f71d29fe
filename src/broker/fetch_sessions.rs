//! Incremental fetch sessions (KIP-227), one cache per shard.
//!
//! A consumer fetching many partitions opens a session with a full fetch
//! (session id 0, epoch 0); later fetches send only what changed (new fetch
//! offsets, forgotten partitions) and get back only partitions with news
//! (records, an error, a moved high watermark or log start). The cache holds
//! the partitions, their fetch positions and what was last reported.
//!
//! Sessions live on the shard of the connection that opened them. A client
//! that reconnects to another shard gets FETCH_SESSION_ID_NOT_FOUND and
//! starts a new session with a full fetch, as KIP-227 intends.
//!
//! Pure: no I/O. Bounded: at most `fetch_sessions_max` sessions per shard
//! (the least recently used goes), `session_partitions_max` partitions each,
//! and sessions idle past `fetch_session_idle_ms` are dropped.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Kafka's `max.incremental.fetch.session.cache.slots` default.
pub const fetch_sessions_max: usize = 1000;
pub const session_partitions_max: usize = 10_000;
pub const fetch_session_idle_ms: u64 = 120_000;

pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// Where one partition of a session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPartition {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// What the last response reported; None before the first.
    pub reported: Option<(i64, i64)>,
}

#[derive(Debug)]
pub struct FetchSession {
    /// (topic, partition) in the order the client added them.
    pub order: Vec<(String, i32)>,
    pub partitions: BTreeMap<(String, i32), SessionPartition>,
    next_epoch: i32,
    last_used: Instant,
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
}

impl SessionRequest {
    pub fn of(version: i16, id: i32, epoch: i32) -> SessionRequest {
        match (version >= 7, id, epoch) {
            (false, _, _) => SessionRequest::Sessionless,
            (true, 0, 0) => SessionRequest::Open,
            (true, 0, _) => SessionRequest::Sessionless,
            (true, id, -1) => SessionRequest::Close { id },
            (true, id, epoch) => SessionRequest::Incremental { id, epoch },
        }
    }
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX { 1 } else { epoch + 1 }
}

#[derive(Default)]
pub struct FetchSessionCache {
    sessions: HashMap<i32, FetchSession>,
    last_id: i32,
}

impl FetchSessionCache {
    pub fn close(&mut self, id: i32) {
        self.sessions.remove(&id);
    }

    /// Opens a session over `partitions` (in request order); returns its id,
    /// or None when the request is too large to cache (served sessionless).
    pub fn open(&mut self, partitions: Vec<((String, i32), SessionPartition)>, now: Instant) -> Option<i32> {
        if partitions.len() > session_partitions_max {
            return None;
        }
        self.expire(now);
        if self.sessions.len() >= fetch_sessions_max {
            let oldest = self.sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| *id).expect("non-empty");
            self.sessions.remove(&oldest);
        }
        let id = loop {
            self.last_id = if self.last_id == i32::MAX { 1 } else { self.last_id + 1 };
            if !self.sessions.contains_key(&self.last_id) {
                break self.last_id;
            }
        };
        let order = partitions.iter().map(|(key, _)| key.clone()).collect();
        self.sessions.insert(
            id,
            FetchSession { order, partitions: partitions.into_iter().collect(), next_epoch: 1, last_used: now },
        );
        Some(id)
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
        self.expire(now);
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
                        return Err(crate::protocol::error_code::INVALID_REQUEST);
                    }
                    session.order.push(key.clone());
                    session.partitions.insert(key, SessionPartition { fetch_offset, partition_max_bytes, reported: None });
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

    fn expire(&mut self, now: Instant) {
        let idle = Duration::from_millis(fetch_session_idle_ms);
        self.sessions.retain(|_, s| now.duration_since(s.last_used) < idle);
    }
}

/// Whether an incremental response must carry a partition: it was named in
/// the request, or it has records, an error, or offsets that moved since the
/// last report.
pub fn has_news(mentioned: bool, records: bool, error: bool, reported: Option<(i64, i64)>, now: (i64, i64)) -> bool {
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
    }

    #[test]
    fn incremental_updates_check_epochs_and_track_partitions() {
        let now = Instant::now();
        let mut cache = FetchSessionCache::default();
        let id = cache.open(vec![(("t".into(), 0), part(5)), (("t".into(), 1), part(7))], now).unwrap();
        assert_eq!(cache.update(id, 2, vec![], vec![], now).unwrap_err(), INVALID_FETCH_SESSION_EPOCH);
        assert_eq!(cache.update(id + 1, 1, vec![], vec![], now).unwrap_err(), FETCH_SESSION_ID_NOT_FOUND);
        let session = cache.update(id, 1, vec![(("t".into(), 0), 9, 500), (("u".into(), 0), 0, 500)], vec![("t".into(), 1)], now).unwrap();
        assert_eq!(session.order, vec![("t".to_owned(), 0), ("u".to_owned(), 0)]);
        assert_eq!(session.partitions[&("t".to_owned(), 0)].fetch_offset, 9);
        assert!(cache.update(id, 2, vec![], vec![], now).is_ok(), "epochs advance by one");
        cache.close(id);
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_is_bounded_and_sessions_expire() {
        let now = Instant::now();
        let mut cache = FetchSessionCache::default();
        let first = cache.open(vec![], now).unwrap();
        for i in 1..fetch_sessions_max + 5 {
            cache.open(vec![], now + Duration::from_millis(i as u64)).unwrap();
        }
        assert_eq!(cache.len(), fetch_sessions_max);
        assert!(cache.get_mut(first).is_none(), "least recently used evicted");
        let later = now + Duration::from_millis(fetch_session_idle_ms + 10_000);
        cache.open(vec![], later).unwrap();
        assert_eq!(cache.len(), 1, "idle sessions expired");
        assert!(!has_news(false, false, false, Some((5, 0)), (5, 0)));
        assert!(has_news(false, false, false, Some((5, 0)), (6, 0)));
        assert!(has_news(false, false, false, None, (5, 0)));
    }
}
