"""Workload and checks for the replication fault suite (tests/replication.rs).

    python3 tests/compat/replication_load.py --bootstrap B --timeout S COMMAND [options]

Commands:
  create   create --topic with --partitions, replication factor 3 and
           min.insync.replicas=2, retrying while the cluster settles
  load     until --stop-file exists: an idempotent acks=all producer
           (confluent-kafka) writes "key:seq" values for --keys keys and
           appends every acknowledged one to --acked as "partition offset
           value"; a consumer group (kafka-python) reads throughout, commits
           its offsets, and appends every record it sees to --seen. Both
           restart their clients after errors, as applications do.
  reassign move --partition to --replicas (AlterPartitionReassignments),
           wait until it is done, print its replicas, ISR and leader
  elect    preferred leader election for every partition of --topic
  rack-consume  read --count records as a consumer in --rack (KIP-392)
  verify   reads the whole topic from the start and checks:
           - every acknowledged value is there exactly once;
           - per key, values are in sequence order (no gap where acked);
           - every record a consumer saw during the load is still at the
             same offset with the same value (nothing seen was taken back);
           - the load's group has committed offsets no higher than the log
             end of each partition (committed offsets survive);
           prints one JSON line of figures.

Prints FAIL: ... and exits 1 on a failed check. A watchdog ends it (exit
124) after --timeout seconds with every thread's stack.
"""

import argparse
import faulthandler
import json
import os
import sys
import threading
import time

import confluent_kafka
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def create(bootstrap, topic, partitions, deadline_s):
    started = time.time()
    while True:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=3,
                                                config={"min.insync.replicas": "2"})], request_timeout=10)
        try:
            futures[topic].result()
            break
        except KafkaException as e:
            if e.args[0].code() == confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                break
            if time.time() - started > deadline_s:
                fail(f"create {topic}: {e}")
            time.sleep(0.2)
    # Wait until every partition has a leader and a full ISR.
    while time.time() - started < deadline_s:
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        if t and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 and len(p.isrs) == 3 for p in t.partitions.values()):
            return
        time.sleep(0.2)
    fail(f"{topic}: partitions without a leader or a full ISR after {deadline_s}s")


