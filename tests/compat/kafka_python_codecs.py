"""kafka-python: keyed records with headers in every codec it supports
(gzip built in; snappy, lz4, zstd through python-snappy, lz4, zstandard),
read back byte-exact with assign() by kafka-python and by confluent-kafka;
per-partition order; key -> partition stability, also against
confluent-kafka's Java-compatible murmur2 partitioner."""

import time

import common as c


def extra(parser):
    parser.add_argument("--per-codec", type=int, default=6_000, help="records per codec")


def main():
    args = c.parse_args(__doc__, extra)
    import kafka
    import kafka.codec as codec_support
    c.log(f"kafka-python {kafka.__version__}")
    supported = {"none": True, "gzip": codec_support.has_gzip(), "snappy": codec_support.has_snappy(),
                 "lz4": codec_support.has_lz4(), "zstd": codec_support.has_zstd()}
    missing = [k for k, ok in supported.items() if not ok]
    c.check(not missing, f"kafka-python lacks codec support for {missing}: install python-snappy, lz4 and "
                         f"zstandard (bash scripts/test.sh does)")
    ts_base = c.now_ms() - 3_600_000
    placements = {}
    total = [0]

    def records():
        # kafka-python refuses null header values on send.
        return c.make_records(args.per_codec, seed=4321, ts_base=ts_base, null_header_values=False)

    def case(codec):
        topic = f"kp-codec-{codec}"
        c.cf_create_topic(args.bootstrap, topic)
        c.check_spread(args.data_dir, topic)
        recs = records()
        by_seq = {r.seq: r for r in recs}
        started = time.monotonic()
        acked = c.kp_produce(args.bootstrap, topic, recs, compression_type=None if codec == "none" else codec)
        produced_s = time.monotonic() - started
        ends = c.ends_from_acks(acked)
        started = time.monotonic()
        consumed = c.kp_read_all(args.bootstrap, topic, ends)
        read_s = time.monotonic() - started
        read, _ = c.compare_exact(f"kafka-python {codec}", recs, acked, consumed)
        c.check(read == len(recs), f"{codec}: read {read}, produced {len(recs)}")
        # The other client reads the same log.
        cross = c.cf_read_all(args.bootstrap, topic, ends)
        cross_read, _ = c.compare_exact(f"kafka-python {codec} read by confluent-kafka", recs, acked, cross)
        placements[codec] = c.check_key_stability(by_seq, {s: p for s, (p, _) in acked.items()},
                                                  f"kafka-python {codec}")
        total[0] += read
        stored = c.check_stored_codec(args.data_dir, topic, codec, f"kafka-python {codec}")
        c.log(f"{codec:>6}: produced {len(recs)} ({produced_s:.1f}s), read back {read} byte-exact by kafka-python "
              f"({read_s:.1f}s) and {cross_read} by confluent-kafka, partitions "
              f"{[ends[p] for p in range(c.PARTITIONS)]}, {stored}")

    def stability():
        first = placements.get("none")
        c.check(first, "no placement from the uncompressed case to compare with")
        for codec, placement in placements.items():
            c.check(placement == first, f"kafka-python: key -> partition differs between the none and {codec} "
                                        f"producers")
        # Both clients' murmur2 partitioners must place every key alike.
        topic = "kp-murmur2"
        c.cf_create_topic(args.bootstrap, topic)
        recs = records()
        by_seq = {r.seq: r for r in recs}
        acked = c.cf_produce(args.bootstrap, topic, recs, {"partitioner": "murmur2_random"})
        cf_placement = c.check_key_stability(by_seq, {s: p for s, (p, _) in acked.items()}, "confluent-kafka murmur2")
        consumed = c.kp_read_all(args.bootstrap, topic, c.ends_from_acks(acked))
        c.compare_exact("confluent-kafka murmur2 read by kafka-python", recs, acked, consumed)
        for key, p in first.items():
            c.check(cf_placement.get(key) == p, f"key {c.short(key)}: kafka-python partition {p}, confluent-kafka "
                                                f"murmur2_random partition {cf_placement.get(key)}")
        c.log(f"placement: identical across {len(placements)} kafka-python producers; {len(first)} keys placed "
              f"identically by kafka-python and confluent-kafka murmur2_random")

    c.run_cases(c.CODECS + ["placement"], lambda name: stability() if name == "placement" else case(name))
    c.log(f"kafka-python: {total[0]} records read back byte-exact over {len(c.CODECS)} codecs")


if __name__ == "__main__":
    c.run(main)
