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
    let (mut child, _) = serve_on(data_dir); // panics unless it reported ready
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
    let output =
        Command::new(bin()).args(["serve", "--shards", "100000"]).arg("--data-dir").arg(dir.path()).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--shards 100000 does not fit"), "{stderr}");
    let output = Command::new(bin())
        .args(["serve", "--set", "log.segment.bytes=12"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("segment.bytes"));
    let output = Command::new(bin()).args(["serve", "--flush", "sometimes"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("flush policy"));
}

/// Starts `serve` on `data_dir` and an ephemeral port; returns the child and its address.
fn serve_on(data_dir: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RINGSTREAM_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // Words, not the line's tail: `metrics=` may follow `listen=`.
    let address = line
        .starts_with("ready shards=")
        .then(|| line.split_whitespace().find_map(|w| w.strip_prefix("listen=")).map(str::to_owned))
        .flatten();
    (child, address.unwrap_or_else(|| panic!("unexpected first line {line:?}")))
}

fn stop(mut child: std::process::Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
}

/// A second broker on a data dir in use, or on a port in use, stops at
/// start with a message that says so (the shards' SO_REUSEPORT listeners
/// would otherwise share the port with the first broker).
#[test]
fn a_second_broker_on_the_same_data_dir_or_port_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (first, address) = serve_on(dir.path());

    let output = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");

    let other = tempfile::tempdir().unwrap();
    let output =
        Command::new(bin()).args(["serve", "--listen", &address]).arg("--data-dir").arg(other.path()).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on {address}: another process is listening there")), "{stderr}");

    stop(first);
    // Once the first broker is gone, the directory is free again.
    let (again, _) = serve_on(dir.path());
    stop(again);
}

/// Many idle partitions reserve little disk: segment preallocation starts
/// at `segment_prealloc_step_min_bytes` and grows with the data written.
#[test]
fn two_thousand_idle_partitions_reserve_little_disk() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (broker, address) = serve_on(dir.path());
    let output = Command::new(bin())
        .args(["topic", "--brokers", &address, "create", "wide", "--partitions", "2000"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    stop(broker);
    let mut allocated = 0u64;
    let mut partitions = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_name().to_string_lossy().starts_with("wide-") {
            continue;
        }
        partitions += 1;
        for file in std::fs::read_dir(entry.path()).unwrap() {
            allocated += file.unwrap().metadata().unwrap().blocks() * 512;
        }
    }
    assert_eq!(partitions, 2000);
    let per_partition = allocated / 2000;
    assert!(per_partition <= 256 * 1024, "{per_partition} bytes allocated per idle partition");
}
