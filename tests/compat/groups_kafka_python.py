"""Consumer groups through kafka-python: KafkaConsumer with group_id (its own
implementation of the classic group protocol and the range assignor) and
KafkaAdminClient's group calls (list_groups, describe_groups,
list_group_offsets, delete_group_offsets, delete_groups; kafka-python 3
names for 2.x's list_consumer_groups and friends).

Cases (--case NAME, repeatable; default all):
  spread         3 consumers (threads), 6 partitions: 2 partitions each, each
                 partition read by its one owner, no loss, no duplicates,
                 offset order; list_groups and describe_groups agree; Empty
                 after every member left
  commit-resume  commit, close, a new consumer resumes at the commit and
                 re-reads nothing; the offsets through list_group_offsets and
                 through confluent-kafka's committed(); metadata kept with an
                 offset (alter_group_offsets); OffsetDelete of one partition; DeleteGroups (unknown group, then the group);
                 OffsetFetch of a group that never existed gives -1
  mixed          one kafka-python and one confluent-kafka member in a group:
                 they agree on a protocol and split the partitions"""

import contextlib
import logging
import os
import queue
import threading
import time

import common as c

TIMEOUT = 15


class KpMember(threading.Thread):
    """One KafkaConsumer in a group, in its own thread (kafka-python's
    consumer is not thread-safe: commits and close go through `send`). The
    same interface as groups_confluent.py's Member."""

    def __init__(self, args, name, group, topic, **config):
        super().__init__(daemon=True, name=f"member-{name}")
        self.args, self.name, self.group, self.topic, self.config = args, name, group, topic, config
        self.lock = threading.Lock()
        self.events = []
        self.got = []
        self.assigned = set()
        self.commands = queue.Queue()
        self.start()

    def emit(self, ev, **fields):
        with self.lock:
            self.events.append({"ev": ev, "t": time.monotonic(), "reads": len(self.got), **fields})

    def run(self):
        from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
        from kafka.structs import OffsetAndMetadata
        member = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                gone = {tp.partition for tp in revoked}
                member.assigned = member.assigned - gone
                member.emit("revoke", parts=sorted(gone), assigned=sorted(member.assigned))

            def on_partitions_assigned(self, assigned):
                member.assigned = {tp.partition for tp in assigned}
                member.emit("assign", parts=sorted(member.assigned), assigned=sorted(member.assigned))

        # The group timeouts are set here, not left to kafka-python's
        # defaults: session 10 s, a heartbeat a second, and a rebalance
        # timeout (max_poll_interval_ms, sent in JoinGroup) well inside the
        # script's watchdog.
        config = dict(bootstrap_servers=self.args.bootstrap, group_id=self.group, client_id=self.name,
                      enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=10_000,
                      heartbeat_interval_ms=1_000, max_poll_interval_ms=30_000, fetch_max_wait_ms=100,
                      request_timeout_ms=30_000)
        config.update(self.config)
        try:
            consumer = KafkaConsumer(**config)
            consumer.subscribe([self.topic], listener=Listener())
            # The topic's metadata before the first JoinGroup, so that the
            # leader never has to rejoin because of it. kafka-python 3.0.12
            # otherwise joins with no partitions known, and its leader
            # rejoins once the metadata arrives (ConsumerCoordinator.
            # need_rejoin: assignment_snapshot != metadata_snapshot). If
            # that rejoin's JoinGroup/SyncGroup outlasts the poll() that
            # started it, the member goes silent for good: the leader's
            # _perform_assignment sets assignment_snapshot =
            # metadata_snapshot, so need_rejoin() turns False while the join
            # task is still pending (rejoin_needed was never set for this
            # rejoin); poll() then never calls ensure_active_group again,
            # the finished join is never collected (no assign callback, no
            # STABLE state) and the heartbeat stays disabled until the
            # broker expires the session (kafka/coordinator/base.py,
            # BaseCoordinator.join_group_async and need_rejoin; Java's
            # rejoinNeededOrPending also waits for a pending join).
            # partitions_for_topic fetches the metadata and runs the
            # coordinator's metadata listener before returning.
            c.check(consumer.partitions_for_topic(self.topic), f"{self.name}: no partitions of {self.topic}")
            while True:
                try:
                    command = self.commands.get_nowait()
                except queue.Empty:
                    command = None
                if command == "commit":
                    ends = self.read_to()
                    offsets = {TopicPartition(self.topic, p): OffsetAndMetadata(ends[p], "", -1)
                               for p in sorted(self.assigned) if p in ends}
                    try:
                        consumer.commit(offsets)
                        self.emit("committed", offsets={p.partition: o.offset for p, o in offsets.items()})
                    except Exception as e:
                        self.emit("commit-failed", error=repr(e))
                elif command == "close":
                    consumer.close(autocommit=False)
                    self.emit("closed")
                    return
                for tp, records in consumer.poll(timeout_ms=100, max_records=1000).items():
                    with self.lock:
                        self.got.extend((tp.partition, r.offset, c.seq_of(r.headers)) for r in records)
        except Exception as e:
            self.emit("error", error=repr(e))
            print(f"  [{self.name}] {e!r}", flush=True)

    def of(self, *kinds):
        with self.lock:
            return [e for e in self.events if e["ev"] in kinds]

    def rebalances(self):
        return len(self.of("assign", "revoke"))

    def reads(self):
        with self.lock:
            return list(self.got)

    def read_to(self):
        ends = {}
        for p, o, _ in self.reads():
            ends[p] = max(ends.get(p, 0), o + 1)
        return ends

    def commit(self):
        before = len(self.of("committed", "commit-failed", "error"))
        self.commands.put("commit")
        ev = c.wait_until(lambda: self.of("committed", "commit-failed", "error")[before:], TIMEOUT,
                          f"{self.name}'s commit")[0]
        c.check(ev["ev"] == "committed", f"{self.name}: commit failed: {ev.get('error')}")
        return ev["offsets"]

    def close(self):
        self.commands.put("close")
        c.wait_until(lambda: self.of("closed", "error"), TIMEOUT, f"{self.name} to close")
        c.check(self.of("closed"), f"{self.name}: {self.of('error')}")
        self.join(5)


