//! Typed questions and small changes for the owner of one partition:
//! leader epochs, producers, timestamps, log config. Each is a variant of
//! `PartitionQuery` carried by `Message::Partition`, answered on the owner
//! by `answer`, so a reader can follow any of them from the caller to the
//! storage call that serves it.

use futures_channel::oneshot;

use super::*;
use ringstream_storage::checkpoint::EpochCheckpoint;
use ringstream_storage::replica::Role;

/// An active idempotent producer: (id, epoch, last sequence, last timestamp).
pub type ProducerRow = (i64, i16, i32, i64, i64);

/// What is asked of a partition's owner, with where its answer goes.
pub enum PartitionQuery {
    /// The partition's offsets and its leader-epoch checkpoint.
    Epochs { reply: oneshot::Sender<StorageResult<(PartitionOffsets, EpochCheckpoint)>> },
    /// Active idempotent producers: (id, epoch, last sequence, last timestamp).
    Producers { reply: oneshot::Sender<StorageResult<Vec<ProducerRow>>> },
    /// The record with the largest timestamp, as (offset, timestamp).
    MaxTimestamp { reply: oneshot::Sender<StorageResult<Option<(Offset, i64)>>> },
    /// The first record at or after `timestamp_ms`, as (offset, timestamp).
    OffsetForTimestamp { timestamp_ms: i64, reply: oneshot::Sender<StorageResult<Option<(Offset, i64)>>> },
    /// Replaces the partition's log config (retention, segment size, ...).
    SetLogConfig { config: LogConfig, reply: oneshot::Sender<StorageResult<()>> },
    /// The partition's replication role from the cluster metadata: sole
    /// replica, leader (epoch stamped into batches from now on, ISR) or
    /// follower.
    SetRole { role: Role, reply: oneshot::Sender<StorageResult<()>> },
    /// Waits until the high watermark passes `offset` (acks=all: the
    /// batch ending there is on every replica of the ISR), or `timeout`;
    /// true when it has.
    WaitCommitted { offset: Offset, timeout: std::time::Duration, reply: oneshot::Sender<StorageResult<bool>> },
}

/// A partition that is not (or no longer) here answers `Moved`: the asker
/// finds its new owner.
fn here_or_moved(storage: &ShardStorage, tp: &TopicPartition) -> StorageResult<()> {
    if storage.owns(tp) {
        Ok(())
    } else {
        Err(StorageError::Moved(tp.clone()))
    }
}

/// Answers `query` about `tp` from this shard's storage.
pub(super) async fn answer(storage: ShardStorage, tp: TopicPartition, query: PartitionQuery) {
    match query {
        PartitionQuery::Epochs { reply } => {
            let answer = here_or_moved(&storage, &tp).and_then(|()| Ok((storage.offsets(&tp)?, storage.epochs(&tp)?)));
            let _ = reply.send(answer);
        }
        PartitionQuery::Producers { reply } => {
            let answer = match here_or_moved(&storage, &tp) {
                Ok(()) => storage.producers(&tp).await,
                Err(e) => Err(e),
            };
            let _ = reply.send(answer);
        }
        PartitionQuery::MaxTimestamp { reply } => {
            let answer = match here_or_moved(&storage, &tp) {
                Ok(()) => storage.max_timestamp(&tp).await,
                Err(e) => Err(e),
            };
            let _ = reply.send(answer);
        }
        PartitionQuery::OffsetForTimestamp { timestamp_ms, reply } => {
            let answer = match here_or_moved(&storage, &tp) {
                Ok(()) => storage.offset_for_timestamp(&tp, timestamp_ms).await,
                Err(e) => Err(e),
            };
            let _ = reply.send(answer);
        }
        PartitionQuery::SetLogConfig { config, reply } => {
            let _ = reply.send(here_or_moved(&storage, &tp).and_then(|()| storage.set_log_config(&tp, config)));
        }
        PartitionQuery::SetRole { role, reply } => {
            let _ = reply.send(here_or_moved(&storage, &tp).and_then(|()| storage.set_role(&tp, role)));
        }
        PartitionQuery::WaitCommitted { offset, timeout, reply } => {
            let answer = match here_or_moved(&storage, &tp) {
                Ok(()) => storage.wait_for_high_watermark(&tp, offset, timeout).await,
                Err(e) => Err(e),
            };
            let _ = reply.send(answer);
        }
    }
}

impl Shard {
    /// Asks `tp`'s owner, here or through the router, and follows the
    /// partition if it moved. `ask` builds the query around a fresh reply
    /// channel for each attempt.
    async fn ask<T>(
        &self,
        tp: &TopicPartition,
        ask: impl Fn(oneshot::Sender<StorageResult<T>>) -> PartitionQuery,
    ) -> StorageResult<T> {
        let mut attempt = 0;
        loop {
            let owner = self.route(tp).await?;
            let (reply, receiver) = oneshot::channel();
            let query = ask(reply);
            if owner == self.id {
                answer(self.storage.clone(), tp.clone(), query).await;
            } else {
                self.send(owner, Message::Partition { tp: tp.clone(), query }).await?;
            }
            match receiver.await.unwrap_or(Err(StorageError::ShuttingDown)) {
                Err(e) if self.should_retry(&e, tp, attempt) => attempt += 1,
                other => return other,
            }
        }
    }

    /// `tp`'s offsets and leader-epoch checkpoint, from its owner.
    pub async fn epochs(&self, tp: &TopicPartition) -> StorageResult<(PartitionOffsets, EpochCheckpoint)> {
        self.ask(tp, |reply| PartitionQuery::Epochs { reply }).await
    }

    /// `tp`'s active idempotent producers, from its owner.
    pub async fn producers(&self, tp: &TopicPartition) -> StorageResult<Vec<ProducerRow>> {
        self.ask(tp, |reply| PartitionQuery::Producers { reply }).await
    }

    /// `tp`'s record with the largest timestamp, from its owner.
    pub async fn max_timestamp(&self, tp: &TopicPartition) -> StorageResult<Option<(Offset, i64)>> {
        self.ask(tp, |reply| PartitionQuery::MaxTimestamp { reply }).await
    }

    /// `tp`'s first record at or after `timestamp_ms`, from its owner.
    pub async fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        timestamp_ms: i64,
    ) -> StorageResult<Option<(Offset, i64)>> {
        self.ask(tp, |reply| PartitionQuery::OffsetForTimestamp { timestamp_ms, reply }).await
    }

    /// Sets `tp`'s replication role on its owner (the cluster's leadership).
    pub async fn set_role(&self, tp: &TopicPartition, role: Role) -> StorageResult<()> {
        self.ask(tp, |reply| PartitionQuery::SetRole { role: role.clone(), reply }).await
    }

    /// Waits on `tp`'s owner until its high watermark passes `offset`, or
    /// `timeout`; true when it has.
    pub async fn wait_committed(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        timeout: std::time::Duration,
    ) -> StorageResult<bool> {
        self.ask(tp, |reply| PartitionQuery::WaitCommitted { offset, timeout, reply }).await
    }

    /// Sets `tp`'s log config on its owner.
    pub async fn set_log_config(&self, tp: &TopicPartition, config: LogConfig) -> StorageResult<()> {
        self.ask(tp, |reply| PartitionQuery::SetLogConfig { config: config.clone(), reply }).await
    }
}
