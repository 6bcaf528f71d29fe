//! The records of the internal offsets log (`__consumer_offsets-N`): their
//! encoding, and their decoding with every bound checked.
//!
//! Each record's key names what it describes and its value is the latest
//! state (a null value is a tombstone), so replaying a partition from its
//! start and keeping the last value per key rebuilds every group in it. The
//! format is ours (not Kafka's `__consumer_offsets` schema); the first byte
//! of every key and value is a type or version byte, so it can evolve.

use bytes::Bytes;

/// Key type byte: a committed offset, keyed by (group, topic, partition).
const KEY_OFFSET: u8 = 1;
/// Key type byte: a group's metadata, keyed by group.
const KEY_GROUP: u8 = 2;
const VALUE_VERSION: u8 = 1;
/// Value version byte of a KIP-848 consumer group's record (under a group key).
const VALUE_CONSUMER_GROUP: u8 = 2;

/// What a record is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKey {
    Offset { group: String, topic: String, partition: i32 },
    Group { group: String },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

/// A committed offset as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// A member as stored with its group (after a rebalance completed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The member's metadata for the group's chosen protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata as stored: written when a generation's assignment is
/// in place, when the group empties, and when a static member is replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: Option<String>,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state (offset expiry counts from
    /// the moment a group became empty).
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

/// A KIP-848 member as stored with its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub rebalance_timeout_ms: i32,
    pub subscribed: Vec<String>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    pub assigned: Vec<(String, i32)>,
    pub revoking: Vec<(String, i32)>,
}

