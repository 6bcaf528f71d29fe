"""Consumer groups through confluent-kafka (librdkafka): the classic group
protocol (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, OffsetFetch) and the AdminClient's group calls (ListGroups,
DescribeGroups, DeleteGroups, OffsetCommit and OffsetFetch for a group).

Cases (--case NAME, repeatable; default all, persistence only with --broker-cmd):
  spread         3 members, 6 partitions: each member gets 2, each partition
                 is read by the one member it is assigned to, no loss, no
                 duplicates, offset order; DescribeGroups agrees; Empty after
                 every member left
  member-loss    3 members, manual commits; one is SIGKILLed (no LeaveGroup):
                 after the session timeout the others take its partitions
                 from its last commit: nothing lost, the only duplicates are
                 the records it read after that commit
  idle           4 members, 2 partitions: two members get one each, two none
  independent    two groups on one topic each read every record; one's
                 auto-commits are invisible to the other, which commits by hand
  persistence    commit, SIGTERM restart, resume from the commit; commit,
                 SIGKILL restart, resume again: no committed record re-read;
                 a member connected through a restart reads on
  static         a static member (group.instance.id) closes (no LeaveGroup)
                 and comes back within the session timeout: same partitions,
                 the other member sees no rebalance; when it does not come
                 back, its partitions move after the session timeout
  cooperative    cooperative-sticky: a second member joining takes half the
                 partitions incrementally while records keep flowing; the
                 first keeps the rest without a full revoke; it gets them
                 back when the second leaves; no loss, no duplicates
  unknown-group  OffsetFetch of a group that never existed: OFFSET_INVALID
                 (-1), no error; describe/delete of it
  admin          list/describe/list offsets/alter offsets/delete through the
                 AdminClient, and commits of a simple (assign-only) consumer

Group members are subprocesses of this script (`groups_confluent.py member
...`), so that one can be SIGKILLed. Each reports its assignments, the
records it read and its commits as JSON lines on stdout, and takes commands
(commit, close) on stdin; it exits when its stdin closes. Timings printed are
for information; nothing asserts on them beyond deadlines."""

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import common as c

TIMEOUT = 15
JOIN_SECONDS = c.GROUP_JOIN_SECONDS
QUIET_SECONDS = c.GROUP_QUIET_SECONDS


# --------------------------------------------------------------------------
# The member process

