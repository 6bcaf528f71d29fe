"""Shared helpers for the client compatibility scripts (run by tests/compat.rs).

Each script is run as `python3 tests/compat/<name>.py --bootstrap HOST:PORT ...`
against a real `ringstream serve`. It prints a short summary and exits 0, or
prints `FAIL: ...` and exits non-zero. A watchdog bounds every script in
time (--timeout); on expiry it prints every thread's stack and exits 124.

What is here: argument parsing, the watchdog and cleanup hooks, waiting,
deterministic record generation (fixed seeds), producing and reading back
with confluent-kafka and kafka-python, and byte-exact comparison.
"""

import argparse
import faulthandler
import json
import os
import random
import subprocess
import sys
import threading
import time

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 6

# --------------------------------------------------------------------------
# Arguments, watchdog, failure


_cleanups = []
_cleanup_lock = threading.Lock()


def on_exit(fn):
    """Registers `fn` to run when the script fails or times out (and at the
    end of `main`, through `run`)."""
    _cleanups.append(fn)


def _run_cleanups():
    with _cleanup_lock:
        while _cleanups:
            fn = _cleanups.pop()
            try:
                fn()
            except Exception as e:  # cleanup must not hide the real failure
                print(f"cleanup failed: {e!r}", file=sys.stderr)


class Failure(Exception):
    pass


def fail(message):
    """Aborts the script with a clear message (raised, so `run` reports it)."""
    raise Failure(message)


def check(condition, message):
    if not condition:
        fail(message)


