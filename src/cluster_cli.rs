//! `ringstream cluster describe` (brokers, controller, quorum, over the
//! Kafka protocol) and `ringstream cluster dev` (a local N-node cluster in
//! one command, as `rpk container start -n N`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Subcommand;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::cli::{CliError, Connection};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Brokers (id, endpoint, rack, fenced, partitions led), the active
    /// controller, and the metadata quorum with each voter's lag.
    Describe,
    /// Start a local cluster of N nodes (each broker and controller) on
    /// loopback, print its bootstrap list, and stop every node on Ctrl-C.
    Dev {
        /// Nodes in the cluster.
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// Parent directory; node N keeps its data in DIR/node-N.
        #[arg(long, default_value = "./cluster-data")]
        data_dir: PathBuf,
        /// First Kafka port; node N listens on BASE+N-1 and its controller
        /// listener on BASE+100+N-1.
        #[arg(long, default_value_t = 9092)]
        base_port: u16,
        /// Shards per node.
        #[arg(long, default_value_t = 1)]
        shards: usize,
    },
}

pub fn run(connection: &Connection, command: ClusterCommand) -> Result<(), CliError> {
    match command {
        ClusterCommand::Describe => describe(connection),
        ClusterCommand::Dev { nodes, data_dir, base_port, shards } => dev(nodes, &data_dir, base_port, shards),
    }
}

