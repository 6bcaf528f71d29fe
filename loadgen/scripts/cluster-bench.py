#!/usr/bin/env python3
"""Cluster benchmarks for BENCHMARKS.md (issue 13), in one run on one machine:

  failover   SIGKILL the active controller of a 3-node cluster, TRIALS times:
             time until a survivor names a new controller, and until
             CreateTopics succeeds again (p50 and max)
  create     CreateTopics of 1,000 partitions, on 3 nodes and on 1
  metadata   a Metadata request for all topics with 10,000 partitions
             (10 topics x 1,000), on 3 nodes and on 1
  s1         the load generator's S1 (12 partitions, 1 KiB records, acks=all)
             through a 3-node cluster and a single node, alternating
  replication  (issue 14) S1 on 3 nodes with RF=3 and RF=1; node 1 leading
             every partition with two followers and with none (the leader's
             CPU per GB); RF=3 at half its measured rate (ack p99)

    python3 loadgen/scripts/cluster-bench.py [--trials 20] [--rounds 2] [--duration 15s] [--only failover,...]

Uses target/release/ringstream and target/release/ringstream-loadgen. Every
node runs on loopback with its own temporary data dir, and is killed by PID
at the end. Broker CPU comes from /proc/PID/stat.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka.admin import AdminClient, NewTopic

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(REPO, "target", "release", "ringstream")
LOADGEN = os.path.join(REPO, "target", "release", "ringstream-loadgen")
TICK = os.sysconf("SC_CLK_TCK")


_handed_out = set()


def free_port():
    """A free loopback port, never one handed out before in this run (the
    kernel may give a just-closed port out again at once)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class Node:
    def __init__(self, root, node_id, voters, kafka_port, controller_port, extra, binary=None):
        self.id = node_id
        self.dir = os.path.join(root, f"node-{node_id}")
        self.out = os.path.join(root, f"node-{node_id}.out")
        self.log = os.path.join(root, f"node-{node_id}.log")
        self.kafka_port = kafka_port
        self.controller_port = controller_port
        self.metrics_port = free_port()
        self.args = [binary or BIN, "serve", "--data-dir", self.dir, "--listen", f"127.0.0.1:{kafka_port}",
                     "--metrics-listen", f"127.0.0.1:{self.metrics_port}"] + extra
        if voters:
            self.args += ["--controller-listen", f"127.0.0.1:{controller_port}", "--set", f"node.id={node_id}",
                          "--set", f"controller.quorum.voters={voters}"]
        self.proc = None

    def start(self):
        if os.path.exists(self.out):
            os.remove(self.out)
        self.proc = subprocess.Popen(self.args, stdout=open(self.out, "w"), stderr=open(self.log, "a"),
                                     stdin=subprocess.DEVNULL)

    def wait_ready(self, limit=60):
        deadline = time.time() + limit
        while time.time() < deadline:
            if os.path.exists(self.out) and any(l.startswith("ready ") for l in open(self.out)):
                return
            if self.proc.poll() is not None:
                sys.exit(f"node {self.id} exited: see {self.log}")
            time.sleep(0.01)
        sys.exit(f"node {self.id} not ready in {limit}s")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def cpu_seconds(self):
        if not self.proc or self.proc.poll() is not None:
            return 0.0
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.kafka_port}"

    def gauge(self, name):
        """A node gauge from its metrics endpoint (None when unreachable)."""
        import urllib.request
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1).read().decode()
        except Exception:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


class Cluster:
    def __init__(self, n, extra=(), binary=None):
        self.root = tempfile.mkdtemp(prefix="rs-cluster-bench-")
        ports = [(free_port(), free_port()) for _ in range(n)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports)) if n > 1 else None
        self.nodes = [Node(self.root, i + 1, voters, k, c, list(extra), binary) for i, (k, c) in enumerate(ports)]
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes)

    def stop(self):
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def cpu_seconds(self):
        return sum(n.cpu_seconds() for n in self.nodes)


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})


def create(bootstrap, name, partitions, timeout=30):
    client = admin(bootstrap)  # kept alive until the answer is in
    futures = client.create_topics([NewTopic(name, partitions, 1)], operation_timeout=timeout, request_timeout=timeout)
    futures[name].result()


