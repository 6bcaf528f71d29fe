//! The `ringstream` command: the broker and its tools.

mod cli;
mod cluster_cli;
mod tune;
mod txn_cli;

use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use ringstream_broker::config::apply_setting;
use ringstream_core::batch::{build_test_batch, BatchHeader};
use ringstream_core::types::{Offset, ShardId, TopicPartition};
use ringstream_shard::{RuntimeConfig, Shard, ShardSet};
use ringstream_storage::log::FlushPolicy;
use ringstream_storage::shard_storage::StorageConfig;
use tracing::info;

/// Huge allocations are reserved lazily, so a request whose decoder sizes
/// an array from the wire cannot abort the broker (see `ringstream_core::alloc`).
#[global_allocator]
static GLOBAL: ringstream_core::alloc::LazyHugeAlloc = ringstream_core::alloc::LazyHugeAlloc;

#[derive(Parser)]
#[command(name = "ringstream", version, about = "Kafka-compatible, thread-per-core event streaming broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker: start the shards and serve until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Manage topics on a running broker (Kafka protocol).
    Topic {
        #[command(subcommand)]
        command: crate::cli::TopicCommand,
        #[command(flatten)]
        connection: crate::cli::Connection,
    },
    /// Manage consumer groups on a running broker: list, describe (offsets
    /// and lag), delete, reset-offsets (Kafka protocol).
    Group {
        #[command(subcommand)]
        command: crate::cli::GroupCommand,
        #[command(flatten)]
        connection: crate::cli::Connection,
    },
    /// Transactions on a running cluster: list, describe, find-hanging,
    /// abort (as kafka-transactions.sh).
    Transactions {
        #[command(subcommand)]
        command: crate::txn_cli::TxnCommand,
        #[command(flatten)]
        connection: crate::cli::Connection,
    },
    /// Produce stdin lines to a topic on a running broker.
    Produce {
        #[command(flatten)]
        args: crate::cli::ProduceArgs,
        #[command(flatten)]
        connection: crate::cli::Connection,
    },
    /// Print a topic's records from a running broker.
    Consume {
        #[command(flatten)]
        args: crate::cli::ConsumeArgs,
        #[command(flatten)]
        connection: crate::cli::Connection,
    },
    /// A live per-shard table (load, partitions, connections, throughput,
    /// p99 latency, cache hit ratio) from a broker's metrics endpoint.
    Status(ringstream_client::status::StatusArgs),
    /// Partitions on a running broker's shards: list them, move one to
    /// another shard live (the admin API on the --metrics-listen address).
    Partition {
        #[command(subcommand)]
        command: ringstream_broker::admin::PartitionCommand,
        /// The broker's --metrics-listen address, which serves the admin API.
        #[arg(long, global = true, default_value = "127.0.0.1:9644")]
        admin: String,
    },
    /// A cluster: describe it (brokers, controller, quorum), or start a
    /// local one for development (`cluster dev --nodes 3`).
    Cluster {
        #[command(subcommand)]
        command: crate::cluster_cli::ClusterCommand,
        #[command(flatten)]
        connection: crate::cli::Connection,
    },
    /// Storage tools for developers and operators.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Probe this machine's disk and CPUs and write a tuning profile for
    /// `serve --profile`; or, with --check, list the system settings that
    /// hurt a broker (exit 1 if any), and with --apply fix the safe ones.
    Tune(crate::tune::TuneArgs),
}

#[derive(Args, Clone)]
struct ShardArgs {
    /// Data directory.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Number of shards (default: one per CPU in the affinity mask).
    #[arg(long)]
    shards: Option<usize>,
    /// How long an idle shard spins before it parks, in microseconds [default: 50].
    #[arg(long)]
    spin_before_park_us: Option<u64>,
    /// `always` (fdatasync before acknowledging) or `interval_ms=<n>` [default: always].
    #[arg(long)]
    flush: Option<FlushPolicy>,
    /// Broker settings under Kafka's names, e.g. --set log.segment.bytes=1048576
    #[arg(long = "set", value_name = "NAME=VALUE")]
    settings: Vec<String>,
}

