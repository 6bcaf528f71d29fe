"""Transactions with real clients (run by tests/transactions.rs).

Scenarios (--scenario):
  visibility  confluent-kafka: committed and aborted transactions as
              read_committed and read_uncommitted consumers see them (both
              clients), control batches never handed to the application, an
              open transaction holding back read_committed readers (and
              ListOffsets' read_committed end), then released by its commit.
  kafka_python  the same with kafka-python's transactional producer, read by
              both clients.
  fencing     a second producer with the same transactional.id fences the
              first (zombie): the first can never write or commit again, and
              its open transaction is aborted.
  timeout     a transaction left open past transaction.timeout.ms is aborted
              by the coordinator; until then it holds the last stable
              offset; its producer is fenced.
  eos         consume-transform-produce with send_offsets_to_transaction,
              exactly once across a broker SIGKILL (--broker-cmd): every
              input record is in the output exactly once, and the group's
              committed offsets are at the input's end.
  cluster     (3 nodes) consume-transform-produce while the test SIGKILLs
              the transaction coordinator and a partition leader
              mid-transaction (it reads --progress): exactly once, nothing
              half-visible.
"""

import os
import signal
import threading
import time

import common as c

IN = "txn-in"
OUT = "txn-out"


def extra(parser):
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--client", default="confluent", help="the processor's client: confluent or kafka-python")
    parser.add_argument("--progress", help="file the cluster scenario writes its committed count to")


def cf_txn_producer(bootstrap, txn_id, **extra):
    from confluent_kafka import Producer
    conf = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "transaction.timeout.ms": 60000,
            "linger.ms": 5}
    if os.environ.get("TXN_DEBUG"):
        conf["debug"] = os.environ["TXN_DEBUG"]
    conf.update(extra)
    return Producer(conf)


def cf_read(bootstrap, topic, isolation, seconds=6.0, expect=None):
    """Reads `topic` from the start with a fresh group; returns [(partition, offset, key, value)]."""
    from confluent_kafka import Consumer
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{isolation}-{time.monotonic_ns()}",
                         "isolation.level": isolation, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + seconds
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            m = consumer.poll(0.3)
            if m is None:
                if expect is not None and len(got) >= expect and time.monotonic() - quiet_since > 1.0:
                    break
                continue
            if m.error():
                continue
            quiet_since = time.monotonic()
            got.append((m.partition(), m.offset(), m.key(), m.value()))
    finally:
        consumer.close()
    return got


def kp_read(bootstrap, topic, isolation, seconds=6.0):
    from kafka import KafkaConsumer
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             isolation_level=isolation, consumer_timeout_ms=int(seconds * 1000),
                             enable_auto_commit=False)
    got = [(m.partition, m.offset, m.key, m.value) for m in consumer]
    consumer.close()
    return got


def values(rows):
    return sorted(r[3].decode() for r in rows)


def create_topic(bootstrap, name, partitions=3):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=-1)])
    for f in futures.values():
        try:
            f.result(30)
        except Exception as e:  # already there is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    del admin


