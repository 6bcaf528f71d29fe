//! The shard runtime: one glommio `LocalExecutor` per shard, each pinned to
//! one CPU of the process's affinity mask, each with its own io_uring.
//!
//! Start-up, on the calling thread, before any shard runs:
//! 1. plan the CPUs (`--shards N` or `shard.cpus` checked against the CPU set);
//! 2. probe the data directory's device (glommio #605, see `storage::dir`);
//! 3. load the placement table and reconcile it with the partition
//!    directories on disk, persisting any change;
//! 4. start the executors; each opens (and recovers) the partitions it owns
//!    and reports ready. `start` returns only when every shard is ready.
//!
//! Shutdown sends `Shutdown` to every shard; each drains its queued appends,
//! closes its segments cleanly and exits; then the threads are joined.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use tracing::{info, warn};

use crate::placement::{partitions_on_disk, PlacementTable};
use crate::policy::BalanceConfig;
use crate::router::{Envelope, Message, Shard, ShardTask};
use ringstream_core::limits;
use ringstream_core::types::ShardId;
use ringstream_storage::shard_storage::{ShardStorage, StorageConfig};
use ringstream_storage::{StorageError, StorageResult};

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Number of shards; None means one per CPU in the affinity mask (or
    /// one per CPU of `cpus` when given).
    pub shards: Option<usize>,
    /// `shard.cpus`: the CPUs to pin shards to, ascending, one shard each;
    /// None means the first `shards` allowed CPUs.
    pub cpus: Option<Vec<usize>>,
    /// How long an idle executor spins before it parks. Default 0: park at
    /// once. Spinning buys a few tens of µs of wake-up latency
    /// (NOTES-glommio #5) at the price of CPU on every wake-up; at 5,000
    /// records/s it cost 0.1-0.18 cores and, on a 2-CPU host, slower acks
    /// (BENCHMARKS.md, issue 16). The tuned profile may still choose it.
    pub spin_before_park_us: u64,
    /// Memory glommio registers with io_uring per shard for DMA buffers.
    pub io_memory_bytes: usize,
    /// Placement policy for new partitions, and the automatic balancer.
    pub balance: BalanceConfig,
    pub storage: StorageConfig,
}

