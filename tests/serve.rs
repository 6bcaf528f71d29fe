//! The real binary: `ringstream serve` starts the shards on a temporary data
//! dir, reports ready, and stops cleanly on SIGTERM and SIGINT, closing every
//! partition's segments (clean-shutdown markers written).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringstream")
}

fn populate(data_dir: &Path) {
    let status = Command::new(bin())
        .args(["debug", "append", "--topic", "served", "--partitions", "4", "--count", "200", "--shards", "1"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RINGSTREAM_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn serve_then_signal(data_dir: &Path, signal: i32) {
    let mut child = Command::new(bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .env("RINGSTREAM_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("ready shards="), "unexpected first line {line:?}");
    // The markers were removed when the partitions opened.
    for p in 0..4 {
        assert!(!data_dir.join(format!("served-{p}/clean-shutdown")).exists());
    }
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status} after signal {signal}");
    for p in 0..4 {
        assert!(data_dir.join(format!("served-{p}/clean-shutdown")).exists(), "partition {p} not closed cleanly");
    }
}

#[test]
fn serve_stops_cleanly_on_sigterm_and_sigint() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    serve_then_signal(dir.path(), libc::SIGTERM);
    serve_then_signal(dir.path(), libc::SIGINT);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(bin()).args(["serve", "--shards", "100000"]).arg("--data-dir").arg(dir.path()).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--shards 100000 does not fit"), "{stderr}");
    let output = Command::new(bin()).args(["serve", "--set", "log.segment.bytes=12"]).arg("--data-dir").arg(dir.path()).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("segment.bytes"));
    let output = Command::new(bin()).args(["serve", "--flush", "sometimes"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("flush policy"));
}
