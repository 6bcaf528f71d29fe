//! The data plane through the router: appends, reads, offsets and record
//! deletion, served locally when this shard owns the partition and as one
//! typed message per owner shard otherwise.

use std::rc::Rc;

use bytes::Bytes;
use futures_channel::oneshot;

use super::*;

/// A read served by another shard: its batches lent, not copied.
pub struct LentRead {
    pub batches: LentBatches,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
}

/// One append of a `Message::AppendMany`.
pub struct RemoteAppendRequest {
    pub tp: TopicPartition,
    pub batch: Bytes,
    pub reply: oneshot::Sender<StorageResult<AppendInfo>>,
}

/// One partition of a batched read: read `max_bytes` from `offset`.
pub struct ReadRequest {
    pub tp: TopicPartition,
    pub offset: Offset,
    pub max_bytes: usize,
    /// A fetch long-poll waiter, parked by the owner right after the read
    /// at the high watermark the read saw: it fires when anything newer is
    /// committed. Riding on the read saves the fetch a second message (and
    /// the owner a second wake-up) when the read finds too little.
    pub waiter: Option<oneshot::Sender<()>>,
    /// A follower's fetch: (its broker id, its last fetched epoch). Reads
    /// up to the log end and records the follower's position.
    pub replica: Option<(i32, ringstream_core::types::LeaderEpoch)>,
    /// A read_committed consumer: up to the last stable offset, with the
    /// aborted transactions of the range.
    pub committed: bool,
}

/// Where one partition's batches are in a batched read's lent vector.
#[derive(Clone, Debug)]
pub struct ReadPart {
    pub batches: std::ops::Range<usize>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub diverging: Option<(ringstream_core::types::LeaderEpoch, Offset)>,
    pub last_stable_offset: Offset,
    pub aborted: Vec<(i64, Offset)>,
}

/// The answer to `Message::ReadMany`: every partition's batches in one lent
/// vector (so they go home in one message), and each partition's part of it
/// in request order.
pub struct LentReads {
    pub batches: LentBatches,
    pub parts: Vec<StorageResult<ReadPart>>,
}

/// One partition's result of `Shard::read_many`.
pub enum ManyRead {
    Local(ReadOutput),
    /// Batches `part.batches` of a vector lent by the owner, shared by all
    /// the partitions that owner served in this read.
    Remote {
        lent: Rc<LentBatches>,
        part: ReadPart,
    },
}

/// A read as seen by the shard that asked for it.
pub enum RoutedRead {
    Local(ReadOutput),
    Remote(LentRead),
}

impl RoutedRead {
    pub fn batches(&self) -> Vec<&[u8]> {
        match self {
            RoutedRead::Local(read) => read.batches.iter().map(|b: &BatchBytes| &b[..]).collect(),
            RoutedRead::Remote(read) => (0..read.batches.len()).map(|i| read.batches.batch(i)).collect(),
        }
    }

    pub fn high_watermark(&self) -> Offset {
        match self {
            RoutedRead::Local(read) => read.high_watermark,
            RoutedRead::Remote(read) => read.high_watermark,
        }
    }
}

/// An append queued on its owner; resolves when acknowledged.
pub enum RoutedTicket {
    Local(AppendTicket),
    Remote(oneshot::Receiver<StorageResult<AppendInfo>>),
}

impl RoutedTicket {
    pub async fn wait(self) -> StorageResult<AppendInfo> {
        match self {
            RoutedTicket::Local(ticket) => ticket.wait().await,
            RoutedTicket::Remote(receiver) => receiver.await.unwrap_or(Err(StorageError::ShuttingDown)),
        }
    }
}

