"""Broker restarts in the middle of a run: confluent-kafka and kafka-python
produce keyed records (acks=all) while a confluent-kafka consumer reads
along; the broker is stopped with SIGTERM and started again on the same data
dir and port, later killed with SIGKILL and started again. Nothing
acknowledged may be lost: every acknowledged record is read back byte-exact
at its acknowledged offset, the log has no gaps, each producer's records
keep their order per partition (max.in.flight 1; retries may duplicate, which
is reported, not failed), and a fresh consumer after the restarts reads the
same log the live consumer saw."""

import os
import signal
import threading
import time

import common as c

TOPIC = "restart"


def extra(parser):
    parser.add_argument("--cf-records", type=int, default=30_000)
    parser.add_argument("--kp-records", type=int, default=6_000)
    parser.add_argument("--seconds", type=float, default=12.0, help="how long producing takes (paced)")


class Producing(threading.Thread):
    def __init__(self, name, records, seconds, send):
        super().__init__(daemon=True, name=name)
        self.records, self.seconds, self.send = records, seconds, send
        self.acked, self.errors = {}, []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def ack(self, seq, partition, offset):
        with self.lock:
            self.acked[seq] = (partition, offset)

    def error(self, seq, err):
        with self.lock:
            self.errors.append((seq, err))

    def run(self):
        try:
            self.send(self)
        except BaseException as e:  # reported by the main thread
            self.error(None, repr(e))
        finally:
            self.done.set()

    def paced(self):
        """Yields the records, spread over `seconds`."""
        started = time.monotonic()
        n = len(self.records)
        for i, r in enumerate(self.records):
            due = started + self.seconds * i / n
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield r


def cf_send(bootstrap):
    def send(t):
        from confluent_kafka import Producer
        p = Producer(c.cf_config(bootstrap, **{
            "acks": "all", "linger.ms": 5, "enable.idempotence": False,
            "max.in.flight.requests.per.connection": 1,  # order kept across retries
            "message.timeout.ms": 100_000, "retry.backoff.ms": 100, "compression.type": "zstd"}))
        for r in t.paced():
            def cb(err, msg, seq=r.seq):
                if err is None:
                    t.ack(seq, msg.partition(), msg.offset())
                else:
                    t.error(seq, str(err))
            while True:
                try:
                    p.produce(TOPIC, key=r.key, value=r.value, headers=r.headers, timestamp=r.timestamp, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        left = p.flush(100)
        if left:
            t.error(None, f"{left} records undelivered after flush")
    return send


def kp_send(bootstrap):
    def send(t):
        producer = c.kp_producer(bootstrap, max_in_flight_requests_per_connection=1, retries=1_000_000,
                                 delivery_timeout_ms=100_000, request_timeout_ms=10_000, compression_type="gzip")
        try:
            for r in t.paced():
                future = producer.send(TOPIC, key=r.key, value=r.value, headers=r.headers, timestamp_ms=r.timestamp)
                future.add_callback(lambda md, seq=r.seq: t.ack(seq, md.partition, md.offset))
                future.add_errback(lambda e, seq=r.seq: t.error(seq, repr(e)))
            producer.flush(100)
        finally:
            producer.close(10)
    return send


class Reading(threading.Thread):
    """A confluent-kafka consumer reading all partitions along, through the restarts."""

    def __init__(self, bootstrap):
        super().__init__(daemon=True, name="consumer")
        self.bootstrap = bootstrap
        self.got = {p: [] for p in range(c.PARTITIONS)}
        self.stop = threading.Event()
        self.errors = []

    def positions(self):
        return {p: len(v) for p, v in self.got.items()}

    def run(self):
        from confluent_kafka import KafkaError, TopicPartition, TIMESTAMP_CREATE_TIME
        consumer = c.cf_consumer(self.bootstrap, **{"fetch.wait.max.ms": 100})
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(c.PARTITIONS)])
        try:
            while not self.stop.is_set():
                for m in consumer.consume(1000, 0.2):
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            self.errors.append(str(err))
                        continue
                    ts_type, ts = m.timestamp()
                    self.got[m.partition()].append(c.Got(m.partition(), m.offset(), m.key(), m.value(), m.headers(),
                                                         c.CREATE_TIME if ts_type == TIMESTAMP_CREATE_TIME else ts_type,
                                                         ts))
        finally:
            consumer.close()