def controller_of(bootstrap):
    client = admin(bootstrap)
    return client.describe_cluster(request_timeout=2).result().controller.id


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def failover(trials):
    cluster = Cluster(3, ["--shards", "1", "--set", "broker.session.timeout.ms=3000",
                          "--set", "broker.heartbeat.interval.ms=300"])
    leader_ms, create_ms = [], []
    try:
        for trial in range(trials):
            first = next(n.id for n in cluster.nodes if n.gauge("ringstream_controller_active") == 1.0)
            victim = next(n for n in cluster.nodes if n.id == first)
            survivor = next(n for n in cluster.nodes if n.id != first)
            victim.kill()
            t0 = time.perf_counter()
            survivors = [n for n in cluster.nodes if n.id != first]
            while not any(n.gauge("ringstream_controller_active") == 1.0 for n in survivors):
                time.sleep(0.002)
            leader_ms.append((time.perf_counter() - t0) * 1000)
            while True:
                try:
                    create(survivor.bootstrap, f"failover-{trial}", 1, timeout=5)
                    break
                except Exception:
                    time.sleep(0.005)
            create_ms.append((time.perf_counter() - t0) * 1000)
            print(f"  trial {trial}: killed {first}; new controller after {leader_ms[-1]:.0f} ms, "
                  f"CreateTopics after {create_ms[-1]:.0f} ms", flush=True)
            victim.start()
            victim.wait_ready(limit=60)
    finally:
        cluster.stop()
    return {"trials": trials, "leader_ms": leader_ms, "create_ms": create_ms,
            "leader_p50_ms": statistics.median(leader_ms), "leader_max_ms": max(leader_ms),
            "create_p50_ms": statistics.median(create_ms), "create_max_ms": max(create_ms)}


def create_bench(nodes, repeats=5):
    cluster = Cluster(nodes, ["--shards", "1" if nodes > 1 else "2"])
    times = []
    try:
        for i in range(repeats):
            t0 = time.perf_counter()
            create(cluster.bootstrap, f"big-{i}", 1000, timeout=120)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        cluster.stop()
    return {"nodes": nodes, "ms": times, "p50_ms": statistics.median(times)}


def metadata_bench(nodes, requests=30):
    cluster = Cluster(nodes, ["--shards", "1" if nodes > 1 else "2"])
    times = []
    try:
        for i in range(10):
            create(cluster.bootstrap, f"meta-{i}", 1000, timeout=120)
        a = admin(cluster.nodes[0].bootstrap)
        md = a.list_topics(timeout=30)
        total = sum(len(t.partitions) for n, t in md.topics.items() if n.startswith("meta-"))
        assert total == 10000, total
        for _ in range(requests):
            t0 = time.perf_counter()
            a.list_topics(timeout=30)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        cluster.stop()
    return {"nodes": nodes, "partitions": 10000, "ms": times, "p50_ms": statistics.median(times),
            "p99_ms": pct(times, 0.99)}


def s1(nodes, duration, binary=None):
    # The previous build has no metrics gauges to poll, but serves /metrics too.
    cluster = Cluster(nodes, ["--shards", "1" if nodes > 1 else "2"], binary)
    out = os.path.join(cluster.root, "s1.json")
    try:
        cpu0, t0 = cluster.cpu_seconds(), time.perf_counter()
        run = subprocess.run([LOADGEN, "--brokers", cluster.nodes[0].bootstrap, "--topic", "s1", "--partitions", "12",
                              "--record-size", "1024", "--acks", "all", "--duration", duration, "--json", out],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:
            sys.exit(f"load generator failed on {nodes} node(s):\n{run.stderr[-3000:]}")
        cpu, wall = cluster.cpu_seconds() - cpu0, time.perf_counter() - t0
        report = json.load(open(out))
    finally:
        cluster.stop()
    return {"nodes": nodes, "binary": binary or BIN, "report": report, "broker_cpu_s": cpu, "wall_s": wall}


def create_assigned(bootstrap, name, assignment, configs=None):
    """A topic with an explicit replica assignment (one list per partition)."""
    client = admin(bootstrap)  # alive until the result is in
    futures = client.create_topics(
        [NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment, config=configs or {})],
        request_timeout=30)
    futures[name].result()


