//! A transactional id's state and the transaction coordinator's decisions,
//! as pure functions from the current state and a request to the state to
//! write (or Kafka's error code). The coordinator writes the new state to
//! `__transaction_state` and acts on it only once it is durable.
//!
//! States follow Kafka's `TransactionState`: Empty → Ongoing (partitions
//! added) → PrepareCommit | PrepareAbort (EndTxn, or a timeout's abort)
//! → CompleteCommit | CompleteAbort (every partition has its marker) →
//! Ongoing again with the next transaction, or Empty after a new
//! InitProducerId.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use ringstream_core::error_code;
use ringstream_core::limits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name for the state (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub fn preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// One transactional id, as written to the transaction log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump: a retried InitProducerId (KIP-360)
    /// that presents it gets the current one back.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the open (or completing) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction began (its first partition), ms.
    pub start_ms: i64,
    pub update_ms: i64,
}

/// What InitProducerId does for a transactional id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitPlan {
    /// A new id: a fresh producer id, epoch 0.
    Fresh,
    /// The next epoch (a fresh producer id when the epoch is exhausted).
    Bump,
    /// The request retried a bump that already happened: answer it again.
    Current,
    /// A transaction is open: abort it with a bumped epoch (fencing its
    /// producer), then the client retries (CONCURRENT_TRANSACTIONS).
    FenceOngoing,
}

/// InitProducerId: `expected` is the (producer id, epoch) a v3+ client
/// presents when it already has one (KIP-360).
pub fn plan_init(meta: Option<&TxnMeta>, expected: Option<(i64, i16)>) -> Result<InitPlan, i16> {
    let Some(meta) = meta else { return Ok(InitPlan::Fresh) };
    if meta.state.preparing() {
        return Err(error_code::CONCURRENT_TRANSACTIONS);
    }
    if let Some((id, epoch)) = expected {
        if id != meta.producer_id {
            return Err(error_code::PRODUCER_FENCED);
        }
        if epoch != meta.producer_epoch {
            return if epoch == meta.last_producer_epoch && meta.state == TxnState::Empty {
                Ok(InitPlan::Current)
            } else {
                Err(error_code::PRODUCER_FENCED)
            };
        }
    }
    Ok(match meta.state {
        TxnState::Ongoing => InitPlan::FenceOngoing,
        _ => InitPlan::Bump,
    })
}

/// The producer id and epoch a transactional request must present.
pub fn check_producer(meta: Option<&TxnMeta>, producer_id: i64, epoch: i16) -> Result<&TxnMeta, i16> {
    let meta = meta.ok_or(error_code::INVALID_PRODUCER_ID_MAPPING)?;
    if meta.producer_id != producer_id {
        return Err(error_code::INVALID_PRODUCER_ID_MAPPING);
    }
    if meta.producer_epoch != epoch {
        return Err(error_code::PRODUCER_FENCED);
    }
    Ok(meta)
}

/// AddPartitionsToTxn / AddOffsetsToTxn: the state to write, or None when
/// every partition is in the open transaction already.
pub fn plan_add(
    meta: Option<&TxnMeta>,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<Option<TxnMeta>, i16> {
    let meta = check_producer(meta, producer_id, epoch)?;
    if meta.state.preparing() {
        return Err(error_code::CONCURRENT_TRANSACTIONS);
    }
    let ongoing = meta.state == TxnState::Ongoing;
    if ongoing && partitions.iter().all(|p| meta.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = meta.clone();
    if !ongoing {
        next.partitions.clear();
        next.start_ms = now_ms;
    }
    next.partitions.extend(partitions.iter().cloned());
    if next.partitions.len() > limits::txn_partitions_max {
        return Err(error_code::INVALID_REQUEST);
    }
    next.state = TxnState::Ongoing;
    next.update_ms = now_ms;
    Ok(Some(next))
}

/// What EndTxn does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndPlan {
    /// Write PrepareCommit or PrepareAbort, answer, then write the markers.
    Prepare(TxnMeta),
    /// A retry of an EndTxn that completed: answer NONE.
    Done,
}

pub fn plan_end(
    meta: Option<&TxnMeta>,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndPlan, i16> {
    let meta = check_producer(meta, producer_id, epoch)?;
    match (meta.state, commit) {
        (TxnState::Ongoing, _) => {
            let mut next = meta.clone();
            next.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
            next.update_ms = now_ms;
            Ok(EndPlan::Prepare(next))
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(EndPlan::Done),
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Err(error_code::CONCURRENT_TRANSACTIONS),
        _ => Err(error_code::INVALID_TXN_STATE),
    }
}

/// The coordinator aborts a transaction on its own (timeout, or an
/// InitProducerId that found it open): the epoch is bumped first, so the
/// producer is fenced, and the markers carry the new epoch.
pub fn plan_fence_abort(meta: &TxnMeta, now_ms: i64) -> Option<TxnMeta> {
    if meta.state != TxnState::Ongoing || meta.producer_epoch >= i16::MAX - 1 {
        return None;
    }
    let mut next = meta.clone();
    next.last_producer_epoch = meta.producer_epoch;
    next.producer_epoch = meta.producer_epoch + 1;
    next.state = TxnState::PrepareAbort;
    next.update_ms = now_ms;
    Some(next)
}

/// The state after every marker is written.
pub fn completed(meta: &TxnMeta, now_ms: i64) -> TxnMeta {
    let mut next = meta.clone();
    next.state = match meta.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        _ => TxnState::CompleteAbort,
    };
    next.partitions.clear();
    next.update_ms = now_ms;
    next
}

/// Kafka's `Utils.abs(transactionalId.hashCode()) % partitions`.
pub fn txn_partition(transactional_id: &str, partitions: i32) -> i32 {
    crate::groups::group_partition(transactional_id, partitions)
}

/// The record key of a transactional id in the transaction log: version 0
/// and the id, as Kafka writes it.
pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + transactional_id.len());
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&(transactional_id.len() as i16).to_be_bytes());
    key.extend_from_slice(transactional_id.as_bytes());
    key
}

