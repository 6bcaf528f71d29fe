#!/usr/bin/env python3
"""Kafka client workloads for the preliminary end-to-end benchmark.

Each subcommand is one client process and prints one JSON line on stdout.
The clock for latency is CLOCK_MONOTONIC (time.monotonic_ns), which Linux
shares across processes on one machine, so a producer process and a consumer
process can compare timestamps.

    load.py create  --bootstrap H:P --topic T --partitions 12
    load.py produce --bootstrap H:P --topic T --records N --size 1024
    load.py consume --bootstrap H:P --topic T --records N
    load.py latency-producer --bootstrap H:P --topic T --rate R --seconds S
    load.py latency-consumer --bootstrap H:P --topic T --seconds S

Interim tool: the bundled load generator (loadgen/, the load generator issue)
replaces this.
"""

import argparse
import json
import os
import resource
import struct
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

OFFSET_BEGINNING = -2
OFFSET_END = -1


def cpu_s():
    """User + system CPU of this process, all threads (librdkafka's too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def cmd_create(a):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    futures = admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)],
                                  operation_timeout=10, request_timeout=15)
    for _, f in futures.items():
        f.result(timeout=20)
    # Wait until Metadata shows every partition with a leader.
    deadline = time.time() + 20
    while time.time() < deadline:
        md = admin.list_topics(topic=a.topic, timeout=5)
        t = md.topics.get(a.topic)
        if t is not None and t.error is None and len(t.partitions) == a.partitions and all(
                p.leader >= 0 for p in t.partitions.values()):
            emit({"created": a.topic, "partitions": len(t.partitions)})
            return 0
        time.sleep(0.1)
    emit({"error": "topic not ready", "topic": a.topic})
    return 1


def producer_config(a):
    return {
        "bootstrap.servers": a.bootstrap,
        "acks": "all",
        "linger.ms": a.linger_ms,
        "batch.size": a.batch_size,
        "compression.type": "none",
        "queue.buffering.max.messages": 1000000,
        "queue.buffering.max.kbytes": 1048576,
        "message.timeout.ms": 60000,
    }


def partition_count(p, topic):
    md = p.list_topics(topic=topic, timeout=10)
    return len(md.topics[topic].partitions)


def cmd_produce(a):
    p = Producer(producer_config(a))
    parts = partition_count(p, a.topic)
    state = {"ok": 0, "err": 0, "first_err": None, "last": None, "gap": 0.0}

    def on_delivery(err, _msg):
        # Longest wait between two delivery reports: a stall detector (reports
        # are served by poll(), every 1000 sends, so it is ms-granular).
        now = time.monotonic()
        if state["last"] is not None and now - state["last"] > state["gap"]:
            state["gap"] = now - state["last"]
        state["last"] = now
        if err is None:
            state["ok"] += 1
        else:
            state["err"] += 1
            if state["first_err"] is None:
                state["first_err"] = str(err)

    payload = os.urandom(a.size)
    cpu0 = cpu_s()
    t0 = time.monotonic()
    for i in range(a.records):
        while True:
            try:
                # Round-robin over partitions explicitly: no keys, no sticky
                # partitioner surprises between brokers.
                p.produce(a.topic, payload, partition=i % parts, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.001)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(120)
    t1 = time.monotonic()
    cpu1 = cpu_s()
    secs = t1 - t0
    emit({
        "records": a.records, "acked": state["ok"], "errors": state["err"], "first_error": state["first_err"],
        "unflushed": left, "bytes": a.records * a.size, "start": t0, "end": t1, "seconds": secs,
        "mb_s": a.records * a.size / secs / 1e6, "rec_s": a.records / secs,
        "client_cpu_s": cpu1 - cpu0, "max_ack_gap_ms": state["gap"] * 1e3,
    })
    return 0 if state["err"] == 0 and left == 0 else 1


def consumer_config(a):
    return {
        "bootstrap.servers": a.bootstrap,
        # librdkafka wants a group.id for a Consumer; with assign() and no
        # commits it never joins the group.
        "group.id": "e2e-bench",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": a.fetch_wait_ms,
        # When its local queue is full (queued.max.messages.kbytes, 64 MiB),
        # librdkafka stops fetching for fetch.queue.backoff.ms, 1000 ms by
        # default: against a broker that serves faster than this Python loop
        # drains, that idles whole consume runs for 0.5-1 s. Resume quickly.
        "fetch.queue.backoff.ms": 10,
        "enable.partition.eof": False,
    }


def assign_all(c, topic, offset):
    md = c.list_topics(topic=topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, offset) for p in parts])
    return parts


def cmd_consume(a):
    c = Consumer(consumer_config(a))
    assign_all(c, a.topic, OFFSET_BEGINNING)
    n = 0
    nbytes = 0
    errors = 0
    first_err = None
    cpu0 = cpu_s()
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    while n < a.records and time.monotonic() < deadline:
        for m in c.consume(num_messages=10000, timeout=0.5):
            if m.error():
                errors += 1
                first_err = first_err or str(m.error())
                continue
            n += 1
            nbytes += len(m.value())
    t1 = time.monotonic()
    cpu1 = cpu_s()
    c.close()
    secs = t1 - t0
    emit({"records": n, "wanted": a.records, "bytes": nbytes, "errors": errors, "first_error": first_err,
          "start": t0, "end": t1, "seconds": secs, "mb_s": nbytes / secs / 1e6, "rec_s": n / secs, "client_cpu_s": cpu1 - cpu0,
          "timed_out": n < a.records})
    return 0 if n >= a.records and errors == 0 else 1


def cmd_latency_producer(a):
    """Open loop: record i is due at start + i/rate; its value carries the due
    time, so a late send (client or broker back-pressure) counts as latency."""
    cfg = producer_config(a)
    p = Producer(cfg)
    parts = partition_count(p, a.topic)
    state = {"ok": 0, "err": 0, "first_err": None}
    ack_us = []

    def on_delivery(err, msg):
        if err is None:
            state["ok"] += 1
            # Due time -> acknowledgement seen by the client: the produce half
            # of the end-to-end latency.
            ack_us.append((time.monotonic_ns() - struct.unpack_from("<q", msg.value())[0]) / 1e3)
        else:
            state["err"] += 1
            state["first_err"] = state["first_err"] or str(err)

    pad = os.urandom(a.size - 16)
    total = int(a.rate * a.seconds)
    # Start on a shared deadline so the consumer is already polling.
    start_ns = time.monotonic_ns() + int(a.delay_s * 1e9)
    interval_ns = 1e9 / a.rate
    max_lag_ns = 0
    cpu0 = cpu_s()
    for i in range(total):
        due = start_ns + int(i * interval_ns)
        now = time.monotonic_ns()
        if now < due:
            # Sleep, don't spin: on 2 vCPUs a spinning client would take a
            # CPU from the broker. nanosleep overshoots by ~0.1 ms, which
            # then shows up as latency (the due time is what is carried).
            time.sleep((due - now) / 1e9)
        else:
            max_lag_ns = max(max_lag_ns, now - due)
        value = struct.pack("<qq", due, i) + pad
        while True:
            try:
                p.produce(a.topic, value, partition=i % parts, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.001)
        p.poll(0)
    left = p.flush(60)
    cpu1 = cpu_s()
    end_ns = time.monotonic_ns()
    ack_us.sort()
    ack = {f"ack_{k}_ms": (pct(ack_us, q) / 1e3 if ack_us else None)
           for k, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999), ("max", 1.0))}
    emit({**ack, "sent": total, "acked": state["ok"], "errors": state["err"], "first_error": state["first_err"],
          "unflushed": left, "max_send_lag_ms": max_lag_ns / 1e6, "client_cpu_s": cpu1 - cpu0,
          "start": start_ns / 1e9, "end": end_ns / 1e9, "wall_s": (end_ns - start_ns) / 1e9})
    return 0


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(q * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def cmd_latency_consumer(a):
    c = Consumer(consumer_config(a))
    parts = assign_all(c, a.topic, OFFSET_BEGINNING)
    lat_us = []
    seen = 0
    errors = 0
    first_err = None
    deadline = time.monotonic() + a.seconds
    while time.monotonic() < deadline and seen < a.expect:
        # poll(), not consume(n, timeout): consume() waits until it has n
        # messages or the timeout ran out, which would add up to the timeout.
        m = c.poll(0.1)
        if m is not None:
            now = time.monotonic_ns()
            if m.error():
                errors += 1
                first_err = first_err or str(m.error())
                continue
            due, _i = struct.unpack_from("<qq", m.value())
            lat_us.append((now - due) / 1e3)
            seen += 1
    c.close()
    lat_us.sort()
    emit({"received": seen, "expected": a.expect, "errors": errors, "first_error": first_err, "partitions": len(parts),
          "p50_ms": pct(lat_us, 0.50) / 1e3 if lat_us else None,
          "p99_ms": pct(lat_us, 0.99) / 1e3 if lat_us else None,
          "p999_ms": pct(lat_us, 0.999) / 1e3 if lat_us else None,
          "max_ms": lat_us[-1] / 1e3 if lat_us else None})
    return 0 if seen >= a.expect else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(s):
        s.add_argument("--bootstrap", required=True)
        s.add_argument("--topic", required=True)

    s = sub.add_parser("create")
    common(s)
    s.add_argument("--partitions", type=int, default=12)

    for name in ("produce", "latency-producer"):
        s = sub.add_parser(name)
        common(s)
        s.add_argument("--size", type=int, default=1024)
        s.add_argument("--linger-ms", type=int, default=5)
        s.add_argument("--batch-size", type=int, default=1048576)
        if name == "produce":
            s.add_argument("--records", type=int, default=300000)
        else:
            s.add_argument("--rate", type=float, default=5000)
            s.add_argument("--seconds", type=float, default=8)
            s.add_argument("--delay-s", type=float, default=1.0)
            s.set_defaults(linger_ms=1)

    s = sub.add_parser("consume")
    common(s)
    s.add_argument("--records", type=int, default=300000)
    s.add_argument("--timeout", type=float, default=60)
    s.add_argument("--fetch-wait-ms", type=int, default=100)

    s = sub.add_parser("latency-consumer")
    common(s)
    s.add_argument("--expect", type=int, required=True)
    s.add_argument("--seconds", type=float, default=15)
    s.add_argument("--fetch-wait-ms", type=int, default=100)

    a = ap.parse_args()
    fn = {"create": cmd_create, "produce": cmd_produce, "consume": cmd_consume,
          "latency-producer": cmd_latency_producer, "latency-consumer": cmd_latency_consumer}[a.cmd]
    try:
        return fn(a)
    except KafkaException as e:
        emit({"error": str(e)})
        return 2


if __name__ == "__main__":
    sys.exit(main())