impl Shard {
    /// Reads several partitions for one fetch: local ones here, remote ones
    /// with one `ReadMany` message per owner shard, all owners at once.
    /// Results come back in request order. A partition that moved while
    /// its owner read is read again on its own (`read`), which follows it.
    pub async fn read_many(&self, reads: Vec<ReadRequest>) -> Vec<StorageResult<ManyRead>> {
        let count = reads.len();
        let mut results: Vec<Option<StorageResult<ManyRead>>> = (0..count).map(|_| None).collect();
        // Where each request read from, kept for a partition that moved
        // (its `Moved` error names it).
        let asked_for: Vec<(Offset, usize, bool)> =
            reads.iter().map(|r| (r.offset, r.max_bytes, r.replica.is_some() || r.committed)).collect();
        let mut moved = Vec::new();
        // (request index, request) per owner shard.
        let mut by_owner: Vec<Vec<(usize, ReadRequest)>> = (0..self.peers.len()).map(|_| Vec::new()).collect();
        for (index, read) in reads.into_iter().enumerate() {
            match self.route(&read.tp).await {
                Ok(owner) => by_owner[owner.index()].push((index, read)),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let mut asked = Vec::new();
        for (owner, reads) in by_owner.iter_mut().enumerate() {
            if reads.is_empty() || owner == self.id.index() {
                continue;
            }
            let (indexes, requests): (Vec<usize>, Vec<ReadRequest>) = std::mem::take(reads).into_iter().unzip();
            let (reply, receiver) = oneshot::channel();
            match self.send(ShardId(owner as u16), Message::ReadMany { reads: requests, reply }).await {
                Ok(()) => asked.push((indexes, receiver)),
                Err(e) => {
                    for index in indexes {
                        results[index] = Some(Err(e.clone()));
                    }
                }
            }
        }
        // While the owners read, read the local partitions.
        for (index, read) in std::mem::take(&mut by_owner[self.id.index()]) {
            let result = read_one(&self.storage, &read).await;
            if let (Ok(output), Some(waiter)) = (&result, read.waiter) {
                let _ = self.storage.park_data_waiter(&read.tp, output.high_watermark, waiter);
            }
            results[index] = Some(result.map(ManyRead::Local));
        }
        for (indexes, receiver) in asked {
            let Ok(answer) = receiver.await else {
                for index in indexes {
                    results[index] = Some(Err(StorageError::ShuttingDown));
                }
                continue;
            };
            let lent = Rc::new(answer.batches);
            for (index, part) in indexes.into_iter().zip(answer.parts) {
                match part {
                    Ok(part) => results[index] = Some(Ok(ManyRead::Remote { lent: lent.clone(), part })),
                    Err(StorageError::Moved(tp)) => moved.push((index, tp)), // read again below
                    Err(e) => results[index] = Some(Err(e)),
                }
            }
        }
        for (index, tp) in moved {
            let (offset, max_bytes, replica) = asked_for[index];
            if replica {
                // A follower (or a read_committed consumer) fetches again,
                // from the new owner.
                results[index] = Some(Err(StorageError::Moved(tp)));
                continue;
            }
            results[index] = Some(self.read(&tp, offset, max_bytes).await.map(|read| match read {
                RoutedRead::Local(read) => ManyRead::Local(read),
                RoutedRead::Remote(read) => {
                    let part = ReadPart {
                        batches: 0..read.batches.len(),
                        high_watermark: read.high_watermark,
                        log_start_offset: read.log_start_offset,
                        diverging: None,
                        last_stable_offset: read.high_watermark,
                        aborted: Vec::new(),
                    };
                    ManyRead::Remote { lent: Rc::new(read.batches), part }
                }
            }));
        }
        results.into_iter().map(|r| r.expect("every read answered")).collect()
    }

    /// Queues an append on the owning shard, preserving submission order.
    pub async fn submit(&self, tp: &TopicPartition, batch: Bytes) -> StorageResult<RoutedTicket> {
        let owner = self.route(tp).await?;
        if owner == self.id {
            let _counted = Submitting::new(self, tp);
            return Ok(RoutedTicket::Local(self.storage.submit(tp, batch).await?));
        }
        let (reply, receiver) = oneshot::channel();
        self.send(owner, Message::Append { tp: tp.clone(), batch, reply }).await?;
        Ok(RoutedTicket::Remote(receiver))
    }

    /// Queues the appends of one produce request: those for each other
    /// shard in one `AppendMany` message (one wake-up there however many
    /// partitions it names), local ones here, in request order per
    /// partition. Like `submit`, it returns once every append is queued or
    /// sent, so the next request's appends come after these. Appends to a
    /// partition being moved take `submit`'s path, which waits for the move.
    /// A request that repeats a partition keeps its order: both go in the
    /// same message, or both the local way.
    pub async fn submit_many(&self, appends: Vec<(TopicPartition, Bytes)>) -> Vec<StorageResult<RoutedTicket>> {
        let count = appends.len();
        let mut results: Vec<Option<StorageResult<RoutedTicket>>> = (0..count).map(|_| None).collect();
        let mut waiting: Vec<Option<(TopicPartition, Bytes)>> = appends.into_iter().map(Some).collect();
        // One owner at a time, each group routed right before its send with
        // no await in between (a move's fence relies on it, see `route`):
        // a send that waits for room must not carry routes taken before it.
        loop {
            let route_now = |tp: &TopicPartition| {
                if self.moving.borrow().contains(tp) {
                    None // `submit` waits for the move
                } else {
                    self.owner(tp).filter(|owner| *owner != self.id)
                }
            };
            let Some(owner) = waiting.iter().flatten().find_map(|(tp, _)| route_now(tp)) else { break };
            let mut receivers = Vec::new();
            let mut requests = Vec::new();
            for (index, slot) in waiting.iter_mut().enumerate() {
                if slot.as_ref().is_some_and(|(tp, _)| route_now(tp) == Some(owner)) {
                    let (tp, batch) = slot.take().expect("checked");
                    let (reply, receiver) = oneshot::channel();
                    requests.push(RemoteAppendRequest { tp, batch, reply });
                    receivers.push((index, receiver));
                }
            }
            let message = if requests.len() == 1 {
                let RemoteAppendRequest { tp, batch, reply } = requests.pop().expect("one");
                Message::Append { tp, batch, reply }
            } else {
                Message::AppendMany { appends: requests }
            };
            match self.send(owner, message).await {
                Ok(()) => {
                    for (index, receiver) in receivers {
                        results[index] = Some(Ok(RoutedTicket::Remote(receiver)));
                    }
                }
                Err(e) => {
                    for (index, _) in receivers {
                        results[index] = Some(Err(e.clone()));
                    }
                }
            }
        }
        // Local, moving or unknown partitions: one at a time, as `submit` does.
        for (index, slot) in waiting.into_iter().enumerate() {
            if let Some((tp, batch)) = slot {
                results[index] = Some(self.submit(&tp, batch).await);
            }
        }
        results.into_iter().map(|r| r.expect("every append answered")).collect()
    }

    pub async fn append(&self, tp: &TopicPartition, batch: Bytes) -> StorageResult<AppendInfo> {
        self.submit(tp, batch).await?.wait().await
    }

    pub async fn read(&self, tp: &TopicPartition, offset: Offset, max_bytes: usize) -> StorageResult<RoutedRead> {
        let mut attempt = 0;
        loop {
            let owner = self.route(tp).await?;
            let read = if owner == self.id {
                self.storage.read(tp, offset, max_bytes).await.map(RoutedRead::Local)
            } else {
                let (reply, receiver) = oneshot::channel();
                self.send(owner, Message::Read { tp: tp.clone(), offset, max_bytes, reply }).await?;
                receiver.await.unwrap_or(Err(StorageError::ShuttingDown)).map(RoutedRead::Remote)
            };
            match read {
                Err(e) if self.should_retry(&e, tp, attempt) => attempt += 1,
                other => return other,
            }
        }
    }

    pub async fn offsets(&self, tp: &TopicPartition) -> StorageResult<PartitionOffsets> {
        let mut attempt = 0;
        loop {
            let owner = self.route(tp).await?;
            let offsets = if owner == self.id {
                self.storage.offsets(tp)
            } else {
                let (reply, receiver) = oneshot::channel();
                self.send(owner, Message::Offsets { tp: tp.clone(), reply }).await?;
                receiver.await.unwrap_or(Err(StorageError::ShuttingDown))
            };
            match offsets {
                Err(e) if self.should_retry(&e, tp, attempt) => attempt += 1,
                other => return other,
            }
        }
    }

    /// DeleteRecords for `tp`, on its owner (see `ShardStorage::delete_records`).
    pub async fn delete_records(&self, tp: &TopicPartition, offset: i64) -> StorageResult<Offset> {
        let mut attempt = 0;
        loop {
            let owner = self.route(tp).await?;
            let result = if owner == self.id {
                self.storage.delete_records(tp, offset).await
            } else {
                let (reply, receiver) = oneshot::channel();
                self.send(owner, Message::DeleteRecords { tp: tp.clone(), offset, reply }).await?;
                receiver.await.unwrap_or(Err(StorageError::ShuttingDown))
            };
            match result {
                Err(e) if self.should_retry(&e, tp, attempt) => attempt += 1,
                other => return other,
            }
        }
    }
}

/// Serves a `ReadMany` on the owner: every read in turn, their batches
/// gathered into one vector lent to the asker, each read's waiter parked
/// at the high watermark it saw. A partition this shard no longer owns
/// answers `Moved` (its waiter dropped: a wake-up), and the asker follows it.
pub(super) async fn read_here(
    storage: &ShardStorage,
    reads: Vec<ReadRequest>,
    home: ShardId,
    home_inbox: flume::Sender<Envelope>,
) -> LentReads {
    let mut batches = Vec::new();
    let mut parts = Vec::with_capacity(reads.len());
    for read in reads {
        let part = match read_one(storage, &read).await {
            Ok(output) => {
                if let Some(waiter) = read.waiter {
                    // A full waiter list drops it: the fetch wakes and reads again.
                    let _ = storage.park_data_waiter(&read.tp, output.high_watermark, waiter);
                }
                let start = batches.len();
                batches.extend(output.batches);
                Ok(ReadPart {
                    batches: start..batches.len(),
                    high_watermark: output.high_watermark,
                    log_start_offset: output.log_start_offset,
                    diverging: output.diverging,
                    last_stable_offset: output.last_stable_offset,
                    aborted: output.aborted,
                })
            }
            Err(StorageError::UnknownPartition(tp)) => Err(StorageError::Moved(tp)),
            Err(e) => Err(e),
        };
        parts.push(part);
    }
    LentReads { batches: LentBatches::lend(batches, home, home_inbox), parts }
}

/// One read on its owner: a consumer's below the high watermark, a
/// follower's up to the log end.
async fn read_one(storage: &ShardStorage, read: &ReadRequest) -> StorageResult<ReadOutput> {
    match read.replica {
        Some((replica, last_fetched_epoch)) => {
            storage.read_replica(&read.tp, read.offset, read.max_bytes, replica, last_fetched_epoch).await
        }
        None if read.committed => storage.read_committed(&read.tp, read.offset, read.max_bytes).await,
        None => storage.read(&read.tp, read.offset, read.max_bytes).await,
    }
}