def parse_args(description, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before the watchdog aborts the script")
    parser.add_argument("--broker-pid", type=int, help="pid of the running broker (for pause/restart tests)")
    parser.add_argument("--broker-cmd", help="JSON argv that starts the broker again on the same data dir and port")
    parser.add_argument("--broker-log", help="file that restarted brokers append their stderr to")
    parser.add_argument("--pid-file", help="file this script appends the pids of brokers it starts to")
    parser.add_argument("--data-dir", help="the broker's data directory (read only: stored batches, placement)")
    if extra:
        extra(parser)
    args = parser.parse_args()
    _start_watchdog(args.timeout)
    return args


def _start_watchdog(seconds):
    def expire():
        print(f"FAIL: TIMEOUT: {os.path.basename(sys.argv[0])} still running after {seconds:.0f}s; thread stacks:",
              file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        _run_cleanups()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(124)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def run(main):
    """Runs `main()`, turning failures into `FAIL: ...` and exit status 1."""
    status = 0
    try:
        main()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        status = 1
    except Exception:
        import traceback
        print("FAIL: unexpected exception:", file=sys.stderr)
        traceback.print_exc()
        status = 1
    finally:
        _run_cleanups()
    sys.stdout.flush()
    sys.stderr.flush()
    # librdkafka and kafka-python threads must not keep us alive.
    os._exit(status)


def log(*parts):
    print(*parts, flush=True)


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls `predicate` until it returns a true value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def now_ms():
    return int(time.time() * 1000)


# --------------------------------------------------------------------------
# Records


class Rec:
    """One record as produced: identified by its `seq` (also its first header)."""
    __slots__ = ("seq", "key", "value", "headers", "timestamp", "partition")

    def __init__(self, seq, key, value, headers, timestamp, partition=None):
        self.seq, self.key, self.value, self.headers = seq, key, value, headers
        self.timestamp, self.partition = timestamp, partition

    def __repr__(self):
        return (f"Rec(seq={self.seq}, key={short(self.key)}, value={short(self.value)}, "
                f"headers={[(k, short(v)) for k, v in self.headers]}, ts={self.timestamp})")


def short(b, n=24):
    if b is None:
        return "None"
    return repr(b[:n]) + (f"...({len(b)} bytes)" if len(b) > n else "")


HEADER_NAMES = ["trace-id", "content-type", "x-dup", "ünïcødé", ""]


def make_records(count, seed, ts_base, nkeys=500, null_keys=True, big_values=True, null_header_values=True,
                 seq_base=0):
    """`count` records from a fixed seed: keys from a pool of `nkeys` (text and
    binary) with a few null keys, values of mixed size and compressibility
    (some empty, some null, a few of ~150 KB), 1-4 headers (duplicate names,
    empty and null values). Timestamps are ts_base + seq (ms)."""
    rng = random.Random(seed)
    pool = []
    for k in range(nkeys):
        if k % 5 == 4:
            pool.append(bytes([0, 255]) + rng.randbytes(6) + b"%d" % k)  # binary key
        else:
            pool.append(b"key-%05d" % k)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"ringstream", b"kafka", b"\x00\x01", b" "]
    records = []
    for i in range(count):
        seq = seq_base + i
        if null_keys and i % 211 == 7:
            key = None
        else:
            key = pool[rng.randrange(nkeys)]
        roll = rng.random()
        if i % 397 == 11:
            value = None  # tombstone
        elif i % 389 == 13:
            value = b""
        elif big_values and i % 9973 == 5000:
            value = b"%010d|" % seq + rng.randbytes(150_000)
        elif roll < 0.5:
            value = b"%010d|" % seq + rng.randbytes(rng.randrange(0, 400))
        else:
            value = b"%010d|" % seq + b"".join(rng.choice(words) for _ in range(rng.randrange(1, 150)))
        headers = [("seq", b"%d" % seq)]
        for _ in range(rng.randrange(0, 4)):
            name = rng.choice(HEADER_NAMES)
            if null_header_values and rng.random() < 0.1:
                hv = None
            else:
                hv = rng.randbytes(rng.randrange(0, 20))
            headers.append((name, hv))
        records.append(Rec(seq, key, value, headers, ts_base + seq))
    return records


def seq_of(headers):
    if not headers or headers[0][0] != "seq":
        return None
    return int(headers[0][1])


def check_key_stability(records_by_seq, placed, what):
    """`placed`: seq -> partition. Every non-null key must map to exactly one
    partition. Returns {key: partition}."""
    where = {}
    for seq, partition in placed.items():
        key = records_by_seq[seq].key
        if key is None:
            continue
        other = where.setdefault(key, partition)
        if other != partition:
            fail(f"{what}: key {short(key)} landed in partitions {other} and {partition}")
    return where


# --------------------------------------------------------------------------
# Consumed records and comparison

class Got:
    """One consumed record, normalised across clients."""
    __slots__ = ("partition", "offset", "key", "value", "headers", "ts_type", "timestamp")

    def __init__(self, partition, offset, key, value, headers, ts_type, timestamp):
        self.partition, self.offset, self.key, self.value = partition, offset, key, value
        self.headers = [(k, None if v is None else bytes(v)) for k, v in (headers or [])]
        self.ts_type, self.timestamp = ts_type, timestamp

    def __repr__(self):
        return (f"Got(p={self.partition}, o={self.offset}, key={short(self.key)}, value={short(self.value)}, "
                f"headers={[(k, short(v)) for k, v in self.headers]}, ts={self.timestamp})")


CREATE_TIME = "CreateTime"


def compare_exact(what, records, acked, consumed, allow_duplicates=False):
    """Byte-exact check of a read-back.

    records: the produced Recs; acked: seq -> (partition, offset) from the
    producer's acknowledgements; consumed: partition -> [Got] in the order
    read. Checks that every partition was read from 0 without gaps, that the
    record at each acknowledged offset is exactly the one produced (key,
    value, headers, CreateTime timestamp), that every record read was
    produced, and that in each partition records keep their production order.
    Returns (records read, duplicates).
    """
    by_seq = {r.seq: r for r in records}
    at = {}
    total = 0
    duplicates = 0
    for partition, gots in consumed.items():
        expected_offset = 0
        last_seq = -1
        seen = set()
        for g in gots:
            total += 1
            if g.offset != expected_offset:
                fail(f"{what}: partition {partition}: read offset {g.offset}, expected {expected_offset} "
                     f"(gap or reordering in the log)")
            expected_offset += 1
            at[(partition, g.offset)] = g
            seq = seq_of(g.headers)
            if seq is None or seq not in by_seq:
                fail(f"{what}: record read at {partition}/{g.offset} was never produced: {g!r}")
            r = by_seq[seq]
            mismatch = _diff(r, g)
            if mismatch:
                fail(f"{what}: record at {partition}/{g.offset} differs from what was produced ({mismatch}):\n"
                     f"  produced {r!r}\n  read     {g!r}")
            if seq in seen:
                duplicates += 1
                if not allow_duplicates:
                    fail(f"{what}: seq {seq} read twice in partition {partition} (second at offset {g.offset})")
            seen.add(seq)
            if seq < last_seq and not allow_duplicates:
                fail(f"{what}: partition {partition} out of production order: seq {seq} at offset {g.offset} "
                     f"after seq {last_seq}")
            last_seq = max(last_seq, seq)
    for seq, (partition, offset) in acked.items():
        g = at.get((partition, offset))
        if g is None:
            fail(f"{what}: acknowledged record seq {seq} at {partition}/{offset} was not read back "
                 f"(partition {partition} read up to offset {len(consumed.get(partition, [])) - 1})")
        if seq_of(g.headers) != seq:
            fail(f"{what}: acknowledged offset {partition}/{offset} holds seq {seq_of(g.headers)}, "
                 f"acknowledged for seq {seq}")
    return total, duplicates


def _diff(r, g):
    if g.key != r.key:
        return f"key {short(g.key)} != {short(r.key)}"
    if g.value != r.value:
        return f"value {short(g.value)} != {short(r.value)}"
    if g.headers != r.headers:
        return f"headers {g.headers!r} != {r.headers!r}"
    if g.ts_type != CREATE_TIME:
        return f"timestamp type {g.ts_type}"
    if g.timestamp != r.timestamp:
        return f"timestamp {g.timestamp} != {r.timestamp}"
    return None


# --------------------------------------------------------------------------
# confluent-kafka

def cf_config(bootstrap, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": 10000,
        "error_cb": _cf_error_cb,
    }
    config.update(extra)
    return config


cf_errors = []


def _cf_error_cb(err):
    # Transport errors during a planned broker restart are expected; they are
    # logged so a failure has context, and fatal ones fail the script.
    cf_errors.append(err)
    print(f"  [librdkafka] {err}", file=sys.stderr, flush=True)
    if err.fatal():
        print(f"FAIL: fatal client error: {err}", file=sys.stderr, flush=True)


def cf_admin(bootstrap):
    from confluent_kafka.admin import AdminClient
    return AdminClient(cf_config(bootstrap))


def cf_result(futures, key, what=None, timeout=15):
    """The result of an AdminClient future; fails on an error."""
    from confluent_kafka import KafkaException
    try:
        return futures[key].result(timeout)
    except KafkaException as e:
        fail(f"{what or key}: unexpected error {e.args[0]}")


def cf_expect_error(futures, key, code, what, timeout=15):
    """Fails unless an AdminClient future fails with `code`; returns the error."""
    from confluent_kafka import KafkaError, KafkaException
    try:
        futures[key].result(timeout)
    except KafkaException as e:
        err = e.args[0]
        check(err.code() == code, f"{what}: error {err}, expected {KafkaError(code).name()}")
        return err
    fail(f"{what}: succeeded, expected {KafkaError(code).name()}")


def cf_create_topic(bootstrap, topic, partitions=PARTITIONS, config=None):
    from confluent_kafka.admin import NewTopic
    admin = cf_admin(bootstrap)
    futures = admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})], request_timeout=15)
    try:
        futures[topic].result(20)
    except Exception as e:
        fail(f"CreateTopics {topic!r} ({partitions} partitions) failed: {e}")
    wait_until(lambda: len(cf_partitions(admin, topic)) == partitions, 20, f"{topic} with {partitions} partitions")