/// A KIP-848 consumer group as stored: written whenever its membership,
/// epochs or assignments change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupValue {
    pub epoch: i32,
    pub members: Vec<StoredConsumerMember>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordValue {
    Offset(OffsetValue),
    Group(GroupValue),
    ConsumerGroup(ConsumerGroupValue),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad offsets-log record: {0}")]
pub struct DecodeError(&'static str);

pub fn encode_key(key: &RecordKey) -> Vec<u8> {
    let mut out = Vec::new();
    match key {
        RecordKey::Offset { group, topic, partition } => {
            out.push(KEY_OFFSET);
            put_str(&mut out, group);
            put_str(&mut out, topic);
            out.extend_from_slice(&partition.to_be_bytes());
        }
        RecordKey::Group { group } => {
            out.push(KEY_GROUP);
            put_str(&mut out, group);
        }
    }
    out
}

pub fn encode_value(value: &RecordValue) -> Vec<u8> {
    let version = if matches!(value, RecordValue::ConsumerGroup(_)) { VALUE_CONSUMER_GROUP } else { VALUE_VERSION };
    let mut out = vec![version];
    match value {
        RecordValue::ConsumerGroup(g) => {
            out.extend_from_slice(&g.epoch.to_be_bytes());
            out.extend_from_slice(&(g.members.len() as u32).to_be_bytes());
            for m in &g.members {
                put_str(&mut out, &m.member_id);
                put_opt_str(&mut out, m.instance_id.as_deref());
                put_opt_str(&mut out, m.rack_id.as_deref());
                put_str(&mut out, &m.client_id);
                put_str(&mut out, &m.client_host);
                out.extend_from_slice(&m.epoch.to_be_bytes());
                out.extend_from_slice(&m.previous_epoch.to_be_bytes());
                out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
                out.extend_from_slice(&(m.subscribed.len() as u32).to_be_bytes());
                for t in &m.subscribed {
                    put_str(&mut out, t);
                }
                put_opt_str(&mut out, m.regex.as_deref());
                put_opt_str(&mut out, m.assignor.as_deref());
                for set in [&m.assigned, &m.revoking] {
                    out.extend_from_slice(&(set.len() as u32).to_be_bytes());
                    for (t, p) in set {
                        put_str(&mut out, t);
                        out.extend_from_slice(&p.to_be_bytes());
                    }
                }
            }
        }
        RecordValue::Offset(v) => {
            out.extend_from_slice(&v.offset.to_be_bytes());
            out.extend_from_slice(&v.leader_epoch.to_be_bytes());
            out.extend_from_slice(&v.commit_timestamp_ms.to_be_bytes());
            put_opt_str(&mut out, v.metadata.as_deref());
        }
        RecordValue::Group(g) => {
            put_opt_str(&mut out, g.protocol_type.as_deref());
            out.extend_from_slice(&g.generation.to_be_bytes());
            put_opt_str(&mut out, g.protocol.as_deref());
            put_opt_str(&mut out, g.leader.as_deref());
            out.extend_from_slice(&g.state_timestamp_ms.to_be_bytes());
            out.extend_from_slice(&(g.members.len() as u32).to_be_bytes());
            for m in &g.members {
                put_str(&mut out, &m.member_id);
                put_opt_str(&mut out, m.instance_id.as_deref());
                put_str(&mut out, &m.client_id);
                put_str(&mut out, &m.client_host);
                out.extend_from_slice(&m.session_timeout_ms.to_be_bytes());
                out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
                put_bytes(&mut out, &m.subscription);
                put_bytes(&mut out, &m.assignment);
            }
        }
    }
    out
}

pub fn decode_key(bytes: &[u8]) -> Result<RecordKey, DecodeError> {
    let mut r = Reader(bytes);
    let key = match r.u8()? {
        KEY_OFFSET => RecordKey::Offset { group: r.str()?, topic: r.str()?, partition: r.i32()? },
        KEY_GROUP => RecordKey::Group { group: r.str()? },
        _ => return Err(DecodeError("unknown key type")),
    };
    r.end()?;
    Ok(key)
}

/// Decodes the value stored under `key` (its type follows the key's).
pub fn decode_value(key: &RecordKey, bytes: &[u8]) -> Result<RecordValue, DecodeError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    let value = match (key, version) {
        (RecordKey::Group { .. }, VALUE_CONSUMER_GROUP) => {
            let epoch = r.i32()?;
            let count = r.count(40)?;
            let mut members = Vec::with_capacity(count);
            for _ in 0..count {
                let (member_id, instance_id, rack_id) = (r.str()?, r.opt_str()?, r.opt_str()?);
                let (client_id, client_host) = (r.str()?, r.str()?);
                let (epoch, previous_epoch, rebalance_timeout_ms) = (r.i32()?, r.i32()?, r.i32()?);
                let topics = r.count(4)?;
                let mut subscribed = Vec::with_capacity(topics);
                for _ in 0..topics {
                    subscribed.push(r.str()?);
                }
                let (regex, assignor) = (r.opt_str()?, r.opt_str()?);
                let mut sets = [Vec::new(), Vec::new()];
                for set in &mut sets {
                    let n = r.count(8)?;
                    set.reserve(n);
                    for _ in 0..n {
                        set.push((r.str()?, r.i32()?));
                    }
                }
                let [assigned, revoking] = sets;
                members.push(StoredConsumerMember {
                    member_id,
                    instance_id,
                    rack_id,
                    client_id,
                    client_host,
                    epoch,
                    previous_epoch,
                    rebalance_timeout_ms,
                    subscribed,
                    regex,
                    assignor,
                    assigned,
                    revoking,
                });
            }
            RecordValue::ConsumerGroup(ConsumerGroupValue { epoch, members })
        }
        (_, VALUE_VERSION) => decode_v1(key, &mut r)?,
        _ => return Err(DecodeError("unknown value version")),
    };
    r.end()?;
    Ok(value)
}

fn decode_v1(key: &RecordKey, r: &mut Reader<'_>) -> Result<RecordValue, DecodeError> {
    let value = match key {
        RecordKey::Offset { .. } => RecordValue::Offset(OffsetValue {
            offset: r.i64()?,
            leader_epoch: r.i32()?,
            commit_timestamp_ms: r.i64()?,
            metadata: r.opt_str()?,
        }),
        RecordKey::Group { .. } => {
            let protocol_type = r.opt_str()?;
            let generation = r.i32()?;
            let protocol = r.opt_str()?;
            let leader = r.opt_str()?;
            let state_timestamp_ms = r.i64()?;
            let count = r.u32()? as usize;
            // Every member takes at least 30 bytes: bound the count by what is left.
            if count > r.0.len() / 30 {
                return Err(DecodeError("member count exceeds the record"));
            }
            let mut members = Vec::with_capacity(count);
            for _ in 0..count {
                members.push(StoredMember {
                    member_id: r.str()?,
                    instance_id: r.opt_str()?,
                    client_id: r.str()?,
                    client_host: r.str()?,
                    session_timeout_ms: r.i32()?,
                    rebalance_timeout_ms: r.i32()?,
                    subscription: Bytes::copy_from_slice(r.bytes()?),
                    assignment: Bytes::copy_from_slice(r.bytes()?),
                });
            }
            RecordValue::Group(GroupValue { protocol_type, generation, protocol, leader, state_timestamp_ms, members })
        }
    };
    Ok(value)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
        Some(s) => put_str(out, s),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).ok().filter(|&n| n != u32::MAX);
    assert!(len.is_some(), "field of {} bytes is too long to store", b.len());
    out.extend_from_slice(&len.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// An element count, bounded by what is left (each element takes at
    /// least `min_bytes`), so no count from the record allocates beyond it.
    fn count(&mut self, min_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > self.0.len() / min_bytes.max(1) {
            return Err(DecodeError("count exceeds the record"));
        }
        Ok(n)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        self.array().map(i32::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        self.array().map(i64::from_be_bytes)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()?;
        if len == u32::MAX {
            return Err(DecodeError("null where a value is required"));
        }
        self.take(len as usize)
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| DecodeError("string is not UTF-8"))
    }

    fn opt_str(&mut self) -> Result<Option<String>, DecodeError> {
        if self.0.len() >= 4 && self.0[..4] == u32::MAX.to_be_bytes() {
            self.0 = &self.0[4..];
            return Ok(None);
        }
        self.str().map(Some)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_every_truncation_is_an_error() {
        let offset_key = RecordKey::Offset { group: "g".into(), topic: "orders".into(), partition: 7 };
        let offset = RecordValue::Offset(OffsetValue {
            offset: 42,
            leader_epoch: -1,
            metadata: Some("meta".into()),
            commit_timestamp_ms: 1_700_000_000_000,
        });
        let group_key = RecordKey::Group { group: "g".into() };
        let group = RecordValue::Group(GroupValue {
            protocol_type: Some("consumer".into()),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp_ms: 5,
            members: vec![StoredMember {
                member_id: "m-1".into(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 30_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::new(),
            }],
        });
        let consumer_group = RecordValue::ConsumerGroup(ConsumerGroupValue {
            epoch: 9,
            members: vec![StoredConsumerMember {
                member_id: "m".into(),
                instance_id: Some("i".into()),
                rack_id: None,
                client_id: "c".into(),
                client_host: "/h".into(),
                epoch: 8,
                previous_epoch: 7,
                rebalance_timeout_ms: 300_000,
                subscribed: vec!["a".into(), "b".into()],
                regex: Some("x-.*".into()),
                assignor: None,
                assigned: vec![("a".into(), 0), ("b".into(), 3)],
                revoking: vec![("a".into(), 1)],
            }],
        });
        let group_key_2 = RecordKey::Group { group: "g2".into() };
        for (key, value) in [(offset_key, offset), (group_key, group), (group_key_2, consumer_group)] {
            let (k, v) = (encode_key(&key), encode_value(&value));
            assert_eq!(decode_key(&k).unwrap(), key);
            assert_eq!(decode_value(&key, &v).unwrap(), value);
            for cut in 0..k.len() {
                assert!(decode_key(&k[..cut]).is_err());
            }
            for cut in 0..v.len() {
                assert!(decode_value(&key, &v[..cut]).is_err());
            }
            let mut longer = v.clone();
            longer.push(0);
            assert!(decode_value(&key, &longer).is_err());
        }
    }

    #[test]
    fn a_huge_member_count_is_refused_before_allocating() {
        let key = RecordKey::Group { group: "g".into() };
        let mut v = vec![VALUE_VERSION];
        v.extend_from_slice(&u32::MAX.to_be_bytes()); // protocol type: null
        v.extend_from_slice(&1i32.to_be_bytes());
        v.extend_from_slice(&u32::MAX.to_be_bytes());
        v.extend_from_slice(&u32::MAX.to_be_bytes());
        v.extend_from_slice(&0i64.to_be_bytes());
        v.extend_from_slice(&(u32::MAX - 1).to_be_bytes());
        assert_eq!(decode_value(&key, &v), Err(DecodeError("member count exceeds the record")));
    }
}
