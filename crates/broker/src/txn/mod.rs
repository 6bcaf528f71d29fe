//! Transactions: the transaction coordinator, and the transaction markers
//! partition leaders write.
//!
//! Placement: a transactional id belongs to partition
//! `abs(javaHash(id)) % transaction.state.log.num.partitions` of the
//! internal log `__transaction_state`, and the broker leading that
//! partition coordinates it, on the shard owning the partition. Requests
//! arrive on any shard; handlers route them there with `on_coordinator`.
//!
//! Runs on: every shard; each coordinates the ids of the transaction-log
//! partitions it owns and this broker leads (`coordinator::TxnCoordinator`).

pub mod coordinator;
pub mod markers;
pub mod state;

use std::rc::Rc;

use ringstream_core::types::TopicPartition;
use ringstream_shard::Shard;

pub use coordinator::TxnCoordinator;

pub use crate::broker::topics::TXN_TOPIC;
pub use crate::config::{txn_log_config as log_config, TxnConfig};

pub fn txn_log_partition(partition: i32) -> TopicPartition {
    TopicPartition::new(TXN_TOPIC.to_owned(), partition)
}

/// Runs `task` with the coordinator of `transactional_id`, on its shard.
/// Err: the error code to answer with (NOT_COORDINATOR when another broker
/// leads the id's partition, COORDINATOR_NOT_AVAILABLE when this one should
/// but has not opened it yet).
pub async fn on_coordinator<T, F, Fut>(shard: &Rc<Shard>, transactional_id: &str, task: F) -> Result<T, i16>
where
    T: Send + 'static,
    F: FnOnce(Rc<TxnCoordinator>, i32) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, i16>> + 'static,
{
    use ringstream_core::error_code;
    let broker = crate::broker::local();
    let partition = state::txn_partition(transactional_id, broker.txn_partitions());
    if broker.leadership(TXN_TOPIC, partition).is_err() {
        return Err(error_code::NOT_COORDINATOR);
    }
    let tp = txn_log_partition(partition);
    let Some(owner) = shard.owner(&tp) else { return Err(error_code::COORDINATOR_NOT_AVAILABLE) };
    // A closure (see `Shard::run_on`): the coordinator lives above the router.
    let answer = shard
        .run_on(owner, move |_| async move {
            let coordinator = coordinator::local();
            coordinator.ensure_loaded(partition).await?;
            task(coordinator, partition).await
        })
        .await
        .unwrap_or(Err(error_code::COORDINATOR_NOT_AVAILABLE));
    if let Err(code) = &answer {
        tracing::debug!(transactional_id, code, "transaction request refused");
    }
    answer
}

/// PRODUCER_FENCED exists from a version on per API (KIP-588); older
/// clients get INVALID_PRODUCER_EPOCH for it, as from Kafka.
pub fn fenced_for(code: i16, version: i16, fenced_from: i16) -> i16 {
    use ringstream_core::error_code;
    if code == error_code::PRODUCER_FENCED && version < fenced_from {
        error_code::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}
