//! The multi-node harness: N real `ringstream serve` processes on loopback,
//! one data dir each, ephemeral ports, a TCP proxy in front of every
//! directed controller link (so a test can cut and heal links), and every
//! process killed by PID when the cluster is dropped. It shares the
//! compatibility harness's helpers (`crate::harness`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ready_seconds_max: u64 = 60;
pub const script_seconds_max: u64 = 150;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringstream")
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port for a node to bind, below Linux's ephemeral range
/// (32768 and up): a port the kernel picked for us (port 0) could be handed
/// to some other test's outgoing connection before the node binds it, and a
/// node restarted on its port could find it taken the same way. Ports are
/// never handed out twice in one test binary.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (seed.wrapping_add(n.wrapping_mul(7_919))) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
}

/// A TCP proxy for one directed link: accepts on its own port and relays to
/// `target`. `cut` drops every relayed connection and refuses new ones
/// until `heal`.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (c, s, o) = (cut.clone(), stop.clone(), open.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if c.load(Ordering::Relaxed) {
                            drop(client);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                        for stream in [&client, &server] {
                            o.lock().unwrap().push(stream.try_clone().unwrap());
                        }
                        relay(client.try_clone().unwrap(), server.try_clone().unwrap());
                        relay(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy { port, cut, open, stop }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

pub struct Node {
    pub id: i32,
    pub kafka_port: u16,
    pub controller_port: u16,
    pub child: Option<Child>,
    pub runs: u32,
    /// Broker and controller; false: broker only.
    pub voter: bool,
    /// Controller only (`process.roles=controller`, no Kafka listener).
    pub controller_only: bool,
}

/// A cluster of `n` nodes, each broker and controller.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<i32, Node>,
    /// (from, to) -> the proxy `from` reaches `to`'s controller port through.
    pub links: BTreeMap<(i32, i32), Proxy>,
    pub extra: Vec<String>,
    /// Each node gets `broker.rack=rack-<id>`.
    pub racks: bool,
}

impl Cluster {
    /// No nodes: only a place to run client scripts from.
    pub fn empty() -> Cluster {
        Cluster {
            dir: tempfile::tempdir().unwrap(),
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            extra: Vec::new(),
            racks: false,
        }
    }

    /// Starts `n` nodes (ids 1..=n), each broker and controller, and waits
    /// until each is ready.
    pub fn start(n: i32, extra: &[&str]) -> Cluster {
        Cluster::start_with(n, 0, extra)
    }

    /// `start`, with node N in rack `rack-N`.
    #[allow(dead_code)] // each test binary uses a different part of the harness
    pub fn start_racked(n: i32, extra: &[&str]) -> Cluster {
        Cluster::build(n, 0, 0, extra, true)
    }

    /// `voters` voters, the last `controller_only` of them without the
    /// broker role.
    pub fn start_with_controllers(voters: i32, controller_only: i32, extra: &[&str]) -> Cluster {
        Cluster::build(voters, 0, controller_only, extra, false)
    }

    /// `voters` broker-and-controller nodes, then `brokers` broker-only ones.
    pub fn start_with(voters: i32, brokers: i32, extra: &[&str]) -> Cluster {
        Cluster::build(voters, brokers, 0, extra, false)
    }