def cf_partitions(client, topic):
    md = client.list_topics(topic, timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return {}
    return t.partitions


def cf_produce(bootstrap, topic, records, config=None, partition_of=None, flush_every=None, timeout=60):
    """Produces `records` with confluent-kafka; returns seq -> (partition, offset).
    Fails on any delivery error."""
    from confluent_kafka import Producer
    conf = cf_config(bootstrap, **{"linger.ms": 5, "acks": "all", "enable.idempotence": False})
    conf.update(config or {})
    producer = Producer(conf)
    acked = {}
    errors = []

    def delivered(err, msg, seq):
        if err is not None:
            errors.append((seq, err))
        else:
            acked[seq] = (msg.partition(), msg.offset())

    for n, r in enumerate(records):
        kwargs = {"key": r.key, "value": r.value, "headers": r.headers, "timestamp": r.timestamp,
                  "on_delivery": (lambda err, msg, seq=r.seq: delivered(err, msg, seq))}
        if partition_of is not None:
            kwargs["partition"] = partition_of(r)
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if flush_every and (n + 1) % flush_every == 0:
            producer.flush(timeout)
    remaining = producer.flush(timeout)
    if remaining:
        fail(f"confluent-kafka producer: {remaining} records to {topic} still undelivered after {timeout}s")
    if errors:
        fail(f"confluent-kafka producer: {len(errors)} delivery errors on {topic}, first: seq {errors[0][0]}: "
             f"{errors[0][1]}")
    check(len(acked) == len(records), f"{topic}: {len(acked)} acknowledged of {len(records)}")
    return acked


def cf_consumer(bootstrap, **extra):
    from confluent_kafka import Consumer
    conf = cf_config(bootstrap, **{
        "group.id": "compat-unused",  # required by the client; assign() never joins it
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "check.crcs": True,
        "enable.partition.eof": False,
    })
    conf.update(extra)
    return Consumer(conf)


def cf_read_all(bootstrap, topic, ends, timeout=60, consumer=None):
    """Reads partitions {p: end_offset} from offset 0 with assign(), until each
    reaches its end; then checks for a short while that nothing follows.
    Returns partition -> [Got]."""
    from confluent_kafka import TopicPartition, KafkaError, TIMESTAMP_CREATE_TIME
    own = consumer is None
    c = consumer or cf_consumer(bootstrap)
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    out = {p: [] for p in ends}
    deadline = time.monotonic() + timeout
    try:
        def done():
            return all(len(out[p]) >= ends[p] for p in ends)
        while not done():
            if time.monotonic() > deadline:
                fail(f"confluent-kafka consumer: {topic} read to "
                     f"{ {p: len(out[p]) for p in ends} } of { ends } after {timeout}s")
            for m in c.consume(2000, 0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    fail(f"confluent-kafka consumer error on {topic}: {err}")
                ts_type, ts = m.timestamp()
                out[m.partition()].append(Got(m.partition(), m.offset(), m.key(), m.value(), m.headers(),
                                              CREATE_TIME if ts_type == TIMESTAMP_CREATE_TIME else ts_type, ts))
        extra = c.consume(100, 0.5)
        extra = [m for m in extra if m.error() is None]
        if extra:
            fail(f"confluent-kafka consumer: {len(extra)} records beyond the expected end on {topic}: "
                 f"first at {extra[0].partition()}/{extra[0].offset()}")
    finally:
        if own:
            c.close()
    return out


def ends_from_acks(acked, partitions=PARTITIONS):
    ends = {p: 0 for p in range(partitions)}
    for partition, offset in acked.values():
        ends[partition] = max(ends[partition], offset + 1)
    return ends


# --------------------------------------------------------------------------
# kafka-python

def kp_producer(bootstrap, **extra):
    from kafka import KafkaProducer
    conf = dict(bootstrap_servers=bootstrap, linger_ms=5, acks="all", enable_idempotence=False,
                request_timeout_ms=30000)
    conf.update(extra)
    return KafkaProducer(**conf)


def kp_produce(bootstrap, topic, records, timeout=60, partition_of=None, **extra):
    """Produces `records` with kafka-python; returns seq -> (partition, offset)."""
    producer = kp_producer(bootstrap, **extra)
    futures = []
    try:
        for r in records:
            partition = partition_of(r) if partition_of else None
            futures.append((r.seq, producer.send(topic, key=r.key, value=r.value, headers=r.headers,
                                                 timestamp_ms=r.timestamp, partition=partition)))
        producer.flush(timeout)
        acked = {}
        for seq, f in futures:
            try:
                md = f.get(timeout=1)
            except Exception as e:
                fail(f"kafka-python producer: seq {seq} to {topic} failed: {e!r}")
            acked[seq] = (md.partition, md.offset)
    finally:
        producer.close(timeout=5)
    return acked


def kp_consumer(bootstrap, **extra):
    from kafka import KafkaConsumer
    conf = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="none", check_crcs=True, consumer_timeout_ms=1000)
    conf.update(extra)
    return KafkaConsumer(**conf)


def kp_read_all(bootstrap, topic, ends, timeout=60):
    """kafka-python: reads {p: end} from offset 0 with assign(). partition -> [Got]."""
    from kafka import TopicPartition
    c = kp_consumer(bootstrap)
    out = {p: [] for p in ends}
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        deadline = time.monotonic() + timeout
        while not all(len(out[p]) >= ends[p] for p in ends):
            if time.monotonic() > deadline:
                fail(f"kafka-python consumer: {topic} read to { {p: len(out[p]) for p in ends} } of { ends } "
                     f"after {timeout}s")
            for tp, msgs in c.poll(timeout_ms=500, max_records=5000).items():
                for m in msgs:
                    ts_type = CREATE_TIME if m.timestamp_type == 0 else m.timestamp_type
                    out[tp.partition].append(Got(tp.partition, m.offset, m.key, m.value, m.headers, ts_type,
                                                 m.timestamp))
        extra = sum(len(v) for v in c.poll(timeout_ms=500).values())
        if extra:
            fail(f"kafka-python consumer: {extra} records beyond the expected end on {topic}")
    finally:
        c.close()
    return out


def run_cases(names, fn):
    """Runs fn(name) for every case, reporting each; fails at the end naming
    the failed cases, so one failure does not hide the others' results."""
    failed = {}
    for name in names:
        try:
            fn(name)
        except Failure as e:
            failed[name] = str(e)
            print(f"{name}: FAIL: {e}", flush=True)
    if failed:
        fail(f"{len(failed)} of {len(names)} cases failed: {', '.join(failed)} (each one's reason above)")


# --------------------------------------------------------------------------
# What the broker stored (read from its data directory, Kafka's on-disk
# layout: <topic>-<partition>/<base offset>.log of v2 record batches)

CODEC_IDS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def stored_batches(data_dir, topic, partitions=PARTITIONS):
    """[(partition, base_offset, record_count, codec)] for every stored batch."""
    import struct
    out = []
    for p in range(partitions):
        d = os.path.join(data_dir, f"{topic}-{p}")
        check(os.path.isdir(d), f"no partition directory {d}")
        for name in sorted(os.listdir(d)):
            if not name.endswith(".log"):
                continue
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            pos = 0
            while pos + 61 <= len(data):
                base, length = struct.unpack_from(">qi", data, pos)
                magic = data[pos + 16]
                if length <= 0 or magic != 2:
                    break
                attributes, = struct.unpack_from(">h", data, pos + 21)
                count, = struct.unpack_from(">i", data, pos + 57)
                out.append((p, base, count, CODEC_IDS.get(attributes & 7, f"codec {attributes & 7}")))
                pos += 12 + length
    return out


def check_stored_codec(data_dir, topic, codec, what):
    """The producer must really have used `codec`: most records are stored in
    batches compressed with it (a client may send a batch that does not
    shrink uncompressed), and with "none", all of them."""
    if not data_dir:
        return ""
    batches = stored_batches(data_dir, topic)
    total = sum(n for _, _, n, _ in batches)
    by_codec = {}
    for _, _, n, stored in batches:
        by_codec[stored] = by_codec.get(stored, 0) + n
    share = by_codec.get(codec, 0) / max(total, 1)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(by_codec.items()))
    if codec == "none":
        check(share == 1.0, f"{what}: records stored compressed although no codec was set ({summary})")
    elif share < 0.5:
        hint = ""
        if codec == "lz4":
            hint = (" (librdkafka only compresses with LZ4 when the broker's ApiVersions response lists "
                    "FindCoordinator, its marker for LZ4-capable brokers)")
        elif codec in ("gzip", "snappy"):
            hint = (" (older librdkafka, Debian's 2.0.2 among them, only compresses with gzip/snappy when the "
                    "broker's ApiVersions response includes Produce v0: librdkafka issue #4956; Kafka 4.0 keeps "
                    "advertising Produce v0-v2 for this reason, KAFKA-18659)")
        fail(f"{what}: only {share:.0%} of {total} records stored {codec}-compressed, the producer did not "
             f"compress: stored batches by codec: {summary}{hint}")
    return f"stored {share:.0%} {codec}"


