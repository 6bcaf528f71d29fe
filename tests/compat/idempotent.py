"""Idempotent production under forced retries, with no duplicates.

Retries are forced deterministically: the broker is paused with SIGSTOP
while a batch of records is being sent, longer than the producer's request
timeout. The requests already sit in the broker's socket buffers, so the
broker processes them when it resumes (SIGCONT); the producer meanwhile
times them out, reconnects and sends them again with the same producer id
and sequence numbers. The broker must append each batch once: every record
is read back exactly once, in order, byte-exact.

Two checks keep the test honest: the producer must report retries (librdkafka
statistics, kafka-python's retry warnings), and a control run of the same
scenario without idempotence must leave duplicates in the log, proving the
broker did receive batches twice."""

import json
import logging
import os
import signal
import time

import common as c


def extra(parser):
    parser.add_argument("--client", choices=["confluent-kafka", "kafka-python"], required=True)
    parser.add_argument("--records", type=int, default=4_000)
    parser.add_argument("--pause", type=float, default=5.0, help="seconds the broker stays stopped")


def pause(pid, seconds, during):
    """SIGSTOPs the broker, runs during(), keeps it stopped for `seconds` in
    all, then SIGCONTs it."""
    os.kill(pid, signal.SIGSTOP)
    c.on_exit(lambda: os.kill(pid, signal.SIGCONT))
    started = time.monotonic()
    try:
        c.wait_until(lambda: c.proc_state(pid) == "T", 5, "the broker to stop")
        during()
        left = seconds - (time.monotonic() - started)
        if left > 0:
            time.sleep(left)
    finally:
        os.kill(pid, signal.SIGCONT)


def confluent(args, topic, warmup, paused, idempotent):
    from confluent_kafka import Producer
    stats = []
    producer = Producer(c.cf_config(args.bootstrap, **{
        "enable.idempotence": idempotent,
        "acks": "all",
        "linger.ms": 5,
        # librdkafka times out a ProduceRequest after min(message timeout,
        # socket.timeout.ms): shorter than the pause, so in-flight requests
        # time out and are retried on a new connection.
        "socket.timeout.ms": 2000,
        "message.timeout.ms": 60_000,  # but records do not
        "retry.backoff.ms": 200,
        "statistics.interval.ms": 200,
        "stats_cb": lambda s: stats.append(json.loads(s)),
        # COMPAT_RDKAFKA_DEBUG=broker,msg,protocol,eos shows the retries.
        **({"debug": os.environ["COMPAT_RDKAFKA_DEBUG"]} if os.environ.get("COMPAT_RDKAFKA_DEBUG") else {}),
    }))
    acked, errors = {}, []

    def produce(records):
        for r in records:
            def cb(err, msg, seq=r.seq):
                if err is None:
                    acked[seq] = (msg.partition(), msg.offset())
                else:
                    errors.append((seq, str(err)))
            while True:
                try:
                    producer.produce(topic, key=r.key, value=r.value, headers=r.headers, timestamp=r.timestamp,
                                     on_delivery=cb)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)

    produce(warmup)
    c.check(producer.flush(30) == 0, "warm-up records not delivered")
    c.check(not errors, f"warm-up delivery errors (InitProducerId / idempotent Produce): {errors[:3]}")

    def send_while_stopped():
        produce(paused)
        # Let librdkafka send the batches (they sit in the broker's socket buffer).
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            producer.poll(0.05)

    pause(args.broker_pid, args.pause, send_while_stopped)
    left = producer.flush(60)
    producer.poll(0.5)  # a last statistics callback
    c.check(left == 0, f"{left} records undelivered 60s after the broker resumed")
    c.check(not errors, f"{len(errors)} delivery errors, first: {errors[:3]}")
    # Broker handles are replaced when the client re-bootstraps, so take
    # the largest count any statistics snapshot showed.
    retries = max((sum(b.get("txretries", 0) for b in s.get("brokers", {}).values()) for s in stats), default=0)
    timeouts = max((sum(b.get("req_timeouts", 0) for b in s.get("brokers", {}).values()) for s in stats), default=0)
    producer_id = stats[-1].get("eos", {}).get("producer_id") if stats else None
    c.check(retries > 0 or timeouts > 0,
            f"the producer did not retry (txretries {retries}, req_timeouts {timeouts}): the pause forced nothing")
    producer.flush(5)
    return acked, f"{retries} request retries, {timeouts} request timeouts, producer id {producer_id}"


