//! The replication fault suite: three real nodes on loopback
//! (tests/cluster_harness), a topic with replication factor 3 and
//! `min.insync.replicas=2`, an idempotent acks=all producer and a consumer
//! group running throughout (tests/compat/replication_load.py), and faults:
//! SIGKILL of leaders and of the group coordinator, SIGSTOP of a follower
//! past `replica.lag.time.max.ms`, a leader cut off from the quorum by the
//! harness's proxies, two of three nodes down, and a full restart.
//!
//! After each scenario `replication_load.py verify` checks that every
//! acknowledged record is in the log exactly once and in order per key,
//! that every record a consumer saw is still where it saw it, and that the
//! group's committed offsets survived.
//!
//! `RINGSTREAM_FAULT_SEED` picks the victims and pauses (printed, so a run
//! replays); `RINGSTREAM_FAULT_CYCLES` sets the kill cycles (3 in CI; the
//! long run is `RINGSTREAM_FAULT_CYCLES=100 cargo test --release --test
//! replication leader_sigkill -- --nocapture`).

#![allow(non_upper_case_globals)]

mod cluster_harness;
mod harness;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_harness::{repo, Cluster};

const topic: &str = "replicated";
const group: &str = "load-group";
const partitions: i32 = 3;

/// Settings that make faults show quickly: sessions of 3 s (the harness),
/// followers out of the ISR after 2 s.
const settings: [&str; 2] = ["--set", "replica.lag.time.max.ms=2000"];

fn describe(cluster: &Cluster, via: i32) -> serde_json::Value {
    let out = cluster.run("cluster", &cluster.bootstrap(via), &["describe", "--topic", topic]);
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {out}"));
    serde_json::from_str(line).unwrap()
}

/// partition -> (leader, ISR), as node `via` answers Metadata.
fn partitions_of(cluster: &Cluster, via: i32) -> Vec<(i32, Vec<i32>)> {
    let d = describe(cluster, via);
    (0..partitions)
        .map(|p| {
            let t = &d["topics"][topic];
            let leader = t["leaders"][p.to_string()].as_i64().unwrap_or(-1) as i32;
            let isr = t["isr"][p.to_string()]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_i64().unwrap() as i32).collect())
                .unwrap_or_default();
            (leader, isr)
        })
        .collect()
}

/// Polls `check` until it holds; past `limit`, panics with the nodes' logs.
fn eventually(cluster: &Cluster, limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("not within {limit:?}: {what}\n{}", cluster.logs());
}

fn full_isr(cluster: &Cluster, via: i32) -> bool {
    partitions_of(cluster, via).iter().all(|(leader, isr)| *leader > 0 && isr.len() == 3)
}

/// A small seeded generator (splitmix64), so a schedule replays.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("RINGSTREAM_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        println!("RINGSTREAM_FAULT_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The workload: replication_load.py's producer and consumer group, until
/// `stop`.
struct Load {
    child: Child,
    stop_file: PathBuf,
    acked: PathBuf,
    seen: PathBuf,
    output: PathBuf,
}

