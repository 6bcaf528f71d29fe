"""offsets_for_times (ListOffsets by timestamp) through confluent-kafka and
kafka-python, plus earliest/latest/max-timestamp through confluent-kafka's
AdminClient.list_offsets and kafka-python's beginning/end_offsets.

Records are produced with explicit, non-decreasing CreateTime timestamps, two
records per timestamp (so "the earliest offset whose timestamp is >= T" has
to pick the first of a pair), over many batches per partition, uncompressed
and compressed. Expected answers follow Kafka's definition exactly."""

import random

import common as c

PAIRS = 750  # records per partition: 2 * PAIRS + 1 (the last timestamp is unique)


def ts_of(base, partition, i):
    return base + partition + (i // 2) * 10


def make(base, per_partition, topic_seed):
    rng = random.Random(topic_seed)
    records = []
    for i in range(per_partition):
        for p in range(c.PARTITIONS):
            seq = p * per_partition + i
            # Compressible, so that compressing producers do compress.
            value = b"%010d|" % seq + b"ringstream " * rng.randrange(5, 30) + rng.randbytes(8)
            records.append(c.Rec(seq, b"k%d" % i, value, [("seq", b"%d" % seq)], ts_of(base, p, i), p))
    return records


def expected(base, per_partition, partition, target):
    """Kafka: the earliest offset whose timestamp is >= target, or None."""
    for i in range(per_partition):
        if ts_of(base, partition, i) >= target:
            return i, ts_of(base, partition, i)
    return None


def queries(base, per_partition, rng):
    last = per_partition - 1
    qs = [("before the first", lambda p: base - 100_000),
          ("first", lambda p: ts_of(base, p, 0)),
          ("last", lambda p: ts_of(base, p, last)),
          ("after the last", lambda p: ts_of(base, p, last) + 1)]
    for _ in range(12):
        j = rng.randrange(per_partition)
        qs.append((f"exact ts of #{j}", lambda p, j=j: ts_of(base, p, j)))
        qs.append((f"ts of #{j} + 1", lambda p, j=j: ts_of(base, p, j) + 1))
        qs.append((f"ts of #{j} - 1", lambda p, j=j: ts_of(base, p, j) - 1))
    return qs


def main():
    args = c.parse_args(__doc__)
    from confluent_kafka import TopicPartition as CfTp
    from confluent_kafka.admin import OffsetSpec
    from kafka import TopicPartition as KpTp
    base = c.now_ms() - 3_600_000
    per_partition = 2 * PAIRS + 1
    cases = [("oft-none", "confluent-kafka", "none", per_partition),
             ("oft-gzip", "confluent-kafka", "gzip", per_partition),
             ("oft-kp-zstd", "kafka-python", "zstd", 301)]
    failures = []
    cf_consumer = c.cf_consumer(args.bootstrap)
    kp_consumer = c.kp_consumer(args.bootstrap)
    admin = c.cf_admin(args.bootstrap)
    c.on_exit(cf_consumer.close)
    c.on_exit(kp_consumer.close)
    for n, (topic, producer, codec, count) in enumerate(cases):
        c.cf_create_topic(args.bootstrap, topic)
        records = make(base, count, n)
        if producer == "confluent-kafka":
            # Flushing every few hundred records gives each partition many batches.
            acked = c.cf_produce(args.bootstrap, topic, records, {"compression.type": codec},
                                 partition_of=lambda r: r.partition, flush_every=600)
        else:
            acked = kp_produce_to_partitions(args.bootstrap, topic, records, codec)
        for r in records:
            c.check(acked[r.seq] == (r.partition, r.seq - r.partition * count),
                    f"{topic}: seq {r.seq} acknowledged at {acked[r.seq]}")
        rng = random.Random(99 + n)
        qs = queries(base, count, rng)
        checked = 0
        for label, target_of in qs:
            targets = {p: target_of(p) for p in range(c.PARTITIONS)}
            want = {p: expected(base, count, p, targets[p]) for p in targets}
            # confluent-kafka: Consumer.offsets_for_times
            got = cf_consumer.offsets_for_times([CfTp(topic, p, t) for p, t in targets.items()], timeout=10)
            for tp in got:
                w = want[tp.partition]
                if tp.error is not None:
                    failures.append(f"{topic} confluent-kafka offsets_for_times({label}) p{tp.partition}: {tp.error}")
                elif tp.offset != (w[0] if w else -1):
                    failures.append(f"{topic} confluent-kafka offsets_for_times({label}, ts={targets[tp.partition]}) "
                                    f"p{tp.partition}: offset {tp.offset}, expected {w[0] if w else -1}")
                checked += 1
            # kafka-python: KafkaConsumer.offsets_for_times
            got = kp_consumer.offsets_for_times({KpTp(topic, p): t for p, t in targets.items()})
            for tp, result in got.items():
                w = want[tp.partition]
                actual = None if result is None else (result.offset, result.timestamp)
                if actual != w:
                    failures.append(f"{topic} kafka-python offsets_for_times({label}, ts={targets[tp.partition]}) "
                                    f"p{tp.partition}: (offset, timestamp) {actual}, expected {w}")
                checked += 1
        # Earliest, latest, max timestamp, and one by-timestamp lookup through the admin API.
        results = admin_list_offsets(admin, topic, OffsetSpec, count, base)
        for label, p, actual, want in results:
            if actual != want:
                failures.append(f"{topic} AdminClient.list_offsets({label}) p{p}: {actual}, expected {want}")
            checked += 1
        tps = [KpTp(topic, p) for p in range(c.PARTITIONS)]
        begins, ends = kp_consumer.beginning_offsets(tps), kp_consumer.end_offsets(tps)
        for tp in tps:
            if (begins[tp], ends[tp]) != (0, count):
                failures.append(f"{topic} kafka-python beginning/end_offsets p{tp.partition}: "
                                f"({begins[tp]}, {ends[tp]}), expected (0, {count})")
            checked += 2
        stored = c.check_stored_codec(args.data_dir, topic, codec, topic)
        c.log(f"{topic}: {len(records)} records by {producer} ({codec}, {stored}), {checked} offset lookups checked")
    if failures:
        shown = {}
        for f in failures:
            group = " ".join(f.split(" ")[:3]).split("(")[0]
            shown[group] = shown.get(group, 0) + 1
            if shown[group] <= 6:
                print("  mismatch:", f)
        c.fail(f"{len(failures)} offset lookups differ from Kafka's answers: "
               + ", ".join(f"{g}: {n}" for g, n in shown.items()) + " (first 6 of each above)")
    c.log("offsets_for_times: all lookups match for confluent-kafka and kafka-python")


def kp_produce_to_partitions(bootstrap, topic, records, codec):
    producer = c.kp_producer(bootstrap, compression_type=codec)
    futures = []
    try:
        for n, r in enumerate(records):
            futures.append((r.seq, producer.send(topic, key=r.key, value=r.value, headers=r.headers,
                                                 partition=r.partition, timestamp_ms=r.timestamp)))
            if (n + 1) % 300 == 0:
                producer.flush(30)
        producer.flush(30)
        acked = {}
        for seq, f in futures:
            md = f.get(timeout=1)
            acked[seq] = (md.partition, md.offset)
    finally:
        producer.close(timeout=5)
    return acked


def admin_list_offsets(admin, topic, OffsetSpec, count, base):
    from confluent_kafka import TopicPartition as CfTp
    last = count - 1
    kinds = [
        ("earliest", lambda p: OffsetSpec.earliest(), lambda p: 0),
        ("latest", lambda p: OffsetSpec.latest(), lambda p: count),
        ("max_timestamp", lambda p: OffsetSpec.max_timestamp(), lambda p: (last, ts_of(base, p, last))),
        ("for_timestamp(#101)", lambda p: OffsetSpec.for_timestamp(ts_of(base, p, 101)),
         lambda p: (100, ts_of(base, p, 100))),
    ]
    out = []
    for label, spec_of, want_of in kinds:
        request = {CfTp(topic, p): spec_of(p) for p in range(c.PARTITIONS)}
        futures = admin.list_offsets(request, request_timeout=10)
        for tp, future in futures.items():
            want = want_of(tp.partition)
            try:
                info = future.result(15)
                actual = (info.offset, info.timestamp) if isinstance(want, tuple) else info.offset
            except Exception as e:
                actual = f"error {e}"
            out.append((label, tp.partition, actual, want))
    return out


if __name__ == "__main__":
    c.run(main)