def main():
    args = c.parse_args(__doc__, extra)
    c.check(args.broker_pid and args.broker_cmd, "needs --broker-pid and --broker-cmd")
    broker = c.BrokerProcess(args)
    c.cf_create_topic(args.bootstrap, TOPIC)
    c.check_spread(args.data_dir, TOPIC)
    ts_base = c.now_ms() - 3_600_000
    cf_records = c.make_records(args.cf_records, seed=77, ts_base=ts_base)
    kp_records = c.make_records(args.kp_records, seed=78, ts_base=ts_base, seq_base=1_000_000,
                                null_header_values=False)
    producers = [Producing("confluent-kafka", cf_records, args.seconds, cf_send(args.bootstrap)),
                 Producing("kafka-python", kp_records, args.seconds, kp_send(args.bootstrap))]
    reader = Reading(args.bootstrap)
    reader.start()
    for p in producers:
        p.start()
    cf = producers[0]

    def acked_share():
        return len(cf.acked) / len(cf_records)

    # Restart 1: SIGTERM (clean stop), same data dir and port.
    c.wait_until(lambda: acked_share() >= 1 / 3 or cf.done.is_set(), 60, "a third of the records acknowledged")
    c.check(not cf.done.is_set(), "producing finished before the first restart; raise --seconds")
    acked_before = len(cf.acked)
    stopped = time.monotonic()
    os.kill(args.broker_pid, signal.SIGTERM)
    c.wait_exited(args.broker_pid, 30, "broker after SIGTERM")
    line = broker.start()
    c.log(f"restart 1: SIGTERM after {acked_before} acknowledged; back ({line}) after "
          f"{time.monotonic() - stopped:.1f}s")
    c.check(f"listen={args.bootstrap}" in line.split(), f"restarted broker listens elsewhere: {line}")

    # Restart 2: SIGKILL (crash), same data dir and port.
    c.wait_until(lambda: acked_share() >= 2 / 3 or cf.done.is_set(), 90, "two thirds of the records acknowledged")
    c.check(not cf.done.is_set(), "producing finished before the second restart; raise --seconds")
    acked_before = len(cf.acked)
    stopped = time.monotonic()
    first = broker.proc
    first.kill()
    first.wait(30)
    line = broker.start()
    c.log(f"restart 2: SIGKILL after {acked_before} acknowledged; back ({line}) after "
          f"{time.monotonic() - stopped:.1f}s")

    for p in producers:
        c.wait_until(p.done.is_set, 110, f"{p.name} to finish producing")
    for p in producers:
        c.check(not p.errors, f"{p.name}: {len(p.errors)} records failed, first: {p.errors[:3]}")
        c.check(len(p.acked) == len(p.records), f"{p.name}: {len(p.acked)} of {len(p.records)} acknowledged")

    # Read to the end of the log as it is now.
    ends = high_watermarks(args.bootstrap)
    c.wait_until(lambda: all(reader.positions()[p] >= ends[p] for p in ends), 60,
                 f"the live consumer to reach {ends} (at {reader.positions()})")
    reader.stop.set()
    reader.join(10)
    c.check(not reader.errors, f"consumer errors: {reader.errors[:5]}")
    records = cf_records + kp_records
    acked = {**producers[0].acked, **producers[1].acked}
    live = {p: v[:ends[p]] for p, v in reader.got.items()}
    total, duplicates = c.compare_exact("live consumer", records, acked, live, allow_duplicates=True)
    check_producer_order(live, records)
    # After all restarts, a fresh consumer (the other client) reads the same log.
    fresh = c.kp_read_all(args.bootstrap, TOPIC, ends)
    for p in ends:
        for a, b in zip(live[p], fresh[p]):
            c.check((a.offset, a.key, a.value, a.headers, a.timestamp) == (b.offset, b.key, b.value, b.headers,
                                                                              b.timestamp),
                    f"partition {p} offset {a.offset}: the live consumer read {a!r}, a fresh one reads {b!r}")
    c.log(f"restart: {len(cf_records)} confluent-kafka + {len(kp_records)} kafka-python records acknowledged "
          f"through a SIGTERM and a SIGKILL restart; log of {total} records read live and again after, byte-exact, "
          f"no acknowledged record lost, {duplicates} duplicates from retries; "
          f"{len(c.cf_errors)} client transport errors logged during the restarts")


def high_watermarks(bootstrap):
    from confluent_kafka import TopicPartition
    consumer = c.cf_consumer(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in range(c.PARTITIONS)}
    finally:
        consumer.close()


def check_producer_order(consumed, records):
    """Per partition and producer, first occurrences keep production order."""
    kp_first_seq = min(r.seq for r in records if r.seq >= 1_000_000) if any(r.seq >= 1_000_000 for r in records) else None
    for p, gots in consumed.items():
        seen = set()
        last = {}
        for g in gots:
            seq = c.seq_of(g.headers)
            if seq in seen:
                continue
            seen.add(seq)
            producer = "kafka-python" if kp_first_seq is not None and seq >= kp_first_seq else "confluent-kafka"
            if seq < last.get(producer, -1):
                c.fail(f"partition {p}: {producer} records out of order: seq {seq} at offset {g.offset} after seq "
                       f"{last[producer]}")
            last[producer] = seq


if __name__ == "__main__":
    c.run(main)