def member_main():
    p = argparse.ArgumentParser(description="one consumer group member (started by groups_confluent.py and "
                                            "groups_consumer_protocol.py)")
    p.add_argument("member")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--instance-id")
    p.add_argument("--strategy", default="range,roundrobin")
    p.add_argument("--session-timeout-ms", type=int, default=10_000)
    p.add_argument("--heartbeat-ms", type=int, default=1_000)
    # Set explicitly, not librdkafka's 300 s default: it is the rebalance
    # timeout sent in JoinGroup (and in ConsumerGroupHeartbeat), and how long
    # the broker may hold a rebalance for a member that does not rejoin.
    p.add_argument("--max-poll-interval-ms", type=int, default=30_000)
    p.add_argument("--group-protocol", choices=["classic", "consumer"], default="classic")
    p.add_argument("--assignor", help="consumer protocol: group.remote.assignor (default: the broker's, uniform)")
    p.add_argument("--commit-on-revoke", action="store_true")
    p.add_argument("--auto-commit-ms", type=int, help="enable.auto.commit with this interval (default: off)")
    p.add_argument("--timeout", type=float, default=120)
    a = p.parse_args()
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    watchdog = threading.Timer(a.timeout, lambda: os._exit(124))
    watchdog.daemon = True
    watchdog.start()
    out = threading.Lock()

    def emit(ev, **fields):
        line = json.dumps({"ev": ev, "t": time.monotonic(), **fields})
        with out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    commands = queue.Queue()

    def read_commands():
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("eof")

    threading.Thread(target=read_commands, daemon=True).start()

    def error_cb(err):
        print(f"  [{a.name} librdkafka] {err}", file=sys.stderr, flush=True)

    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "client.id": a.name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
        "check.crcs": True,
        "socket.connection.setup.timeout.ms": 10_000,
        "max.poll.interval.ms": a.max_poll_interval_ms,
        "error_cb": error_cb,
    }
    if a.group_protocol == "classic":
        conf.update({"partition.assignment.strategy": a.strategy, "session.timeout.ms": a.session_timeout_ms,
                     "heartbeat.interval.ms": a.heartbeat_ms})
    else:
        # KIP-848: librdkafka refuses the strategy, session timeout and
        # heartbeat interval here; the broker's apply.
        conf["group.protocol"] = "consumer"
        if a.assignor:
            conf["group.remote.assignor"] = a.assignor
    if a.instance_id:
        conf["group.instance.id"] = a.instance_id
    if a.auto_commit_ms:
        conf.update({"enable.auto.commit": True, "enable.auto.offset.store": True,
                     "auto.commit.interval.ms": a.auto_commit_ms})
    consumer = Consumer(conf)
    assigned = set()
    positions = {}  # partition -> offset after the last record read

    def commit(parts, why):
        offsets = [TopicPartition(a.topic, p, positions[p]) for p in sorted(parts) if p in positions]
        if not offsets:
            emit("committed", offsets={}, why=why)
            return
        try:
            result = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            emit("commit-failed", error=str(e.args[0]), why=why)
            return
        errors = [f"{tp.partition}: {tp.error}" for tp in result if tp.error]
        if errors:
            emit("commit-failed", error="; ".join(errors), why=why)
        else:
            emit("committed", offsets={str(tp.partition): tp.offset for tp in result}, why=why)

    def on_assign(consumer, parts):
        nonlocal assigned
        got = {tp.partition for tp in parts}
        # Cooperative-sticky and the consumer protocol assign incrementally.
        incremental = "cooperative" in a.strategy or a.group_protocol == "consumer"
        assigned = assigned | got if incremental else got
        emit("assign", parts=sorted(got), assigned=sorted(assigned), member_id=consumer.memberid())

    def on_revoke(consumer, parts, kind="revoke"):
        nonlocal assigned
        gone = {tp.partition for tp in parts}
        if a.commit_on_revoke and kind == "revoke":
            commit(gone, "revoke")
        assigned = assigned - gone
        for p in gone:
            positions.pop(p, None)
        emit(kind, parts=sorted(gone), assigned=sorted(assigned))

    consumer.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke,
                       on_lost=lambda consumer, parts: on_revoke(consumer, parts, "lost"))
    emit("subscribed")
    while True:
        try:
            command = commands.get_nowait()
        except queue.Empty:
            command = None
        if command == "commit":
            commit(set(assigned), "command")
        elif command == "close":
            consumer.close()
            emit("closed")
            os._exit(0)
        elif command == "eof":
            os._exit(3)
        recs = []
        for m in consumer.consume(1000, 0.1):
            if m.error() is not None:
                emit("error", error=str(m.error()))
                continue
            positions[m.partition()] = m.offset() + 1
            recs.append([m.partition(), m.offset(), c.seq_of(m.headers())])
        if recs:
            emit("recs", recs=recs)


# --------------------------------------------------------------------------
# The test's side of a member

class Member:
    """A member process: what it reported so far, and commands to it."""

    # The script whose `member` subcommand runs the member process.
    script = __file__

    def __init__(self, args, name, group, topic, **options):
        self.name = name
        cmd = [sys.executable, os.path.abspath(self.script), "member", "--bootstrap", args.bootstrap, "--group", group,
               "--topic", topic, "--name", name, "--timeout", str(args.timeout)]
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                cmd.append(flag)
            elif value not in (None, False):
                cmd += [flag, str(value)]
        self.lock = threading.Lock()
        self.events = []  # every event but "recs", each with "reads": how many records were read before it
        self.got = []  # (partition, offset, seq) in the order read
        self.assigned = set()
        self.member_id = None
        self.killed_at = None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        c.on_exit(self.kill)
        threading.Thread(target=self._read, daemon=True, name=f"member-{name}").start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                print(f"  [{self.name}] {line.rstrip()}", file=sys.stderr, flush=True)
                continue
            with self.lock:
                if ev["ev"] == "recs":
                    self.got.extend(tuple(r) for r in ev["recs"])
                    continue
                ev["reads"] = len(self.got)
                self.events.append(ev)
                if ev["ev"] in ("assign", "revoke", "lost"):
                    self.assigned = set(ev["assigned"])
                if ev["ev"] == "assign":
                    self.member_id = ev["member_id"]
            if ev["ev"] in ("error", "commit-failed"):
                print(f"  [{self.name}] {ev}", file=sys.stderr, flush=True)

    def of(self, *kinds):
        with self.lock:
            return [e for e in self.events if e["ev"] in kinds]

    def rebalances(self):
        """Rebalance callbacks so far (assign, revoke, lost)."""
        return len(self.of("assign", "revoke", "lost"))

    def reads(self):
        with self.lock:
            return list(self.got)

    def read_to(self):
        """partition -> the offset after the last record read."""
        ends = {}
        for p, o, _ in self.reads():
            ends[p] = max(ends.get(p, 0), o + 1)
        return ends

    def send(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def commit(self, timeout=TIMEOUT):
        """Commits the offsets after the records read on its partitions;
        returns {partition: offset} as the broker acknowledged them."""
        before = len(self.of("committed", "commit-failed"))
        self.send("commit")
        ev = c.wait_until(lambda: self.of("committed", "commit-failed")[before:], timeout,
                          f"{self.name}'s commit")[0]
        c.check(ev["ev"] == "committed", f"{self.name}: commit failed: {ev.get('error')}")
        return {int(p): o for p, o in ev["offsets"].items()}

    def last_commit(self):
        done = [e for e in self.of("committed") if e["offsets"]]
        return {int(p): o for p, o in done[-1]["offsets"].items()} if done else {}

    def close(self, timeout=TIMEOUT):
        self.send("close")
        c.wait_until(lambda: self.of("closed"), timeout, f"{self.name} to close")
        self.proc.wait(10)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            if self.killed_at is None:
                self.killed_at = time.monotonic()


def produce(args, topic, count, seed, partitions, seq_base=0):
    records, partition_of = c.group_records(count, seed, partitions, seq_base)
    return c.cf_produce(args.bootstrap, topic, records, partition_of=partition_of)


def describe(admin, group):
    return admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(TIMEOUT + 5)


def described_assignments(desc):
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions} for m in desc.members}