impl RuntimeConfig {
    pub fn new(storage: StorageConfig) -> RuntimeConfig {
        RuntimeConfig {
            shards: None,
            cpus: None,
            spin_before_park_us: 0,
            io_memory_bytes: 2 * 1024 * 1024,
            balance: BalanceConfig::default(),
            storage,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Plan(#[from] ringstream_tuning::ShardPlanError),
    #[error("reading this process's CPU set: {0}")]
    CpuSet(std::io::Error),
    #[error("spin-before-park of {0} µs exceeds {max} µs", max = limits::spin_before_park_us_max)]
    Spin(u64),
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("data directory {path} is in use by another process (it holds {path}/.lock)")]
    Locked { path: String },
    #[error("starting shard {shard} on CPU {cpu}: {message}")]
    Executor { shard: usize, cpu: usize, message: String },
    #[error("shard {shard}: {source}")]
    Storage { shard: usize, source: StorageError },
    #[error("shard {0} stopped unexpectedly")]
    Lost(usize),
}

/// The running shards, seen from outside them (any thread).
pub struct ShardSet {
    inboxes: Vec<flume::Sender<Envelope>>,
    threads: Vec<ExecutorJoinHandle<()>>,
    cpus: Vec<usize>,
    /// Every shard's metric cells (readable from any thread).
    metrics: Arc<ringstream_core::metrics::MetricsTable>,
    /// The data directory's `.lock`, held (flock) for as long as the shards run.
    _lock: std::fs::File,
}

impl ShardSet {
    pub fn start(config: RuntimeConfig) -> Result<ShardSet, RuntimeError> {
        if config.spin_before_park_us > limits::spin_before_park_us_max {
            return Err(RuntimeError::Spin(config.spin_before_park_us));
        }
        let allowed = ringstream_tuning::allowed_cpus().map_err(RuntimeError::CpuSet)?;
        let cpus = match &config.cpus {
            Some(cpus) => ringstream_tuning::plan_shards_on(cpus, config.shards, &allowed)?,
            None => ringstream_tuning::plan_shards(config.shards, &allowed)?,
        };
        assert!(!cpus.is_empty() && cpus.len() <= limits::shards_max);
        let shard_count = cpus.len();
        let data_dir = config.storage.data_dir.clone();
        let dir_error = |source| RuntimeError::DataDir { path: data_dir.display().to_string(), source };
        std::fs::create_dir_all(&data_dir).map_err(dir_error)?;
        let lock = lock_data_dir(&data_dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => RuntimeError::Locked { path: data_dir.display().to_string() },
            _ => dir_error(e),
        })?;
        probe_device(&data_dir).map_err(dir_error)?;

        let mut table = PlacementTable::load(&data_dir).map_err(dir_error)?;
        let on_disk = partitions_on_disk(&data_dir).map_err(dir_error)?;
        let changes = table.reconcile(&on_disk, shard_count);
        for change in &changes {
            if let Some(from) = change.from {
                warn!(partition = %change.tp, from = %from, to = %change.to, "re-placed: its shard no longer exists");
            }
        }
        if !changes.is_empty() || !data_dir.join(ringstream_storage::dir::PLACEMENT_FILE_NAME).exists() {
            table.store_blocking(&data_dir).map_err(dir_error)?;
        }

        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..shard_count).map(|_| flume::bounded::<Envelope>(limits::router_queue_depth_max)).unzip();
        let (ready_tx, ready_rx) = flume::bounded::<(usize, StorageResult<()>)>(shard_count);
        let table = Arc::new(table);
        let metrics = ringstream_core::metrics::MetricsTable::new(shard_count);
        let mut threads = Vec::with_capacity(shard_count);
        for (index, (cpu, inbox)) in cpus.iter().copied().zip(receivers).enumerate() {
            let peers = senders.clone();
            let storage_config = config.storage.clone();
            let table = table.clone();
            let ready = ready_tx.clone();
            let balance = config.balance.clone();
            let metrics = metrics.clone();
            let builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name(&format!("shard-{index}"))
                .io_memory(config.io_memory_bytes)
                .spin_before_park(Duration::from_micros(config.spin_before_park_us));
            let handle = builder
                .spawn(move || async move {
                    let id = ShardId(index as u16);
                    ringstream_core::metrics::install(metrics, id);
                    let storage = match ShardStorage::open(id, storage_config).await {
                        Ok(storage) => storage,
                        Err(e) => {
                            let _ = ready.send((index, Err(e)));
                            return;
                        }
                    };
                    let mine = table.partitions_of(id);
                    for chunk in mine.chunks(limits::partition_file_ops_in_flight_max) {
                        let opens = chunk
                            .iter()
                            .map(|tp| storage.open_partition(tp.clone(), storage.config().default_log.clone()));
                        let failed = futures_util::future::join_all(opens).await.into_iter().find_map(Result::err);
                        if let Some(e) = failed {
                            let _ = storage.close().await;
                            let _ = ready.send((index, Err(e)));
                            return;
                        }
                    }
                    let shard = Rc::new(Shard::new(id, storage, (*table).clone(), peers));
                    shard.set_balance_config(balance);
                    if id == ShardId(0) {
                        crate::balance::start(shard.clone());
                    }
                    crate::reactor::start_reactor_sampler();
                    let _ = ready.send((index, Ok(())));
                    drop(ready);
                    shard.serve(inbox).await;
                })
                .map_err(|e| RuntimeError::Executor { shard: index, cpu, message: e.to_string() })?;
            threads.push(handle);
        }
        drop(ready_tx);
        let mut set = ShardSet { inboxes: senders, threads, cpus, metrics, _lock: lock };
        let mut failure = None;
        for _ in 0..shard_count {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((shard, Err(source))) => {
                    failure.get_or_insert(RuntimeError::Storage { shard, source });
                }
                Err(_) => {
                    failure.get_or_insert(RuntimeError::Lost(0));
                    break;
                }
            }
        }
        if let Some(error) = failure {
            let _ = set.shutdown_inner();
            return Err(error);
        }
        info!(shards = shard_count, cpus = %ringstream_tuning::format_cpu_list(&set.cpus), "shards ready");
        Ok(set)
    }

    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }

    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// Every shard's metrics, e.g. `metrics().load(shard)` from outside the shards.
    pub fn metrics(&self) -> &Arc<ringstream_core::metrics::MetricsTable> {
        &self.metrics
    }

    /// Runs `task` on `shard` and waits for its result, from any thread that
    /// is not a shard (tools, tests, the main thread).
    pub fn run_on<T, F, Fut>(&self, shard: ShardId, task: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        let (reply, result) = flume::bounded(1);
        let task: ShardTask = Box::new(move |shard| {
            Box::pin(async move {
                let _ = reply.send(task(shard).await);
            })
        });
        self.inboxes[shard.index()]
            .send(Envelope { to: shard, message: Message::Run(task) })
            .expect("shard is running");
        result.recv().expect("shard dropped a task")
    }

    /// Stops every shard cleanly: queued appends drain, segments close.
    pub fn shutdown(mut self) -> Result<(), RuntimeError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Result<(), RuntimeError> {
        let mut waits = Vec::new();
        for (index, inbox) in self.inboxes.iter().enumerate() {
            let (reply, receiver) = futures_channel::oneshot::channel();
            if inbox.send(Envelope { to: ShardId(index as u16), message: Message::Shutdown { reply } }).is_ok() {
                waits.push((index, receiver));
            }
        }
        let mut first_error = None;
        for (index, receiver) in waits {
            match futures_lite::future::block_on(receiver) {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    first_error.get_or_insert(RuntimeError::Storage { shard: index, source });
                }
                Err(_) => {} // never became ready, or already gone
            }
        }
        for (index, handle) in self.threads.drain(..).enumerate() {
            if handle.join().is_err() {
                first_error.get_or_insert(RuntimeError::Lost(index));
            }
        }
        self.inboxes.clear();
        first_error.map_or(Ok(()), Err)
    }
}

/// Takes `data_dir/.lock` with flock(LOCK_EX | LOCK_NB), as Kafka does, so
/// that a second broker on the same directory fails at start instead of
/// writing the same segments. The kernel drops the lock when the process
/// exits, however it exits.
fn lock_data_dir(data_dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(data_dir.join(".lock"))?;
    // SAFETY: flock on a file descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

impl Drop for ShardSet {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.shutdown_inner();
        }
    }
}

/// glommio #605: probe the device on a throwaway executor before any shard
/// opens a segment (the device table it fixes is process-wide).
fn probe_device(data_dir: &std::path::Path) -> std::io::Result<()> {
    let dir = data_dir.to_path_buf();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(64 * 1024)
        .spawn(move || async move { ringstream_storage::dir::probe_dma_device(&dir).await })
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .join()
        .map_err(|e| std::io::Error::other(e.to_string()))?
}
