"""confluent-kafka (current librdkafka): keyed records with headers in every
compression codec, read back byte-exact with assign(); per-partition order;
key -> partition stability within a topic and across producers; the
codec really used (stored batches) and the spread over both shards."""

import time

import common as c


def extra(parser):
    parser.add_argument("--per-codec", type=int, default=20_000, help="records per codec")


def main():
    args = c.parse_args(__doc__, extra)
    import confluent_kafka
    c.log(f"confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}")
    ts_base = c.now_ms() - 3_600_000
    placements = {}
    totals = {"produced": 0, "read": 0}

    def case(codec):
        topic = f"cf-codec-{codec}"
        c.cf_create_topic(args.bootstrap, topic)
        c.check_spread(args.data_dir, topic)
        # Same seed for every codec: the same keys, so placements must agree.
        records = c.make_records(args.per_codec, seed=1234, ts_base=ts_base)
        by_seq = {r.seq: r for r in records}
        started = time.monotonic()
        acked = c.cf_produce(args.bootstrap, topic, records, {"compression.type": codec})
        produced_s = time.monotonic() - started
        ends = c.ends_from_acks(acked)
        check_watermarks(args.bootstrap, topic, ends)
        started = time.monotonic()
        consumed = c.cf_read_all(args.bootstrap, topic, ends)
        read_s = time.monotonic() - started
        read, _ = c.compare_exact(f"confluent-kafka {codec}", records, acked, consumed)
        c.check(read == len(records), f"{codec}: read {read} records, produced {len(records)}")
        placement = c.check_key_stability(by_seq, {s: p for s, (p, _) in acked.items()}, f"confluent-kafka {codec}")
        placements[codec] = placement
        used = sorted(p for p, e in ends.items() if e > 0)
        c.check(used == list(range(c.PARTITIONS)), f"{codec}: records landed only in partitions {used}")
        totals["produced"] += len(records)
        totals["read"] += read
        c.log(f"{codec:>6}: produced {len(records)} ({produced_s:.1f}s), read back {read} byte-exact "
              f"({read_s:.1f}s), partitions {[ends[p] for p in range(c.PARTITIONS)]}, "
              f"{len(placement)} keys each in one partition")
        stored = c.check_stored_codec(args.data_dir, topic, codec, f"confluent-kafka {codec}")
        c.log(f"{codec:>6}: {stored}")

    def stability(_):
        first = placements.get(c.CODECS[0])
        for codec, placement in placements.items():
            c.check(placement == first, f"key -> partition differs between the {c.CODECS[0]} and {codec} producers")
        c.log(f"key placement identical across {len(placements)} producers")

    c.run_cases(c.CODECS + ["placement across producers"],
                lambda name: stability(name) if name.startswith("placement") else case(name))
    c.log(f"confluent-kafka: {totals['produced']} produced, {totals['read']} read back byte-exact "
          f"over {len(c.CODECS)} codecs")


def check_watermarks(bootstrap, topic, ends):
    from confluent_kafka import TopicPartition
    consumer = c.cf_consumer(bootstrap)
    try:
        for p, end in ends.items():
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            c.check((low, high) == (0, end), f"{topic}/{p}: watermarks ({low}, {high}), expected (0, {end})")
    finally:
        consumer.close()


if __name__ == "__main__":
    c.run(main)