def check_spread(data_dir, topic, shards=2):
    """The topic's partitions are spread over every shard (placement table)."""
    if not data_dir:
        return
    owners = {}
    with open(os.path.join(data_dir, "placement-table")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == topic:
                owners[int(parts[1])] = int(parts[2])
    check(len(set(owners.values())) == shards,
          f"{topic}: partitions placed on shards {sorted(set(owners.values()))}, expected all {shards}: {owners}")


# --------------------------------------------------------------------------
# The broker process (pause, stop, restart)

def proc_state(pid):
    """The process state letter from /proc (R, S, T, Z, ...), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def wait_exited(pid, timeout, what):
    """Waits until `pid` is a zombie or gone (it may be another process's child)."""
    wait_until(lambda: proc_state(pid) in (None, "Z", "X"), timeout, f"{what} (pid {pid}) to exit")


class BrokerProcess:
    """A broker this script started (for the restart test)."""

    def __init__(self, args):
        check(args.broker_cmd, "this test needs --broker-cmd")
        self.cmd = json.loads(args.broker_cmd)
        self.log_path = args.broker_log
        self.pid_file = args.pid_file
        self.proc = None

    def start(self, timeout=30):
        stderr = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = dict(os.environ)
        env.setdefault("RINGSTREAM_LOG", "info")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=stderr, env=env)
        if self.pid_file:
            with open(self.pid_file, "a") as f:
                f.write(f"{self.proc.pid}\n")
        proc = self.proc
        on_exit(lambda: self.kill(proc))
        line = []

        def read_line():
            line.append(proc.stdout.readline().decode(errors="replace"))

        t = threading.Thread(target=read_line, daemon=True)
        t.start()
        t.join(timeout)
        if not line or not line[0].startswith("ready "):
            fail(f"restarted broker did not report ready within {timeout}s "
                 f"(first line {line[0] if line else None!r}, exit status {proc.poll()}); see the broker log")
        return line[0].strip()

    @staticmethod
    def kill(proc):
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# --------------------------------------------------------------------------
# Consumer groups (groups_confluent.py, groups_kafka_python.py)

GROUP_JOIN_SECONDS = 60  # deadline for a group to settle (Kafka's clients retry joins for long)
GROUP_QUIET_SECONDS = 1.5  # a settled group sees no rebalance callback for this long


def group_records(count, seed, partitions, seq_base=0):
    """`count` small records for a group test, record i in partition
    (seq_base + i) % partitions. Returns (records, partition_of)."""
    records = make_records(count, seed=seed, ts_base=now_ms() - 600_000, big_values=False, null_header_values=False,
                           seq_base=seq_base)
    return records, (lambda r: r.seq % partitions)


def check_group_stream(what, reads, acked, allow_duplicate=None):
    """Checks what a group's members consumed.

    reads: member name -> [(partition, offset, seq)] in the order the member
    received them; acked: seq -> (partition, offset) as produced. Every
    acknowledged record must have been consumed, each record read must be the
    one produced at that offset, each member must read each partition in
    offset order (never going back), and no record may be read twice unless
    allow_duplicate(partition, offset, [member names]) says so.
    Returns ({(partition, offset): [member names]}, {partition: set of member names}, duplicates)."""
    by_offset = {}
    readers_of = {}
    for name, got in reads.items():
        last = {}
        for partition, offset, seq in got:
            if partition in last and offset <= last[partition]:
                fail(f"{what}: {name} read {partition}/{offset} after {partition}/{last[partition]} "
                     f"(went back, or read twice)")
            last[partition] = offset
            by_offset.setdefault((partition, offset), []).append((name, seq))
            readers_of.setdefault(partition, set()).add(name)
    expected = {po: seq for seq, po in acked.items()}
    for (partition, offset), readers in sorted(by_offset.items()):
        seq = expected.get((partition, offset))
        if seq is None:
            fail(f"{what}: {readers[0][0]} read {partition}/{offset}, which was never acknowledged to the producer")
        for name, got_seq in readers:
            if got_seq != seq:
                fail(f"{what}: {name} read seq {got_seq} at {partition}/{offset}, the producer was told seq {seq}")
    missing = sorted(po for po in expected if po not in by_offset)
    if missing:
        fail(f"{what}: {len(missing)} of {len(expected)} acknowledged records never consumed, first "
             f"{missing[:8]}; read per partition: "
             f"{ {p: sum(1 for (q, _) in by_offset if q == p) for p in sorted({p for p, _ in expected})} }")
    duplicates = {po: [n for n, _ in readers] for po, readers in by_offset.items() if len(readers) > 1}
    bad = {po: names for po, names in duplicates.items()
           if allow_duplicate is None or not allow_duplicate(po[0], po[1], names)}
    if bad:
        first = sorted(bad)[:8]
        fail(f"{what}: {len(bad)} records consumed more than once where that is not allowed, first: "
             f"{[(po, bad[po]) for po in first]}")
    return {po: [n for n, _ in readers] for po, readers in by_offset.items()}, readers_of, len(duplicates)


def disjoint_cover(assignments, partitions):
    """assignments: member name -> set of partitions. True when they are
    disjoint and cover range(partitions) exactly."""
    seen = []
    for parts in assignments.values():
        seen.extend(parts)
    return sorted(seen) == list(range(partitions))


def reads_of(members):
    """Group members (objects with `name`, `assigned`, `of(kinds...)`,
    `rebalances()`, `reads()` and `read_to()`, see groups_*.py) -> what each read."""
    return {m.name: m.reads() for m in members}


def wait_stable(members, partitions, timeout=GROUP_JOIN_SECONDS, every_member_busy=True, what="the group"):
    """Waits until every member has been assigned (a callback), their
    assignments are disjoint and cover the topic, and no rebalance callback
    came for GROUP_QUIET_SECONDS. Returns the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        assignments = {m.name: set(m.assigned) for m in members}
        settled = (all(m.of("assign") for m in members) and disjoint_cover(assignments, partitions)
                   and (not every_member_busy or all(assignments.values())))
        if settled:
            count = sum(m.rebalances() for m in members)
            time.sleep(GROUP_QUIET_SECONDS)
            if count == sum(m.rebalances() for m in members):
                return time.monotonic() - started - GROUP_QUIET_SECONDS
            continue
        if time.monotonic() > deadline:
            history = {m.name: [(e["ev"], e.get("parts")) for e in m.of("assign", "revoke", "lost")] for m in members}
            fail(f"{what} did not settle within {timeout}s: assignments {assignments}; callbacks {history}")
        time.sleep(0.05)


def wait_consumed(members, acked, timeout=60, what="the records"):
    """Waits until the members together read every acknowledged record."""
    want = set(acked.values())

    def missing():
        have = set()
        for m in members:
            have.update((p, o) for p, o, _ in m.reads())
        return want - have

    deadline = time.monotonic() + timeout
    while missing():
        if time.monotonic() > deadline:
            left = missing()
            first = {}
            for p, o in left:
                first[p] = min(first.get(p, o), o)
            fail(f"{what}: {len(left)} of {len(want)} records not consumed after {timeout}s; first missing offset "
                 f"per partition {dict(sorted(first.items()))}; members read to "
                 f"{ {m.name: dict(sorted(m.read_to().items())) for m in members} }, assigned "
                 f"{ {m.name: sorted(m.assigned) for m in members} }")
        time.sleep(0.2)