def committed_end_offsets(bootstrap, topic, partitions=3):
    """ListOffsets latest with isolation read_committed (kafka-python's end_offsets)."""
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def scenario_visibility(args):
    bs = args.bootstrap
    topic = "txn-vis"
    create_topic(bs, topic)
    p = cf_txn_producer(bs, "vis-1")
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(30):
        p.produce(topic, key=f"k{i}", value=f"commit-{i}")
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(20):
        p.produce(topic, key=f"k{i}", value=f"abort-{i}")
    p.flush(30)  # the records reach the log before the abort
    p.abort_transaction(30)
    committed = ["commit-%d" % i for i in range(30)]
    rc = cf_read(bs, topic, "read_committed", expect=30)
    c.check(values(rc) == sorted(committed), f"read_committed saw {len(rc)}: {values(rc)[:5]}...")
    ru = cf_read(bs, topic, "read_uncommitted", expect=50)
    c.check(len(ru) == 50, f"read_uncommitted saw {len(ru)} records, expected 50 (aborted ones included)")
    krc = kp_read(bs, topic, "read_committed")
    c.check(values(krc) == sorted(committed), f"kafka-python read_committed saw {len(krc)}: {values(krc)[:5]}")
    # Markers take offsets but are never handed out: per partition, the
    # offsets seen skip the markers' offsets.
    offsets = {}
    for part, off, _, _ in ru:
        offsets.setdefault(part, []).append(off)
    gaps = sum(1 for offs in offsets.values() for a, b in zip(sorted(offs), sorted(offs)[1:]) if b != a + 1)
    c.check(gaps >= 1, f"no offset gap where a commit marker sits: {offsets}")

    # An open transaction holds back read_committed consumers.
    ends_before = committed_end_offsets(bs, topic)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, key=f"k{i}", value=f"open-{i}")
    p.flush(30)
    plain = cf_txn_producer(bs, "vis-plain")  # a second, committed transaction after the open one
    plain.init_transactions(30)
    plain.begin_transaction()
    for i in range(10):
        plain.produce(topic, key=f"k{i}", value=f"later-{i}")
    plain.commit_transaction(30)
    held = cf_read(bs, topic, "read_committed", seconds=4)
    c.check(values(held) == sorted(committed),
            f"read_committed read past an open transaction: {len(held)} records, e.g. {values(held)[-3:]}")
    ends_open = committed_end_offsets(bs, topic)
    c.check(ends_open == ends_before, f"read_committed end offsets moved past an open transaction: "
                                      f"{ends_before} -> {ends_open}")
    p.commit_transaction(30)
    released = cf_read(bs, topic, "read_committed", expect=50)
    want = sorted(committed + ["open-%d" % i for i in range(10)] + ["later-%d" % i for i in range(10)])
    c.check(values(released) == want, f"after the commit read_committed saw {len(released)} of {len(want)}")
    ends_after = committed_end_offsets(bs, topic)
    c.check(all(ends_after[q] >= ends_open[q] for q in ends_after) and ends_after != ends_open,
            f"read_committed end offsets did not move after the commit: {ends_open} -> {ends_after}")
    c.log(f"visibility: 30 committed, 20 aborted, an open transaction held read_committed readers and "
          f"ListOffsets at {ends_open} until its commit; {gaps} marker gaps")


def scenario_kafka_python(args):
    from kafka import KafkaProducer
    bs = args.bootstrap
    topic = "txn-kp"
    create_topic(bs, topic)
    p = KafkaProducer(bootstrap_servers=bs, transactional_id="kp-1", enable_idempotence=True, acks="all")
    p.init_transactions()
    p.begin_transaction()
    for i in range(25):
        p.send(topic, key=f"k{i}".encode(), value=f"commit-{i}".encode())
    p.commit_transaction()
    p.begin_transaction()
    for i in range(15):
        p.send(topic, key=f"k{i}".encode(), value=f"abort-{i}".encode())
    p.flush()
    p.abort_transaction()
    p.begin_transaction()
    for i in range(5):
        p.send(topic, key=f"k{i}".encode(), value=f"again-{i}".encode())
    p.commit_transaction()
    p.close()
    want = sorted(["commit-%d" % i for i in range(25)] + ["again-%d" % i for i in range(5)])
    krc = kp_read(bs, topic, "read_committed")
    c.check(values(krc) == want, f"kafka-python read_committed saw {len(krc)} of {len(want)}: {values(krc)[:5]}")
    rc = cf_read(bs, topic, "read_committed", expect=len(want))
    c.check(values(rc) == want, f"confluent read_committed saw {len(rc)} of {len(want)}")
    ru = kp_read(bs, topic, "read_uncommitted")
    c.check(len(ru) == 45, f"kafka-python read_uncommitted saw {len(ru)} of 45")
    c.log("kafka_python: 2 committed and 1 aborted transaction, read by both clients at both isolation levels")


def scenario_aiokafka(args):
    """aiokafka's transactional producer and read_committed consumer,
    including send_offsets_to_transaction."""
    import asyncio
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    bs = args.bootstrap
    topic = "txn-aio"
    create_topic(bs, topic)

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=bs, transactional_id="aio-1", enable_idempotence=True)
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(20):
                    await producer.send(topic, key=b"k", value=f"commit-{i}".encode())
            try:
                async with producer.transaction():
                    for i in range(10):
                        await producer.send_and_wait(topic, key=b"k", value=f"abort-{i}".encode())
                    raise RuntimeError("abort this one")
            except RuntimeError:
                pass
            async with producer.transaction():
                await producer.send(topic, key=b"k", value=b"with-offsets")
                await producer.send_offsets_to_transaction({TopicPartition(topic, 0): 5}, "aio-group")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bs, isolation_level="read_committed",
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        got = []
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(got) < 21:
                batches = await consumer.getmany(timeout_ms=500)
                got.extend(m.value.decode() for ms in batches.values() for m in ms)
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(run())
    want = sorted(["commit-%d" % i for i in range(20)] + ["with-offsets"])
    c.check(sorted(got) == want, f"aiokafka read_committed saw {len(got)}: {sorted(got)[:5]}")
    from confluent_kafka import Consumer, TopicPartition as CfTopicPartition
    consumer = Consumer({"bootstrap.servers": bs, "group.id": "aio-group"})
    committed = consumer.committed([CfTopicPartition(topic, 0)], 10)
    consumer.close()
    c.check(committed[0].offset == 5, f"the transaction's offset commit reads back as {committed[0].offset}")
    c.log("aiokafka: commit, abort and send_offsets_to_transaction; read_committed sees the committed ones")


