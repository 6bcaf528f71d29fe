//! The real binary: `ringstream tune` writes a profile that parses and
//! round-trips; `tune --check` reports this machine's real settings;
//! `--check --apply` on a fake system tree changes exactly the safe files;
//! `serve --profile` applies (and logs) every profile value.
//!
//! Nothing here changes this machine's settings: `--apply` only ever runs
//! with `--sysroot` pointing into a temporary directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ringstream_tuning::profile::Profile;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringstream")
}

#[test]
fn tune_quick_writes_a_profile_that_round_trips() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("profile.toml");
    let output = Command::new(bin())
        .args(["tune", "--quick", "--data-dir"])
        .arg(data.path())
        .arg("--output")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("fdatasync after a 4 KiB append: p50"), "{stdout}");
    assert!(stdout.contains("write     4 KiB"), "{stdout}");
    let text = std::fs::read_to_string(&file).unwrap();
    let profile = Profile::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(Profile::parse(&profile.to_toml(&BTreeMap::new())).unwrap(), profile);
    // It fits this machine: its CPUs are ones this process may use.
    let allowed = ringstream_tuning::allowed_cpus().unwrap();
    assert!(profile.cpus.iter().all(|cpu| allowed.contains(cpu)), "{:?} vs {allowed:?}", profile.cpus);
    assert_eq!(profile.flush_interval_ms, 0);
    assert!(profile.probe.contains_key("write_mb_s_1m_qd32"));
    // The probe file is gone.
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);

    // Without --output the profile goes to stdout, the report to stderr.
    let output = Command::new(bin()).args(["tune", "--quick", "--data-dir"]).arg(data.path()).output().unwrap();
    assert!(output.status.success());
    let profile = Profile::parse(&String::from_utf8_lossy(&output.stdout)).unwrap();
    assert!(profile.shards >= 1);
    assert!(String::from_utf8_lossy(&output.stderr).contains("QD16"));
}

/// The value printed for `name` (`STATUS NAME: current VALUE, recommended ...`).
fn current_of(report: &str, name: &str) -> String {
    let marker = format!(" {name}: current ");
    let line = report.lines().find(|line| line.contains(&marker)).unwrap_or_else(|| panic!("no {name} in\n{report}"));
    let rest = &line[line.find(&marker).unwrap() + marker.len()..];
    rest.split(", recommended").next().unwrap().to_owned()
}

#[test]
fn check_reports_this_machines_real_settings() {
    let output = Command::new(bin()).args(["tune", "--check"]).output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let code = output.status.code().unwrap();
    assert!(code == 0 || code == 1, "{code}: {report}");
    assert_eq!(code == 1, report.contains("\nHURTS ") || report.starts_with("HURTS "), "{report}");
    for (name, path) in [
        ("vm.swappiness", "/proc/sys/vm/swappiness"),
        ("fs.aio-max-nr", "/proc/sys/fs/aio-max-nr"),
        ("net.core.somaxconn", "/proc/sys/net/core/somaxconn"),
    ] {
        match std::fs::read_to_string(path) {
            Ok(value) => assert_eq!(current_of(&report, name), value.trim(), "{name}"),
            Err(_) => assert!(current_of(&report, name).starts_with("not exposed"), "{name}"),
        }
    }
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok();
    if let Some(thp) = thp {
        let selected = thp.split('[').nth(1).and_then(|s| s.split(']').next()).unwrap();
        assert_eq!(current_of(&report, "transparent_hugepage"), selected);
    }
    let governor = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").ok();
    match governor {
        Some(governor) => assert!(current_of(&report, "cpufreq.scaling_governor").contains(governor.trim())),
        None => assert_eq!(current_of(&report, "cpufreq.scaling_governor"), "not exposed (VM?)"),
    }
    assert!(report.contains(" io_uring: current available"), "{report}");
}

fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
    }
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.strip_prefix(root).unwrap().to_path_buf(), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