def listed(admin):
    result = admin.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT + 5)
    c.check(not result.errors, f"list_consumer_groups errors: {result.errors}")
    return {g.group_id: g for g in result.valid}


def committed(args, group, topic, partitions):
    """OffsetFetch through a consumer of the group that does not join it."""
    consumer = c.cf_consumer(args.bootstrap, **{"group.id": group})
    try:
        from confluent_kafka import TopicPartition
        result = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=TIMEOUT)
    finally:
        consumer.close()
    errors = [f"{tp.partition}: {tp.error}" for tp in result if tp.error]
    c.check(not errors, f"committed() for group {group}: errors {errors}")
    return {tp.partition: tp.offset for tp in result}


# --------------------------------------------------------------------------
# Cases

def case_spread(args):
    from confluent_kafka import ConsumerGroupState
    topic = group = "grp-spread"
    c.cf_create_topic(args.bootstrap, topic, 6)
    admin = c.cf_admin(args.bootstrap)
    members = [Member(args, f"spread-{i}", group, topic) for i in range(3)]
    took = c.wait_stable(members, 6)
    sizes = {m.name: sorted(m.assigned) for m in members}
    c.check(all(len(parts) == 2 for parts in sizes.values()), f"3 members over 6 partitions, assigned {sizes}")
    acked = produce(args, topic, 6000, seed=101, partitions=6)
    c.wait_consumed(members, acked)
    _, readers_of, _ = c.check_group_stream("spread", c.reads_of(members), acked)
    for p in range(6):
        owner = {m.name for m in members if p in m.assigned}
        c.check(readers_of.get(p) == owner, f"partition {p}: read by {sorted(readers_of.get(p, []))}, "
                                            f"assigned to {sorted(owner)}")
    desc = describe(admin, group)
    c.check(desc.state == ConsumerGroupState.STABLE, f"DescribeGroups state {desc.state}, expected STABLE")
    reported = {m.member_id: m.assigned for m in members}
    c.check(described_assignments(desc) == reported,
            f"DescribeGroups assignments {described_assignments(desc)}, members report {reported}")
    c.check({m.client_id for m in desc.members} == {m.name for m in members},
            f"DescribeGroups client ids {[m.client_id for m in desc.members]}")
    c.check(not desc.is_simple_consumer_group, "DescribeGroups: a subscribing group described as simple")
    c.check(desc.partition_assignor in ("range", "roundrobin"), f"DescribeGroups protocol {desc.partition_assignor!r}")
    assignor = desc.partition_assignor
    groups = listed(admin)
    c.check(group in groups and groups[group].state == ConsumerGroupState.STABLE,
            f"ListGroups: {group} missing or not STABLE: { {g: str(v.state) for g, v in groups.items()} }")
    for m in members:
        m.close()
    c.wait_until(lambda: describe(admin, group).state == ConsumerGroupState.EMPTY, 10,
                 "DescribeGroups to say EMPTY after every member left")
    desc = describe(admin, group)
    c.check(not desc.members, f"EMPTY group with {len(desc.members)} members")
    c.log(f"spread: 3 members settled in {took:.1f}s with 2 partitions each ({assignor}); "
          f"6000 records read once each, each partition by its one owner; DescribeGroups/ListGroups Stable, "
          f"Empty after LeaveGroup")