def scenario_hang(args):
    """Leaves a transaction open (its producer vanishes) and exits."""
    bs = args.bootstrap
    topic = "txn-hang"
    create_topic(bs, topic, partitions=1)
    p = cf_txn_producer(bs, "hang-1", **{"transaction.timeout.ms": 900000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, key=b"h", value=f"hanging-{i}")
    c.check(p.flush(30) == 0, "the hanging transaction's records were not acknowledged")
    c.log("hang: 10 records in an open transaction; its producer vanishes")


def scenario_released(args):
    """After the hanging transaction was aborted: read_committed reads past it."""
    bs = args.bootstrap
    topic = "txn-hang"
    later = cf_txn_producer(bs, "hang-2")
    later.init_transactions(30)
    later.begin_transaction()
    for i in range(5):
        later.produce(topic, key=b"h", value=f"after-{i}")
    later.commit_transaction(30)
    rc = cf_read(bs, topic, "read_committed", expect=5)
    c.check(values(rc) == sorted("after-%d" % i for i in range(5)), f"read_committed saw {values(rc)}")
    c.log("released: read_committed reads the later transaction, not the aborted one")


def scenario_fencing(args):
    from confluent_kafka import KafkaException
    from kafka import KafkaProducer
    bs = args.bootstrap
    topic = "txn-fence"
    create_topic(bs, topic)
    zombie = cf_txn_producer(bs, "fence-1")
    zombie.init_transactions(30)
    zombie.begin_transaction()
    for i in range(10):
        zombie.produce(topic, key=b"z", value=f"zombie-{i}")
    zombie.flush(30)
    # The new instance (kafka-python) takes the id over: the zombie's open
    # transaction is aborted and its epoch fenced.
    fresh = KafkaProducer(bootstrap_servers=bs, transactional_id="fence-1", enable_idempotence=True, acks="all")
    fresh.init_transactions()
    fresh.begin_transaction()
    for i in range(10):
        fresh.send(topic, key=b"f", value=f"fresh-{i}".encode())
    fresh.commit_transaction()
    fenced = None
    try:
        zombie.produce(topic, key=b"z", value=b"zombie-late")
        zombie.commit_transaction(30)
    except KafkaException as e:
        fenced = e.args[0]
    c.check(fenced is not None, "the zombie committed after being fenced")
    c.check(fenced.fatal() or "fenced" in str(fenced).lower() or "epoch" in str(fenced).lower(),
            f"the zombie's error is not a fencing: {fenced}")
    rc = cf_read(bs, topic, "read_committed", expect=10)
    c.check(values(rc) == sorted("fresh-%d" % i for i in range(10)),
            f"read_committed saw {values(rc)} (the zombie's records must never be visible)")
    fresh.close()
    c.log(f"fencing: the zombie got {fenced.name()}; only the new instance's transaction is visible")


def scenario_timeout(args):
    from confluent_kafka import KafkaException
    bs = args.bootstrap
    topic = "txn-timeout"
    create_topic(bs, topic)
    p = cf_txn_producer(bs, "timeout-1", **{"transaction.timeout.ms": 3000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, key=b"t", value=f"hanging-{i}")
    p.flush(30)
    other = cf_txn_producer(bs, "timeout-2")
    other.init_transactions(30)
    other.begin_transaction()
    for i in range(10):
        other.produce(topic, key=b"t", value=f"after-{i}")
    other.commit_transaction(30)
    held = cf_read(bs, topic, "read_committed", seconds=1.5)
    c.check(held == [], f"read_committed read past the hanging transaction: {values(held)[:3]}")
    # The coordinator aborts it at its timeout (3 s, checked every 500 ms).
    start = time.monotonic()
    c.wait_until(lambda: len(cf_read(bs, topic, "read_committed", seconds=1.0, expect=10)) == 10, 30,
                 "the hanging transaction to be aborted and the later one to become visible")
    rc = cf_read(bs, topic, "read_committed", expect=10)
    c.check(values(rc) == sorted("after-%d" % i for i in range(10)), f"read_committed saw {values(rc)}")
    failed = None
    try:
        p.commit_transaction(30)
    except KafkaException as e:
        failed = e.args[0]
    c.check(failed is not None, "the timed-out producer committed")
    c.log(f"timeout: aborted by the coordinator {time.monotonic() - start:.1f}s after the check began; "
          f"the producer's commit got {failed.name()}")


class ProcessorBase(threading.Thread):
    """A consume-transform-produce loop's counters; subclasses run it with one client."""

    def __init__(self, bootstrap, n, txn_id, group, batch):
        super().__init__(daemon=True)
        self.bs, self.n, self.txn_id, self.group, self.batch = bootstrap, n, txn_id, group, batch
        self.committed = 0
        self.commits = 0
        self.aborts = 0
        self.errors = []
        self.done = threading.Event()
        self.stop = threading.Event()


class Processor(ProcessorBase):
    """Consume-transform-produce with confluent-kafka's transactional producer."""

    def __init__(self, bootstrap, n, txn_id="eos-1", group="eos-group", batch=200):
        super().__init__(bootstrap, n, txn_id, group, batch)

    def make(self):
        from confluent_kafka import Consumer
        consumer = Consumer({"bootstrap.servers": self.bs, "group.id": self.group, "isolation.level": "read_committed",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "session.timeout.ms": 10000})
        consumer.subscribe([IN])
        # With its only broker down, librdkafka (2.10+, KIP-899) re-bootstraps
        # and drops the broker, and with it the cached group coordinator
        # that send_offsets_to_transaction then waits on forever
        # (librdkafka issues 5511 and 5456). A one-broker test opts out.
        producer = cf_txn_producer(self.bs, self.txn_id, **{"transaction.timeout.ms": 20000,
                                                            "metadata.recovery.strategy": "none"})
        producer.init_transactions(60)
        return consumer, producer

    def rewind(self, consumer):
        assignment = consumer.assignment()
        if not assignment:
            return
        from confluent_kafka import OFFSET_BEGINNING
        for tp in consumer.committed(assignment, 30):
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
            consumer.seek(tp)

    def run(self):
        from confluent_kafka import KafkaException
        consumer, producer = self.make()
        while not self.stop.is_set() and self.committed < self.n:
            msgs = [m for m in consumer.consume(self.batch, 0.5) if not m.error()]
            if not msgs:
                continue
            try:
                producer.begin_transaction()
                for m in msgs:
                    producer.produce(OUT, key=m.key(), value=m.value())
                producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                     consumer.consumer_group_metadata(), 60)
                while True:
                    try:
                        producer.commit_transaction(60)
                        break
                    except KafkaException as e:
                        if e.args[0].retriable():
                            time.sleep(0.2)
                            continue
                        raise
                self.committed += len(msgs)
                self.commits += 1
            except KafkaException as e:
                err = e.args[0]
                self.errors.append(str(err))
                if err.txn_requires_abort():
                    try:
                        producer.abort_transaction(60)
                        self.aborts += 1
                    except KafkaException as e2:
                        self.errors.append(f"abort: {e2.args[0]}")
                        consumer.close()
                        consumer, producer = self.make()
                else:
                    consumer.close()
                    consumer, producer = self.make()
                self.rewind(consumer)
            except Exception as e:  # anything else (a fenced instance) restarts the processor
                self.errors.append(repr(e))
                consumer.close()
                consumer, producer = self.make()
                self.rewind(consumer)
        consumer.close()
        self.done.set()


class KpProcessor(ProcessorBase):
    """Consume-transform-produce with kafka-python's transactional producer."""

    def __init__(self, bootstrap, n, txn_id="eos-kp", group="eos-kp-group", batch=200):
        super().__init__(bootstrap, n, txn_id, group, batch)

    def make(self):
        from kafka import KafkaConsumer, KafkaProducer
        consumer = KafkaConsumer(IN, bootstrap_servers=self.bs, group_id=self.group, isolation_level="read_committed",
                                 auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=10000,
                                 request_timeout_ms=15000)
        producer = KafkaProducer(bootstrap_servers=self.bs, transactional_id=self.txn_id, enable_idempotence=True,
                                 acks="all", transaction_timeout_ms=20000, request_timeout_ms=15000,
                                 max_block_ms=30000)
        producer.init_transactions()
        return consumer, producer

    def rewind(self, consumer):
        from kafka import TopicPartition
        for tp in consumer.assignment():
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    def restart(self, consumer, producer):
        for closing in (consumer, producer):
            try:
                closing.close(timeout=5) if closing is producer else closing.close()
            except Exception as e:
                self.errors.append(f"close: {e!r}")
        while not self.stop.is_set():
            try:
                return self.make()
            except Exception as e:
                self.errors.append(f"make: {e!r}")
                time.sleep(1)
        return None, None

    def run(self):
        from kafka.structs import OffsetAndMetadata
        consumer, producer = self.make()
        while not self.stop.is_set() and self.committed < self.n:
            try:
                polled = consumer.poll(timeout_ms=500, max_records=self.batch)
            except Exception as e:
                self.errors.append(f"poll: {e!r}")
                consumer, producer = self.restart(consumer, producer)
                continue
            msgs = [m for batch in polled.values() for m in batch]
            if not msgs:
                continue
            try:
                producer.begin_transaction()
                for m in msgs:
                    producer.send(OUT, key=m.key, value=m.value)
                offsets = {tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in consumer.assignment()}
                producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
                producer.commit_transaction()
                self.committed += len(msgs)
                self.commits += 1
            except Exception as e:
                self.errors.append(repr(e))
                try:
                    producer.abort_transaction()
                    self.aborts += 1
                    self.rewind(consumer)
                except Exception as e2:
                    self.errors.append(f"abort: {e2!r}")
                    consumer, producer = self.restart(consumer, producer)
        if consumer is not None:
            consumer.close()
        if producer is not None:
            producer.close(timeout=5)
        self.done.set()


def produce_input(bs, n):
    from confluent_kafka import Producer
    create_topic(bs, IN)
    create_topic(bs, OUT)
    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "linger.ms": 5})
    for i in range(n):
        p.produce(IN, key=f"k{i % 97}", value=f"rec-{i:07d}")
    c.check(p.flush(60) == 0, "input not all acknowledged")