impl ShardArgs {
    /// The runtime configuration from the flags, without `--set`.
    fn base_runtime_config(&self) -> RuntimeConfig {
        let mut config = RuntimeConfig::new(StorageConfig::new(&self.data_dir));
        self.apply_flags(&mut config);
        config
    }

    /// Applies the flags given on the command line (those left out keep
    /// the value `config` has); returns their names.
    fn apply_flags(&self, config: &mut RuntimeConfig) -> Vec<String> {
        let mut names = Vec::new();
        if let Some(shards) = self.shards {
            config.shards = Some(shards);
            config.cpus = None; // a count given by hand: the first N allowed CPUs
            names.push("--shards".to_owned());
        }
        if let Some(spin) = self.spin_before_park_us {
            config.spin_before_park_us = spin;
            names.push("--spin-before-park-us".to_owned());
        }
        if let Some(flush) = self.flush {
            config.storage.flush = flush;
            names.push("--flush".to_owned());
        }
        names
    }

    /// For the storage tools: flags plus storage `--set` settings.
    fn runtime_config(&self) -> Result<RuntimeConfig, String> {
        let mut config = self.base_runtime_config();
        for setting in &self.settings {
            apply_setting(&mut config, setting)?;
        }
        Ok(config)
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    shard: ShardArgs,
    /// Address to listen on for Kafka clients.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: std::net::SocketAddr,
    /// host:port given to clients in Metadata (default: the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// TOML file of settings under Kafka's names (applied before --set).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics (`GET /metrics`) on this address, from
    /// shard 0 (off by default; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Tuning profile from `ringstream tune`, applied first: command-line
    /// flags, --config and --set override its values.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Where this node's quorum and controller traffic listens (a cluster
    /// node with the controller role; see controller.quorum.voters).
    #[arg(long, value_name = "HOST:PORT")]
    controller_listen: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Append generated batches through the router and print each
    /// acknowledgement as `ack <partition> <base> <last>` (used by the crash
    /// test; also a quick storage smoke test).
    Append(AppendArgs),
    /// Print every batch of a partition: offsets, size, record count.
    Dump(DumpArgs),
}

#[derive(Args)]
struct AppendArgs {
    #[command(flatten)]
    shard: ShardArgs,
    #[arg(long, default_value = "test")]
    topic: String,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Batches to append in all.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    #[arg(long, default_value_t = 10)]
    records_per_batch: u32,
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Appends in flight at once (exercises group commit).
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
}

#[derive(Args)]
struct DumpArgs {
    #[command(flatten)]
    shard: ShardArgs,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partition: i32,
}

/// Logs go to stderr. Colour only when stderr is a terminal and NO_COLOR is
/// unset, so files and pipes get plain text; `RINGSTREAM_LOG_FORMAT=json`
/// gives one JSON object per line, for log collectors.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGSTREAM_LOG").unwrap_or_else(|_| "info".into());
    let json = std::env::var("RINGSTREAM_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let colour = std::io::stderr().is_terminal() && !std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_ansi(colour).init();
    }
}

fn main() {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Topic { command, connection } => crate::cli::topic(&connection, command).map_err(|e| e.to_string()),
        Command::Group { command, connection } => crate::cli::group(&connection, command).map_err(|e| e.to_string()),
        Command::Transactions { command, connection } => {
            crate::txn_cli::run(&connection, command).map_err(|e| e.to_string())
        }
        Command::Produce { args, connection } => crate::cli::produce(&connection, args).map_err(|e| e.to_string()),
        Command::Consume { args, connection } => crate::cli::consume(&connection, args).map_err(|e| e.to_string()),
        Command::Status(args) => ringstream_client::status::run(&args),
        Command::Cluster { command, connection } => {
            crate::cluster_cli::run(&connection, command).map_err(|e| e.to_string())
        }
        Command::Partition { command, admin } => ringstream_broker::admin::partition(&admin, command),
        Command::Debug(DebugCommand::Append(args)) => debug_append(args),
        Command::Debug(DebugCommand::Dump(args)) => debug_dump(args),
        Command::Tune(args) => crate::tune::run(&args).map(|status| {
            if status != 0 {
                std::process::exit(status); // --check: something hurts
            }
        }),
    };
    // Every command's error is printed the same way: one line, exit 1.
    if let Err(message) = result {
        eprintln!("ringstream: {message}");
        std::process::exit(1);
    }
}

