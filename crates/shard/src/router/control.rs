//! The control plane through the router: placement policy, creating,
//! moving and deleting partitions. Table changes run on shard 0 only, one
//! at a time; every shard keeps a read-only copy of the table. Its steps
//! on other shards are its own `*_here` methods shipped with `run_on`: rare,
//! ordered work of the router itself, never on the data path.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_channel::oneshot;
use tracing::{error, warn};

use super::*;

impl Shard {
    /// Sets the placement policy and balancer settings; before serving.
    pub fn set_balance_config(&self, config: BalanceConfig) {
        *self.balance.borrow_mut() = config;
    }

    pub fn balance_config(&self) -> BalanceConfig {
        self.balance.borrow().clone()
    }

    pub fn load_sampler(&self) -> &RefCell<LoadSampler> {
        &self.sampler
    }

    /// Owners for new partitions, by the placement policy: `place` (hash),
    /// or the least-loaded shards by the last load sample.
    pub(super) fn choose_owners(&self, tps: &[TopicPartition]) -> Vec<ShardId> {
        let count = self.shard_count();
        let sampler = self.sampler.borrow();
        match self.balance.borrow().policy {
            PlacementPolicy::LeastLoaded if sampler.loads.len() == count => least_loaded(&sampler.loads, tps.len()),
            PlacementPolicy::LeastLoaded => {
                // No sample yet (just started): spread by partition count.
                let table = self.placement.borrow();
                let mut loads = vec![crate::policy::ShardLoad::default(); count];
                for (tp, owner) in table.iter() {
                    loads[owner.index()].partitions.push((tp.clone(), 0.0));
                }
                least_loaded(&loads, tps.len())
            }
            PlacementPolicy::Hash => tps.iter().map(|tp| place(tp, count)).collect(),
        }
    }

    /// Creates a partition: shard 0 picks the owner, persists the table,
    /// has the owner open it, then tells every other shard. Returns once
    /// every shard can route to it.
    pub async fn create_partition(&self, tp: &TopicPartition, config: LogConfig) -> StorageResult<ShardId> {
        if self.id == ShardId(0) {
            return self.create_partition_here(tp.clone(), config).await;
        }
        let (reply, receiver) = oneshot::channel();
        self.send(ShardId(0), Message::CreatePartition { tp: tp.clone(), config, reply }).await?;
        receiver.await.unwrap_or(Err(StorageError::ShuttingDown))
    }

    pub(super) async fn create_partition_here(&self, tp: TopicPartition, config: LogConfig) -> StorageResult<ShardId> {
        assert_eq!(self.id, ShardId(0), "the placement table is written by shard 0 only");
        if !ringstream_core::types::is_valid_topic_name(&tp.topic) || tp.partition.0 < 0 {
            return Err(StorageError::Config(format!("invalid partition name {tp}")));
        }
        config.validate()?;
        if self.owner(&tp).is_some() {
            return Err(StorageError::PartitionExists(tp));
        }
        let owner = self.choose_owners(std::slice::from_ref(&tp))[0];
        // Open on the owner first: only then may anyone route to it.
        if owner == self.id {
            self.storage.open_partition(tp.clone(), config).await?;
        } else {
            let (reply, receiver) = oneshot::channel();
            self.send(owner, Message::OpenPartition { tp: tp.clone(), config, reply }).await?;
            receiver.await.unwrap_or(Err(StorageError::ShuttingDown))?;
        }
        let text = {
            let mut table = self.placement.borrow_mut();
            table.insert(tp.clone(), owner);
            table.encode()
        };
        let data_dir = self.storage.config().data_dir.clone();
        dir::write_file_atomic(&data_dir, dir::PLACEMENT_FILE_NAME, text.into_bytes())
            .await
            .map_err(|e| StorageError::io("write placement table", &data_dir, e))?;
        for peer in 1..self.shard_count() {
            let (reply, receiver) = oneshot::channel();
            self.send(ShardId(peer as u16), Message::Placement { tp: tp.clone(), shard: Some(owner), reply }).await?;
            receiver.await.map_err(|_| StorageError::ShuttingDown)?;
        }
        Ok(owner)
    }