def case_member_loss(args):
    topic = group = "grp-loss"
    c.cf_create_topic(args.bootstrap, topic, 6)
    opts = dict(session_timeout_ms=6000, heartbeat_ms=1000)
    members = [Member(args, f"loss-{i}", group, topic, **opts) for i in range(3)]
    c.wait_stable(members, 6)
    victim, survivors = members[1], [members[0], members[2]]
    acked = produce(args, topic, 1200, seed=201, partitions=6)
    c.wait_consumed(members, acked, what="phase A")
    for m in members:
        m.commit()
    victim_parts = set(victim.assigned)
    last_commit = victim.last_commit()
    c.check(set(last_commit) == victim_parts, f"victim committed {last_commit}, owns {sorted(victim_parts)}")
    acked.update(produce(args, topic, 1200, seed=202, partitions=6, seq_base=1200))
    c.wait_consumed(members, acked, what="phase B")
    for m in survivors:
        m.commit()  # the victim does not commit what it read in phase B
    victim_read = victim.read_to()
    uncommitted = sum(victim_read[p] - last_commit[p] for p in victim_parts)
    c.check(uncommitted > 0, "the victim has nothing uncommitted; the test proves nothing")
    killed = time.monotonic()
    victim.kill()
    c.wait_stable(survivors, 6, what="the survivors")
    took = time.monotonic() - killed - QUIET_SECONDS
    desc = describe(c.cf_admin(args.bootstrap), group)
    c.check(sorted(m.member_id for m in desc.members) == sorted(m.member_id for m in survivors),
            f"DescribeGroups after the takeover: members {[m.member_id for m in desc.members]}, "
            f"survivors {[m.member_id for m in survivors]}")
    acked.update(produce(args, topic, 1200, seed=203, partitions=6, seq_base=2400))
    c.wait_consumed(survivors + [victim], acked, what="phase C")

    def allowed(p, o, names):
        return (p in victim_parts and last_commit[p] <= o < victim_read[p] and len(names) == 2
                and victim.name in names)

    _, _, duplicates = c.check_group_stream("member loss", c.reads_of(members), acked, allowed)
    for p in victim_parts:
        first = min((o for m in survivors for q, o, _ in m.reads() if q == p), default=None)
        c.check(first == last_commit[p], f"partition {p} (the killed member's): survivors started at offset {first}, "
                                         f"its last commit was {last_commit[p]}")
    c.check(duplicates == uncommitted, f"{duplicates} duplicates, expected the {uncommitted} the victim read "
                                       f"after its last commit")
    c.log(f"member-loss: killed a member holding {sorted(victim_parts)} with {uncommitted} records read after its "
          f"last commit; survivors held all 6 partitions {took:.1f}s later (session.timeout.ms 6000), resumed at "
          f"its commits; 3600 records, nothing lost, {duplicates} duplicates, all after the last commit")


def case_idle(args):
    topic = group = "grp-idle"
    c.cf_create_topic(args.bootstrap, topic, 2)
    admin = c.cf_admin(args.bootstrap)
    members = [Member(args, f"idle-{i}", group, topic) for i in range(4)]
    took = c.wait_stable(members, 2, every_member_busy=False)
    sizes = sorted(len(m.assigned) for m in members)
    c.check(sizes == [0, 0, 1, 1], f"4 members over 2 partitions, assigned { {m.name: sorted(m.assigned) for m in members} }")
    acked = produce(args, topic, 600, seed=301, partitions=2)
    c.wait_consumed(members, acked)
    _, readers_of, _ = c.check_group_stream("idle", c.reads_of(members), acked)
    idle = [m.name for m in members if not m.assigned]
    c.check(not any(m.reads() for m in members if not m.assigned), f"idle members {idle} read records")
    desc = describe(admin, group)
    assigned = sorted(len(parts) for parts in described_assignments(desc).values())
    c.check(len(desc.members) == 4 and assigned == [0, 0, 1, 1],
            f"DescribeGroups: {len(desc.members)} members with {assigned} partitions, expected 4 with [0, 0, 1, 1]")
    c.log(f"idle: 4 members over 2 partitions settled in {took:.1f}s: two own one each, {idle} none; "
          f"600 records read once each; DescribeGroups agrees")


def case_independent(args):
    from confluent_kafka import OFFSET_INVALID
    topic = "grp-indep"
    c.cf_create_topic(args.bootstrap, topic, 6)
    a = [Member(args, f"a-{i}", "grp-indep-a", topic) for i in range(2)]
    b = [Member(args, "b-0", "grp-indep-b", topic, auto_commit_ms=200)]
    c.wait_stable(a, 6, what="group a")
    c.wait_stable(b, 6, what="group b")
    acked = produce(args, topic, 3000, seed=401, partitions=6)
    c.wait_consumed(a, acked, what="group a's records")
    c.wait_consumed(b, acked, what="group b's records")
    c.check_group_stream("group a", c.reads_of(a), acked)
    c.check_group_stream("group b", c.reads_of(b), acked)
    ends = {p: 500 for p in range(6)}
    c.wait_until(lambda: committed(args, "grp-indep-b", topic, 6) == ends, 20,
                 f"group b's auto-commits to reach {ends}")
    a_offsets = committed(args, "grp-indep-a", topic, 6)
    c.check(all(o == OFFSET_INVALID for o in a_offsets.values()), f"group a sees group b's commits: {a_offsets}")
    for m in a:
        m.commit()
    c.check(committed(args, "grp-indep-a", topic, 6) == ends,
            f"group a committed {committed(args, 'grp-indep-a', topic, 6)}")
    c.log("independent: 2-member and 1-member groups on one topic each read all 3000 records once; "
          "group b's auto-commits (every 200 ms) are not group a's, and group a's manual ones land too")