/// A badly tuned 4-CPU machine (2 cores with SMT siblings 0/2 and 1/3):
/// swappiness 60, aio-max-nr 65536, THP always, two CPUs on powersave; its
/// NIC IRQs already sit on the spare siblings, somaxconn is already fine.
fn fake_machine(root: &Path) {
    write_tree(
        root,
        &[
            ("sys/devices/system/cpu/online", "0-3\n"),
            ("sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "0,2\n"),
            ("sys/devices/system/cpu/cpu1/topology/thread_siblings_list", "1,3\n"),
            ("sys/devices/system/cpu/cpu2/topology/thread_siblings_list", "0,2\n"),
            ("sys/devices/system/cpu/cpu3/topology/thread_siblings_list", "1,3\n"),
            ("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "powersave\n"),
            ("sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", "powersave\n"),
            ("sys/devices/system/cpu/cpu2/cpufreq/scaling_governor", "performance\n"),
            ("sys/devices/system/cpu/cpu3/cpufreq/scaling_governor", "performance\n"),
            ("sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n"),
            ("proc/sys/vm/swappiness", "60\n"),
            ("proc/sys/fs/aio-max-nr", "65536\n"),
            ("proc/sys/net/core/somaxconn", "4096\n"),
            ("proc/sys/kernel/io_uring_disabled", "0\n"),
            ("proc/self/status", "Name:\tringstream\nCpus_allowed_list:\t0-3\n"),
            ("proc/meminfo", "MemTotal:        8000000 kB\n"),
            (
                "proc/self/limits",
                "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max open files            1048576              1048576              files     \n\
                 Max locked memory         unlimited            unlimited            bytes     \n",
            ),
            (
                "proc/interrupts",
                "           CPU0       CPU1       CPU2       CPU3\n \
                 38:          0          0      12483          0  PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\n \
                 39:          0          0          0      10378  PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0\n",
            ),
            ("proc/irq/38/smp_affinity_list", "2-3\n"),
            ("proc/irq/39/smp_affinity_list", "2-3\n"),
        ],
    );
}

#[test]
fn check_and_apply_on_a_fake_sysroot_change_exactly_the_safe_files() {
    let root = tempfile::tempdir().unwrap();
    fake_machine(root.path());
    let before = snapshot(root.path());

    let check = Command::new(bin()).args(["tune", "--check", "--sysroot"]).arg(root.path()).output().unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}{}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(current_of(&report, "vm.swappiness"), "60");
    assert_eq!(current_of(&report, "transparent_hugepage"), "always");
    assert_eq!(current_of(&report, "cpufreq.scaling_governor"), "powersave/performance");
    assert!(report.contains("fix: sysctl -w fs.aio-max-nr=1048576"), "{report}");
    assert!(report.contains("ok     irq 38 (virtio2-input.0): current 2-3, recommended 2-3"), "{report}");
    assert_eq!(snapshot(root.path()), before, "--check alone changes nothing");

    let apply =
        Command::new(bin()).args(["tune", "--check", "--apply", "--sysroot"]).arg(root.path()).output().unwrap();
    let report = String::from_utf8_lossy(&apply.stdout);
    assert_eq!(apply.status.code(), Some(0), "after --apply nothing hurts:\n{report}");
    for line in [
        "applied vm.swappiness (/proc/sys/vm/swappiness): 60 -> 1",
        "applied fs.aio-max-nr (/proc/sys/fs/aio-max-nr): 65536 -> 1048576",
        "applied transparent_hugepage (/sys/kernel/mm/transparent_hugepage/enabled): always -> madvise",
        "applied cpufreq.scaling_governor (/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor): powersave -> performance",
        "applied cpufreq.scaling_governor (/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor): powersave -> performance",
    ] {
        assert!(report.contains(line), "missing {line:?} in\n{report}");
    }
    assert!(report.ends_with("nothing hurts (exit 0)\n"), "{report}");
    let after = snapshot(root.path());
    let changed: Vec<String> =
        after.keys().filter(|path| before.get(*path) != after.get(*path)).map(|p| p.display().to_string()).collect();
    assert_eq!(
        changed,
        [
            "proc/sys/fs/aio-max-nr",
            "proc/sys/vm/swappiness",
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "sys/kernel/mm/transparent_hugepage/enabled",
        ]
    );
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "no file created or removed");

    // A NIC IRQ on a shard CPU is reported with its fix, never applied.
    write_tree(root.path(), &[("proc/irq/38/smp_affinity_list", "0-3\n")]);
    let apply =
        Command::new(bin()).args(["tune", "--check", "--apply", "--sysroot"]).arg(root.path()).output().unwrap();
    let report = String::from_utf8_lossy(&apply.stdout);
    assert_eq!(apply.status.code(), Some(1), "{report}");
    assert!(report.contains("fix: echo 2-3 > /proc/irq/38/smp_affinity_list"), "{report}");
    assert!(report.contains("not applied irq 38 (virtio2-input.0)"), "{report}");
    assert_eq!(std::fs::read_to_string(root.path().join("proc/irq/38/smp_affinity_list")).unwrap(), "0-3\n");
}