def admin_client(args):
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=TIMEOUT * 1000)
    c.on_exit(admin.close)
    return admin


def produce(args, topic, count, seed, partitions, seq_base=0):
    records, partition_of = c.group_records(count, seed, partitions, seq_base)
    return c.kp_produce(args.bootstrap, topic, records, partition_of=partition_of)


def create_topic(admin, topic, partitions):
    from kafka.admin import NewTopic
    admin.create_topics([NewTopic(topic, partitions, 1)])
    c.wait_until(lambda: topic in admin.list_topics(), 10, f"{topic} in Metadata")


def assigned_partitions(member):
    """Partitions in a describe_groups member's decoded assignment."""
    assignment = member.get("member_assignment")
    if hasattr(assignment, "partitions"):
        return {tp.partition for tp in assignment.partitions()}
    if isinstance(assignment, dict):
        return {p for t in assignment.get("assigned_partitions", []) for p in t.get("partitions", [])}
    c.fail(f"cannot read the assignment of a describe_groups member: {member!r}")


def state_of(admin, group):
    described = admin.describe_groups([group])[group]
    c.check(not described.get("error"), f"describe_groups({group}): {described.get('error')}")
    return described


def case_spread(args):
    topic = group = "kp-spread"
    admin = admin_client(args)
    create_topic(admin, topic, 6)
    with kafka_python_debug_log(args, "spread"):
        members = [KpMember(args, f"kp-spread-{i}", group, topic) for i in range(3)]
        took = c.wait_stable(members, 6)
    sizes = {m.name: sorted(m.assigned) for m in members}
    c.check(all(len(parts) == 2 for parts in sizes.values()), f"3 members over 6 partitions, assigned {sizes}")
    acked = produce(args, topic, 3000, seed=901, partitions=6)
    c.wait_consumed(members, acked)
    _, readers_of, _ = c.check_group_stream("spread", c.reads_of(members), acked)
    for p in range(6):
        owner = {m.name for m in members if p in m.assigned}
        c.check(readers_of.get(p) == owner, f"partition {p}: read by {sorted(readers_of.get(p, []))}, "
                                            f"assigned to {sorted(owner)}")
    groups = {g["group_id"]: g for g in admin.list_groups()}
    c.check(group in groups and groups[group].get("protocol_type") == "consumer",
            f"list_groups: {groups.get(group, sorted(groups))}")
    described = state_of(admin, group)
    c.check(described["group_state"] == "Stable" and described["protocol_type"] == "consumer"
            and described["protocol_data"] in ("range", "roundrobin"),
            f"describe_groups: state {described['group_state']!r}, protocol {described['protocol_type']!r}/"
            f"{described['protocol_data']!r}")
    by_client = {m["client_id"]: assigned_partitions(m) for m in described["members"]}
    c.check(by_client == {m.name: m.assigned for m in members},
            f"describe_groups assignments {by_client}, members report {sizes}")
    for m in members:
        m.close()
    c.wait_until(lambda: state_of(admin, group)["group_state"] == "Empty", 10,
                 "describe_groups to say Empty after every member left")
    c.log(f"spread: 3 kafka-python consumers settled in {took:.1f}s with 2 partitions each; 3000 records read once "
          f"each, each partition by its owner; list_groups, describe_groups (Stable, {described['protocol_data']}, "
          f"assignments) agree; Empty after they left")


