"""Admin APIs through kafka-python's KafkaAdminClient (issue 11):
DeleteRecords (log start moves, earliest offset follows, fetching below it
is out of range, -1 means the high watermark, past it is refused),
DescribeLogDirs (partition sizes grow with what was produced and shrink
with DeleteRecords), DescribeProducers (the idempotent producer that wrote),
DescribeTopicPartitions (pagination by cursor and partition limit),
ElectLeaders, AlterPartitionReassignments and ListPartitionReassignments
(one broker: nothing to elect or move)."""

import common as c

TIMEOUT_MS = 15000


def main():
    args = c.parse_args(__doc__)
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import (OffsetOutOfRangeError, UnknownTopicOrPartitionError, InvalidReplicationAssignmentError,
                              NoReassignmentInProgressError)
    import kafka.errors as Errors

    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=TIMEOUT_MS)
    c.on_exit(admin.close)

    def create(topic, partitions, configs=None):
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs or {})])
        c.wait_until(lambda: len(c.cf_partitions(c.cf_admin(args.bootstrap), topic)) == partitions, 15, topic)

    def earliest_latest(topic, partition):
        consumer = KafkaConsumer(bootstrap_servers=args.bootstrap)
        try:
            tp = TopicPartition(topic, partition)
            return consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
        finally:
            consumer.close()

    # --- DeleteRecords + DescribeLogDirs -----------------------------------
    topic = "kpa-delete"
    create(topic, 2, {"segment.bytes": "16384"})  # small segments, so that whole ones go
    records = c.make_records(400, seed=11, ts_base=c.now_ms(), nkeys=50)
    c.cf_produce(args.bootstrap, topic, records, partition_of=lambda r: 0, flush_every=20)
    start, end = earliest_latest(topic, 0)
    c.check((start, end) == (0, 400), f"before DeleteRecords: [{start}, {end})")

    def sizes():
        dirs = admin.describe_log_dirs(topic_partitions={topic: [0, 1]})
        out = {}
        for broker in dirs:
            for log_dir in broker["log_dirs"] if "log_dirs" in broker else broker.get("results", []):
                for t in log_dir["topics"]:
                    for p in t["partitions"]:
                        out[(t["name"], p["partition_index"])] = p["partition_size"]
        return out, dirs

    before, raw = sizes()
    c.log(f"describe_log_dirs: {raw}")
    c.check(before.get((topic, 0), 0) > 0 and (topic, 1) in before, f"log dir sizes: {before}")
    c.check(before[(topic, 1)] == 0, f"{topic}/1 holds nothing yet: {before}")

    tp0 = TopicPartition(topic, 0)
    result = admin.delete_records({tp0: 150}, timeout_ms=TIMEOUT_MS)
    c.log(f"delete_records 150: {result}")
    low = result[tp0]["low_watermark"] if isinstance(result[tp0], dict) else result[tp0].low_watermark
    c.check(low == 150, f"low watermark {low}, expected 150")
    start, end = earliest_latest(topic, 0)
    c.check((start, end) == (150, 400), f"after DeleteRecords 150: [{start}, {end})")
    # Fetching below the log start: OFFSET_OUT_OF_RANGE (auto.offset.reset=none).
    consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, auto_offset_reset="none", enable_auto_commit=False)
    consumer.assign([tp0])
    consumer.seek(tp0, 10)
    try:
        got = consumer.poll(timeout_ms=5000)
        c.fail(f"fetch at 10 below the log start 150 returned {sum(len(v) for v in got.values())} records")
    except OffsetOutOfRangeError as e:
        c.log(f"fetch below the log start: {e!r}")
    consumer.seek(tp0, 150)
    first = None
    for _ in range(20):
        polled = consumer.poll(timeout_ms=1000)
        batch = polled.get(tp0, [])
        if batch:
            first = batch[0].offset
            break
    consumer.close()
    c.check(first is not None and first >= 150 - 20, f"fetch from 150: first offset {first}")
    # Past the high watermark: refused, nothing moves.
    try:
        bad = admin.delete_records({tp0: 401}, timeout_ms=TIMEOUT_MS)
        c.fail(f"DeleteRecords past the high watermark succeeded: {bad}")
    except OffsetOutOfRangeError as e:
        c.log(f"delete_records 401: {e!r}")
    # -1: up to the high watermark.
    result = admin.delete_records({tp0: -1}, timeout_ms=TIMEOUT_MS)
    low = result[tp0]["low_watermark"] if isinstance(result[tp0], dict) else result[tp0].low_watermark
    c.check(low == 400, f"DeleteRecords -1: low watermark {low}, expected the high watermark 400")
    c.check(earliest_latest(topic, 0) == (400, 400), f"after -1: {earliest_latest(topic, 0)}")
    after, _ = sizes()
    c.check(after[(topic, 0)] < before[(topic, 0)], f"size after deleting segments: {before} -> {after}")
    try:
        admin.delete_records({TopicPartition(topic, 7): 0}, timeout_ms=TIMEOUT_MS)
        c.fail("DeleteRecords on a missing partition succeeded")
    except (UnknownTopicOrPartitionError, Errors.KafkaError) as e:
        c.log(f"delete_records on {topic}/7: {e!r}")

    # --- DescribeProducers --------------------------------------------------
    ptopic = "kpa-producers"
    create(ptopic, 1)
    precords = c.make_records(30, seed=12, ts_base=c.now_ms(), nkeys=5)
    c.cf_produce(args.bootstrap, ptopic, precords, config={"enable.idempotence": True},
                 partition_of=lambda r: 0, flush_every=10)
    states = admin.describe_producers([TopicPartition(ptopic, 0)])
    c.log(f"describe_producers: {states}")
    state = states[TopicPartition(ptopic, 0)]
    producers = state.active_producers if hasattr(state, "active_producers") else state["active_producers"]
    c.check(len(producers) == 1, f"one idempotent producer expected: {producers}")
    p = producers[0]
    get = (lambda k: getattr(p, k)) if hasattr(p, "producer_id") else (lambda k: p[k])
    c.check(get("producer_id") >= 0 and get("producer_epoch") >= 0, f"producer {p}")
    c.check(get("last_sequence") == 29, f"30 records from sequence 0: last sequence {get('last_sequence')}")
    c.check(get("last_timestamp") >= precords[-1].timestamp, f"last timestamp {get('last_timestamp')}")
    none = admin.describe_producers([TopicPartition(topic, 1)])[TopicPartition(topic, 1)]
    none_list = none.active_producers if hasattr(none, "active_producers") else none["active_producers"]
    c.check(len(none_list) == 0, f"no producers on {topic}/1: {none_list}")

    # --- DescribeTopicPartitions -------------------------------------------
    create("kpa-dtp-a", 3)
    create("kpa-dtp-b", 2)
    page = admin.describe_topic_partitions(["kpa-dtp-b", "kpa-dtp-a", "kpa-nope"], response_partition_limit=2)
    c.log(f"describe_topic_partitions page 1: {page}")
    names = [t["name"] for t in page["topics"]]
    c.check(names[0] == "kpa-dtp-a", f"sorted by name: {names}")
    c.check([p["partition_index"] for p in page["topics"][0]["partitions"]] == [0, 1], f"page 1: {page}")
    c.check(page["next_cursor"] == {"topic_name": "kpa-dtp-a", "partition_index": 2} or
            (page["next_cursor"]["topic_name"], page["next_cursor"]["partition_index"]) == ("kpa-dtp-a", 2),
            f"cursor after 2: {page['next_cursor']}")
    seen = [(t["name"], p["partition_index"]) for t in page["topics"] for p in t["partitions"]]
    cursor = page["next_cursor"]
    pages = 1
    errors = {}
    while cursor is not None:
        page = admin.describe_topic_partitions(["kpa-dtp-b", "kpa-dtp-a", "kpa-nope"], response_partition_limit=2,
                                               cursor=cursor)
        pages += 1
        for t in page["topics"]:
            if t["error_code"] != 0:
                errors[t["name"]] = t["error_code"]
            for p in t["partitions"]:
                c.check(p["leader_id"] == 0 and list(p["replica_nodes"]) == [0] and list(p["isr_nodes"]) == [0], f"{p}")
                seen.append((t["name"], p["partition_index"]))
        cursor = page["next_cursor"]
        c.check(pages < 10, "pagination does not end")
    expected = [("kpa-dtp-a", i) for i in range(3)] + [("kpa-dtp-b", i) for i in range(2)]
    c.check(seen == expected, f"pages gave {seen}, expected {expected}")
    c.check(pages == 3, f"{pages} pages of 2 for 5 partitions")
    c.check(errors.get("kpa-nope") == UnknownTopicOrPartitionError.errno, f"unknown topic: {errors}")

    # --- ElectLeaders -------------------------------------------------------
    response = admin.elect_leaders(0, topic_partitions={topic: [0, 1]}, raise_errors=False)
    c.log(f"elect_leaders: {response}")
    codes = {(r[0], p[0]): p[1] for r in response.replica_election_results for p in r[1]}
    c.check(codes == {(topic, 0): 84, (topic, 1): 84}, f"ELECTION_NOT_NEEDED expected: {codes}")
    response = admin.elect_leaders(0, topic_partitions={"kpa-nope": [0]}, raise_errors=False)
    codes = {(r[0], p[0]): p[1] for r in response.replica_election_results for p in r[1]}
    c.check(codes == {("kpa-nope", 0): 3}, f"UNKNOWN_TOPIC_OR_PARTITION expected: {codes}")

    # --- Partition reassignments ---------------------------------------------
    tp1 = TopicPartition(topic, 1)
    result = admin.alter_partition_reassignments({tp0: [0]})
    c.log(f"alter_partition_reassignments [0]: {result}")
    c.check(result.get(tp0) is None, f"reassigning to broker 0 alone is a no-op success: {result}")
    result = admin.alter_partition_reassignments({tp0: [0, 1], tp1: None, TopicPartition("kpa-nope", 0): [0]})
    c.log(f"alter_partition_reassignments bad: {result}")
    c.check(result.get(tp0) is InvalidReplicationAssignmentError, f"broker 1 does not exist: {result}")
    c.check(result.get(tp1) is NoReassignmentInProgressError, f"cancel with none in progress: {result}")
    c.check(result.get(TopicPartition("kpa-nope", 0)) is UnknownTopicOrPartitionError, f"unknown topic: {result}")
    listed = admin.list_partition_reassignments()
    c.check(listed == {}, f"no reassignments in progress: {listed}")
    listed = admin.list_partition_reassignments({topic: [0, 1]})
    c.check(listed == {}, f"no reassignments in progress for {topic}: {listed}")
    # Nothing moved: the data is where it was.
    c.check(earliest_latest(topic, 0) == (400, 400), "partition 0 unchanged")
    c.log("admin_apis_kafka_python: DeleteRecords, DescribeLogDirs, DescribeProducers, DescribeTopicPartitions, "
          "ElectLeaders, Alter/ListPartitionReassignments checked")


if __name__ == "__main__":
    c.run(main)
