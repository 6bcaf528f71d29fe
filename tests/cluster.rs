//! A cluster of real brokers on loopback (tests/cluster_harness): placement,
//! clients across nodes, controller failover, controlled shutdown, rejoin,
//! full restart, link cuts through the harness's proxies, and bad input.

#![allow(non_upper_case_globals)]

mod cluster_harness;
mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_harness::{bin, Cluster};

fn describe(cluster: &Cluster, via: i32, topic: &str) -> serde_json::Value {
    let out = cluster.run("cluster", &cluster.bootstrap(via), &["describe", "--topic", topic]);
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {out}"));
    serde_json::from_str(line).unwrap()
}

/// The active controller, as node `via` names it (it names the quorum
/// leader while that is a serving broker).
fn controller(cluster: &Cluster, via: i32) -> i32 {
    describe(cluster, via, "*")["controller"].as_i64().unwrap() as i32
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not within {limit:?}: {what}");
}

#[test]
fn placement_clients_and_groups_span_the_cluster() {
    let cluster = Cluster::start(3, &[]);
    let out = cluster.run("cluster", &cluster.bootstrap(1), &["spread", "--topic", "spread", "--bootstrap-node", "1"]);
    println!("{out}");
    // `ringstream cluster describe` shows the brokers, what they lead and the quorum.
    let out = Command::new(bin()).args(["cluster", "describe", "-b", &cluster.bootstrap(2)]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for id in 1..=3 {
        let row = text.lines().find(|l| l.split_whitespace().next() == Some(&id.to_string())).unwrap_or("");
        assert!(row.contains("false"), "broker {id} not listed unfenced:\n{text}");
        assert!(row.split_whitespace().last().is_some_and(|leads| leads.parse::<u32>().unwrap_or(0) >= 2), "{text}");
    }
    assert!(text.contains("quorum: leader"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.split_whitespace().count() == 4 && l.trim_start().starts_with(char::is_numeric))
            .count(),
        3,
        "{text}"
    );
    // Every node answers Metadata for the whole cluster.
    for via in 1..=3 {
        let d = describe(&cluster, via, "spread");
        assert_eq!(d["brokers"].as_array().unwrap().len(), 3, "{d}");
        assert_eq!(d["topics"]["spread"]["leaders"].as_object().unwrap().len(), 6, "{d}");
    }
}

#[test]
fn controller_sigkill_elects_a_new_one_and_the_killed_node_catches_up() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.run("cluster", &cluster.bootstrap(1), &["create", "--topic", "before"]);
    let first = controller(&cluster, 1);
    let survivor = if first == 1 { 2 } else { 1 };
    cluster.kill(first);
    let killed_at = Instant::now();
    // An admin request sent right away goes on through the election: it is
    // retried until the new controller answers it.
    let out =
        cluster.run("cluster", &cluster.bootstrap(survivor), &["create", "--topic", "during", "--deadline", "30"]);
    assert_ne!(controller(&cluster, survivor), first, "the dead controller is still named");
    println!("created through the election, {:?} after the kill; {out}", killed_at.elapsed());
    // Once its session is over the killed broker is fenced: Metadata drops
    // it, and new partitions go to the live brokers only.
    eventually(Duration::from_secs(20), "the killed broker is fenced", || {
        describe(&cluster, survivor, "*")["brokers"].as_array().unwrap().len() == 2
    });
    cluster.run("cluster", &cluster.bootstrap(survivor), &["create", "--topic", "fenced"]);
    let d = describe(&cluster, survivor, "fenced");
    let leaders = d["topics"]["fenced"]["leaders"].as_object().unwrap().clone();
    assert!(leaders.values().all(|l| l.as_i64().unwrap() as i32 != first), "{d}");
    // Partitions on live brokers keep serving.
    cluster.run("cluster", &cluster.bootstrap(survivor), &["produce", "--topic", "fenced", "--count", "60"]);
    cluster.run("cluster", &cluster.bootstrap(survivor), &["consume", "--topic", "fenced", "--count", "60"]);
    // The killed node returns and catches up on what it missed.
    cluster.spawn(first);
    cluster.wait_ready(first);
    eventually(Duration::from_secs(20), "the returned node knows the new topic", || {
        let d = describe(&cluster, first, "during");
        d["topics"]["during"]["leaders"].as_object().is_some_and(|l| l.len() == 6)
    });
}