    /// Creates many partitions with the same config in one go, as a topic
    /// is created: shard 0 picks the owners, each owner opens its share
    /// (`partition_file_ops_in_flight_max` at a time), the placement table is
    /// persisted once (not once per partition: the table is rewritten whole,
    /// so per-partition writes made a 10,000-partition topic quadratic), and
    /// every other shard then learns all of them. Partitions that opened stay
    /// placed even when others failed, so a retry skips them; the first
    /// failure is returned.
    pub async fn create_partitions(self: &Rc<Self>, tps: Vec<TopicPartition>, config: LogConfig) -> StorageResult<()> {
        self.run_on(ShardId(0), move |shard| async move { shard.create_partitions_here(tps, config).await }).await?
    }

    pub(super) async fn create_partitions_here(
        self: &Rc<Self>,
        tps: Vec<TopicPartition>,
        config: LogConfig,
    ) -> StorageResult<()> {
        assert_eq!(self.id, ShardId(0), "the placement table is written by shard 0 only");
        config.validate()?;
        let count = self.shard_count();
        let mut by_owner: Vec<Vec<TopicPartition>> = vec![Vec::new(); count];
        for tp in &tps {
            if !ringstream_core::types::is_valid_topic_name(&tp.topic) || tp.partition.0 < 0 {
                return Err(StorageError::Config(format!("invalid partition name {tp}")));
            }
            if self.owner(tp).is_some() {
                return Err(StorageError::PartitionExists(tp.clone()));
            }
        }
        let owners = self.choose_owners(&tps);
        for (tp, owner) in tps.into_iter().zip(owners) {
            by_owner[owner.index()].push(tp);
        }
        // Open on the owners first: only then may anyone route to them.
        let opens = by_owner.into_iter().enumerate().filter(|(_, list)| !list.is_empty()).map(|(owner, list)| {
            let config = config.clone();
            self.run_on(
                ShardId(owner as u16),
                move |shard| async move { shard.open_partitions_here(list, config).await },
            )
        });
        let mut opened = Vec::new();
        let mut first_error = None;
        for outcome in futures_util::future::join_all(opens).await {
            match outcome {
                Ok((owner, list, error)) => {
                    opened.extend(list.into_iter().map(|tp| (tp, owner)));
                    first_error = first_error.or(error);
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if !opened.is_empty() {
            let text = {
                let mut table = self.placement.borrow_mut();
                for (tp, owner) in &opened {
                    table.insert(tp.clone(), *owner);
                }
                table.encode()
            };
            let data_dir = self.storage.config().data_dir.clone();
            dir::write_file_atomic(&data_dir, dir::PLACEMENT_FILE_NAME, text.into_bytes())
                .await
                .map_err(|e| StorageError::io("write placement table", &data_dir, e))?;
            for peer in 1..count {
                let placed = opened.clone();
                self.run_on(ShardId(peer as u16), move |shard| async move {
                    let mut table = shard.placement.borrow_mut();
                    for (tp, owner) in placed {
                        table.insert(tp, owner);
                    }
                })
                .await?;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Opens `list` on this shard, `partition_file_ops_in_flight_max` at a
    /// time, and places the ones that opened. Returns them with the first
    /// error, if any (later chunks are not started after one).
    pub(super) async fn open_partitions_here(
        self: &Rc<Self>,
        list: Vec<TopicPartition>,
        config: LogConfig,
    ) -> (ShardId, Vec<TopicPartition>, Option<StorageError>) {
        let mut opened = Vec::with_capacity(list.len());
        for chunk in list.chunks(ringstream_core::limits::partition_file_ops_in_flight_max) {
            let opens = chunk.iter().map(|tp| self.storage.open_partition(tp.clone(), config.clone()));
            let results = futures_util::future::join_all(opens).await;
            let mut error = None;
            for (tp, result) in chunk.iter().zip(results) {
                match result {
                    Ok(_) => {
                        self.placement.borrow_mut().insert(tp.clone(), self.id);
                        opened.push(tp.clone());
                    }
                    Err(e) => error = error.or(Some(e)),
                }
            }
            if error.is_some() {
                return (self.id, opened, error);
            }
        }
        (self.id, opened, None)
    }

    /// Moves `tp` to shard `to` while clients keep producing and fetching:
    /// nothing acknowledged is lost, nothing is appended twice or out of
    /// submission order, and no client sees an error. Only the router
    /// changes; clients see the same broker. Runs on shard 0, one move at a
    /// time. Returns the shard it came from.
    ///
    /// 1. Freeze: every shard marks `tp` moving; from then on its requests
    ///    for `tp` wait in `route` instead of being sent.
    /// 2. Fence: every other shard sends the old owner a no-op through its
    ///    own inbox, which is FIFO, so every append it routed before the
    ///    freeze is queued there first; the old owner waits for its own
    ///    in-flight local appends to be queued.
    /// 3. The old owner commits what is queued, closes the partition cleanly
    ///    and forgets it; the new owner opens it from the same files (the
    ///    clean marker spares it the recovery scan).
    /// 4. Shard 0 persists the placement table, then every shard learns the
    ///    new owner and thaws; waiting requests go there.
    ///
    /// A failure before step 4 reopens the partition on its old owner. A
    /// crash at any step leaves a closed partition whose persisted owner is
    /// either the old shard or the new one: both open it at start-up.
    pub async fn move_partition(self: &Rc<Self>, tp: TopicPartition, to: ShardId) -> StorageResult<ShardId> {
        self.run_on(ShardId(0), move |shard| async move { shard.move_partition_here(tp, to).await }).await?
    }

    pub(super) async fn move_partition_here(
        self: &Rc<Self>,
        tp: TopicPartition,
        to: ShardId,
    ) -> StorageResult<ShardId> {
        assert_eq!(self.id, ShardId(0), "the placement table is written by shard 0 only");
        if to.index() >= self.shard_count() {
            return Err(StorageError::Config(format!("shard {to} does not exist (shards: {})", self.shard_count())));
        }
        if tp.topic.starts_with("__") {
            return Err(StorageError::Config(format!(
                "{tp} belongs to an internal topic, whose partitions stay with their group coordinators"
            )));
        }
        let _one_at_a_time = self.move_lock.acquire_static_permit(1).await.map_err(|_| StorageError::ShuttingDown)?;
        let from = self.owner_or_err(&tp)?;
        if from == to {
            return Ok(from);
        }
        let started = std::time::Instant::now();
        // 1 and 2: freeze and fence, on every shard at once.
        let fences = (0..self.shard_count()).map(|index| {
            let tp = tp.clone();
            self.run_on(ShardId(index as u16), move |shard| async move { shard.freeze_and_fence(tp, from).await })
        });
        let fenced = futures_util::future::join_all(fences).await;
        let mut outcome = fenced.into_iter().find_map(|r| r.err()).map_or(Ok(()), Err);
        // 3: hand off.
        if outcome.is_ok() {
            outcome = self.hand_off(&tp, from, to).await;
        }
        let owner = if outcome.is_ok() { to } else { from };
        if outcome.is_ok() {
            let text = {
                let mut table = self.placement.borrow_mut();
                table.insert(tp.clone(), to);
                table.encode()
            };
            let data_dir = self.storage.config().data_dir.clone();
            if let Err(e) = dir::write_file_atomic(&data_dir, dir::PLACEMENT_FILE_NAME, text.into_bytes()).await {
                // The partition is open on `to`; route there for the rest of
                // this run. The next start-up opens it where the old table
                // says, from the same files.
                error!(partition = %tp, "persisting the placement table after a move failed: {e}");
            }
        }
        // 4: thaw, on every shard, with the owner that holds it now.
        for index in 0..self.shard_count() {
            let tp = tp.clone();
            self.run_on(ShardId(index as u16), move |shard| async move {
                shard.placement.borrow_mut().insert(tp.clone(), owner);
                shard.moving.borrow_mut().remove(&tp);
            })
            .await?;
        }
        match outcome {
            Ok(()) => {
                tracing::info!(partition = %tp, %from, %to, took_ms = started.elapsed().as_millis() as u64, "partition moved");
                Ok(from)
            }
            Err(e) => {
                warn!(partition = %tp, %from, %to, "partition move failed, the partition stays on its shard: {e}");
                Err(e)
            }
        }
    }

    /// Queues `tp`'s remote appends in storage one after another, in arrival
    /// order, until none is left. One drainer per partition at a time: the
    /// inbox starts one when it finds no queue for the partition. (Spawning
    /// a task per append and letting storage order them is not enough:
    /// glommio's semaphore wakes a smaller waiter ahead of a larger one that
    /// does not fit yet, and a woken waiter can lose its turn to a newcomer.)
    pub(super) async fn drain_remote_appends(self: Rc<Self>, tp: TopicPartition) {
        loop {
            let next = {
                let mut queues = self.remote_appends.borrow_mut();
                let queue = queues.get_mut(&tp).expect("a drainer's queue lives until it ends");
                match queue.pop_front() {
                    Some(next) => next,
                    None => {
                        queues.remove(&tp);
                        return;
                    }
                }
            };
            let RemoteAppend { batch, reply, _room: room } = next;
            let queued = self.storage.submit(&tp, batch).await;
            drop(room);
            self.uncount_submitting(&tp);
            match queued {
                Ok(ticket) => {
                    glommio::spawn_local(async move {
                        let _ = reply.send(ticket.wait().await);
                    })
                    .detach();
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    /// Waits until every append to `tp` routed to this shard is queued in
    /// storage; gives up past `partition_release_wait_ms_max`.
    pub(super) async fn wait_submitted(&self, tp: &TopicPartition) -> StorageResult<()> {
        let started = std::time::Instant::now();
        while self.submitting.borrow().contains_key(tp) {
            if started.elapsed() > Duration::from_millis(limits::partition_release_wait_ms_max) {
                return Err(StorageError::Moving(tp.clone()));
            }
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
        Ok(())
    }

    /// Step 1 and 2 of a move, on this shard.
    pub(super) async fn freeze_and_fence(self: Rc<Self>, tp: TopicPartition, from: ShardId) -> StorageResult<()> {
        self.moving.borrow_mut().insert(tp.clone());
        if self.id != from {
            return self.run_on(from, |_| async {}).await;
        }
        self.wait_submitted(&tp).await
    }

    /// Step 3 of a move: release on `from`, open on `to`; on failure to
    /// open, reopen on `from`.
    pub(super) async fn hand_off(
        self: &Rc<Self>,
        tp: &TopicPartition,
        from: ShardId,
        to: ShardId,
    ) -> StorageResult<()> {
        let released = tp.clone();
        // Appends other shards fenced into the inbox are queued by tasks of
        // their own (`Message::Append`): all of them first.
        let (config, replication) = self
            .run_on(from, move |shard| async move {
                shard.wait_submitted(&released).await?;
                // Leader or follower, the replica keeps its role, ISR and
                // follower positions on its new shard.
                let replication = shard.storage.replication(&released)?;
                let config = shard.storage.release_partition(&released).await?;
                Ok::<_, StorageError>((config, replication))
            })
            .await??;
        let (opened, open_config, kept) = (tp.clone(), config.clone(), replication.clone());
        let open = self
            .run_on(to, move |shard| async move {
                shard.storage.open_partition(opened.clone(), open_config).await?;
                shard.storage.restore_replication(&opened, replication)
            })
            .await;
        match open.and_then(|r| r) {
            Ok(_) => Ok(()),
            Err(e) => {
                let reopened = tp.clone();
                let back = self
                    .run_on(from, move |shard| async move {
                        shard.storage.open_partition(reopened.clone(), config).await?;
                        shard.storage.restore_replication(&reopened, kept)
                    })
                    .await;
                if let Err(again) = back.and_then(|r| r) {
                    error!(partition = %tp, "reopening on shard {from} after a failed move failed too: {again}");
                }
                Err(e)
            }
        }
    }

    /// Deletes a partition: every shard forgets its placement first (so no
    /// new request routes to it), then the owner deletes its data, then the
    /// persisted table drops it. Runs the table change on shard 0.
    pub async fn delete_partition(self: &Rc<Self>, tp: &TopicPartition) -> StorageResult<()> {
        self.delete_partitions(vec![tp.clone()]).await
    }

    /// Deletes many partitions in one go, as a topic is deleted: every shard
    /// forgets all of them (one message each), each owner deletes its share
    /// (`partition_file_ops_in_flight_max` at a time), and the placement
    /// table is persisted once. One table write per partition made deleting
    /// a 10,000-partition topic quadratic (minutes; clients timed out).
    /// Partitions not in the table are skipped; the first error is returned.
    pub async fn delete_partitions(self: &Rc<Self>, tps: Vec<TopicPartition>) -> StorageResult<()> {
        self.run_on(ShardId(0), move |shard| async move { shard.delete_partitions_here(tps).await }).await?
    }

    pub(super) async fn delete_partitions_here(self: &Rc<Self>, tps: Vec<TopicPartition>) -> StorageResult<()> {
        assert_eq!(self.id, ShardId(0), "the placement table is written by shard 0 only");
        // Not while a move is under way: the move holds its own copy of the owner.
        let _no_move = self.move_lock.acquire_static_permit(1).await.map_err(|_| StorageError::ShuttingDown)?;
        let mut by_owner: Vec<Vec<TopicPartition>> = vec![Vec::new(); self.shard_count()];
        for tp in tps {
            if let Some(owner) = self.owner(&tp) {
                by_owner[owner.index()].push(tp);
            }
        }
        for list in &mut by_owner {
            list.sort();
            list.dedup();
        }
        let doomed: Vec<TopicPartition> = by_owner.iter().flatten().cloned().collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for peer in 1..self.shard_count() {
            let forget = doomed.clone();
            self.run_on(ShardId(peer as u16), move |shard| async move {
                let mut table = shard.placement.borrow_mut();
                for tp in &forget {
                    table.remove(tp);
                }
            })
            .await?;
        }
        let text = {
            let mut table = self.placement.borrow_mut();
            for tp in &doomed {
                table.remove(tp);
            }
            table.encode()
        };
        let removals = by_owner.into_iter().enumerate().filter(|(_, list)| !list.is_empty()).map(|(owner, list)| {
            self.run_on(ShardId(owner as u16), move |shard| async move {
                let mut first_error = None;
                for chunk in list.chunks(limits::partition_file_ops_in_flight_max) {
                    let removed =
                        futures_util::future::join_all(chunk.iter().map(|tp| shard.storage.remove_partition(tp))).await;
                    first_error = first_error.or(removed.into_iter().find_map(Result::err));
                }
                first_error.map_or(Ok(()), Err)
            })
        });
        let mut first_error = None;
        for outcome in futures_util::future::join_all(removals).await {
            if let Err(e) = outcome.and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        let data_dir = self.storage.config().data_dir.clone();
        dir::write_file_atomic(&data_dir, dir::PLACEMENT_FILE_NAME, text.into_bytes())
            .await
            .map_err(|e| StorageError::io("write placement table", &data_dir, e))?;
        first_error.map_or(Ok(()), Err)
    }
}
