//! What the load generator's integration tests share: the binaries, a real
//! broker on an ephemeral port with a temporary data dir (killed by PID on
//! drop), and running a command with a deadline.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringstream-loadgen"))
}

/// The `ringstream` broker binary from the same target directory and
/// profile as this test (`target/<profile>/deps/<test>` → `target/<profile>/ringstream`).
pub fn broker_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let broker = profile_dir.join("ringstream");
    assert!(
        broker.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace{}`), then run the loadgen tests",
        broker.display(),
        if profile_dir.ends_with("release") { " --release" } else { "" }
    );
    broker
}

/// A broker on an ephemeral port; killed (by PID) and reaped on drop.
pub struct Broker {
    child: Child,
    pub address: String,
    _data: tempfile::TempDir,
}

impl Broker {
    pub fn start() -> Broker {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(broker_binary())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .env("RINGSTREAM_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the broker");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the broker did not report ready within 30 s");
            }
        };
        // Words, not the line's tail: `metrics=` may follow `listen=`.
        let Some(address) = line.split_whitespace().find_map(|w| w.strip_prefix("listen=")).map(str::to_owned) else {
            let _ = child.kill();
            panic!("unexpected first line from the broker: {line:?}");
        };
        Broker { child, address, _data: data }
    }
}

impl Broker {
    /// The broker's PID, for `--broker-pid`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the command to completion, killing it at the deadline.
pub fn run_bounded(mut command: Command, deadline: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start ringstream-loadgen");
    // Drain the pipes while waiting, so a chatty child cannot block on them.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buffer);
        buffer
    });
    let err_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buffer);
        buffer
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap();
            panic!(
                "ringstream-loadgen still running after {deadline:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    (Output { status, stdout: out_reader.join().unwrap(), stderr: err_reader.join().unwrap() }, elapsed)
}