def case_persistence(args):
    from confluent_kafka import ConsumerGroupState
    c.check(args.broker_pid and args.broker_cmd, "persistence needs --broker-pid and --broker-cmd")
    broker = c.BrokerProcess(args)
    topic = group = "grp-persist"
    c.cf_create_topic(args.bootstrap, topic, 6)
    acked = produce(args, topic, 1200, seed=501, partitions=6)
    first = Member(args, "persist-1", group, topic)
    c.wait_stable([first], 6)
    c.wait_consumed([first], acked)
    commit_1 = first.commit()
    c.check(commit_1 == {p: 200 for p in range(6)}, f"first commit {commit_1}")
    first.close()
    phase_2 = produce(args, topic, 1200, seed=502, partitions=6, seq_base=1200)

    # SIGTERM: a clean stop.
    os.kill(args.broker_pid, signal.SIGTERM)
    c.wait_exited(args.broker_pid, 30, "broker after SIGTERM")
    line = broker.start()
    c.check(f"listen={args.bootstrap}" in line.split(), f"restarted broker listens elsewhere: {line}")
    after = committed(args, group, topic, 6)
    c.check(after == commit_1, f"after a SIGTERM restart the group's offsets are {after}, committed {commit_1}")
    desc = describe(c.cf_admin(args.bootstrap), group)
    c.check(desc.state == ConsumerGroupState.EMPTY,
            f"after the restart DescribeGroups says {desc.state} for a group with committed offsets "
            f"(Kafka: EMPTY)")
    second = Member(args, "persist-2", group, topic)
    c.wait_stable([second], 6)
    c.wait_consumed([second], phase_2)
    c.check_group_stream("after the SIGTERM restart", c.reads_of([second]), phase_2)  # nothing of phase 1
    commit_2 = second.commit()
    c.check(commit_2 == {p: 400 for p in range(6)}, f"second commit {commit_2}")
    second.close()
    phase_3 = produce(args, topic, 1200, seed=503, partitions=6, seq_base=2400)

    # SIGKILL: a crash; acknowledged commits must survive it too.
    broker.proc.kill()
    broker.proc.wait(30)
    broker.start()
    after = committed(args, group, topic, 6)
    c.check(after == commit_2, f"after a SIGKILL restart the group's offsets are {after}, committed {commit_2}")
    third = Member(args, "persist-3", group, topic)
    c.wait_stable([third], 6)
    c.wait_consumed([third], phase_3)
    c.check_group_stream("after the SIGKILL restart", c.reads_of([third]), phase_3)
    commit_3 = third.commit()

    # A live member through a restart: it finds the coordinator again and
    # reads on (rejoining if the broker did not keep the membership).
    callbacks = third.rebalances()
    broker.proc.send_signal(signal.SIGTERM)
    broker.proc.wait(30)
    broker.start()
    phase_4 = produce(args, topic, 1200, seed=504, partitions=6, seq_base=3600)
    c.wait_consumed([third], phase_4, what="phase 4, by the member that lived through the restart")
    live = dict(phase_3)
    live.update(phase_4)
    c.check_group_stream("through a restart", c.reads_of([third]), live)  # nothing re-read
    c.check(committed(args, group, topic, 6) == commit_3, "the offsets changed across the third restart")
    callbacks = third.rebalances() - callbacks
    third.close()
    c.log(f"persistence: committed offsets survived a SIGTERM and a SIGKILL restart; each new member resumed at "
          f"them and re-read nothing committed (1200 records per phase); a live member lived through a third "
          f"restart ({callbacks} rebalance callbacks there) and read on without re-reading")