#[test]
fn controlled_shutdown_then_rejoin_brings_partitions_back_with_their_data() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.run("cluster", &cluster.bootstrap(1), &["create", "--topic", "kept"]);
    cluster.run("cluster", &cluster.bootstrap(1), &["produce", "--topic", "kept", "--count", "300"]);
    let status = cluster.terminate(3, Duration::from_secs(20)).expect("node 3 exits after SIGTERM");
    assert!(status.success(), "node 3 exited with {status}\n{}", cluster.logs());
    let log = std::fs::read_to_string(cluster.log_path(3)).unwrap();
    assert!(log.contains("controlled shutdown"), "no controlled shutdown in node 3's log\n{log}");
    // Its partitions are offline (RF=1) until it returns. Node 1 learns of
    // the fencing a moment after the controller commits it (as Kafka's
    // brokers do), so it is asked until it has.
    eventually(Duration::from_secs(20), "node 3's two partitions offline in node 1's Metadata", || {
        let d = describe(&cluster, 1, "kept");
        let leaders = d["topics"]["kept"]["leaders"].as_object().unwrap().clone();
        let offline = leaders.values().filter(|l| l.as_i64() == Some(-1)).count();
        assert!(offline <= 2, "more partitions offline than node 3 led: {d}");
        offline == 2
    });
    cluster.spawn(3);
    cluster.wait_ready(3);
    eventually(Duration::from_secs(20), "node 3 leads again", || {
        let d = describe(&cluster, 1, "kept");
        d["topics"]["kept"]["leaders"].as_object().unwrap().values().all(|l| l.as_i64().unwrap() > 0)
    });
    cluster.run("cluster", &cluster.bootstrap(2), &["consume", "--topic", "kept", "--count", "300"]);
}

#[test]
fn full_restart_keeps_topic_ids_and_data() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.run("cluster", &cluster.bootstrap(1), &["create", "--topic", "durable"]);
    cluster.run("cluster", &cluster.bootstrap(2), &["produce", "--topic", "durable", "--count", "200"]);
    let before = describe(&cluster, 1, "durable")["topics"]["durable"]["id"].clone();
    assert!(before.as_str().is_some_and(|id| id.len() > 8), "{before}");
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.spawn(id);
    }
    for id in 1..=3 {
        cluster.wait_ready(id);
    }
    let after = describe(&cluster, 3, "durable")["topics"]["durable"]["id"].clone();
    assert_eq!(before, after);
    cluster.run("cluster", &cluster.bootstrap(3), &["consume", "--topic", "durable", "--count", "200"]);
}

#[test]
fn an_isolated_controller_loses_leadership_and_rejoins_after_heal() {
    let mut cluster = Cluster::start(3, &[]);
    let first = controller(&cluster, 1);
    let other = if first == 1 { 2 } else { 1 };
    cluster.isolate(first);
    eventually(Duration::from_secs(20), "the majority elects another controller", || {
        controller(&cluster, other) != first
    });
    cluster.run("cluster", &cluster.bootstrap(other), &["create", "--topic", "majority", "--deadline", "30"]);
    // The cut-off node serves no stale leadership: once a session passes
    // with no answer from a controller, it stops serving what it led.
    eventually(Duration::from_secs(20), "the isolated broker stops serving", || {
        std::fs::read_to_string(cluster.log_path(first)).unwrap_or_default().contains("not serving partitions")
    });
    cluster.heal_all();
    eventually(Duration::from_secs(20), "the healed node catches up", || {
        let d = describe(&cluster, first, "majority");
        d["topics"]["majority"]["leaders"].as_object().is_some_and(|l| l.len() == 6)
    });
    let _ = &mut cluster;
}