fn describe(connection: &Connection) -> Result<(), CliError> {
    let mut client = connection.connect()?;
    let version = client.version(ApiKey::DescribeCluster, 2)?;
    let cluster: DescribeClusterResponse =
        client.call(ApiKey::DescribeCluster, version, &DescribeClusterRequest::default())?;
    if cluster.error_code != 0 {
        return Err(CliError::Kafka {
            what: "DescribeCluster".into(),
            code: cluster.error_code,
            message: cluster.error_message.map(|m| m.to_string()),
        });
    }
    let version = client.version(ApiKey::Metadata, 12)?;
    let metadata: MetadataResponse =
        client.call(ApiKey::Metadata, version, &MetadataRequest::default().with_topics(None))?;
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    let mut under_replicated = 0usize;
    for topic in &metadata.topics {
        for p in &topic.partitions {
            *led.entry(p.leader_id.0).or_default() += 1;
            if p.isr_nodes.len() < p.replica_nodes.len() {
                under_replicated += 1;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "cluster {}  controller {}", cluster.cluster_id, cluster.controller_id.0);
    let _ = writeln!(out, "{:>6}  {:<24} {:<10} {:<7} {:>8}", "BROKER", "ENDPOINT", "RACK", "FENCED", "LEADS");
    for b in &cluster.brokers {
        let _ = writeln!(
            out,
            "{:>6}  {:<24} {:<10} {:<7} {:>8}",
            b.broker_id.0,
            format!("{}:{}", b.host, b.port),
            b.rack.as_ref().map_or("-".to_owned(), |r| r.to_string()),
            b.is_fenced,
            led.get(&b.broker_id.0).copied().unwrap_or(0)
        );
    }
    let offline = led.get(&-1).copied().unwrap_or(0);
    let _ = writeln!(out, "offline partitions (no leader): {offline}");
    let _ = writeln!(out, "under-replicated partitions (ISR smaller than replicas): {under_replicated}");
    let version = client.version(ApiKey::DescribeQuorum, 2)?;
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let quorum: DescribeQuorumResponse = client.call(ApiKey::DescribeQuorum, version, &request)?;
    let Some(p) = quorum.topics.first().and_then(|t| t.partitions.first()) else {
        return Err(CliError::Usage("DescribeQuorum returned no partition".into()));
    };
    if p.error_code != 0 {
        return Err(CliError::Kafka {
            what: "DescribeQuorum".into(),
            code: p.error_code,
            message: p.error_message.as_ref().map(|m| m.to_string()),
        });
    }
    let _ = writeln!(
        out,
        "quorum: leader {}  epoch {}  high watermark {}",
        p.leader_id.0, p.leader_epoch, p.high_watermark
    );
    let _ = writeln!(out, "{:>6}  {:>14} {:>8} {:>16}", "VOTER", "LOG END", "LAG", "LAST HEARD (ms)");
    let now = ringstream_core::clock::now_ms();
    for v in &p.current_voters {
        let lag =
            if v.log_end_offset >= 0 { (p.high_watermark - v.log_end_offset).max(0).to_string() } else { "?".into() };
        let heard = if v.last_fetch_timestamp > 0 { (now - v.last_fetch_timestamp).to_string() } else { "-".into() };
        let _ = writeln!(out, "{:>6}  {:>14} {:>8} {:>16}", v.replica_id.0, v.log_end_offset, lag, heard);
    }
    for o in &p.observers {
        let _ = writeln!(out, "{:>6}  observer (broker only)", o.replica_id.0);
    }
    Ok(())
}

fn dev(nodes: u16, data_dir: &std::path::Path, base_port: u16, shards: usize) -> Result<(), CliError> {
    if nodes == 0 || nodes > 9 {
        return Err(CliError::Usage("--nodes must be 1 to 9".into()));
    }
    if u32::from(base_port) + 100 + u32::from(nodes) > 65_535 {
        return Err(CliError::Usage("--base-port too high".into()));
    }
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let exe = std::env::current_exe().map_err(|e| CliError::Usage(e.to_string()))?;
    std::fs::create_dir_all(data_dir).map_err(|e| CliError::Usage(format!("{}: {e}", data_dir.display())))?;
    let voters: Vec<String> = (1..=nodes).map(|n| format!("{n}@127.0.0.1:{}", base_port + 100 + n - 1)).collect();
    let voters = voters.join(",");
    let mut children: Vec<(u16, Child, PathBuf)> = Vec::new();
    for n in 1..=nodes {
        let dir = data_dir.join(format!("node-{n}"));
        let log = data_dir.join(format!("node-{n}.log"));
        let stdout = data_dir.join(format!("node-{n}.stdout"));
        let child = Command::new(&exe)
            .arg("serve")
            .args(["--data-dir", &dir.to_string_lossy()])
            .args(["--listen", &format!("127.0.0.1:{}", base_port + n - 1)])
            .args(["--controller-listen", &format!("127.0.0.1:{}", base_port + 100 + n - 1)])
            .args(["--shards", &shards.to_string()])
            .args(["--set", &format!("node.id={n}")])
            .args(["--set", &format!("controller.quorum.voters={voters}")])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).map_err(|e| CliError::Usage(e.to_string()))?)
            .stderr(std::fs::File::create(&log).map_err(|e| CliError::Usage(e.to_string()))?)
            .spawn()
            .map_err(|e| CliError::Usage(format!("cannot start node {n}: {e}")))?;
        children.push((n, child, stdout));
    }
    let stop = |children: &mut Vec<(u16, Child, PathBuf)>| {
        for (_, child, _) in children.iter() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        for (n, child, _) in children.iter_mut() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().ok().flatten().is_none() {
                eprintln!("node {n} did not stop; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = children
            .iter()
            .all(|(_, _, out)| std::fs::read_to_string(out).is_ok_and(|t| t.lines().any(|l| l.starts_with("ready "))));
        if ready {
            break;
        }
        let exited = children.iter_mut().find_map(|(n, c, _)| c.try_wait().ok().flatten().map(|_| *n));
        if let Some(n) = exited {
            stop(&mut children);
            return Err(CliError::Usage(format!(
                "node {n} exited; see {}",
                data_dir.join(format!("node-{n}.log")).display()
            )));
        }
        if Instant::now() > deadline || signals.pending().next().is_some() {
            stop(&mut children);
            return Err(CliError::Usage("the cluster did not become ready".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let bootstrap: Vec<String> = (1..=nodes).map(|n| format!("127.0.0.1:{}", base_port + n - 1)).collect();
    println!("cluster ready: {nodes} nodes, logs in {}", data_dir.display());
    println!("bootstrap {}", bootstrap.join(","));
    let _ = std::io::stdout().flush();
    let _ = signals.forever().next();
    eprintln!("stopping {nodes} nodes");
    stop(&mut children);
    Ok(())
}