def case_static(args):
    from confluent_kafka import ConsumerGroupState
    topic = group = "grp-static"
    c.cf_create_topic(args.bootstrap, topic, 6)
    admin = c.cf_admin(args.bootstrap)
    opts = dict(session_timeout_ms=10_000, heartbeat_ms=500)
    static = Member(args, "static-1", group, topic, instance_id="static-a", **opts)
    other = Member(args, "dynamic-1", group, topic, **opts)
    c.wait_stable([static, other], 6)
    acked = produce(args, topic, 1200, seed=601, partitions=6)
    c.wait_consumed([static, other], acked)
    static.commit()
    other.commit()
    static_parts = set(static.assigned)
    other_callbacks = other.rebalances()
    old_id = static.member_id
    static.close()  # librdkafka sends no LeaveGroup for a static member
    closed = time.monotonic()
    back = Member(args, "static-1-again", group, topic, instance_id="static-a", **opts)
    c.wait_until(lambda: back.of("assign"), 30, "the static member, restarted, to be assigned")
    rejoined = time.monotonic() - closed
    c.check(set(back.assigned) == static_parts,
            f"the restarted static member got {sorted(back.assigned)}, had {sorted(static_parts)}")
    time.sleep(3)  # 6 heartbeats of the other member
    c.check(other.rebalances() == other_callbacks,
            f"the other member saw a rebalance when the static member came back: "
            f"{[(e['ev'], e['parts']) for e in other.of('assign', 'revoke', 'lost')]}")
    desc = describe(admin, group)
    instances = {m.group_instance_id: {tp.partition for tp in m.assignment.topic_partitions} for m in desc.members}
    c.check(desc.state == ConsumerGroupState.STABLE and len(desc.members) == 2 and
            instances.get("static-a") == static_parts,
            f"DescribeGroups: state {desc.state}, members by instance id {instances}")
    acked.update(produce(args, topic, 1200, seed=602, partitions=6, seq_base=1200))
    c.wait_consumed([static, back, other], acked)
    c.check_group_stream("static", c.reads_of([static, back, other]), acked)

    # Gone for good: its partitions move once the session times out.
    back.commit()
    other.commit()  # eager: the other member gets its own partitions again, from their commits
    back.close()
    gone = time.monotonic()
    c.wait_until(lambda: len(other.assigned) == 6, 40, "the other member to get every partition after the static "
                                                        "member's session timed out")
    moved = time.monotonic() - gone
    acked.update(produce(args, topic, 600, seed=603, partitions=6, seq_base=2400))
    c.wait_consumed([static, back, other], acked)
    c.check_group_stream("static", c.reads_of([static, back, other]), acked)
    c.log(f"static: member {old_id[:20]}... closed without leaving and came back as {back.member_id[:20]}... in "
          f"{rejoined:.1f}s with the same partitions {sorted(static_parts)}; the other member saw no rebalance; "
          f"when it stayed away, its partitions moved after {moved:.1f}s (session.timeout.ms 10000); "
          f"3000 records read once each")


class PacedProducer(threading.Thread):
    """Produces at `rate` records per second until stopped, at most `limit`
    records (records keep flowing during a rebalance, however long it takes)."""

    def __init__(self, args, topic, rate, limit, seed, partitions, seq_base=0):
        super().__init__(daemon=True, name="producer")
        self.records, self.partition_of = c.group_records(limit, seed, partitions, seq_base)
        self.args, self.topic, self.rate = args, topic, rate
        self.acked, self.errors = {}, []
        self.stop = threading.Event()
        self.done = threading.Event()

    def run(self):
        from confluent_kafka import Producer
        producer = Producer(c.cf_config(self.args.bootstrap, **{"linger.ms": 5, "acks": "all"}))
        try:
            started = time.monotonic()
            for i, r in enumerate(self.records):
                if self.stop.is_set():
                    break
                delay = started + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

                def delivered(err, msg, seq=r.seq):
                    if err is None:
                        self.acked[seq] = (msg.partition(), msg.offset())
                    else:
                        self.errors.append((seq, str(err)))

                producer.produce(self.topic, key=r.key, value=r.value, headers=r.headers, timestamp=r.timestamp,
                                 partition=self.partition_of(r), on_delivery=delivered)
                producer.poll(0)
            left = producer.flush(30)
            if left:
                self.errors.append((None, f"{left} undelivered"))
        except BaseException as e:
            self.errors.append((None, repr(e)))
        finally:
            self.done.set()


