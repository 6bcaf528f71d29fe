"""The defects client suites found (issue 11), through the real clients:
librdkafka (confluent-kafka) resets to the end after an out-of-range offset
with auto.offset.reset=latest and then receives what follows (it looped on
the null records of the error partition); a compacted topic refuses keyless
records; __consumer_offsets is listed as internal and cannot be produced to
or deleted; kafka-python's CreateTopics response carries a null message on
success; manual replica assignments."""

import time

import common as c

TIMEOUT = 15


def case_latest_reset(args):
    from confluent_kafka import TopicPartition
    topic = "cd-latest"
    c.cf_create_topic(args.bootstrap, topic, partitions=1)
    first = c.make_records(50, seed=11, ts_base=c.now_ms())
    c.cf_produce(args.bootstrap, topic, first, partition_of=lambda r: 0)
    consumer = c.cf_consumer(args.bootstrap, **{"auto.offset.reset": "latest", "fetch.wait.max.ms": 100})
    c.on_exit(consumer.close)
    # An offset far past the end: OFFSET_OUT_OF_RANGE, then reset to latest.
    # Before the fix librdkafka rejected the error response ("invalid
    # MessageSetSize -1") and retried it forever: nothing was ever delivered.
    consumer.assign([TopicPartition(topic, 0, 10_000)])
    for _ in range(20):
        c.check(consumer.poll(0.1) is None, "nothing to read before the reset")
    got = []
    deadline = time.time() + 30
    seed = 12
    while not got and time.time() < deadline:
        seed += 1
        c.cf_produce(args.bootstrap, topic, c.make_records(5, seed=seed, ts_base=c.now_ms()), partition_of=lambda r: 0)
        msg = consumer.poll(1.0)
        while msg is not None:
            c.check(msg.error() is None, f"consumer error {msg.error()}")
            got.append(msg.offset())
            msg = consumer.poll(0.2)
    c.check(len(got) >= 5, f"after the reset to the end, new records delivered; got {got}")
    c.check(got[0] >= 50 and got == list(range(got[0], got[0] + len(got))),
            f"contiguous offsets from the end (50 or later): {got}")
    c.log(f"latest-reset: out-of-range offset reset to the end; {len(got)} new records delivered from offset {got[0]}")


def case_compacted(args):
    from confluent_kafka import KafkaError, Producer
    topic = "cd-compacted"
    c.cf_create_topic(args.bootstrap, topic, partitions=1, config={"cleanup.policy": "compact"})
    # Uncompressed batches are walked in place; compressed ones are inflated
    # (bounded) to find the keys.
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        producer = Producer(c.cf_config(args.bootstrap, **{"acks": "all", "enable.idempotence": False, "retries": 0,
                                                           "compression.type": codec, "linger.ms": 50}))
        outcomes = {}

        def delivered(err, msg):
            outcomes[msg.value()] = err

        for i in range(20):
            producer.produce(topic, key=f"k{i}".encode(), value=f"keyed-{i}".encode() * 20, partition=0,
                             on_delivery=delivered)
        producer.flush(TIMEOUT)
        keyed = dict(outcomes)
        c.check(len(keyed) == 20 and all(e is None for e in keyed.values()),
                f"{codec}: keyed records are accepted: {set(keyed.values())}")
        # One batch of keyed records and one keyless (compressible values,
        # so the batch really is compressed): Kafka refuses the whole batch.
        outcomes.clear()
        for i in range(10):
            producer.produce(topic, key=f"m{i}".encode(), value=f"mixed-{i}".encode() * 20, partition=0,
                             on_delivery=delivered)
        producer.produce(topic, key=None, value=b"keyless" * 40, partition=0, on_delivery=delivered)
        producer.flush(TIMEOUT)
        codes = {e.code() if e is not None else None for e in outcomes.values()}
        c.check(len(outcomes) == 11 and codes == {KafkaError.INVALID_RECORD},
                f"{codec}: a batch with a keyless record is refused whole with INVALID_RECORD; got {codes}")
        err = outcomes[b"keyless" * 40]
    c.log(f"compacted: keyed records accepted and keyless ones refused with every codec ({err.str()})")


def case_internal(args):
    from confluent_kafka import KafkaError, KafkaException
    admin = c.cf_admin(args.bootstrap)
    md = admin.list_topics(timeout=10)
    c.check("__consumer_offsets" in md.topics, f"__consumer_offsets listed: {sorted(md.topics)}")
    c.check(len(md.topics["__consumer_offsets"].partitions) > 0, "__consumer_offsets has partitions")
    futures = admin.delete_topics(["__consumer_offsets"], request_timeout=TIMEOUT)
    try:
        futures["__consumer_offsets"].result(TIMEOUT)
        c.fail("deleting __consumer_offsets succeeded")
    except KafkaException as e:
        c.check(e.args[0].code() == KafkaError.TOPIC_EXCEPTION, f"delete refused with INVALID_TOPIC_EXCEPTION: {e}")
    # kafka-python: the internal flag, and a produce refused.
    from kafka import KafkaAdminClient
    kp_admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=10_000)
    c.on_exit(kp_admin.close)
    described = kp_admin.describe_topics(["__consumer_offsets"])
    c.check(described and described[0].get("is_internal") is True, f"kafka-python sees is_internal: {described}")
    from confluent_kafka import Producer
    producer = Producer(c.cf_config(args.bootstrap, **{"acks": "all", "enable.idempotence": False, "retries": 0}))
    outcome = []
    producer.produce("__consumer_offsets", value=b"x", partition=0, on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(TIMEOUT)
    c.check(outcome and outcome[0] is not None and outcome[0].code() == KafkaError.TOPIC_EXCEPTION,
            f"a produce to __consumer_offsets gets INVALID_TOPIC_EXCEPTION: {outcome}")
    c.log("internal: __consumer_offsets listed as internal, delete and produce refused")


def case_create_message(args):
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import InvalidReplicationAssignmentError as InvalidReplicaAssignmentError
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=10_000)
    c.on_exit(admin.close)
    response = admin.create_topics([NewTopic("cd-created", 2, 1)])
    # kafka-python 3.x answers with the decoded response as a dict.
    topics = response.get("topics") if isinstance(response, dict) else getattr(response, "topics", None)
    c.check(topics, f"a CreateTopics response: {response!r}")
    entry = topics[0]
    c.check(entry["error_code"] == 0, f"created: {entry}")
    c.check(entry["error_message"] is None, f"error_message is null on success, as Kafka sends it: {entry!r}")
    admin.create_topics([NewTopic("cd-assigned", -1, -1, replica_assignments={0: [0], 1: [0]})])
    parts = c.cf_partitions(c.cf_admin(args.bootstrap), "cd-assigned")
    c.check(len(parts) == 2, f"a manual assignment of 2 partitions: {parts}")
    try:
        admin.create_topics([NewTopic("cd-bad-assignment", -1, -1, replica_assignments={0: [7]})])
        c.fail("an assignment to broker 7 succeeded")
    except InvalidReplicaAssignmentError:
        pass
    c.log("create-message: null error message on success; manual assignment accepted, broker 7 refused")


def main():
    args = c.parse_args(__doc__)
    cases = {"latest-reset": case_latest_reset, "compacted": case_compacted, "internal": case_internal,
             "create-message": case_create_message}
    c.run_cases(list(cases), lambda name: cases[name](args))


if __name__ == "__main__":
    c.run(main)
