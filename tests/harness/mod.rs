//! The compatibility harness: starts the real broker binary on a fresh data
//! dir and ephemeral port, runs client scripts from `tests/compat/` against
//! it, and kills it (and any broker a script restarted) when dropped.
//! Shared by every test binary that drives third-party clients.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The scripts' own watchdog (passed as --timeout).
pub const script_watchdog_seconds: u64 = 120;
/// The harness's limit, past the watchdog so the script can report first.
pub const script_seconds_max: u64 = 150;
pub const broker_ready_seconds_max: u64 = 60;
/// What the scripts import, at the versions whose APIs they use (as in scripts/test.sh).
pub const python_requirements: &str = "import confluent_kafka, kafka, aiokafka, snappy, lz4.frame, zstandard
assert tuple(int(x) for x in confluent_kafka.__version__.split('.')[:2]) >= (2, 4), 'confluent-kafka < 2.4'
assert int(kafka.__version__.split('.')[0]) >= 3, 'kafka-python < 3'";
pub const install_hint: &str = "run `bash scripts/test.sh`: it installs the client compatibility tools \
     (apt: kcat, python3-pip; pip: confluent-kafka>=2.4 kafka-python>=3 aiokafka>=0.12 python-snappy lz4 zstandard) before `cargo test`";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringstream")
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails (never skips) when a client tool is missing; checked once.
pub fn require_tools() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let python = Command::new("python3")
            .args(["-c", python_requirements])
            .output()
            .map_err(|e| format!("python3 cannot be run ({e})"))?;
        if !python.status.success() {
            return Err(format!(
                "python3 lacks a client module:\n{}",
                String::from_utf8_lossy(&python.stderr).trim_end()
            ));
        }
        let kcat = Command::new("kcat").arg("-V").output().map_err(|e| format!("kcat cannot be run ({e})"))?;
        if !kcat.status.success() {
            return Err(format!("`kcat -V` failed: {}", String::from_utf8_lossy(&kcat.stderr)));
        }
        Ok(())
    });
    if let Err(message) = result {
        panic!("client compatibility tools missing: {message}\n{install_hint}");
    }
}

/// A running broker on a fresh data dir, killed on drop with every broker a
/// script started on the same data dir.
pub struct Broker {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// Arguments after `serve_args` (e.g. `--set name=value`), restarts included.
    pub extra: Vec<String>,
    /// The metrics and admin address, when started with `--metrics-listen`.
    pub metrics: Option<String>,
}

/// `name=value` from the broker's `ready shards=N listen=A [metrics=B]` line.
pub fn ready_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// A broker started with `extra` arguments after the usual ones, e.g.
    /// `["--set", "group.consumer.session.timeout.ms=6000"]`. Its log level
    /// is RINGSTREAM_LOG where that is set (e.g. debug), else info.
    pub fn start_with(extra: &[&str]) -> Broker {
        require_tools();
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(dir.path().join("data")).unwrap();
        let stdout_path = dir.path().join("broker.stdout");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let log_level = std::env::var("RINGSTREAM_LOG").unwrap_or_else(|_| "info".to_owned());
        let child = Command::new(bin())
            .args(serve_args(&dir.path().join("data"), "127.0.0.1:0"))
            .args(&extra)
            .env("RINGSTREAM_LOG", log_level)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).unwrap())
            .stderr(append(&dir.path().join("broker.log")))
            .spawn()
            .expect("ringstream starts");
        let mut broker = Broker { child, port: 0, dir, extra, metrics: None };
        let deadline = Instant::now() + Duration::from_secs(broker_ready_seconds_max);
        loop {
            let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = stdout.lines().find(|l| l.starts_with("ready ")) {
                let port =
                    ready_field(line, "listen").and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| p.parse().ok());
                broker.port = port.unwrap_or_else(|| panic!("cannot read the port from {line:?}"));
                broker.metrics = ready_field(line, "metrics").map(str::to_owned);
                return broker;
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("broker exited with {status} before it was ready\n{}", broker.log_tail(60));
            }
            if Instant::now() > deadline {
                panic!("broker not ready after {broker_ready_seconds_max}s\n{}", broker.log_tail(60));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("restarted.pids")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// The command line that starts this broker again on its data dir and port.
    pub fn restart_command(&self) -> Vec<String> {
        let mut command = vec![bin().to_owned()];
        command.extend(serve_args(&self.data_dir(), &self.bootstrap()));
        command.extend(self.extra.iter().cloned());
        command
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let text = strip_ansi(&text);
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        format!(
            "--- broker log (stderr, last {} of {} lines) ---\n{}",
            all.len() - start,
            all.len(),
            all[start..].join("\n")
        )
    }

    /// Runs `tests/compat/<script>.py` against this broker; panics with its
    /// output and the broker's log unless it exits 0. Returns its output.
    pub fn run(&self, script: &str, extra: &[&str]) -> String {
        let path = repo().join("tests/compat").join(format!("{script}.py"));
        let output_path = self.dir.path().join(format!("{script}.output"));
        let output = File::create(&output_path).unwrap();
        let mut command = Command::new("python3");
        command
            .arg(&path)
            .arg("--bootstrap")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--broker-pid")
            .arg(self.child.id().to_string())
            .arg("--timeout")
            .arg(script_watchdog_seconds.to_string())
            .args(extra)
            .current_dir(repo())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output);
        let started = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|e| panic!("python3 cannot be run: {e}\n{install_hint}"));
        let status = wait_bounded(&mut child, Duration::from_secs(script_seconds_max));
        let text = fs::read_to_string(&output_path).unwrap_or_default();
        match status {
            Some(status) if status.success() => {
                println!("{script}.py passed in {:.1}s:\n{text}", started.elapsed().as_secs_f64());
                text
            }
            Some(status) => panic!(
                "tests/compat/{script}.py failed ({status}) after {:.1}s\n--- script output ---\n{}\n{}",
                started.elapsed().as_secs_f64(),
                text.trim_end(),
                self.log_tail(80)
            ),
            None => panic!(
                "tests/compat/{script}.py still running after {script_seconds_max}s: killed\n--- script output ---\n{}\n{}",
                text.trim_end(),
                self.log_tail(80)
            ),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Brokers the restart script started, if it could not stop them.
        for pid in fs::read_to_string(self.pid_file()).unwrap_or_default().lines() {
            let Ok(pid) = pid.trim().parse::<i32>() else { continue };
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains(&*self.data_dir().to_string_lossy());
            if ours {
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

pub fn serve_args(data_dir: &Path, listen: &str) -> Vec<String> {
    vec![
        "serve".into(),
        "--data-dir".into(),
        data_dir.to_string_lossy().into_owned(),
        "--listen".into(),
        listen.into(),
        "--shards".into(),
        "2".into(),
        "--set".into(),
        "num.partitions=6".into(),
        "--set".into(),
        "group.initial.rebalance.delay.ms=0".into(),
    ]
}

pub fn append(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap()
}

/// Waits for `child` at most `limit`; kills it and returns None past that.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

pub fn json_string_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| {
            let mut s = String::from("\"");
            for c in item.chars() {
                match c {
                    '"' => s.push_str("\\\""),
                    '\\' => s.push_str("\\\\"),
                    c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                    c => s.push(c),
                }
            }
            s.push('"');
            s
        })
        .collect();
    format!("[{}]", quoted.join(","))
}
