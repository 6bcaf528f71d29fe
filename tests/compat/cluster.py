"""Client checks against a ringstream cluster (run by tests/cluster.rs).

    python3 tests/compat/cluster.py --bootstrap HOST:PORT[,...] --timeout S COMMAND [options]

Commands:
  spread     create a topic, check leaders spread over the brokers, produce
             with confluent-kafka (bootstrapped at one node) to every
             partition, consume it back with a kafka-python group and a
             confluent-kafka group whose coordinators are on other nodes
  create     create a topic, retrying while the controller is away; prints
             the seconds it took
  describe   print the cluster as JSON: controller, brokers, topics (id,
             leaders)
  produce    produce N numbered records to a topic (acks=all)
  consume    read a topic from the start and check N numbered records
  count      read a topic from the start and check it holds N records
  coordinator  print the node that coordinates --group

Prints a summary and exits 0, or prints FAIL: ... and exits 1. A watchdog
ends it (exit 124) after --timeout seconds with every thread's stack.
"""

import argparse
import faulthandler
import json
import sys
import time

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic as CNewTopic
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def describe(bootstrap, topics=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    out = {"controller": md.controller_id, "brokers": sorted(md.brokers), "topics": {}}
    for name, t in md.topics.items():
        if topics and name not in topics:
            continue
        leaders = {p.id: p.leader for p in t.partitions.values()}
        errors = {p.id: (p.error.code() if p.error else 0) for p in t.partitions.values()}
        isr = {p.id: sorted(p.isrs) for p in t.partitions.values()}
        out["topics"][name] = {"leaders": leaders, "isr": isr, "errors": errors,
                               "error": t.error.code() if t.error else 0}
    # Topic ids come from kafka-python's describe (Metadata v10+). Its
    # client may pick a broker that has just stopped (its broker list can
    # lag a controlled shutdown by a moment): retry, bounded.
    if topics:
        for attempt in range(10):
            try:
                ka = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=10000)
                try:
                    for t in ka.describe_topics(list(topics)):
                        name = t.get("topic", t.get("name"))
                        if name in out["topics"]:
                            out["topics"][name]["id"] = str(t.get("topic_id", ""))
                finally:
                    ka.close()
                break
            except Exception as e:  # a connection to a stopped broker
                if attempt == 9:
                    raise
                print(f"describe_topics: {e!r}; retrying", file=sys.stderr)
                time.sleep(0.3)
    return out


def create(bootstrap, topic, partitions, deadline_s):
    started = time.time()
    last = None
    while time.time() - started < deadline_s:
        admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000})
        futures = admin.create_topics([CNewTopic(topic, partitions, 1)], operation_timeout=10, request_timeout=5)
        try:
            futures[topic].result()
            return time.time() - started
        except Exception as e:  # controller away: retry
            code = e.args[0].code() if e.args and hasattr(e.args[0], "code") else None
            if code == confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                return time.time() - started
            last = e
            time.sleep(0.1)
    fail(f"could not create {topic} within {deadline_s}s: {last}")


def produce(bootstrap, topic, count, partitions):
    delivered = []
    errors = []

    def done(err, msg):
        (errors if err else delivered).append(err or msg.partition())

    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                                  "message.timeout.ms": 30000})
    for i in range(count):
        p.produce(topic, value=b"r%06d" % i, key=b"%d" % i, partition=i % partitions, on_delivery=done)
        p.poll(0)
    p.flush(60)
    if errors or len(delivered) != count:
        fail(f"produce: {len(delivered)} of {count} delivered, errors {errors[:3]}")
    return sorted(set(delivered))


def consume_kafka_python(bootstrap, topic, count, group):
    c = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=20000)
    c.subscribe([topic])
    seen = set()
    for m in c:
        seen.add(m.value)
        if len(seen) == count:
            break
    c.commit()
    c.close()
    return seen


def consume_confluent(bootstrap, topic, count, group):
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    seen = set()
    started = time.time()
    while len(seen) < count and time.time() - started < 30:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen.add(m.value())
    c.commit(asynchronous=False)
    c.close()
    return seen