impl Load {
    fn start(cluster: &Cluster) -> Load {
        let dir = cluster.dir.path();
        let (stop_file, acked, seen, output) =
            (dir.join("load.stop"), dir.join("acked.txt"), dir.join("seen.txt"), dir.join("load.output"));
        let child = Command::new("python3")
            .arg(repo().join("tests/compat/replication_load.py"))
            .args(["--bootstrap", &cluster.all_bootstrap(), "--timeout", "7200", "load"])
            .args(["--topic", topic, "--group", group])
            .arg("--stop-file")
            .arg(&stop_file)
            .arg("--acked")
            .arg(&acked)
            .arg("--seen")
            .arg(&seen)
            .current_dir(repo())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&output).unwrap())
            .stderr(fs::File::create(dir.join("load.stderr")).unwrap())
            .spawn()
            .expect("python3 runs");
        Load { child, stop_file, acked, seen, output }
    }

    fn acked(&self) -> usize {
        fs::read_to_string(&self.acked).map(|t| t.lines().count()).unwrap_or(0)
    }

    /// Waits until at least `more` further records are acknowledged; past
    /// `limit`, panics with the load's errors and the nodes' logs.
    fn progresses(&self, cluster: &Cluster, more: usize, limit: Duration) {
        let from = self.acked();
        let deadline = Instant::now() + limit;
        while self.acked() < from + more {
            if Instant::now() >= deadline {
                let stderr = fs::read_to_string(cluster.dir.path().join("load.stderr")).unwrap_or_default();
                let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
                panic!(
                    "not {more} more acknowledged records (from {from}) in {limit:?}\n--- load stderr (last 30, newest first) ---\n{}\n{}",
                    tail.join("\n"),
                    cluster.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self, cluster: &Cluster) -> String {
        fs::write(&self.stop_file, b"stop").unwrap();
        let status = harness::wait_bounded(&mut self.child, Duration::from_secs(120));
        let text = fs::read_to_string(&self.output).unwrap_or_default();
        assert!(status.is_some_and(|s| s.success()), "the load failed ({status:?}): {text}\n{}", cluster.logs());
        text
    }

    fn verify(&self, cluster: &Cluster, via: i32) -> serde_json::Value {
        let acked = self.acked.to_string_lossy().into_owned();
        let seen = self.seen.to_string_lossy().into_owned();
        let out = cluster.run(
            "replication_load",
            &cluster.bootstrap(via),
            &["verify", "--topic", topic, "--group", group, "--acked", &acked, "--seen", &seen],
        );
        let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {out}"));
        let figures: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(figures["acked"].as_u64().unwrap() > 0, "nothing was acknowledged: {figures}");
        figures
    }
}

fn start_cluster() -> Cluster {
    let cluster = Cluster::start(3, &settings);
    cluster.run("replication_load", &cluster.bootstrap(1), &["create", "--topic", topic]);
    cluster
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn leader_sigkill_cycles_lose_nothing_acknowledged() {
    let mut rng = Rng::from_env();
    let cycles: usize = std::env::var("RINGSTREAM_FAULT_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut cluster = start_cluster();
    let mut load = Load::start(&cluster);
    load.progresses(&cluster, 200, Duration::from_secs(60));
    let mut failovers = Vec::new();
    for cycle in 0..cycles {
        let view = partitions_of(&cluster, 1);
        // The leader of a seeded partition; every other cycle the group's
        // coordinator (the leader of its offsets partition) instead.
        let victim =
            if cycle % 2 == 1 { coordinator_of(&cluster, 1) } else { view[rng.below(partitions as u64) as usize].0 };
        assert!(victim > 0, "no leader to kill in {view:?}");
        let led: Vec<usize> = (0..view.len()).filter(|&p| view[p].0 == victim).collect();
        let survivor = (1..=3).find(|&n| n != victim).unwrap();
        println!("cycle {cycle}: SIGKILL node {victim} (leads partitions {led:?})");
        cluster.kill(victim);
        let killed = Instant::now();
        eventually(&cluster, Duration::from_secs(30), "new leaders for the victim's partitions", || {
            let now = partitions_of(&cluster, survivor);
            led.iter().all(|&p| now[p].0 > 0 && now[p].0 != victim)
        });
        failovers.push(killed.elapsed());
        load.progresses(&cluster, 50, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        cluster.spawn(victim);
        cluster.wait_ready(victim);
        eventually(&cluster, Duration::from_secs(60), "the restarted node back in every ISR", || {
            full_isr(&cluster, survivor)
        });
    }
    load.progresses(&cluster, 50, Duration::from_secs(60));
    let out = load.stop(&cluster);
    let figures = load.verify(&cluster, 1);
    failovers.sort();
    println!(
        "cycles={cycles} acked={} lost=0 duplicated=0 failover_p50_ms={} failover_max_ms={} load={}",
        figures["acked"],
        percentile(&failovers, 0.5).as_millis(),
        failovers.last().unwrap().as_millis(),
        out.trim()
    );
}

/// The broker that coordinates `group`, as node `via` answers FindCoordinator.
fn coordinator_of(cluster: &Cluster, via: i32) -> i32 {
    let out = cluster.run("cluster", &cluster.bootstrap(via), &["coordinator", "--group", group]);
    out.lines().rev().find_map(|l| l.strip_prefix("coordinator ")).and_then(|v| v.trim().parse().ok()).unwrap()
}

#[test]
fn a_paused_follower_leaves_the_isr_and_rejoins() {
    let cluster = start_cluster();
    let mut load = Load::start(&cluster);
    load.progresses(&cluster, 200, Duration::from_secs(60));
    let view = partitions_of(&cluster, 1);
    let leader = view[0].0;
    let follower = view[0].1.iter().copied().find(|&r| r != leader).unwrap();
    let pid = cluster.nodes[&follower].child.as_ref().unwrap().id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    println!("SIGSTOP node {follower} (follows partition 0, led by {leader})");
    // Past replica.lag.time.max.ms it leaves the ISR, and writes go on.
    let other = (1..=3).find(|&n| n != follower).unwrap();
    eventually(&cluster, Duration::from_secs(30), "the paused follower leaves the ISR", || {
        partitions_of(&cluster, other).iter().all(|(_, isr)| !isr.contains(&follower))
    });
    load.progresses(&cluster, 200, Duration::from_secs(60));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    eventually(&cluster, Duration::from_secs(60), "the resumed follower back in every ISR", || {
        full_isr(&cluster, other)
    });
    load.progresses(&cluster, 50, Duration::from_secs(60));
    load.stop(&cluster);
    let figures = load.verify(&cluster, other);
    println!("paused follower: {figures}");
}

#[test]
fn a_leader_cut_off_from_the_quorum_is_replaced_and_truncates_when_healed() {
    let cluster = start_cluster();
    let mut load = Load::start(&cluster);
    load.progresses(&cluster, 200, Duration::from_secs(60));
    let view = partitions_of(&cluster, 1);
    let old = view[0].0;
    cluster.isolate(old);
    println!("cut node {old} (leader of partition 0) off from the quorum");
    let other = (1..=3).find(|&n| n != old).unwrap();
    eventually(&cluster, Duration::from_secs(30), "a new leader for partition 0", || {
        let now = partitions_of(&cluster, other);
        now[0].0 > 0 && now[0].0 != old
    });
    load.progresses(&cluster, 200, Duration::from_secs(60));
    cluster.heal_all();
    eventually(&cluster, Duration::from_secs(60), "the old leader back in every ISR", || full_isr(&cluster, other));
    load.progresses(&cluster, 50, Duration::from_secs(60));
    load.stop(&cluster);
    let figures = load.verify(&cluster, other);
    println!("cut leader: {figures}");
}

#[test]
fn two_of_three_down_acknowledges_nothing_then_a_full_restart_keeps_everything() {
    let mut cluster = start_cluster();
    let mut load = Load::start(&cluster);
    load.progresses(&cluster, 200, Duration::from_secs(60));
    // Two of three down: no ISR change can be committed (no quorum), so
    // the high watermark cannot pass the lost replicas' log ends.
    cluster.kill(2);
    cluster.kill(3);
    std::thread::sleep(Duration::from_secs(1)); // acknowledgements already on their way
    let before = load.acked();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(load.acked(), before, "records were acknowledged with two of three nodes down");
    // Everyone down, then everyone back.
    cluster.kill(1);
    for id in 1..=3 {
        cluster.spawn(id);
    }
    for id in 1..=3 {
        cluster.wait_ready(id);
    }
    load.progresses(&cluster, 200, Duration::from_secs(90));
    load.stop(&cluster);
    let figures = load.verify(&cluster, 1);
    println!("two down, then a full restart: {figures}");
}

/// Kafka's partition reassignment with the load running: partition 0 drops
/// a follower (which deletes its copy), then takes it back as a new replica
/// that catches up and joins the ISR; then a killed and restarted leader
/// gets its partition back by a preferred ElectLeaders. Nothing
/// acknowledged is lost or duplicated throughout.
#[test]
fn reassignment_and_preferred_elections_keep_every_record() {
    let mut cluster =
        Cluster::start(3, &["--set", "replica.lag.time.max.ms=2000", "--set", "auto.leader.rebalance.enable=false"]);
    let boot = cluster.bootstrap(1);
    // A two-replica topic on brokers 1 and 2 with data.
    cluster.run("replication_load", &boot, &["create", "--topic", topic]);
    let mut load = Load::start(&cluster);
    load.progresses(&cluster, 300, Duration::from_secs(60));
    let view = partitions_of(&cluster, 1);
    let (leader, replicas) = (view[0].0, view[0].1.clone());
    let dropped = *replicas.iter().find(|&&r| r != leader).unwrap();
    // RF 3 -> 2, dropping a follower: it leaves and deletes its copy.
    let kept: Vec<String> = replicas.iter().filter(|&&r| r != dropped).map(|r| r.to_string()).collect();
    let out = cluster.run(
        "replication_load",
        &boot,
        &["reassign", "--topic", topic, "--partition", "0", "--replicas", &kept.join(",")],
    );
    println!("reassigned to {kept:?}: {out}");
    let dir = cluster.data_dir(dropped).join(format!("{topic}-0"));
    eventually(&cluster, Duration::from_secs(20), "the dropped replica's copy is deleted", || !dir.exists());
    // RF 2 -> 3: the dropped broker comes back as a new replica, catches
    // up as a follower and joins the ISR.
    let back: Vec<String> = kept.iter().cloned().chain([dropped.to_string()]).collect();
    let out = cluster.run(
        "replication_load",
        &boot,
        &["reassign", "--topic", topic, "--partition", "0", "--replicas", &back.join(",")],
    );
    println!("reassigned to {back:?}: {out}");
    eventually(&cluster, Duration::from_secs(30), "the re-added replica in the ISR", || full_isr(&cluster, 1));
    // Kill the preferred leader of partition 1; once it is back in the ISR,
    // a preferred election returns it the leadership.
    let view = partitions_of(&cluster, 1);
    let preferred = view[1].0;
    cluster.kill(preferred);
    let other = (1..=3).find(|&n| n != preferred).unwrap();
    eventually(&cluster, Duration::from_secs(30), "a new leader for partition 1", || {
        let p = partitions_of(&cluster, other)[1].0;
        p > 0 && p != preferred
    });
    cluster.spawn(preferred);
    cluster.wait_ready(preferred);
    eventually(&cluster, Duration::from_secs(60), "the restarted node back in every ISR", || full_isr(&cluster, other));
    assert_ne!(partitions_of(&cluster, other)[1].0, preferred, "no automatic rebalance when it is off");
    let out = cluster.run("replication_load", &cluster.bootstrap(other), &["elect", "--topic", topic]);
    println!("preferred election: {out}");
    eventually(&cluster, Duration::from_secs(20), "the preferred leader leads again", || {
        partitions_of(&cluster, other)[1].0 == preferred
    });
    load.progresses(&cluster, 100, Duration::from_secs(60));
    load.stop(&cluster);
    let figures = load.verify(&cluster, other);
    println!("reassignment and elections: {figures}");
}

/// `auto.leader.rebalance.enable`: after a leader's restart, its preferred
/// partitions come back to it without an operator.
#[test]
fn leaders_return_to_their_preferred_broker_automatically() {
    let mut cluster = Cluster::start(
        3,
        &["--set", "replica.lag.time.max.ms=2000", "--set", "leader.imbalance.check.interval.seconds=1"],
    );
    cluster.run("replication_load", &cluster.bootstrap(1), &["create", "--topic", topic]);
    let view = partitions_of(&cluster, 1);
    let preferred = view[0].0;
    cluster.kill(preferred);
    let other = (1..=3).find(|&n| n != preferred).unwrap();
    eventually(&cluster, Duration::from_secs(30), "a new leader for partition 0", || {
        let p = partitions_of(&cluster, other)[0].0;
        p > 0 && p != preferred
    });
    cluster.spawn(preferred);
    cluster.wait_ready(preferred);
    eventually(&cluster, Duration::from_secs(60), "partition 0 back with its preferred leader", || {
        partitions_of(&cluster, other)[0].0 == preferred
    });
}

/// KIP-392: with the rack-aware replica selector, a consumer in rack-N
/// reads from node N's replica, a follower, while the producer writes to
/// the leaders.
#[test]
fn a_consumer_reads_from_the_replica_in_its_rack() {
    let selector = "replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector";
    let cluster = Cluster::start_racked(3, &["--set", selector]);
    cluster.run("replication_load", &cluster.bootstrap(1), &["create", "--topic", topic]);
    let mut load = Load::start(&cluster);
    load.progresses(&cluster, 600, Duration::from_secs(60));
    load.stop(&cluster);
    // A node that follows at least one partition; the consumer reads every
    // record, so also those of the partitions that node follows.
    let view = partitions_of(&cluster, 1);
    let reader = (1..=3).find(|n| view.iter().any(|(leader, _)| leader != n)).unwrap();
    let rack = format!("rack-{reader}");
    let count = load.acked().to_string();
    let out = cluster.run(
        "replication_load",
        &cluster.bootstrap(reader),
        &["rack-consume", "--topic", topic, "--rack", &rack, "--count", &count],
    );
    println!("{out}");
    let log = fs::read_to_string(cluster.log_path(reader)).unwrap();
    assert!(
        log.contains("serving consumers as a follower"),
        "node {reader} served no consumer as a follower\n{}",
        cluster.logs()
    );
    let figures = load.verify(&cluster, reader);
    println!("rack-aware reads: {figures}");
}

/// Transactions across failovers (issue 15): a consume-transform-produce
/// processor (confluent-kafka, send_offsets_to_transaction, RF=3 topics
/// and transaction log) runs while the test SIGKILLs the transaction
/// coordinator, then a leader of the output topic, then the coordinator
/// again, each mid-transaction, restarting each. Every input record must
/// be in the output exactly once, as read_committed reads it: nothing of
/// an aborted or half-written transaction is ever visible.
/// `RINGSTREAM_FAULT_CYCLES` sets the kills (3 in CI), alternating
/// coordinator and leader, with 700 input records per kill.
#[test]
fn transactions_survive_coordinator_and_leader_failover() {
    let mut cluster = Cluster::start(
        3,
        &[
            "--set",
            "replica.lag.time.max.ms=2000",
            "--set",
            "default.replication.factor=3",
            "--set",
            "transaction.state.log.num.partitions=6",
            "--set",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
        ],
    );
    let cycles: usize = std::env::var("RINGSTREAM_FAULT_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let records = 700 * cycles.max(1);
    let dir = cluster.dir.path().to_owned();
    let (progress, output) = (dir.join("txn.progress"), dir.join("txn.output"));
    let mut script = Command::new("python3")
        .arg(repo().join("tests/compat/transactions.py"))
        .args(["--bootstrap", &cluster.all_bootstrap(), "--timeout", "3600", "--scenario", "cluster"])
        .args(["--records", &records.to_string(), "--progress"])
        .arg(&progress)
        .current_dir(repo())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&output).unwrap())
        .stderr(fs::File::create(dir.join("txn.stderr")).unwrap())
        .spawn()
        .expect("python3 runs");
    let committed = || fs::read_to_string(&progress).ok().and_then(|t| t.trim().parse::<usize>().ok()).unwrap_or(0);
    let mut kills = Vec::new();
    let schedule = (0..cycles).map(|i| {
        let what = if i % 2 == 0 { "coordinator" } else { "leader" };
        (what, (i + 1) * records / (cycles + 1))
    });
    for (what, at) in schedule {
        let deadline = Instant::now() + Duration::from_secs(150);
        while committed() < at && Instant::now() < deadline && script.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        if script.try_wait().unwrap().is_some() {
            break;
        }
        assert!(committed() >= at, "the processor stalled at {} records\n{}", committed(), cluster.logs());
        let survivor = (1..=3).find(|&n| cluster.nodes[&n].child.is_some()).unwrap();
        let victim = if what == "coordinator" {
            txn_coordinator_of(&cluster, survivor, "cluster-eos")
        } else {
            leader_of(&cluster, survivor, "txn-out", 0)
        };
        println!("SIGKILL node {victim} ({what}) at {} committed records", committed());
        kills.push((what, victim, committed()));
        cluster.kill(victim);
        std::thread::sleep(Duration::from_secs(2));
        cluster.spawn(victim);
        cluster.wait_ready(victim);
    }
    let status = harness::wait_bounded(&mut script, Duration::from_secs(300));
    let text = fs::read_to_string(&output).unwrap_or_default();
    let stderr = fs::read_to_string(dir.join("txn.stderr")).unwrap_or_default();
    let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
    assert!(
        status.is_some_and(|s| s.success()),
        "the transactional processor failed ({status:?}): {text}\n--- stderr (last 40, newest first) ---\n{}\n{}",
        tail.join("\n"),
        cluster.logs()
    );
    assert_eq!(kills.len(), cycles, "the processor finished before every kill: {kills:?}");
    println!("kills={kills:?} {}", text.trim());
}

/// The node coordinating transactional id `id`, as `ringstream transactions describe` finds it.
fn txn_coordinator_of(cluster: &Cluster, via: i32, id: &str) -> i32 {
    let out = Command::new(cluster_harness::bin())
        .args(["transactions", "describe", "--transactional-id", id, "-b", &cluster.bootstrap(via)])
        .output()
        .expect("ringstream runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no coordinator in {text:?} {}", String::from_utf8_lossy(&out.stderr)))
}

/// The leader of `name`/`partition`, as node `via` answers Metadata.
fn leader_of(cluster: &Cluster, via: i32, name: &str, partition: i32) -> i32 {
    let out = cluster.run("cluster", &cluster.bootstrap(via), &["describe", "--topic", name]);
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {out}"));
    let d: serde_json::Value = serde_json::from_str(line).unwrap();
    d["topics"][name]["leaders"][partition.to_string()].as_i64().unwrap_or(-1) as i32
}