def load(args):
    stop = lambda: os.path.exists(args.stop_file)
    acked_file = open(args.acked, "a", buffering=1)
    seen_file = open(args.seen, "a", buffering=1)
    errors = {"produce": 0, "consume": 0}

    def consume():
        group = args.group
        while not stop():
            c = confluent_kafka.Consumer({
                "bootstrap.servers": args.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                "enable.auto.commit": True, "auto.commit.interval.ms": 200, "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500})
            try:
                c.subscribe([args.topic])
                while not stop():
                    m = c.poll(0.2)
                    if m is None:
                        continue
                    if m.error():
                        errors["consume"] += 1
                        continue
                    seen_file.write(f"{m.partition()} {m.offset()} {m.value().decode()}\n")
            except KafkaException:
                errors["consume"] += 1
            finally:
                try:
                    c.close()
                except Exception:
                    pass

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    seq = {}
    sent = 0
    while not stop():
        p = confluent_kafka.Producer({
            "bootstrap.servers": args.bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 60000, "request.timeout.ms": 5000,
            "retry.backoff.ms": 100})
        fatal = []

        def done(err, msg):
            if err is not None:
                errors["produce"] += 1
                if errors["produce"] <= 20 or errors["produce"] % 1000 == 0:
                    print(f"{time.time():.3f} produce error #{errors['produce']}: {err}", file=sys.stderr, flush=True)
                if err.fatal():
                    fatal.append(err)
                return
            acked_file.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")

        # Values are unique per producer instance: "key:instance:seq".
        instance = f"{os.getpid()}.{time.time():.3f}"
        while not stop() and not fatal:
            for k in range(args.keys):
                key = f"k{k}"
                n = seq.get(key, 0)
                seq[key] = n + 1
                try:
                    p.produce(args.topic, key=key, value=f"{key}:{instance}:{n}", on_delivery=done)
                    sent += 1
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
            time.sleep(args.interval)
        p.flush(60)
    consumer.join(timeout=20)
    print(json.dumps({"sent": sent, "produce_errors": errors["produce"], "consume_errors": errors["consume"]}),
          flush=True)


def read_all(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=10)
    partitions = sorted(md.topics[topic].partitions)
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{time.time()}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    ends = {}
    for p in partitions:
        low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = high
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    log = {p: {} for p in partitions}
    started = time.time()
    while any(len(log[p]) < ends[p] for p in partitions) and time.time() - started < 60:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        log[m.partition()][m.offset()] = m.value().decode()
    c.close()
    return log, ends


def committed(bootstrap, topic, group, partitions):
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    got = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    c.close()
    return {tp.partition: tp.offset for tp in got}


def verify(args):
    log, ends = read_all(args.bootstrap, args.topic)
    values = {}
    for p, records in log.items():
        if len(records) != ends[p]:
            fail(f"partition {p}: read {len(records)} records, log end {ends[p]}")
        for offset, value in records.items():
            if value in values:
                fail(f"duplicate {value!r} at {p}/{offset} and {values[value]}")
            values[value] = (p, offset)
    acked = [line.split() for line in open(args.acked) if line.strip()]
    for p, offset, value in acked:
        where = values.get(value)
        if where is None:
            fail(f"acknowledged {value!r} (at {p}/{offset}) is lost")
        # librdkafka reports no offset for a batch it knows is persisted
        # only through a retry; its value must still be there.
        if offset != "None" and where != (int(p), int(offset)):
            fail(f"acknowledged {value!r} at {p}/{offset}, found at {where}")
    # Per key and producer instance, the log holds an increasing sequence.
    last = {}
    for p in sorted(log):
        for offset in sorted(log[p]):
            key, instance, n = log[p][offset].split(":")
            prev = last.get((key, instance))
            if prev is not None and int(n) <= prev:
                fail(f"{key} of {instance}: {n} after {prev} at {p}/{offset}")
            last[(key, instance)] = int(n)
    seen = [line.split() for line in open(args.seen) if line.strip()] if os.path.exists(args.seen) else []
    for p, offset, value in seen:
        if log[int(p)].get(int(offset)) != value:
            fail(f"a consumer saw {value!r} at {p}/{offset}; the log now has {log[int(p)].get(int(offset))!r}")
    offsets = committed(args.bootstrap, args.topic, args.group, sorted(log))
    for p, offset in offsets.items():
        if offset > ends[p]:
            fail(f"group {args.group} committed {offset} on partition {p}, past the log end {ends[p]}")
    if seen and all(o < 0 for o in offsets.values()):
        fail(f"group {args.group} has no committed offsets")
    print(json.dumps({"records": len(values), "acked": len(acked), "lost": 0, "duplicated": 0,
                      "seen": len(seen), "committed": offsets}), flush=True)


def reassign(args):
    """Moves --partition of --topic to --replicas (kafka-python's
    AlterPartitionReassignments), waits until ListPartitionReassignments
    shows it done, and prints the partition as Metadata shows it."""
    from kafka import KafkaAdminClient
    from kafka.structs import TopicPartition as KTopicPartition
    target = [int(r) for r in args.replicas.split(",")]
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap.split(","), request_timeout_ms=30000)
    try:
        tp = KTopicPartition(args.topic, args.partition)
        result = admin.alter_partition_reassignments({tp: target})
        if result.get(tp) is not None:
            fail(f"reassignment refused: {result}")
        started = time.time()
        listed = admin.list_partition_reassignments()
        seen_in_progress = bool(listed)
        while listed and time.time() - started < args.deadline:
            time.sleep(0.2)
            listed = admin.list_partition_reassignments()
        if listed:
            fail(f"reassignment still in progress after {args.deadline}s: {listed}")
    finally:
        admin.close()
    md = AdminClient({"bootstrap.servers": args.bootstrap}).list_topics(args.topic, timeout=10)
    p = md.topics[args.topic].partitions[args.partition]
    print(json.dumps({"replicas": p.replicas, "isr": sorted(p.isrs), "leader": p.leader,
                      "listed_in_progress": seen_in_progress}), flush=True)


def elect(args):
    """A preferred leader election for every partition of --topic
    (confluent-kafka's AdminClient); prints the per-partition errors."""
    from confluent_kafka import ElectionType
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    md = admin.list_topics(args.topic, timeout=10)
    tps = [TopicPartition(args.topic, p) for p in sorted(md.topics[args.topic].partitions)]
    outcome = admin.elect_leaders(ElectionType.PREFERRED, tps).result()
    print(json.dumps({f"{tp.topic}-{tp.partition}": (err.code() if err else 0) for tp, err in outcome.items()}),
          flush=True)


def rack_consume(args):
    """Reads --count records of --topic from the start with confluent-kafka
    as a consumer in rack --rack (client.rack, KIP-392)."""
    c = confluent_kafka.Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"rack-{time.time()}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "client.rack": args.rack})
    c.subscribe([args.topic])
    got = 0
    started = time.time()
    while got < args.count and time.time() - started < args.deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.close()
    if got < args.count:
        fail(f"read {got} of {args.count} records in rack {args.rack}")
    print(f"read {got} records in rack {args.rack}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("command")
    ap.add_argument("--topic", default="replicated")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--keys", type=int, default=6)
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--group", default="load-group")
    ap.add_argument("--acked")
    ap.add_argument("--seen")
    ap.add_argument("--stop-file")
    ap.add_argument("--deadline", type=float, default=60)
    ap.add_argument("--partition", type=int, default=0)
    ap.add_argument("--replicas")
    ap.add_argument("--rack")
    ap.add_argument("--count", type=int, default=100)
    args = ap.parse_args()
    faulthandler.dump_traceback_later(args.timeout, exit=True)
    if args.command == "create":
        create(args.bootstrap, args.topic, args.partitions, args.deadline)
        print(f"created {args.topic}")
    elif args.command == "load":
        load(args)
    elif args.command == "verify":
        verify(args)
    elif args.command == "reassign":
        reassign(args)
    elif args.command == "elect":
        elect(args)
    elif args.command == "rack-consume":
        rack_consume(args)
    else:
        fail(f"unknown command {args.command}")


if __name__ == "__main__":
    main()
