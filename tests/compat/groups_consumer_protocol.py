"""Consumer groups through confluent-kafka (librdkafka) with the KIP-848
consumer protocol (`group.protocol=consumer`): ConsumerGroupHeartbeat, the
broker's assignors, OffsetCommit with member epochs, ConsumerGroupDescribe
and ListGroups v5 (type "consumer").

The broker must run with short consumer-group timings (tests/compat.rs
passes `group.consumer.heartbeat.interval.ms=500` and
`group.consumer.session.timeout.ms=6000`): with KIP-848 the client sets
neither, the broker's apply. --session-timeout-ms tells this script the
broker's value (for its deadlines and report only).

Cases (--case NAME, repeatable; default all, persistence only with --broker-cmd):
  spread       3 members, 6 partitions, auto commits: each member gets 2,
               disjoint and covering; every record read once, by the
               partition's one owner, in offset order; the auto-commits
               land; ConsumerGroupDescribe, ListGroups (type consumer) and
               `ringstream group describe|list` show the group; Empty after
               every member left
  member-loss  3 members, manual commits; one is SIGKILLed (no leave
               heartbeat): within the broker's session timeout its
               partitions move to the survivors, who keep their own
               (nothing revoked from them); nothing lost; the only
               duplicates are what it read after its last commit
  scale-out    while records flow, a 2nd and then a 3rd member join; every
               member's assign/revoke callbacks (incremental with KIP-848)
               are logged with timestamps: a partition is assigned to a
               member only after its previous owner's revoke callback, so
               never owned by two at once; members commit in on_revoke, so
               nothing is lost and nothing read twice
  persistence  members commit, the broker is stopped (SIGTERM) and started
               again: membership is durable, so the members carry on with
               their partitions and read on from their commits, re-reading
               nothing committed; the same through a SIGKILL; a new member
               resumes at the commits too
  regex        a regex subscription reads the matching topics, and one
               created later

Group members are the member processes of groups_confluent.py, started with
`--group-protocol consumer`, so that one can be SIGKILLed; they report
assignments (with time.monotonic(), which is system-wide, so events of
different members compare), records read and commits as JSON lines on
stdout, and take commands (commit, close) on stdin."""

import os
import re
import signal
import subprocess
import threading
import time

import common as c
import groups_confluent
from groups_confluent import PacedProducer, committed, describe, listed, produce

QUIET_SECONDS = c.GROUP_QUIET_SECONDS

# --------------------------------------------------------------------------
# The test's side of a member

class Member(groups_confluent.Member):
    """A member process (the interface common.wait_stable / wait_consumed /
    reads_of expect) with group.protocol=consumer."""

    def __init__(self, args, name, group, topic, **options):
        super().__init__(args, name, group, topic, group_protocol="consumer", **options)


def callbacks(members):
    """Every member's assign/revoke/lost callbacks, for failure messages."""
    return {m.name: [(e["ev"], e["parts"]) for e in m.of("assign", "revoke", "lost")] for m in members}


def ownership(members):
    """partition -> [(start, end, member name)]: from the assign callback
    that gave it to the revoke/lost callback that took it (end None: still
    owned; a killed member owns until it was killed)."""
    spans = {}
    for m in members:
        held = {}
        for e in m.of("assign", "revoke", "lost"):
            for p in e["parts"]:
                if e["ev"] == "assign":
                    c.check(p not in held, f"{m.name} was assigned partition {p} twice without a revoke between: "
                                           f"{callbacks([m])[m.name]}")
                    held[p] = e["t"]
                else:
                    c.check(p in held, f"{m.name}: {e['ev']} of partition {p}, which it did not own: "
                                       f"{callbacks([m])[m.name]}")
                    spans.setdefault(p, []).append((held.pop(p), e["t"], m.name))
        for p, start in held.items():
            spans.setdefault(p, []).append((start, m.killed_at, m.name))
    for p in spans:
        spans[p].sort(key=lambda s: s[0])
    return spans