fn start(args: &ShardArgs) -> Result<ShardSet, String> {
    let config = args.runtime_config()?;
    ShardSet::start(config).map_err(|e| e.to_string())
}

fn serve(args: ServeArgs) -> Result<(), String> {
    use ringstream_broker::broker::{topics::TopicTable, Broker};
    use ringstream_broker::connection;
    use signal_hook::consts::{SIGINT, SIGTERM};
    use std::sync::Arc;
    // Register before starting, so a signal during start-up is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(|e| e.to_string())?;
    // Later sources win: profile, flags, --config, --set.
    let mut settings = ringstream_broker::config::Settings {
        runtime: RuntimeConfig::new(StorageConfig::new(&args.shard.data_dir)),
        broker: ringstream_broker::broker::BrokerConfig::default(),
    };
    let profile = match &args.profile {
        Some(path) => {
            let profile = crate::tune::load_profile(path)?;
            crate::tune::apply_profile(&mut settings, &profile, path)?;
            Some(profile)
        }
        None => None,
    };
    let flag_names = args.shard.apply_flags(&mut settings.runtime);
    let mut file_names = Vec::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        file_names = settings.apply_toml(&text)?;
    }
    for setting in &args.shard.settings {
        settings.apply(setting)?; // --set wins over the file
    }
    if let Some(profile) = &profile {
        crate::tune::log_overrides(profile, "command line", &flag_names);
        crate::tune::log_overrides(profile, "--config", &file_names);
        crate::tune::log_overrides(profile, "--set", &crate::tune::setting_names(&args.shard.settings));
    }
    let runtime = &settings.runtime;
    info!(
        shards = ?runtime.shards,
        cpus = %runtime.cpus.as_deref().map_or("auto".to_owned(), ringstream_tuning::format_cpu_list),
        write_buffer_bytes = runtime.storage.write_buffer_bytes,
        io_depth = runtime.storage.io_depth,
        flush = ?runtime.storage.flush,
        batch_cache_bytes = runtime.storage.batch_cache_bytes,
        spin_before_park_us = runtime.spin_before_park_us,
        "effective tuning"
    );
    let data_dir = settings.runtime.storage.data_dir.clone();
    settings.broker.cluster.controller_listen = args.controller_listen;
    check_cluster_settings(&settings.broker)?;
    // With no cluster settings: a one-node quorum of this node alone.
    let one_node = !settings.broker.cluster.enabled();
    if one_node {
        let port = args.controller_listen.map_or(0, |a| a.port());
        let me = ringstream_cluster::Voter { id: settings.broker.node_id, host: "127.0.0.1".into(), port };
        settings.broker.cluster.voters = vec![me];
    }
    {
        let claim = ringstream_cluster::meta_properties::MetaProperties {
            node_id: settings.broker.node_id,
            cluster_id: settings.broker.cluster_id.clone(),
        };
        ringstream_cluster::meta_properties::claim(&data_dir, &claim)?;
    }
    let topics = TopicTable::load(&data_dir).map_err(|e| e.to_string())?;
    let shards = ShardSet::start(settings.runtime.clone()).map_err(|e| e.to_string())?;

    // Bind on shard 0 first (resolving port 0), then the others on the same
    // port; accept only after every shard has its broker installed.
    // A controller-only node (process.roles=controller) serves no Kafka clients.
    let kafka_listener = settings.broker.cluster.broker_role;
    let listen = args.listen;
    if kafka_listener {
        refuse_if_listening(listen)?;
    }
    if let Some(metrics) = args.metrics_listen {
        refuse_if_listening(metrics)?;
    }
    let bound = if kafka_listener {
        let bound =
            shards.run_on(ShardId(0), move |_| async move { connection::bind(listen) }).map_err(|e| e.to_string())?;
        for i in 1..shards.shard_count() {
            shards
                .run_on(ShardId(i as u16), move |_| async move { connection::bind(bound) })
                .map_err(|e| e.to_string())?;
        }
        bound
    } else {
        listen
    };
    let mut broker = settings.broker.clone();
    match &args.advertise {
        Some(advertise) => {
            let (host, port) = advertise.rsplit_once(':').ok_or("--advertise must be host:port")?;
            broker.advertised_host = host.to_owned();
            broker.advertised_port = port.parse().map_err(|_| "--advertise port must be a number")?;
        }
        None => {
            broker.advertised_host = bound.ip().to_string();
            broker.advertised_port = i32::from(bound.port());
        }
    }
    broker.groups.offsets_topic_partitions =
        ringstream_broker::groups::settle_partition_count(&data_dir, broker.groups.offsets_topic_partitions)?;
    let broker = Arc::new(broker);
    // Every shard's broker and group coordinator first (a request accepted
    // on one shard may be routed to any other), then the listeners.
    for i in 0..shards.shard_count() {
        let (broker, topics) = (broker.clone(), topics.clone());
        shards.run_on(ShardId(i as u16), move |shard: Rc<Shard>| async move {
            let groups = broker.groups.clone();
            let broker = Broker::install(shard.clone(), broker, topics)?;
            let txn = broker.config.txn.clone();
            ringstream_broker::groups::Coordinator::install(shard.clone(), groups, broker).await?;
            ringstream_broker::txn::TxnCoordinator::install(shard, txn);
            Ok::<(), String>(())
        })?;
    }
    // In a cluster: join it (shard 0), and accept clients only once this
    // broker is registered and unfenced, so it never serves stale leadership.
    {
        let config = broker.clone();
        shards.run_on(ShardId(0), move |shard: Rc<Shard>| async move {
            let advertised = (config.advertised_host.clone(), config.advertised_port);
            // A one-node quorum creates the offsets topic up front, so group
            // requests work from the first one, as they did on one broker.
            let eager =
                if one_node { vec![ringstream_broker::broker::local().offsets_new_topic()] } else { Vec::new() };
            let node = ringstream_broker::broker::cluster::ClusterNode::start(
                shard,
                config.node_id,
                config.cluster_id.clone(),
                config.cluster.clone(),
                advertised,
                eager,
            )?;
            ringstream_broker::broker::local().attach_cluster(node);
            Ok::<(), String>(())
        })?;
        let started = std::time::Instant::now();
        let mut logged = std::time::Instant::now() - std::time::Duration::from_secs(60);
        loop {
            let waiting: Option<String> = shards.run_on(ShardId(0), |_| async move {
                ringstream_broker::broker::local().cluster_node().and_then(|n| n.waiting_for())
            });
            let Some(what) = waiting else { break };
            if logged.elapsed() >= std::time::Duration::from_secs(5) {
                info!(waited_ms = started.elapsed().as_millis() as u64, "waiting for {what}");
                logged = std::time::Instant::now();
            }
            if let Some(signal) = signals.pending().next() {
                info!(signal, "stopped while waiting to join the cluster");
                shards.shutdown().map_err(|e| e.to_string())?;
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    // Followers fetch from leaders; leaders keep their ISR (every shard).
    for i in (0..shards.shard_count()).filter(|_| kafka_listener) {
        shards.run_on(ShardId(i as u16), move |_| async move {
            ringstream_broker::broker::replication::start(ringstream_broker::broker::local())
        });
    }
    for i in (0..shards.shard_count()).filter(|_| kafka_listener) {
        shards.run_on(ShardId(i as u16), move |_| async move { connection::start(ringstream_broker::broker::local()) });
    }
    let bound = if kafka_listener { bound.to_string() } else { "none".to_owned() };
    // The metrics endpoint, on shard 0 only.
    let metrics = match args.metrics_listen {
        None => None,
        Some(address) => {
            let bound: Result<std::net::SocketAddr, String> =
                shards.run_on(ShardId(0), move |shard: Rc<Shard>| async move {
                    let (listener, bound) = ringstream_broker::http::bind(address)
                        .map_err(|e| format!("cannot listen for metrics on {address}: {e}"))?;
                    let routes = ringstream_broker::http::Routes::new().route("GET", "/metrics", |shard, request| {
                        let cluster = ringstream_broker::broker::local().cluster_node().map(|node| node.metrics());
                        Box::pin(ringstream_broker::export::scrape(shard, request, cluster))
                    });
                    let routes = ringstream_broker::admin::routes(routes);
                    ringstream_broker::http::serve(shard, listener, routes);
                    Ok(bound)
                });
            Some(bound?)
        }
    };
    info!(data_dir = %data_dir.display(), shards = shards.shard_count(), listen = %bound, metrics = ?metrics, "ringstream ready");
    match metrics {
        Some(metrics) => println!("ready shards={} listen={bound} metrics={metrics}", shards.shard_count()),
        None => println!("ready shards={} listen={bound}", shards.shard_count()),
    }
    let _ = std::io::stdout().flush();
    if let Some(signal) = signals.forever().next() {
        info!(signal, "shutting down");
    }
    // A cluster broker shuts down under control: the controller moves
    // leadership away (or marks its partitions offline) first.
    shards.run_on(ShardId(0), |_| async move {
        if let Some(node) = ringstream_broker::broker::local().cluster_node() {
            node.shut_down().await;
        }
    });
    shards.shutdown().map_err(|e| e.to_string())?;
    info!("stopped cleanly");
    Ok(())
}

/// Cluster settings that cannot work together are refused at start.
fn check_cluster_settings(broker: &ringstream_broker::broker::BrokerConfig) -> Result<(), String> {
    let cluster = &broker.cluster;
    if !cluster.broker_role && !cluster.controller_role {
        return Err("process.roles must name broker, controller or both".into());
    }
    if !cluster.enabled() {
        if !cluster.broker_role || !cluster.controller_role {
            return Err("process.roles other than broker,controller needs controller.quorum.voters".into());
        }
        return Ok(());
    }
    let me = cluster.voters.iter().find(|v| v.id == broker.node_id);
    if cluster.controller_role && me.is_none() {
        return Err(format!(
            "node.id {} has the controller role but is not in controller.quorum.voters ({})",
            broker.node_id,
            cluster.voters.iter().map(|v| format!("{}@{}", v.id, v.address())).collect::<Vec<_>>().join(",")
        ));
    }
    if !cluster.controller_role && me.is_some() {
        return Err(format!("node.id {} is a voter but process.roles has no controller", broker.node_id));
    }
    if cluster.controller_role && cluster.voters.len() > 1 && cluster.controller_listen.is_none() {
        return Err("a controller in a quorum of several voters needs --controller-listen".into());
    }
    if let (Some(me), Some(listen)) = (me, cluster.controller_listen) {
        if me.port != listen.port() {
            return Err(format!(
                "controller.quorum.voters gives node.id {} the port {}, but --controller-listen is {listen}",
                me.id, me.port
            ));
        }
    }
    if cluster.heartbeat_interval_ms >= cluster.session_timeout_ms {
        return Err("broker.heartbeat.interval.ms must be below broker.session.timeout.ms".into());
    }
    Ok(())
}

/// The shards bind with SO_REUSEPORT, so a second broker on the same port
/// would silently share it with the first: refuse to start when something
/// already accepts connections there. (A plain bind probe is no good: the
/// previous run's closing connections keep the port busy for it, though not
/// for a SO_REUSEPORT listener.)
fn refuse_if_listening(listen: std::net::SocketAddr) -> Result<(), String> {
    if listen.port() == 0 {
        return Ok(());
    }
    let mut probe = listen;
    if probe.ip().is_unspecified() {
        probe.set_ip(match listen {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    if std::net::TcpStream::connect_timeout(&probe, std::time::Duration::from_millis(500)).is_ok() {
        return Err(format!("cannot listen on {listen}: another process is listening there"));
    }
    Ok(())
}

fn debug_append(args: AppendArgs) -> Result<(), String> {
    if args.partitions < 1 || args.records_per_batch < 1 || args.in_flight < 1 {
        return Err("--partitions, --records-per-batch and --in-flight must be at least 1".into());
    }
    let shards = start(&args.shard)?;
    let topic = args.topic.clone();
    let partitions = args.partitions;
    let created: Result<(), String> = shards.run_on(ShardId(0), move |shard: Rc<Shard>| async move {
        for p in 0..partitions {
            let tp = TopicPartition::new(topic.clone(), p);
            if shard.owner(&tp).is_none() {
                let config = shard.storage.config().default_log.clone();
                shard.create_partition(&tp, config).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    });
    created?;
    let (count, records, value_bytes, in_flight, topic) =
        (args.count, args.records_per_batch, args.value_bytes, args.in_flight, args.topic.clone());
    let result: Result<(), String> = shards.run_on(ShardId(0), move |shard: Rc<Shard>| async move {
        let slots = Rc::new(glommio::sync::Semaphore::new(in_flight as u64));
        let failed = Rc::new(std::cell::Cell::new(None::<String>));
        for i in 0..count {
            if let Some(error) = failed.take() {
                return Err(error);
            }
            let permit = slots.acquire_static_permit(1).await.map_err(|e| e.to_string())?;
            let partition = (i % partitions as u64) as i32;
            let tp = TopicPartition::new(topic.clone(), partition);
            let batch = Bytes::from(build_test_batch(records, value_bytes, i, 1_700_000_000_000 + i as i64));
            let ticket = shard.submit(&tp, batch).await.map_err(|e| e.to_string())?;
            let failed = failed.clone();
            glommio::spawn_local(async move {
                match ticket.wait().await {
                    Ok(info) => {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ack {partition} {} {}", info.base_offset, info.last_offset);
                        let _ = out.flush();
                    }
                    Err(e) => failed.set(Some(format!("append to {tp} failed: {e}"))),
                }
                drop(permit);
            })
            .detach();
        }
        let _ = slots.acquire(in_flight as u64).await; // all acknowledged
        failed.take().map_or(Ok(()), Err)
    });
    let closed = shards.shutdown().map_err(|e| e.to_string());
    result.and(closed)
}

fn debug_dump(args: DumpArgs) -> Result<(), String> {
    let shards = start(&args.shard)?;
    let tp = TopicPartition::new(args.topic.clone(), args.partition);
    let result: Result<(), String> = shards.run_on(ShardId(0), move |shard: Rc<Shard>| async move {
        let offsets = shard.offsets(&tp).await.map_err(|e| e.to_string())?;
        // Stop at the first failed write (e.g. `| head` closed the pipe).
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "partition {tp} log_start={} high_watermark={} segments={} bytes={}",
            offsets.log_start_offset, offsets.high_watermark, offsets.segments, offsets.size_bytes
        )
        .map_err(|e| e.to_string())?;
        let mut cursor = offsets.log_start_offset;
        while cursor < offsets.high_watermark {
            let read = shard.read(&tp, cursor, 1024 * 1024).await.map_err(|e| e.to_string())?;
            let batches = read.batches();
            if batches.is_empty() {
                break;
            }
            for bytes in batches {
                let header = BatchHeader::ref_from_prefix(bytes).ok_or("short batch")?;
                let last = header.base_offset().0 + i64::from(header.last_offset_delta());
                writeln!(
                    out,
                    "batch base={} last={} records={} bytes={} epoch={} max_timestamp={}",
                    header.base_offset(),
                    last,
                    header.records_count(),
                    bytes.len(),
                    header.leader_epoch(),
                    header.max_timestamp()
                )
                .map_err(|e| e.to_string())?;
                cursor = Offset(last + 1);
            }
        }
        Ok(())
    });
    let closed = shards.shutdown().map_err(|e| e.to_string());
    result.and(closed)
}