def case_cooperative(args):
    topic = group = "grp-coop"
    c.cf_create_topic(args.bootstrap, topic, 6)
    opts = dict(strategy="cooperative-sticky", commit_on_revoke=True, heartbeat_ms=500)
    first = Member(args, "coop-1", group, topic, **opts)
    c.wait_stable([first], 6)
    initial = first.of("assign")
    c.check(len(initial) == 1 and initial[0]["parts"] == list(range(6)), f"first member's assignments {initial}")
    producer = PacedProducer(args, topic, rate=300, limit=30_000, seed=701, partitions=6)
    producer.start()
    c.wait_until(lambda: len(producer.acked) >= 600 or producer.done.is_set(), 30, "600 records produced")
    second = Member(args, "coop-2", group, topic, **opts)
    took = c.wait_stable([first, second], 6)
    time.sleep(2)  # records keep flowing after the rebalance too
    producer.stop.set()
    c.check(not producer.errors, f"producer errors: {producer.errors[:3]}")
    revokes = first.of("revoke", "lost")
    moved = set()
    for e in revokes:
        c.check(e["ev"] == "revoke" and len(e["parts"]) < 6,
                f"first member: {e['ev']} of {e['parts']}: a cooperative rebalance revokes only what moves")
        moved |= set(e["parts"])
    c.check(moved and moved == set(second.assigned) and len(moved) == 3,
            f"first member gave up {sorted(moved)}, second got {sorted(second.assigned)}")
    c.check(set(first.assigned) == set(range(6)) - moved, f"first member keeps {sorted(first.assigned)}")
    c.check(not [e for e in first.of("assign")[1:] if e["parts"]], f"first member was assigned again: "
                                                                   f"{first.of('assign')}")
    kept = set(first.assigned)
    c.wait_until(producer.done.is_set, 60, "the producer")
    c.check(not producer.errors, f"producer errors: {producer.errors[:3]}")
    produced = len(producer.acked)
    c.wait_consumed([first, second], producer.acked)
    revoked_at = revokes[-1]["reads"]
    after = {p for p, _, _ in first.reads()[revoked_at:]}
    c.check(kept <= after, f"the first member read nothing more of {sorted(kept - after)} after the rebalance")
    c.check_group_stream("cooperative", c.reads_of([first, second]), producer.acked)

    second.close()  # revokes (and commits) its partitions, then leaves
    c.wait_until(lambda: len(first.assigned) == 6, JOIN_SECONDS, "the first member to get every partition back")
    back = first.of("assign")[-1]["parts"]
    c.check(set(back) == moved, f"after the second member left, the first was assigned {back}, expected "
                                f"{sorted(moved)} (incrementally)")
    acked = dict(producer.acked)
    acked.update(produce(args, topic, 600, seed=702, partitions=6, seq_base=100_000))
    c.wait_consumed([first, second], acked)
    c.check_group_stream("cooperative", c.reads_of([first, second]), acked)
    c.log(f"cooperative: a second member joined mid-stream and took {sorted(moved)} incrementally ({took:.1f}s); "
          f"the first kept {sorted(kept)} and kept reading them; it got {sorted(moved)} back when the second "
          f"left; {produced + 600} records read once each")


def case_unknown_group(args):
    from confluent_kafka import (ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, KafkaException,
                                 OFFSET_INVALID, TopicPartition)
    topic = "grp-unknown"
    c.cf_create_topic(args.bootstrap, topic, 6)
    group = f"grp-never-{os.getpid()}"
    offsets = committed(args, group, topic, 6)
    c.check(all(o == OFFSET_INVALID for o in offsets.values()), f"committed() on a fresh group: {offsets}")
    admin = c.cf_admin(args.bootstrap)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(6)])
    result = admin.list_consumer_group_offsets([request], request_timeout=TIMEOUT)[group].result(TIMEOUT + 5)
    bad = [(tp.partition, tp.offset, str(tp.error)) for tp in result.topic_partitions
           if tp.error or tp.offset != OFFSET_INVALID]
    c.check(not bad and len(result.topic_partitions) == 6, f"list_consumer_group_offsets of a fresh group: {bad}")
    try:
        desc = describe(admin, group)
        c.check(desc.state == ConsumerGroupState.DEAD and not desc.members,
                f"DescribeGroups of an unknown group: state {desc.state}, {len(desc.members)} members")
        described = str(desc.state)
    except KafkaException as e:
        c.check(e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, f"DescribeGroups of an unknown group: {e}")
        described = "GROUP_ID_NOT_FOUND"
    try:
        admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(TIMEOUT + 5)
        c.fail("DeleteGroups of an unknown group succeeded, Kafka answers GROUP_ID_NOT_FOUND")
    except KafkaException as e:
        c.check(e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, f"DeleteGroups of an unknown group: {e}")
    c.log(f"unknown-group: committed() and list_consumer_group_offsets give OFFSET_INVALID for all 6 partitions "
          f"without error; DescribeGroups: {described}; DeleteGroups: GROUP_ID_NOT_FOUND")