    fn build(voters: i32, brokers: i32, controller_only: i32, extra: &[&str], racks: bool) -> Cluster {
        let n = voters + brokers;
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let node = Node {
                id,
                kafka_port: free_port(),
                controller_port: free_port(),
                child: None,
                runs: 0,
                voter: id <= voters,
                controller_only: id <= voters && id > voters - controller_only,
            };
            nodes.insert(id, node);
        }
        let mut links = BTreeMap::new();
        for from in 1..=n {
            for to in 1..=n {
                if from != to {
                    links.insert((from, to), Proxy::start(nodes[&to].controller_port));
                }
            }
        }
        let mut cluster = Cluster { dir, nodes, links, extra: extra.iter().map(|s| s.to_string()).collect(), racks };
        for id in 1..=n {
            cluster.spawn(id);
        }
        for id in 1..=n {
            cluster.wait_ready(id);
        }
        cluster
    }

    pub fn data_dir(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    pub fn log_path(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    fn stdout_path(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("node-{id}.stdout"))
    }

    /// `controller.quorum.voters` as node `id` sees it: its own port, and
    /// the others through the proxies of its links.
    pub fn voters_for(&self, id: i32) -> String {
        self.nodes
            .values()
            .filter(|n| n.voter)
            .map(|n| n.id)
            .map(|v| {
                let port = if v == id { self.nodes[&v].controller_port } else { self.links[&(id, v)].port };
                format!("{v}@127.0.0.1:{port}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn serve_args(&self, id: i32) -> Vec<String> {
        let node = &self.nodes[&id];
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--data-dir".into(),
            self.data_dir(id).to_string_lossy().into_owned(),
            "--listen".into(),
            format!("127.0.0.1:{}", node.kafka_port),
            "--shards".into(),
            "1".into(),
        ];
        if node.voter {
            args.extend(["--controller-listen".into(), format!("127.0.0.1:{}", node.controller_port)]);
            if node.controller_only {
                args.extend(["--set".into(), "process.roles=controller".into()]);
            }
        } else {
            args.extend(["--set".into(), "process.roles=broker".into()]);
        }
        for setting in [
            format!("node.id={id}"),
            format!("controller.quorum.voters={}", self.voters_for(id)),
            "broker.session.timeout.ms=3000".into(),
            "broker.heartbeat.interval.ms=300".into(),
            "group.initial.rebalance.delay.ms=0".into(),
            "offsets.topic.num.partitions=6".into(),
        ] {
            args.push("--set".into());
            args.push(setting);
        }
        if self.racks {
            args.extend(["--set".into(), format!("broker.rack=rack-{id}")]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts node `id` (again) on its data dir and ports.
    pub fn spawn(&mut self, id: i32) {
        let args = self.serve_args(id);
        let _ = fs::remove_file(self.stdout_path(id));
        let log = OpenOptions::new().create(true).append(true).open(self.log_path(id)).unwrap();
        let child = Command::new(bin())
            .args(&args)
            .env("RINGSTREAM_LOG", std::env::var("RINGSTREAM_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(File::create(self.stdout_path(id)).unwrap())
            .stderr(log)
            .spawn()
            .expect("ringstream starts");
        let node = self.nodes.get_mut(&id).unwrap();
        node.child = Some(child);
        node.runs += 1;
    }

    pub fn wait_ready(&mut self, id: i32) {
        let deadline = Instant::now() + Duration::from_secs(ready_seconds_max);
        loop {
            let stdout = fs::read_to_string(self.stdout_path(id)).unwrap_or_default();
            if stdout.lines().any(|l| l.starts_with("ready ")) {
                return;
            }
            let node = self.nodes.get_mut(&id).unwrap();
            if let Some(Ok(Some(status))) = node.child.as_mut().map(|c| c.try_wait()) {
                panic!("node {id} exited with {status} before it was ready\n{}", self.logs());
            }
            if Instant::now() > deadline {
                panic!("node {id} not ready after {ready_seconds_max}s\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self, id: i32) {
        if let Some(mut child) = self.nodes.get_mut(&id).unwrap().child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn terminate(&mut self, id: i32, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.nodes.get_mut(&id).unwrap().child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        crate::harness::wait_bounded(&mut child, limit)
    }

    pub fn bootstrap(&self, id: i32) -> String {
        format!("127.0.0.1:{}", self.nodes[&id].kafka_port)
    }

    pub fn all_bootstrap(&self) -> String {
        self.nodes.keys().map(|id| self.bootstrap(*id)).collect::<Vec<_>>().join(",")
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: i32) {
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.cut();
            }
        }
    }

    pub fn heal_all(&self) {
        for proxy in self.links.values() {
            proxy.heal();
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for id in self.nodes.keys() {
            let text = fs::read_to_string(self.log_path(*id)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(40);
            out.push_str(&format!(
                "--- node {id} log (last {} lines) ---\n{}\n",
                lines.len() - start,
                lines[start..].join("\n")
            ));
        }
        out
    }

    /// Runs `tests/compat/<script>.py --bootstrap B <args>`; panics with its
    /// output and the nodes' logs unless it exits 0. Returns its output.
    pub fn run(&self, script: &str, bootstrap: &str, args: &[&str]) -> String {
        let path = repo().join("tests/compat").join(format!("{script}.py"));
        let output_path = self.dir.path().join(format!("{script}.output"));
        let output = File::create(&output_path).unwrap();
        let mut child = Command::new("python3")
            .arg(&path)
            .arg("--bootstrap")
            .arg(bootstrap)
            .arg("--timeout")
            .arg("120")
            .args(args)
            .current_dir(repo())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("python3 runs");
        let status = crate::harness::wait_bounded(&mut child, Duration::from_secs(script_seconds_max));
        let text = fs::read_to_string(&output_path).unwrap_or_default();
        match status {
            Some(s) if s.success() => text,
            _ => panic!("tests/compat/{script}.py failed ({status:?})\n--- output ---\n{text}\n{}", self.logs()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<i32> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}