#[test]
fn bad_cluster_input_is_refused_clearly() {
    // Three voters and a broker-only node 4 (it follows the metadata log
    // by fetching it from the controllers).
    let mut cluster = Cluster::start_with(3, 1, &[]);
    assert_eq!(describe(&cluster, 4, "*")["brokers"].as_array().unwrap().len(), 4);
    // A second process claiming node.id 4 is refused.
    let dup_dir = cluster.dir.path().join("dup");
    let voters = cluster.voters_for(4);
    let out = Command::new(bin())
        .args(["serve", "--data-dir", dup_dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--shards", "1"])
        .args(["--set", "node.id=4", "--set", "process.roles=broker"])
        .args(["--set", &format!("controller.quorum.voters={voters}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a duplicate node.id started");
    assert!(text.contains("already registered"), "{text}");

    // A data dir of another cluster.id.
    let node1 = cluster.data_dir(1);
    cluster.kill(1);
    let mut args = cluster.serve_args(1);
    args.extend(["--set".into(), "cluster.id=another-cluster".into()]);
    let out = Command::new(bin()).args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("belongs to cluster.id"), "{text}");
    assert!(node1.join("meta.properties").exists());

    // A node whose quorum is unreachable waits, says for what, and does not
    // accept clients meanwhile.
    let lone = cluster.dir.path().join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    let lone_port = cluster_harness::free_port();
    let lone_voters = format!(
        "1@127.0.0.1:{lone_port},2@127.0.0.1:{},3@127.0.0.1:{}",
        cluster_harness::free_port(),
        cluster_harness::free_port()
    );
    let mut waiting = Command::new(bin())
        .args(["serve", "--data-dir", lone.join("data").to_str().unwrap(), "--listen", "127.0.0.1:0", "--shards", "1"])
        .args(["--controller-listen", &format!("127.0.0.1:{lone_port}"), "--set", "node.id=1"])
        .args(["--set", &format!("controller.quorum.voters={lone_voters}")])
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(lone.join("stdout")).unwrap())
        .stderr(std::fs::File::create(lone.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "the lone node says what it waits for", || {
        std::fs::read_to_string(lone.join("stderr")).unwrap_or_default().contains("waiting for a quorum leader")
    });
    assert!(
        !std::fs::read_to_string(lone.join("stdout")).unwrap().contains("ready"),
        "a node without a quorum is ready"
    );
    let _ = waiting.kill();
    let _ = waiting.wait();

    // A controller whose node.id is not a voter.
    let out = Command::new(bin())
        .args(["serve", "--data-dir", dup_dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--controller-listen", "127.0.0.1:0", "--set", "node.id=9"])
        .args(["--set", &format!("controller.quorum.voters={voters}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("not in controller.quorum.voters"), "{text}");

    // Malformed and oversized frames on a controller port: the connection
    // closes, the node lives on.
    let port = cluster.nodes[&2].controller_port;
    for garbage in [
        vec![0xff, 0xff, 0xff, 0xff, 2],                   // 4 GiB frame
        vec![0, 0, 0, 3, 9, 0, 0],                         // unknown kind
        vec![0, 0, 0, 5, 1, b'{', b'x', b'}', b'!'],       // bad hello
        frame(1, br#"{"cluster_id":"nope","node_id":5}"#), // another cluster
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = stream.write_all(&garbage);
        let mut buf = [0u8; 256];
        let closed = loop {
            match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue, // a REFUSED frame first
                // Closed with our bytes unread: the kernel resets instead.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false, // still open when the read timed out
            }
        };
        assert!(closed, "controller connection not closed after {garbage:?}");
    }
    cluster.spawn(1);
    cluster.wait_ready(1);
    cluster.run("cluster", &cluster.bootstrap(2), &["create", "--topic", "still-fine"]);
}

#[test]
fn a_single_node_data_dir_upgrades_in_place() {
    // A data dir as a single-node Ringstream left it: partitions with data,
    // the `topics` file and the `producer-ids` file, no metadata log.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(bin())
        .args(["debug", "append", "--data-dir", data.to_str().unwrap(), "--shards", "1", "--topic", "legacy"])
        .args(["--partitions", "3", "--count", "30", "--records-per-batch", "10", "--value-bytes", "20"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(
        data.join("topics"),
        "ringstream-topics 1\ntopic legacy 0123456789abcdef0123456789abcdef 3\nconfig legacy retention.ms 123456789\n",
    )
    .unwrap();
    std::fs::write(data.join("producer-ids"), "next_block 5000\n").unwrap();
    let serve = |dir: &std::path::Path| {
        let stdout = dir.join("stdout");
        let child = Command::new(bin())
            .args([
                "serve",
                "--data-dir",
                dir.join("data").to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "2",
            ])
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut listen = String::new();
        eventually(Duration::from_secs(30), "the upgraded node is ready", || {
            let text = std::fs::read_to_string(&stdout).unwrap_or_default();
            match text.lines().find(|l| l.starts_with("ready ")) {
                Some(line) => {
                    listen = line.split_whitespace().find_map(|f| f.strip_prefix("listen=")).unwrap().to_owned();
                    true
                }
                None => false,
            }
        });
        (child, listen)
    };
    for round in 0..2 {
        let (mut child, listen) = serve(dir.path());
        let harness = Cluster::empty();
        let d = {
            let out = harness.run("cluster", &listen, &["describe", "--topic", "legacy"]);
            let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap().to_owned();
            serde_json::from_str::<serde_json::Value>(&line).unwrap()
        };
        assert_eq!(d["topics"]["legacy"]["id"], "01234567-89ab-cdef-0123-456789abcdef", "round {round}: {d}");
        assert_eq!(d["topics"]["legacy"]["leaders"].as_object().unwrap().len(), 3, "{d}");
        harness.run("cluster", &listen, &["count", "--topic", "legacy", "--count", "300"]);
        assert!(data.join("topics.imported").exists() && !data.join("topics").exists());
        assert!(data.join("meta.properties").exists() && data.join("__cluster_metadata-0").is_dir());
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn a_controller_only_node_votes_but_serves_no_clients() {
    // Nodes 1 and 2 are brokers and controllers; node 3 only a controller.
    let mut cluster = Cluster::start_with_controllers(3, 1, &[]);
    let ready = std::fs::read_to_string(cluster.dir.path().join("node-3.stdout")).unwrap();
    assert!(ready.contains("listen=none"), "{ready}");
    assert!(TcpStream::connect(("127.0.0.1", cluster.nodes[&3].kafka_port)).is_err(), "node 3 accepts Kafka clients");
    // Metadata lists the two brokers, and partitions go to them only.
    cluster.run("cluster", &cluster.bootstrap(1), &["create", "--topic", "brokers-only"]);
    let d = describe(&cluster, 2, "brokers-only");
    assert_eq!(d["brokers"].as_array().unwrap().len(), 2, "{d}");
    let leaders = d["topics"]["brokers-only"]["leaders"].as_object().unwrap().clone();
    assert!(leaders.values().all(|l| [1, 2].contains(&l.as_i64().unwrap())), "{d}");
    // It votes: with node 1 gone, nodes 2 and 3 are a majority, and admin
    // requests still succeed.
    cluster.kill(1);
    cluster.run("cluster", &cluster.bootstrap(2), &["create", "--topic", "majority-of-two", "--deadline", "30"]);
    let out = Command::new(bin()).args(["cluster", "describe", "-b", &cluster.bootstrap(2)]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let voters = text.lines().skip_while(|l| !l.contains("VOTER")).skip(1).filter(|l| !l.contains("observer")).count();
    assert_eq!(voters, 3, "{text}");
}
