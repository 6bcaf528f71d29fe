#!/usr/bin/env python3
"""Transactional production against plain idempotent production, in one
run on one machine (BENCHMARKS.md, issue 15).

One broker (target/release/ringstream, 2 shards), a 12-partition topic, one
confluent-kafka producer writing 1 KiB records as fast as it can for
--duration seconds per mode:

  idempotent   enable.idempotence, acks=all (the baseline)
  txn-100ms    a transaction committed every 100 ms
  txn-10ms     ... every 10 ms
  txn-1ms      ... every 1 ms (in practice, each commit waits for its markers)

Modes alternate over --rounds rounds. Reports records/s, MiB/s, the
broker's CPU seconds per GB produced (from /proc/PID/stat), transactions/s
and commit_transaction latency (p50, p99), as JSON lines and a table.

    python3 loadgen/scripts/txn-bench.py [--duration 10] [--rounds 2]
"""

import argparse
import importlib.util
import json
import os
import statistics
import time

from confluent_kafka import Producer

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("cluster_bench", os.path.join(HERE, "cluster-bench.py"))
cluster_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cluster_bench)

TOPIC = "txn-bench"
PARTITIONS = 12
VALUE = os.urandom(1024)


def run_mode(bootstrap, mode, duration, node, serial):
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
            "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576}
    interval = None
    if mode.startswith("txn-"):
        interval = float(mode[4:-2]) / 1000.0
        conf["transactional.id"] = f"bench-{mode}-{serial}"
    producer = Producer(conf)
    acked = [0]

    def delivered(err, _msg):
        if err is None:
            acked[0] += 1

    if interval is not None:
        producer.init_transactions(30)
    commits = []
    cpu0 = node.cpu_seconds()
    start = time.monotonic()
    end = start + duration
    i = 0
    while time.monotonic() < end:
        if interval is not None:
            producer.begin_transaction()
        window_end = time.monotonic() + (interval if interval is not None else 0.05)
        while True:
            try:
                producer.produce(TOPIC, value=VALUE, key=str(i % 1000).encode(), on_delivery=delivered)
                i += 1
            except BufferError:
                producer.poll(0.001)
            if i % 256 == 0:
                producer.poll(0)
                if time.monotonic() >= window_end:
                    break
        if interval is not None:
            t = time.monotonic()
            producer.commit_transaction(30)
            commits.append(time.monotonic() - t)
    producer.flush(60)
    elapsed = time.monotonic() - start
    cpu = node.cpu_seconds() - cpu0
    gb = acked[0] * 1024 / 1e9
    row = {
        "mode": mode,
        "records_per_s": acked[0] / elapsed,
        "mib_per_s": acked[0] * 1024 / elapsed / 2**20,
        "broker_cpu_s_per_gb": cpu / gb if gb else None,
        "broker_cores": cpu / elapsed,
        "txn_per_s": len(commits) / elapsed if commits else None,
        "commit_p50_ms": statistics.median(commits) * 1000 if commits else None,
        "commit_p99_ms": sorted(commits)[int(len(commits) * 0.99)] * 1000 if commits else None,
    }
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default="idempotent,txn-100ms,txn-10ms,txn-1ms")
    args = ap.parse_args()
    cluster = cluster_bench.Cluster(1, extra=["--shards", "2", "--set", f"num.partitions={PARTITIONS}"])
    try:
        node = cluster.nodes[0]
        cluster_bench.create(cluster.bootstrap, TOPIC, PARTITIONS)
        modes = args.modes.split(",")
        rows = {m: [] for m in modes}
        serial = 0
        for r in range(args.rounds):
            order = modes if r % 2 == 0 else list(reversed(modes))
            for mode in order:
                serial += 1
                rows[mode].append(run_mode(cluster.bootstrap, mode, args.duration, node, serial))
        base = statistics.mean(x["records_per_s"] for x in rows[modes[0]])
        print(f"\n{'mode':<12} {'records/s':>10} {'MiB/s':>7} {'vs base':>7} {'CPU-s/GB':>9} {'cores':>6} "
              f"{'txn/s':>7} {'commit p50':>10} {'p99 ms':>7}")
        for mode in modes:
            rs = rows[mode]
            mean = lambda k: statistics.mean(x[k] for x in rs if x[k] is not None) if any(
                x[k] is not None for x in rs) else float("nan")
            print(f"{mode:<12} {mean('records_per_s'):>10.0f} {mean('mib_per_s'):>7.1f} "
                  f"{mean('records_per_s') / base:>7.2f} {mean('broker_cpu_s_per_gb'):>9.2f} "
                  f"{mean('broker_cores'):>6.2f} {mean('txn_per_s'):>7.1f} {mean('commit_p50_ms'):>10.1f} "
                  f"{mean('commit_p99_ms'):>7.1f}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