#[test]
fn serve_applies_and_logs_every_profile_value() {
    let data = tempfile::tempdir().unwrap();
    let cpu = ringstream_tuning::allowed_cpus().unwrap()[0];
    let profile_path = data.path().join("profile.toml");
    let profile = format!(
        "shards = 1\ncpus = \"{cpu}\"\nwrite_buffer_bytes = 262144\nio_depth = 7\nflush_interval_ms = 0\n\
         batch_cache_bytes = 33554432\nspin_before_park_us = 123\n[probe]\nnote = \"hand-written\"\n"
    );
    std::fs::write(&profile_path, profile).unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--set", "shard.io.depth=9", "--profile"])
        .arg(&profile_path)
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .env("RINGSTREAM_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // SAFETY: signalling the child this test started, by its PID.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(line.starts_with("ready shards=1 "), "{line:?}\n{log}");
    assert!(status.success(), "{status}\n{log}");
    for expected in [
        format!("key=cpus value={cpu} setting=shard.cpus={cpu}"),
        "key=shards value=1".to_owned(),
        "key=write_buffer_bytes value=262144 setting=shard.write.buffer.bytes=262144".to_owned(),
        "key=io_depth value=7 setting=shard.io.depth=7".to_owned(),
        "key=flush_interval_ms value=0 setting=log.flush.policy=always".to_owned(),
        "key=batch_cache_bytes value=33554432".to_owned(),
        "key=spin_before_park_us value=123".to_owned(),
        "profile value overridden key=io_depth profile_value=7 by=shard.io.depth source=\"--set\"".to_owned(),
        // What the runtime was started with.
        format!("shards=Some(1) cpus={cpu} write_buffer_bytes=262144 io_depth=9 flush=Always batch_cache_bytes=33554432 spin_before_park_us=123"),
        format!("shards ready shards=1 cpus={cpu}"),
    ] {
        assert!(log.contains(&expected), "missing {expected:?} in\n{log}");
    }
    assert_eq!(log.matches("profile value key=").count(), 7, "{log}");
}

#[test]
fn serve_rejects_a_bad_profile_naming_the_key() {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("bad.toml");
    std::fs::write(&path, "shards = 1\ncpus = \"0\"\nwrite_buffer_bytes = 262144\nio_depth = 0\nflush_interval_ms = 0\nbatch_cache_bytes = 0\nspin_before_park_us = 0\n").unwrap();
    let output = Command::new(bin())
        .args(["serve", "--profile"])
        .arg(&path)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("profile key \"io_depth\" is 0, outside [1, 1024]"), "{stderr}");
    std::fs::write(&path, "shard = 1\n").unwrap();
    let output = Command::new(bin())
        .args(["serve", "--profile"])
        .arg(&path)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("profile key \"shard\" is unknown"));
}

mod common;

/// `shard.write.buffer.bytes` really bounds a round: 16 batches of about
/// 1 KiB (15 KB in all) queued together need at least four writes with
/// 4 KiB rounds, whatever the scheduling, and every batch reads back; with
/// the default 16 MiB rounds they may share one. Out-of-range values are
/// refused when storage opens.
#[test]
fn write_buffer_bytes_bounds_each_group_commit_round() {
    use ringstream_core::types::{ShardId, TopicPartition};
    use ringstream_storage::shard_storage::ShardStorage;
    for write_buffer_bytes in [ringstream_core::limits::commit_round_bytes_max, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let (writes, batches) = common::run_local(move || async move {
            let tp = TopicPartition::new("rounds", 0);
            let mut config = common::config(&path);
            config.write_buffer_bytes = write_buffer_bytes;
            config.io_depth = 2;
            let storage = ShardStorage::open(ShardId(0), config).await.unwrap();
            storage.open_partition(tp.clone(), common::small_segments(1 << 30)).await.unwrap();
            let mut tickets = Vec::new();
            let mut sent = Vec::new();
            for i in 0..16u64 {
                let batch = common::batch(8, 100, i, 0);
                sent.push(batch.clone());
                tickets.push(storage.submit(&tp, batch).await.unwrap());
            }
            for ticket in tickets {
                ticket.wait().await.unwrap();
            }
            let read = common::read_all(&storage, &tp).await;
            assert_eq!(read.len(), sent.len());
            let bytes: usize = sent.iter().map(|b| b.len()).sum();
            assert!(bytes > 3 * 4096, "{bytes} bytes: more than three 4 KiB rounds hold");
            let writes = storage.commit_stats().writes;
            storage.close().await.unwrap();
            (writes, read.len())
        });
        assert_eq!(batches, 16);
        assert!(writes <= 16, "{writes} writes for 16 batches");
        if write_buffer_bytes == 4096 {
            assert!(writes >= 4, "4 KiB rounds: {writes} writes");
        }
    }
    for (write_buffer_bytes, io_depth, expected) in [
        (100, 64, "write buffer of 100 bytes is outside [4096, 16777216]"),
        (4096, 0, "io depth 0 is outside [1, 1024]"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let error = common::run_local(move || async move {
            let mut config = common::config(&path);
            config.write_buffer_bytes = write_buffer_bytes;
            config.io_depth = io_depth;
            ShardStorage::open(ShardId(0), config).await.err().map(|e| e.to_string())
        });
        assert!(error.as_deref().is_some_and(|e| e.contains(expected)), "{error:?}");
    }
}

/// `shard.cpus` naming a CPU this process may not use stops `serve` at
/// start with a message naming the CPUs that are allowed.
#[test]
fn serve_refuses_shard_cpus_outside_the_cpu_set() {
    let data = tempfile::tempdir().unwrap();
    let allowed = ringstream_tuning::allowed_cpus().unwrap();
    let outside = allowed.last().unwrap() + 1;
    let output = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--set", &format!("shard.cpus={outside}")])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "shard.cpus {outside} names CPU(s) {outside} that this process may not run on; allowed: {}",
        ringstream_tuning::format_cpu_list(&allowed)
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