def case_commit_resume(args):
    import kafka.errors as Errors
    from kafka import TopicPartition
    topic = group = "kp-resume"
    admin = admin_client(args)
    create_topic(admin, topic, 6)
    tps = [TopicPartition(topic, p) for p in range(6)]

    fresh = "kp-never-used"
    offsets = admin.list_group_offsets({fresh: tps})[fresh]
    c.check(sorted(offsets) == sorted(tps) and all(o.offset == -1 for o in offsets.values()),
            f"list_group_offsets of a group that never existed: {offsets}")
    probe = c.kp_consumer(args.bootstrap, group_id=fresh)
    try:
        values = [probe.committed(tp) for tp in tps]
    finally:
        probe.close()
    c.check(values == [None] * 6, f"KafkaConsumer.committed() of a fresh group: {values}")

    acked = produce(args, topic, 1200, seed=911, partitions=6)
    first = KpMember(args, "kp-resume-1", group, topic)
    c.wait_stable([first], 6)
    c.wait_consumed([first], acked)
    c.check(first.commit() == {p: 200 for p in range(6)}, "first commit")
    first.close()
    stored = {tp.partition: o.offset for tp, o in admin.list_group_offsets(group)[group].items()}
    c.check(stored == {p: 200 for p in range(6)}, f"list_group_offsets after the commit: {stored}")
    from confluent_kafka import TopicPartition as CfTopicPartition
    consumer = c.cf_consumer(args.bootstrap, **{"group.id": group})
    try:
        seen = {tp.partition: tp.offset for tp in consumer.committed([CfTopicPartition(topic, p) for p in range(6)],
                                                                     timeout=TIMEOUT)}
    finally:
        consumer.close()
    c.check(seen == stored, f"confluent-kafka committed() of kafka-python's commits: {seen}")

    phase_2 = produce(args, topic, 1200, seed=912, partitions=6, seq_base=1200)
    second = KpMember(args, "kp-resume-2", group, topic)
    c.wait_stable([second], 6)
    c.wait_consumed([second], phase_2)
    c.check_group_stream("resumed", c.reads_of([second]), phase_2)  # nothing before the commit
    c.check(second.commit() == {p: 400 for p in range(6)}, "second commit")
    second.close()
    c.wait_until(lambda: state_of(admin, group)["group_state"] == "Empty", 10, "the group to be Empty")

    from kafka.structs import OffsetAndMetadata
    result = admin.alter_group_offsets(group, {tps[5]: OffsetAndMetadata(123, "kp-meta", -1)})
    c.check(result == {tps[5]: Errors.NoError}, f"alter_group_offsets of partition 5: {result}")
    stored = admin.list_group_offsets({group: [tps[5]]})[group][tps[5]]
    c.check((stored.offset, stored.metadata) == (123, "kp-meta"), f"offset and metadata read back: {stored}")
    admin.alter_group_offsets(group, {tps[5]: OffsetAndMetadata(400, "", -1)})

    result = admin.delete_group_offsets(group, [tps[0]])
    c.check(result == {tps[0]: Errors.NoError}, f"delete_group_offsets of partition 0: {result}")
    stored = {tp.partition: o.offset for tp, o in admin.list_group_offsets({group: tps})[group].items()}
    c.check(stored == {0: -1, **{p: 400 for p in range(1, 6)}}, f"after OffsetDelete of partition 0: {stored}")

    result = admin.delete_groups(["kp-no-such-group"])
    c.check(result == {"kp-no-such-group": "GroupIdNotFoundError"}, f"delete_groups of an unknown group: {result}")
    result = admin.delete_groups([group])
    c.check(result == {group: "OK"}, f"delete_groups: {result}")
    c.check(group not in {g["group_id"] for g in admin.list_groups()}, "the deleted group is still listed")
    stored = {tp.partition: o.offset for tp, o in admin.list_group_offsets({group: tps})[group].items()}
    c.check(set(stored.values()) == {-1}, f"a deleted group's offsets: {stored}")
    c.log("commit-resume: a fresh group's offsets are -1 (None from committed()); commit, close, a new consumer "
          "resumed at the commit (1200 records per phase, nothing re-read); confluent-kafka reads the same "
          "offsets; an OffsetCommit with metadata reads back; OffsetDelete of one partition; DeleteGroups: GroupIdNotFoundError, then OK")