def verify_exactly_once(bs, n):
    out = cf_read(bs, OUT, "read_committed", seconds=60, expect=n)
    vals = [r[3].decode() for r in out]
    dup = len(vals) - len(set(vals))
    missing = n - len(set(vals))
    c.check(dup == 0 and missing == 0 and len(vals) == n,
            f"output has {len(vals)} records for {n} inputs: {dup} duplicated, {missing} missing")
    return len(vals)


def scenario_eos(args):
    bs, n = args.bootstrap, args.records
    c.check(args.broker_pid and args.broker_cmd, "needs --broker-pid and --broker-cmd")
    produce_input(bs, n)
    proc = KpProcessor(bs, n) if args.client == "kafka-python" else Processor(bs, n)
    proc.start()
    c.wait_until(lambda: proc.committed >= n // 3, 90, "a third of the input processed")
    os.kill(args.broker_pid, signal.SIGKILL)
    c.wait_exited(args.broker_pid, 30, "broker after SIGKILL")
    broker = c.BrokerProcess(args)
    line = broker.start()
    c.log(f"eos: SIGKILL after {proc.committed} records in {proc.commits} transactions; back: {line}")
    c.wait_until(proc.done.is_set, 150, f"the processor to finish (at {proc.committed} of {n})")
    total = verify_exactly_once(bs, n)
    c.log(f"eos ({args.client}): {total} output records for {n} inputs, exactly once, through a broker SIGKILL; "
          f"{proc.commits} commits, {proc.aborts} aborts, {len(proc.errors)} client errors "
          f"(first: {proc.errors[:2]})")


def scenario_cluster(args):
    """The processor on a 3-node cluster; the test (tests/replication.rs)
    kills nodes while it runs, reading its progress from --progress."""
    bs, n = args.bootstrap, args.records
    c.check(args.progress, "needs --progress")
    produce_input(bs, n)
    proc = Processor(bs, n, txn_id="cluster-eos", group="cluster-eos-group", batch=50)
    proc.start()
    while not proc.done.wait(0.2):
        with open(args.progress + ".tmp", "w") as f:
            f.write(f"{proc.committed}\n")
        os.replace(args.progress + ".tmp", args.progress)
    total = verify_exactly_once(bs, n)
    c.log(f"cluster: {total} output records for {n} inputs, exactly once; "
          f"{proc.commits} commits, {proc.aborts} aborts, {len(proc.errors)} client errors "
          f"(first: {proc.errors[:3]})")


def main():
    args = c.parse_args("transactions", extra)
    scenarios = {
        "visibility": scenario_visibility,
        "kafka_python": scenario_kafka_python,
        "aiokafka": scenario_aiokafka,
        "hang": scenario_hang,
        "released": scenario_released,
        "fencing": scenario_fencing,
        "timeout": scenario_timeout,
        "eos": scenario_eos,
        "cluster": scenario_cluster,
    }
    c.check(args.scenario in scenarios, f"unknown scenario {args.scenario}")
    scenarios[args.scenario](args)


if __name__ == "__main__":
    c.run(main)