def check_single_owner(what, members):
    """No partition owned by two members at once: each assign callback
    comes after the previous owner's revoke (or lost) callback. Returns the
    ownership spans."""
    spans = ownership(members)
    for p, owners in sorted(spans.items()):
        for before, after in zip(owners, owners[1:]):
            c.check(before[1] is not None and before[1] < after[0],
                    f"{what}: partition {p} assigned to {after[2]} at t={after[0]:.3f} while {before[2]} still owned "
                    f"it (assigned t={before[0]:.3f}, released "
                    f"{'never' if before[1] is None else f't={before[1]:.3f}'}); ownership {owners}")
    return spans


def cli(args, *command):
    """Runs `ringstream <command> -b <bootstrap>`; returns its stdout."""
    c.check(args.ringstream, "this case needs --ringstream (the broker binary, for its group tools)")
    done = subprocess.run([args.ringstream, *command, "-b", args.bootstrap], capture_output=True, text=True,
                          timeout=30)
    c.check(done.returncode == 0, f"`ringstream {' '.join(command)}` failed ({done.returncode}): {done.stderr}")
    return done.stdout


def table(text, first_header):
    """Rows (lists of cells) of the table in `text` whose header starts
    with `first_header` (cells are separated by two or more spaces)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(first_header):
            rows = []
            for row in lines[i + 1:]:
                if not row.strip():
                    break
                rows.append(re.split(r"\s{2,}", row.strip()))
            return rows
    c.fail(f"no table headed {first_header} in:\n{text}")


# --------------------------------------------------------------------------
# Cases

def case_spread(args):
    from confluent_kafka import ConsumerGroupState, ConsumerGroupType
    topic = group = "kip848-spread"
    c.cf_create_topic(args.bootstrap, topic, 6)
    admin = c.cf_admin(args.bootstrap)
    members = [Member(args, f"spread-{i}", group, topic, auto_commit_ms=200) for i in range(3)]
    took = c.wait_stable(members, 6)
    sizes = {m.name: sorted(m.assigned) for m in members}
    c.check(all(len(parts) == 2 for parts in sizes.values()), f"3 members over 6 partitions, assigned {sizes}")
    acked = produce(args, topic, 6000, seed=1101, partitions=6)
    c.wait_consumed(members, acked)
    _, readers_of, _ = c.check_group_stream("spread", c.reads_of(members), acked)
    for p in range(6):
        owner = {m.name for m in members if p in m.assigned}
        c.check(readers_of.get(p) == owner, f"partition {p}: read by {sorted(readers_of.get(p, []))}, "
                                            f"assigned to {sorted(owner)}")
    check_single_owner("spread", members)
    ends = {p: 1000 for p in range(6)}
    c.wait_until(lambda: committed(args, group, topic, 6) == ends, 20, f"the auto-commits to reach {ends}")

    # ConsumerGroupDescribe (librdkafka uses it for consumer groups).
    desc = describe(admin, group)
    c.check(desc.type == ConsumerGroupType.CONSUMER, f"describe_consumer_groups: type {desc.type}, expected CONSUMER")
    c.check(desc.state == ConsumerGroupState.STABLE, f"describe_consumer_groups: state {desc.state}, expected STABLE")
    reported = {m.member_id: m.assigned for m in members}
    described = {m.member_id: {tp.partition for tp in m.assignment.topic_partitions} for m in desc.members}
    c.check(described == reported, f"describe_consumer_groups assignments {described}, members report {reported}")
    c.check({m.client_id for m in desc.members} == {m.name for m in members},
            f"describe_consumer_groups client ids {[m.client_id for m in desc.members]}")
    c.check(desc.partition_assignor == "uniform", f"describe_consumer_groups assignor {desc.partition_assignor!r}")
    c.check(not desc.is_simple_consumer_group, "describe_consumer_groups: a subscribing group described as simple")

    # ListGroups v5: type consumer.
    groups = listed(admin)
    g = groups.get(group)
    c.check(g is not None and g.state == ConsumerGroupState.STABLE and g.type == ConsumerGroupType.CONSUMER,
            f"list_consumer_groups: {group}: " + (f"state {g.state}, type {g.type}" if g else
                                                  f"missing from {sorted(groups)}"))

    # The broker's own tools (DescribeGroups, ListGroups, OffsetFetch, ListOffsets).
    out = cli(args, "group", "describe", group)
    c.check(table(out, "GROUP") == [[group, "Stable", "consumer", "uniform", "3"]],
            f"`ringstream group describe`: group row {table(out, 'GROUP')}\n{out}")
    rows = table(out, "MEMBER-ID")
    shown = {r[0]: (r[2], r[4]) for r in rows}
    expected = {m.member_id: (m.name, f"{topic}:" + ",".join(str(p) for p in sorted(m.assigned))) for m in members}
    c.check(shown == expected, f"`ringstream group describe`: members {shown}, expected {expected}\n{out}")
    owner_of = {p: m.member_id for m in members for p in m.assigned}
    partitions = {int(r[1]): r for r in table(out, "TOPIC")}
    c.check(sorted(partitions) == list(range(6)) and
            all(r[2:6] == ["1000", "1000", "0", owner_of[p]] for p, r in partitions.items()),
            f"`ringstream group describe`: offsets, lag and owners per partition {partitions}\n{out}")
    listing = [r for r in table(cli(args, "group", "list"), "GROUP") if r[0] == group]
    c.check(listing == [[group, "Stable", "consumer"]], f"`ringstream group list`: {listing}")

    for m in members:
        m.close()
    c.wait_until(lambda: describe(admin, group).state == ConsumerGroupState.EMPTY, 10,
                 "describe_consumer_groups to say EMPTY after every member left")
    c.check(not describe(admin, group).members, "an EMPTY group with members")
    c.check(committed(args, group, topic, 6) == ends, "the committed offsets changed when the members left")
    c.log(f"spread: 3 members settled in {took:.1f}s with 2 partitions each (uniform): {sizes}; "
          f"6000 records read once each, each partition by its "
          f"one owner; auto-commits at the log end; ConsumerGroupDescribe, ListGroups (type consumer) and "
          f"`ringstream group describe|list` agree; Empty after the members left")


def case_member_loss(args):
    topic = group = "kip848-loss"
    c.cf_create_topic(args.bootstrap, topic, 6)
    members = [Member(args, f"loss-{i}", group, topic) for i in range(3)]
    c.wait_stable(members, 6)
    victim, survivors = members[1], [members[0], members[2]]
    acked = produce(args, topic, 1200, seed=1201, partitions=6)
    c.wait_consumed(members, acked, what="phase A")
    for m in members:
        m.commit()
    victim_parts = set(victim.assigned)
    kept = {m.name: set(m.assigned) for m in survivors}
    last_commit = victim.last_commit()
    c.check(set(last_commit) == victim_parts, f"victim committed {last_commit}, owns {sorted(victim_parts)}")
    acked.update(produce(args, topic, 1200, seed=1202, partitions=6, seq_base=1200))
    c.wait_consumed(members, acked, what="phase B")
    for m in survivors:
        m.commit()  # the victim does not commit what it read in phase B
    victim_read = victim.read_to()
    uncommitted = sum(victim_read[p] - last_commit[p] for p in victim_parts)
    c.check(uncommitted > 0, "the victim has nothing uncommitted; the test proves nothing")
    callbacks_before = {m.name: m.rebalances() for m in survivors}
    victim.kill()
    killed = victim.killed_at
    limit = args.session_timeout_ms / 1000 + 10
    c.wait_stable(survivors, 6, timeout=limit, what="the survivors")
    took = time.monotonic() - killed - QUIET_SECONDS
    # Its last heartbeat came at most one interval (500 ms) before the kill.
    c.check(args.session_timeout_ms / 1000 - 1.5 < took < args.session_timeout_ms / 1000 + 5,
            f"the survivors took the killed member's partitions {took:.1f}s after the kill, the broker's session "
            f"timeout is {args.session_timeout_ms} ms")
    for m in survivors:
        late = m.of("assign", "revoke", "lost")[callbacks_before[m.name]:]
        c.check(kept[m.name] <= set(m.assigned) and not [e for e in late if e["ev"] != "assign"],
                f"{m.name} held {sorted(kept[m.name])}; after the kill: {[(e['ev'], e['parts']) for e in late]} "
                f"(KIP-848 moves only the lost member's partitions)")
    desc = describe(c.cf_admin(args.bootstrap), group)
    c.check(sorted(m.member_id for m in desc.members) == sorted(m.member_id for m in survivors),
            f"describe_consumer_groups after the takeover: members {[m.member_id for m in desc.members]}, "
            f"survivors {[m.member_id for m in survivors]}")
    acked.update(produce(args, topic, 1200, seed=1203, partitions=6, seq_base=2400))
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
    check_single_owner("member loss", members)
    c.log(f"member-loss: killed a member holding {sorted(victim_parts)} with {uncommitted} records read after its "
          f"last commit; the survivors held all 6 partitions {took:.1f}s later (group.consumer.session.timeout.ms "
          f"{args.session_timeout_ms}), keeping their own, and resumed at its commits; 3600 records, nothing lost, "
          f"{duplicates} duplicates, all after the last commit")


def case_scale_out(args):
    topic = group = "kip848-scale"
    c.cf_create_topic(args.bootstrap, topic, 6)
    opts = dict(commit_on_revoke=True)
    first = Member(args, "scale-1", group, topic, **opts)
    c.wait_stable([first], 6)
    producer = PacedProducer(args, topic, rate=300, limit=30_000, seed=1301, partitions=6)
    producer.start()
    c.wait_until(lambda: len(producer.acked) >= 600 or producer.done.is_set(), 30, "600 records produced")
    joined = []
    members = [first]
    for n in (2, 3):
        m = Member(args, f"scale-{n}", group, topic, **opts)
        members.append(m)
        started = time.monotonic()
        c.wait_stable(members, 6)
        joined.append(time.monotonic() - started - QUIET_SECONDS)
        c.check(len(m.assigned) == 6 // n and all(len(x.assigned) in (6 // n, -(-6 // n)) for x in members),
                f"{n} members: {callbacks(members)}")
        time.sleep(1)  # records keep flowing between the joins
    producer.stop.set()
    c.wait_until(producer.done.is_set, 60, "the producer")
    c.check(not producer.errors, f"producer errors: {producer.errors[:3]}")
    produced = len(producer.acked)
    c.wait_consumed(members, producer.acked)
    commit_failures = [(m.name, e.get("error")) for m in members for e in m.of("commit-failed")]
    c.check(not commit_failures, f"commits in on_revoke failed: {commit_failures}")
    spans = check_single_owner("scale-out", members)
    c.check_group_stream("scale-out", c.reads_of(members), producer.acked)
    c.check(not [e for m in members for e in m.of("lost")], f"partitions lost in a scale-out: {callbacks(members)}")
    moves = sum(len(owners) - 1 for owners in spans.values())
    gaps = [owners[i + 1][0] - owners[i][1] for owners in spans.values() for i in range(len(owners) - 1)]
    for m in members:
        for e in m.of("assign", "revoke"):
            c.log(f"  t={e['t']:.3f} {m.name} {e['ev']} {e['parts']} -> {e['assigned']}")
    c.log(f"scale-out: a 2nd and a 3rd member joined while 300 records/s flowed (settled in "
          f"{', '.join(f'{t:.1f}s' for t in joined)}); {moves} partition moves, each assigned "
          f"{min(gaps) * 1000:.0f}-{max(gaps) * 1000:.0f} ms after its previous owner's revoke callback, never two "
          f"owners at once; {produced} records read once each (commits in on_revoke)")


def case_persistence(args):
    from confluent_kafka import ConsumerGroupState
    c.check(args.broker_pid and args.broker_cmd, "persistence needs --broker-pid and --broker-cmd")
    broker = c.BrokerProcess(args)
    topic = group = "kip848-persist"
    c.cf_create_topic(args.bootstrap, topic, 6)
    members = [Member(args, f"persist-{i}", group, topic) for i in range(2)]
    c.wait_stable(members, 6)
    acked = produce(args, topic, 1200, seed=1401, partitions=6)
    c.wait_consumed(members, acked, what="phase 1")
    commit_1 = {}
    for m in members:
        commit_1.update(m.commit())
    c.check(commit_1 == {p: 200 for p in range(6)}, f"first commits {commit_1}")
    ids = {m.name: m.member_id for m in members}
    rejoins = []

    def restart(how, stop):
        """Stops the broker with `stop` and starts it again. Membership is
        durable (the group's record in the offsets log), so the members carry
        on: the restarted broker knows them, with their epochs and
        partitions. Returns each member's callback counts from before."""
        before = {m.name: (len(m.of("lost")), len(m.of("revoke")), len(m.of("assign"))) for m in members}
        stop()
        started = time.monotonic()
        broker.start()
        admin = c.cf_admin(args.bootstrap)

        def whole():
            d = describe(admin, group)
            return d.state == ConsumerGroupState.STABLE and {x.member_id for x in d.members} == set(ids.values())
        c.wait_until(whole, 30, f"the group to be Stable with its members after the {how} restart")
        rejoins.append(time.monotonic() - started)
        return before

    def carried_on(how, before):
        now = {m.name: (len(m.of("lost")), len(m.of("revoke")), len(m.of("assign"))) for m in members}
        c.check(now == before, f"members lost, revoked or were given partitions across the {how} restart: "
                               f"callbacks before {before}, after {now}: {callbacks(members)}")

    # SIGTERM: a clean stop.
    def sigterm():
        os.kill(args.broker_pid, signal.SIGTERM)
        c.wait_exited(args.broker_pid, 30, "broker after SIGTERM")

    before = restart("SIGTERM", sigterm)
    c.check(committed(args, group, topic, 6) == commit_1, "the committed offsets changed across the SIGTERM restart")
    desc = describe(c.cf_admin(args.bootstrap), group)
    c.check(desc.state == ConsumerGroupState.STABLE and len(desc.members) == 2,
            f"after the restart: state {desc.state}, {len(desc.members)} members")
    phase_2 = produce(args, topic, 1200, seed=1402, partitions=6, seq_base=1200)
    acked.update(phase_2)
    c.wait_consumed(members, acked, what="phase 2")
    c.check_group_stream("through a SIGTERM restart", c.reads_of(members), acked)  # nothing committed re-read
    carried_on("SIGTERM", before)
    commit_2 = {}
    for m in members:
        commit_2.update(m.commit())
    c.check(commit_2 == {p: 400 for p in range(6)}, f"second commits {commit_2}")

    # SIGKILL: a crash; acknowledged commits survive it too.
    def sigkill():
        broker.proc.kill()
        broker.proc.wait(30)

    before = restart("SIGKILL", sigkill)
    c.check(committed(args, group, topic, 6) == commit_2, "the committed offsets changed across the SIGKILL restart")
    phase_3 = produce(args, topic, 1200, seed=1403, partitions=6, seq_base=2400)
    acked.update(phase_3)
    c.wait_consumed(members, acked, what="phase 3")
    c.check_group_stream("through a SIGKILL restart", c.reads_of(members), acked)
    carried_on("SIGKILL", before)
    commit_3 = {}
    for m in members:
        commit_3.update(m.commit())
    c.check(commit_3 == {p: 600 for p in range(6)}, f"third commits {commit_3}")
    for m in members:
        m.close()

    # A new member resumes at the commits.
    phase_4 = produce(args, topic, 600, seed=1404, partitions=6, seq_base=3600)
    fresh = Member(args, "persist-new", group, topic)
    c.wait_stable([fresh], 6)
    c.wait_consumed([fresh], phase_4, what="phase 4")
    c.check_group_stream("a new member after the restarts", c.reads_of([fresh]), phase_4)  # nothing of 1-3
    fresh.close()
    c.log(f"persistence: 2 members (ids {sorted(ids.values())}) kept their membership and partitions through a "
          f"SIGTERM and a SIGKILL restart (group Stable again {rejoins[0]:.1f}s and {rejoins[1]:.1f}s after the "
          f"restart began, no assign/revoke/lost callback); they read on from their commits (200, 400 per "
          f"partition), re-reading nothing committed (3600 records); a new member started at the third commits (600)")


def case_regex(args):
    """A regex subscription (SubscribedTopicRegex): two members get every
    partition of the matching topics and nothing else, and a matching topic
    created later is picked up."""
    from confluent_kafka import Consumer, Producer
    topics = ["kip848-rx-a", "kip848-rx-b", "kip848-other"]
    for t in topics:
        c.cf_create_topic(args.bootstrap, t, 2)
    producer = Producer({"bootstrap.servers": args.bootstrap})

    def produce_to(topic, count):
        for i in range(count):
            producer.produce(topic, value=f"{topic}-{i}".encode(), partition=i % 2)
        c.check(producer.flush(30) == 0, f"records to {topic} not acknowledged")

    for t in topics:
        produce_to(t, 200)
    reads = {}
    lock = threading.Lock()
    stop = threading.Event()

    def member(name):
        # KIP-848: the session timeout and heartbeat interval are the
        # broker's; the rebalance timeout (max.poll.interval.ms) is the
        # client's, set here rather than left at librdkafka's 300 s.
        consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "kip848-rx", "client.id": name,
                             "group.protocol": "consumer", "auto.offset.reset": "earliest",
                             "max.poll.interval.ms": 30_000})
        consumer.subscribe(["^kip848-rx-.*"])
        try:
            while not stop.is_set():
                m = consumer.poll(0.2)
                if m is None or m.error():
                    continue
                with lock:
                    reads.setdefault(m.value().decode(), []).append((name, m.topic()))
        finally:
            consumer.close()

    threads = [threading.Thread(target=member, args=(f"rx-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        def count(prefix):
            with lock:
                return sum(1 for v in reads if v.startswith(prefix))
        c.wait_until(lambda: count("kip848-rx-a-") == 200 and count("kip848-rx-b-") == 200, 30,
                     "both matching topics to be read")
        c.cf_create_topic(args.bootstrap, "kip848-rx-c", 2)
        produce_to("kip848-rx-c", 100)
        c.wait_until(lambda: count("kip848-rx-c-") == 100, 30, "the topic created later to be read")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    with lock:
        c.check(not any(v.startswith("kip848-other") for v in reads), "a topic not matching the regex was read")
        twice = {v: r for v, r in reads.items() if len(r) > 1}
        c.check(not twice, f"records read more than once: {list(twice.items())[:5]}")
        readers = {name for r in reads.values() for name, _ in r}
    c.log(f"regex: ^kip848-rx-.* read 200 + 200 records of the matching topics once each (members {sorted(readers)}), "
          f"none of kip848-other, and the 100 of kip848-rx-c created later")


CASES = {
    "spread": case_spread,
    "member-loss": case_member_loss,
    "scale-out": case_scale_out,
    "persistence": case_persistence,
    "regex": case_regex,
}


def extra(parser):
    parser.add_argument("--case", action="append", choices=list(CASES), help="run only this case (repeatable)")
    parser.add_argument("--ringstream", help="the ringstream binary (spread runs its group tools)")
    parser.add_argument("--session-timeout-ms", type=int, default=6000,
                        help="the broker's group.consumer.session.timeout.ms")


def main():
    args = c.parse_args(__doc__, extra)
    names = args.case or [name for name in CASES if name != "persistence" or args.broker_cmd]
    c.run_cases(names, lambda name: CASES[name](args))
    c.log(f"groups (confluent-kafka, group.protocol=consumer): {', '.join(names)} passed")


if __name__ == "__main__":
    c.run(main)