def case_mixed(args):
    import groups_confluent
    topic = group = "kp-mixed"
    admin = admin_client(args)
    create_topic(admin, topic, 6)
    with kafka_python_debug_log(args, "mixed"):
        # Both members join at once. The stall once seen here (kafka-python
        # silent after its metadata rejoin until its session expired, with
        # its SyncGroup answered) was kafka-python's own: see KpMember.run,
        # which now fetches the topic's metadata before joining. Its debug
        # log is printed if the group does not settle.
        kp = KpMember(args, "kp-mixed-kp", group, topic)
        cf = groups_confluent.Member(args, "kp-mixed-cf", group, topic, strategy="range")
        took = c.wait_stable([kp, cf], 6)
    c.check(len(kp.assigned) == 3 and len(cf.assigned) == 3,
            f"assigned: kafka-python {sorted(kp.assigned)}, confluent-kafka {sorted(cf.assigned)}")
    acked = produce(args, topic, 1200, seed=921, partitions=6)
    c.wait_consumed([kp, cf], acked)
    c.check_group_stream("mixed", c.reads_of([kp, cf]), acked)
    described = state_of(admin, group)
    c.check(described["protocol_data"] == "range", f"the mixed group agreed on {described['protocol_data']!r}")
    kp.close()
    cf.close()
    c.log(f"mixed: a kafka-python and a confluent-kafka member settled in {took:.1f}s on range, 3 partitions each; "
          f"1200 records read once each")


@contextlib.contextmanager
def kafka_python_debug_log(args, case, lines=60):
    """Keeps kafka-python's DEBUG log of `case` in a file beside the data dir
    and prints its last `lines` lines if the block fails."""
    path = os.path.join(os.path.dirname(os.path.abspath(args.data_dir or ".")), f"kafka-python-{case}.log")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(message)s"))
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    except c.Failure:
        handler.flush()
        with open(path, errors="replace") as f:
            tail = f.readlines()[-lines:]
        print(f"--- kafka-python's log, last {len(tail)} lines ({path}) ---", flush=True)
        print("".join(line[:400] + ("\n" if len(line) > 400 else "") for line in tail), flush=True)
        raise
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


CASES = {"spread": case_spread, "commit-resume": case_commit_resume, "mixed": case_mixed}


def extra(parser):
    parser.add_argument("--case", action="append", choices=list(CASES), help="run only this case (repeatable)")


def main():
    args = c.parse_args(__doc__, extra)
    names = args.case or list(CASES)
    c.run_cases(names, lambda name: CASES[name](args))
    c.log(f"groups (kafka-python): {', '.join(names)} passed")


if __name__ == "__main__":
    c.run(main)