def coordinator_of(bootstrap, group):
    """The node coordinating `group`, from confluent-kafka's DescribeGroups
    (it answers with the coordinator, for an unknown group too)."""
    deadline = time.time() + 20
    while time.time() < deadline:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        try:
            described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
            if described.coordinator is not None and described.coordinator.id >= 0:
                return described.coordinator.id
        except Exception:
            pass
        time.sleep(0.2)
    fail(f"no coordinator found for {group}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("command")
    ap.add_argument("--topic", default="t")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--deadline", type=float, default=60)
    ap.add_argument("--bootstrap-node", type=int, default=1)
    ap.add_argument("--group", default="g")
    args = ap.parse_args()
    faulthandler.dump_traceback_later(args.timeout, exit=True)

    if args.command == "describe":
        topics = [args.topic] if args.topic != "*" else None
        # Brokers learn new metadata a moment after the controller commits
        # it (as in Kafka): wait, bounded, for a named topic to show up.
        deadline = time.time() + 10
        d = describe(args.bootstrap, topics)
        while topics and args.topic not in d["topics"] and time.time() < deadline:
            time.sleep(0.1)
            d = describe(args.bootstrap, topics)
        print(json.dumps(d))
    elif args.command == "coordinator":
        print(f"coordinator {coordinator_of(args.bootstrap, args.group)}")
    elif args.command == "create":
        took = create(args.bootstrap, args.topic, args.partitions, args.deadline)
        print(f"created {args.topic} in {took:.3f}s")
    elif args.command == "produce":
        produce(args.bootstrap, args.topic, args.count, args.partitions)
        print(f"produced {args.count}")
    elif args.command == "consume":
        seen = consume_confluent(args.bootstrap, args.topic, args.count, f"check-{time.time()}")
        want = {b"r%06d" % i for i in range(args.count)}
        if seen != want:
            fail(f"consume: {len(seen & want)} of {args.count} records, {len(seen - want)} unexpected")
        print(f"consumed {args.count}")
    elif args.command == "count":
        # Records in the topic from the start (any content), per partition.
        c = confluent_kafka.Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"count-{time.time()}",
                                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([args.topic])
        got = 0
        started = time.time()
        while got < args.count and time.time() - started < 30:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got += 1
        c.close()
        if got != args.count:
            fail(f"count: {got} records in {args.topic}, wanted {args.count}")
        print(f"counted {got}")
    elif args.command == "spread":
        create(args.bootstrap, args.topic, args.partitions, args.deadline)
        d = describe(args.bootstrap, [args.topic])
        deadline = time.time() + 10
        while args.topic not in d["topics"] and time.time() < deadline:
            time.sleep(0.1)  # the other brokers learn of it a moment later
            d = describe(args.bootstrap, [args.topic])
        if len(d["brokers"]) != args.brokers:
            fail(f"Metadata lists brokers {d['brokers']}, wanted {args.brokers}")
        leaders = d["topics"][args.topic]["leaders"]
        per = {}
        for p, leader in leaders.items():
            per[leader] = per.get(leader, 0) + 1
        if len(per) != args.brokers or max(per.values()) - min(per.values()) > 1:
            fail(f"leaders not spread: {per}")
        wrote = produce(args.bootstrap, args.topic, args.count, args.partitions)
        if wrote != list(range(args.partitions)):
            fail(f"produced to partitions {wrote}")
        want = {b"r%06d" % i for i in range(args.count)}
        # Groups whose coordinator is not the bootstrap node.
        groups = []
        for i in range(200):
            g = f"group-{i}"
            if coordinator_of(args.bootstrap, g) != args.bootstrap_node:
                groups.append(g)
            if len(groups) == 2:
                break
        if len(groups) < 2:
            fail("every group's coordinator is the bootstrap node")
        seen = consume_kafka_python(args.bootstrap, args.topic, args.count, groups[0])
        if seen != want:
            fail(f"kafka-python group {groups[0]}: {len(seen & want)} of {args.count}")
        seen = consume_confluent(args.bootstrap, args.topic, args.count, groups[1])
        if seen != want:
            fail(f"confluent-kafka group {groups[1]}: {len(seen & want)} of {args.count}")
        print(f"spread {per}; {args.count} records through groups {groups} "
              f"(coordinators {[coordinator_of(args.bootstrap, g) for g in groups]})")
    else:
        fail(f"unknown command {args.command}")


if __name__ == "__main__":
    main()