pub fn decode_key(key: &[u8]) -> Option<String> {
    if key.len() < 4 || key[..2] != [0, 0] {
        return None;
    }
    let len = i16::from_be_bytes([key[2], key[3]]);
    let id = key.get(4..4 + usize::try_from(len).ok()?)?;
    String::from_utf8(id.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(state: TxnState) -> TxnMeta {
        TxnMeta {
            producer_id: 7,
            producer_epoch: 3,
            last_producer_epoch: 2,
            timeout_ms: 60_000,
            state,
            partitions: BTreeSet::new(),
            start_ms: 0,
            update_ms: 0,
        }
    }

    #[test]
    fn init_fences_and_retries() {
        assert_eq!(plan_init(None, None), Ok(InitPlan::Fresh));
        assert_eq!(plan_init(Some(&meta(TxnState::CompleteCommit)), None), Ok(InitPlan::Bump));
        assert_eq!(plan_init(Some(&meta(TxnState::Ongoing)), None), Ok(InitPlan::FenceOngoing));
        assert_eq!(plan_init(Some(&meta(TxnState::PrepareAbort)), None), Err(error_code::CONCURRENT_TRANSACTIONS));
        assert_eq!(plan_init(Some(&meta(TxnState::Empty)), Some((7, 2))), Ok(InitPlan::Current));
        assert_eq!(plan_init(Some(&meta(TxnState::Empty)), Some((7, 1))), Err(error_code::PRODUCER_FENCED));
        assert_eq!(plan_init(Some(&meta(TxnState::Empty)), Some((8, 3))), Err(error_code::PRODUCER_FENCED));
    }

    #[test]
    fn add_end_and_complete() {
        let parts = vec![("t".to_owned(), 0), ("t".to_owned(), 1)];
        let empty = meta(TxnState::Empty);
        assert_eq!(plan_add(Some(&empty), 7, 2, &parts, 5), Err(error_code::PRODUCER_FENCED));
        assert_eq!(plan_add(Some(&empty), 8, 3, &parts, 5), Err(error_code::INVALID_PRODUCER_ID_MAPPING));
        assert_eq!(plan_add(None, 7, 3, &parts, 5), Err(error_code::INVALID_PRODUCER_ID_MAPPING));
        let ongoing = plan_add(Some(&empty), 7, 3, &parts, 5).unwrap().unwrap();
        assert_eq!((ongoing.state, ongoing.partitions.len(), ongoing.start_ms), (TxnState::Ongoing, 2, 5));
        assert_eq!(plan_add(Some(&ongoing), 7, 3, &parts[..1], 6), Ok(None));
        assert_eq!(plan_end(Some(&empty), 7, 3, true, 7), Err(error_code::INVALID_TXN_STATE));
        let EndPlan::Prepare(prepared) = plan_end(Some(&ongoing), 7, 3, true, 7).unwrap() else { panic!() };
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        assert_eq!(plan_end(Some(&prepared), 7, 3, true, 8), Err(error_code::CONCURRENT_TRANSACTIONS));
        assert_eq!(plan_end(Some(&prepared), 7, 3, false, 8), Err(error_code::INVALID_TXN_STATE));
        assert_eq!(plan_add(Some(&prepared), 7, 3, &parts, 8), Err(error_code::CONCURRENT_TRANSACTIONS));
        let done = completed(&prepared, 9);
        assert_eq!((done.state, done.partitions.len()), (TxnState::CompleteCommit, 0));
        assert_eq!(plan_end(Some(&done), 7, 3, true, 10), Ok(EndPlan::Done));
        assert_eq!(plan_end(Some(&done), 7, 3, false, 10), Err(error_code::INVALID_TXN_STATE));
        let fenced = plan_fence_abort(&ongoing, 11).unwrap();
        assert_eq!((fenced.state, fenced.producer_epoch, fenced.last_producer_epoch), (TxnState::PrepareAbort, 4, 3));
        assert_eq!(plan_add(Some(&completed(&fenced, 12)), 7, 3, &parts, 13), Err(error_code::PRODUCER_FENCED));
    }

    #[test]
    fn keys_round_trip() {
        assert_eq!(decode_key(&encode_key("my-txn")), Some("my-txn".to_owned()));
        assert_eq!(decode_key(&[0, 1, 0, 0]), None);
        assert_eq!(decode_key(&[0, 0, 0, 9, b'a']), None);
    }
}