def kafka_python(args, topic, warmup, paused, idempotent):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, enable_idempotence=idempotent, acks="all", linger_ms=5,
                             request_timeout_ms=2000, delivery_timeout_ms=60_000, retry_backoff_ms=200)
    c.on_exit(lambda: producer.close(0))
    retries = RetryCount()
    logging.getLogger("kafka.producer.sender").addHandler(retries)
    futures = []

    def produce(records):
        for r in records:
            futures.append((r.seq, producer.send(topic, key=r.key, value=r.value, headers=r.headers,
                                                 timestamp_ms=r.timestamp)))

    produce(warmup)
    producer.flush(30)
    for seq, f in futures:
        try:
            f.get(1)
        except Exception as e:
            c.fail(f"warm-up record {seq} failed (InitProducerId / idempotent Produce): {e!r}")
    retries.count = 0

    def send_while_stopped():
        produce(paused)
        time.sleep(0.5)

    pause(args.broker_pid, args.pause, send_while_stopped)
    producer.flush(60)
    acked = {}
    for seq, f in futures:
        try:
            md = f.get(1)
        except Exception as e:
            c.fail(f"record {seq} failed: {e!r}")
        acked[seq] = (md.partition, md.offset)
    logging.getLogger("kafka.producer.sender").removeHandler(retries)
    c.check(retries.count > 0, "the producer did not retry: the pause forced nothing")
    producer.close(5)
    return acked, f"{retries.count} partition batches retried"


class RetryCount(logging.Handler):
    """Counts kafka-python's "... retrying (N attempts left)" warnings, one per
    partition batch sent again (its metrics only keep rates)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record):
        if "retrying" in record.getMessage():
            self.count += 1


def main():
    args = c.parse_args(__doc__, extra)
    c.check(args.broker_pid, "needs --broker-pid")
    short = "cf" if args.client == "confluent-kafka" else "kp"
    run = confluent if args.client == "confluent-kafka" else kafka_python
    records = c.make_records(args.records + 500, seed=55, ts_base=c.now_ms() - 3_600_000,
                             null_header_values=args.client == "confluent-kafka")
    warmup, paused = records[:500], records[500:]

    # Control: the same run without idempotence must leave duplicates, which
    # shows the pause really made the broker receive batches twice.
    topic = f"idem-{short}-control"
    c.cf_create_topic(args.bootstrap, topic)
    acked, retried = run(args, topic, warmup, paused, idempotent=False)
    consumed = c.cf_read_all(args.bootstrap, topic, high_watermarks(args.bootstrap, topic))
    total, duplicates = c.compare_exact(f"non-idempotent {args.client}", records, acked, consumed,
                                        allow_duplicates=True)
    c.check(duplicates > 0, f"control run without idempotence left no duplicates ({retried}): the broker never saw "
                            f"a batch twice, so this test could not show deduplication")
    c.log(f"control, not idempotent: {len(records)} records produced, {total} stored ({duplicates} duplicates; "
          f"{retried})")

    topic = f"idem-{short}"
    c.cf_create_topic(args.bootstrap, topic)
    acked, retried = run(args, topic, warmup, paused, idempotent=True)
    consumed = c.cf_read_all(args.bootstrap, topic, high_watermarks(args.bootstrap, topic))
    total, duplicates = c.compare_exact(f"idempotent {args.client}", records, acked, consumed)
    c.check(total == len(records), f"read {total} records, produced {len(records)}")
    c.log(f"idempotent {args.client}: {len(records)} records ({len(paused)} sent while the broker was stopped "
          f"{args.pause:.0f}s; {retried}), stored and read back exactly once, in order, byte-exact")


def high_watermarks(bootstrap, topic):
    from confluent_kafka import TopicPartition
    consumer = c.cf_consumer(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(c.PARTITIONS)}
    finally:
        consumer.close()


if __name__ == "__main__":
    c.run(main)