def case_admin(args):
    from confluent_kafka import (ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, KafkaException,
                                 OFFSET_INVALID, TopicPartition)
    topic = group = "grp-admin"
    c.cf_create_topic(args.bootstrap, topic, 6)
    admin = c.cf_admin(args.bootstrap)
    member = Member(args, "admin-0", group, topic)
    c.wait_stable([member], 6)
    acked = produce(args, topic, 600, seed=801, partitions=6)
    c.wait_consumed([member], acked)
    member.commit()
    groups = listed(admin)
    listing = groups.get(group)
    c.check(listing and listing.state == ConsumerGroupState.STABLE and not listing.is_simple_consumer_group,
            f"ListGroups: {group}: " + (f"state {listing.state} (ListGroups v4+ carries it), "
                                        f"simple {listing.is_simple_consumer_group}"
                                        if listing else f"missing from {sorted(groups)}"))
    desc = describe(admin, group)
    c.check(desc.state == ConsumerGroupState.STABLE and len(desc.members) == 1, f"DescribeGroups: {desc}")
    m = desc.members[0]
    c.check(m.client_id == "admin-0" and m.host and m.member_id == member.member_id,
            f"DescribeGroups member: client id {m.client_id!r}, host {m.host!r}, id {m.member_id!r}")
    c.check({tp.partition for tp in m.assignment.topic_partitions} == set(range(6)),
            f"DescribeGroups assignment {m.assignment.topic_partitions}")
    c.check(desc.partition_assignor in ("range", "roundrobin"), f"DescribeGroups protocol {desc.partition_assignor!r}")

    def offsets():
        request = ConsumerGroupTopicPartitions(group)  # every committed partition
        result = admin.list_consumer_group_offsets([request], request_timeout=TIMEOUT)[group].result(TIMEOUT + 5)
        errors = [str(tp.error) for tp in result.topic_partitions if tp.error]
        c.check(not errors, f"list_consumer_group_offsets errors {errors}")
        return {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == topic}

    c.check(offsets() == {p: 100 for p in range(6)}, f"list_consumer_group_offsets: {offsets()}")

    def delete(name):
        return admin.delete_consumer_groups([name], request_timeout=TIMEOUT)[name].result(TIMEOUT + 5)

    try:
        delete(group)
        c.fail("DeleteGroups of a group with a member succeeded; Kafka answers NON_EMPTY_GROUP")
    except KafkaException as e:
        c.check(e.args[0].code() == KafkaError.NON_EMPTY_GROUP, f"DeleteGroups of a group with a member: {e}")
    member.close()
    c.wait_until(lambda: describe(admin, group).state == ConsumerGroupState.EMPTY, 10,
                 "DescribeGroups to say EMPTY after the member left")
    alter = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)])
    result = admin.alter_consumer_group_offsets([alter], request_timeout=TIMEOUT)[group].result(TIMEOUT + 5)
    c.check(not [tp for tp in result.topic_partitions if tp.error], f"alter_consumer_group_offsets: {result}")
    expected = {p: 100 for p in range(6)}
    expected.update({0: 5, 1: 7})
    c.check(offsets() == expected, f"after alter_consumer_group_offsets: {offsets()}, expected {expected}")
    delete(group)
    c.check(group not in listed(admin), "the deleted group is still listed")
    after = committed(args, group, topic, 6)
    c.check(all(o == OFFSET_INVALID for o in after.values()), f"a deleted group's offsets: {after}")

    # A simple consumer group: assign() and commit without joining (generation -1).
    simple = "grp-admin-simple"
    consumer = c.cf_consumer(args.bootstrap, **{"group.id": simple})
    try:
        result = consumer.commit(offsets=[TopicPartition(topic, p, 10 + p) for p in range(6)], asynchronous=False)
        c.check(not [tp for tp in result if tp.error], f"simple consumer commit: {result}")
    finally:
        consumer.close()
    c.check(committed(args, simple, topic, 6) == {p: 10 + p for p in range(6)},
            f"simple consumer's commits read back as {committed(args, simple, topic, 6)}")
    groups = listed(admin)
    c.check(simple in groups, f"ListGroups lacks the simple group {simple}: {sorted(groups)}")
    c.log("admin: ListGroups, DescribeGroups (member, host, client id, assignment, protocol), "
          "list_consumer_group_offsets, NON_EMPTY_GROUP, alter_consumer_group_offsets, DeleteGroups; "
          "a simple consumer group's commits")


CASES = {
    "spread": case_spread,
    "member-loss": case_member_loss,
    "idle": case_idle,
    "independent": case_independent,
    "persistence": case_persistence,
    "static": case_static,
    "cooperative": case_cooperative,
    "unknown-group": case_unknown_group,
    "admin": case_admin,
}


def extra(parser):
    parser.add_argument("--case", action="append", choices=list(CASES), help="run only this case (repeatable)")


def main():
    args = c.parse_args(__doc__, extra)
    names = args.case or [name for name in CASES if name != "persistence" or args.broker_cmd]
    c.run_cases(names, lambda name: CASES[name](args))
    c.log(f"groups (confluent-kafka): {', '.join(names)} passed")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "member":
        member_main()
    else:
        c.run(main)