def replicated(layout, duration, rate=0):
    """S1's load (1 KiB records, acks=all) on 3 nodes for one topic layout:
      rf3      12 partitions, RF=3, leaders spread by the controller
      rf1      12 partitions, RF=1, spread
      rf3-one  12 partitions, replicas [1,2,3]: node 1 leads all, two followers
      rf1-one  12 partitions, replicas [1]: node 1 leads all, no followers
    Returns the load generator's report and every node's CPU."""
    cluster = Cluster(3, ["--shards", "1"])
    out = os.path.join(cluster.root, "s1.json")
    try:
        boot = cluster.nodes[0].bootstrap
        if layout in ("rf3", "rf1"):
            rf = 3 if layout == "rf3" else 1
            client = admin(boot)  # alive until the result is in
            futures = client.create_topics([NewTopic("s1", num_partitions=12, replication_factor=rf,
                                                     config={"min.insync.replicas": "2" if rf == 3 else "1"})])
            futures["s1"].result()
        else:
            replicas = [1, 2, 3] if layout == "rf3-one" else [1]
            create_assigned(boot, "s1", [replicas] * 12, {"min.insync.replicas": "2" if len(replicas) == 3 else "1"})
        time.sleep(1)  # every broker has the topic; followers connected
        cpu0 = [n.cpu_seconds() for n in cluster.nodes]
        t0 = time.perf_counter()
        run = subprocess.run([LOADGEN, "--brokers", boot, "--topic", "s1", "--partitions", "12",
                              "--record-size", "1024", "--acks", "all", "--duration", duration,
                              "--rate", str(int(rate)), "--json", out],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:
            sys.exit(f"load generator failed for {layout}:\n{run.stderr[-3000:]}")
        wall = time.perf_counter() - t0
        cpu = [n.cpu_seconds() - c for n, c in zip(cluster.nodes, cpu0)]
        report = json.load(open(out))
    finally:
        cluster.stop()
    params = report.get("parameters", {})
    loaded_s = (params.get("duration_ms", 0) + params.get("warmup_ms", 0)) / 1000 or wall
    gb = report.get("throughput_bytes_per_sec", 0) * loaded_s / 1e9
    return {"layout": layout, "rate": rate, "report": report, "node_cpu_s": cpu, "wall_s": wall,
            "cpu_s_per_gb": sum(cpu) / gb if gb else None,
            "node1_cpu_s_per_gb": cpu[0] / gb if gb else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", default="15s")
    ap.add_argument("--only", default="failover,create,metadata,s1")
    ap.add_argument("--json", default=None)
    ap.add_argument("--prev", default=None, help="a previous build's ringstream, run single-node in the S1 rounds")
    args = ap.parse_args()
    only = args.only.split(",")
    results = {"commit": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True).stdout.strip(), "cpus": os.cpu_count()}
    if "failover" in only:
        print("failover:", flush=True)
        results["failover"] = r = failover(args.trials)
        print(f"failover over {r['trials']} trials: new controller p50 {r['leader_p50_ms']:.0f} ms, "
              f"max {r['leader_max_ms']:.0f} ms; CreateTopics again p50 {r['create_p50_ms']:.0f} ms, "
              f"max {r['create_max_ms']:.0f} ms", flush=True)
    if "create" in only:
        results["create"] = [create_bench(3), create_bench(1)]
        for r in results["create"]:
            print(f"CreateTopics 1,000 partitions on {r['nodes']} node(s): p50 {r['p50_ms']:.0f} ms "
                  f"({', '.join(f'{t:.0f}' for t in r['ms'])})", flush=True)
    if "metadata" in only:
        results["metadata"] = [metadata_bench(3), metadata_bench(1)]
        for r in results["metadata"]:
            print(f"Metadata, 10,000 partitions, {r['nodes']} node(s): p50 {r['p50_ms']:.1f} ms, "
                  f"p99 {r['p99_ms']:.1f} ms", flush=True)
    if "s1" in only:
        runs = []
        targets = [(3, None), (1, None)] + ([(1, args.prev)] if args.prev else [])
        for _ in range(args.rounds):
            for nodes, binary in targets:
                r = s1(nodes, args.duration, binary)
                runs.append(r)
                rep = r["report"]
                params = rep.get("parameters", {})
                loaded_s = (params.get("duration_ms", 0) + params.get("warmup_ms", 0)) / 1000 or r["wall_s"]
                gb = rep.get("throughput_bytes_per_sec", 0) * loaded_s / 1e9  # warmup runs at about the same rate
                r["cpu_s_per_gb"] = r["broker_cpu_s"] / gb if gb else None
                label = f"{nodes} node(s)" + (" (previous build)" if binary else "")
                print(f"S1 on {label}: {json.dumps(summary(rep))}; broker CPU {r['broker_cpu_s']:.1f} s "
                      f"over {r['wall_s']:.1f} s ({r['broker_cpu_s'] / r['wall_s']:.2f} cores, "
                      f"{r['cpu_s_per_gb'] or 0:.2f} CPU-s/GB)", flush=True)
        results["s1"] = runs
    if "replication" in only:
        runs = []
        for _ in range(args.rounds):
            for layout in ("rf3", "rf1", "rf3-one", "rf1-one"):
                r = replicated(layout, args.duration)
                runs.append(r)
                print(f"{layout}: {json.dumps(summary(r['report']))}; CPU per node "
                      f"{', '.join(f'{c:.1f}' for c in r['node_cpu_s'])} s over {r['wall_s']:.1f} s; "
                      f"{r['cpu_s_per_gb'] or 0:.2f} CPU-s/GB in all, node 1 {r['node1_cpu_s_per_gb'] or 0:.2f}",
                      flush=True)
        # Produce ack latency at half the measured RF=3 rate.
        best = max(r["report"].get("throughput_records_per_sec", 0) for r in runs if r["layout"] == "rf3")
        for _ in range(args.rounds):
            r = replicated("rf3", args.duration, rate=best / 2)
            runs.append(r)
            print(f"rf3 at 50% ({best / 2:.0f} records/s): {json.dumps(summary(r['report']))}", flush=True)
        results["replication"] = runs
    if args.json:
        json.dump(results, open(args.json, "w"), indent=1)


def summary(report):
    """The load generator's headline numbers."""
    ack = report.get("latency_ack_us") or {}
    return {"records_per_s": round(report.get("throughput_records_per_sec", 0)),
            "mib_per_s": round(report.get("throughput_bytes_per_sec", 0) / 2**20, 1),
            "ack_p50_ms": ack.get("p50", 0) / 1000, "ack_p99_ms": ack.get("p99", 0) / 1000,
            "errors": report.get("errors", 0)}


if __name__ == "__main__":
    main()
