"""Live partition moves under confluent-kafka load.

A confluent-kafka producer (acks=all, idempotence off, requests pipelined)
writes sequenced records to both partitions of a topic while a consumer
(assign, from the beginning) reads them, and `ringstream partition move`
moves the partitions back and forth between the broker's two shards. The
producer is not idempotent on purpose: a retried request would show up as
a duplicate or out of order, so a clean result means no request failed.

Checks: every record acknowledged once, with no delivery error and no
client error callback; the consumer reads every acknowledged record once,
in production order per partition, at its acknowledged offset, with no
consume error; the moves all ran while records flowed, and `ringstream
partition list` shows the owner each move asked for."""

import re
import subprocess
import threading
import time
import urllib.request

import common as c

TOPIC = "moving"
PARTITIONS = 2
SHARDS = 2


def extra(parser):
    parser.add_argument("--ringstream", required=True, help="the broker binary (its partition tools)")
    parser.add_argument("--admin", required=True, help="the broker's --metrics-listen address")
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--moves", type=int, default=12)


def ringstream(args, *command):
    done = subprocess.run([args.ringstream, "partition", *command, "--admin", args.admin],
                          capture_output=True, text=True, timeout=30)
    c.check(done.returncode == 0, f"`ringstream partition {' '.join(command)}` failed ({done.returncode}): "
                                  f"{done.stderr.strip()}")
    return done.stdout


def owners(args):
    """partition -> shard, from `ringstream partition list`."""
    found = {}
    for line in ringstream(args, "list").splitlines()[1:]:
        topic, partition, shard, _rate = line.split()
        if topic == TOPIC:
            found[int(partition)] = int(shard)
    return found


class Producer(threading.Thread):
    """Produces `count` records, seq s to partition s % PARTITIONS, paced at
    about 10,000 records/s so that production spans the moves."""

    def __init__(self, args, count):
        super().__init__(daemon=True, name="producer")
        from confluent_kafka import Producer as CfProducer
        self.count = count
        self.acked = {}
        self.errors = []
        self.done = threading.Event()
        self.producer = CfProducer(c.cf_config(args.bootstrap, **{
            "acks": "all", "enable.idempotence": False, "linger.ms": 2, "message.timeout.ms": 60_000}))
        self.start()

    def delivered(self, err, msg, seq):
        if err is not None:
            self.errors.append((seq, str(err)))
        else:
            self.acked[seq] = (msg.partition(), msg.offset())

    def run(self):
        try:
            for seq in range(self.count):
                while True:
                    try:
                        self.producer.produce(TOPIC, value=f"record-{seq:08d}".encode() * 4, partition=seq % PARTITIONS,
                                              headers=[("seq", str(seq).encode())],
                                              on_delivery=lambda err, msg, seq=seq: self.delivered(err, msg, seq))
                        break
                    except BufferError:
                        self.producer.poll(0.01)
                self.producer.poll(0)
                if seq % 100 == 99:
                    time.sleep(0.01)
            left = self.producer.flush(60)
            if left:
                self.errors.append((-1, f"{left} records undelivered after 60 s"))
        finally:
            self.done.set()


class Consumer(threading.Thread):
    """Reads both partitions from offset 0 until stopped."""

    def __init__(self, args):
        super().__init__(daemon=True, name="consumer")
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition
        self.reads = []  # (partition, offset, seq, value)
        self.errors = []
        self.stop = threading.Event()
        self.consumer = c.cf_consumer(args.bootstrap, **{"fetch.wait.max.ms": 50})
        self.consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        self.start()

    def run(self):
        while not self.stop.is_set():
            for msg in self.consumer.consume(1000, 0.1):
                if msg.error():
                    self.errors.append(str(msg.error()))
                    continue
                seq = int(dict(msg.headers())["seq"])
                self.reads.append((msg.partition(), msg.offset(), seq, msg.value()))
        self.consumer.close()


def main(args):
    c.cf_create_topic(args.bootstrap, TOPIC, PARTITIONS)
    consumer = Consumer(args)
    producer = Producer(args, args.records)
    c.wait_until(lambda: len(producer.acked) >= 500, 30, "the first acknowledgements")

    moves = []  # (partition, to, acked before, acked after)
    for n in range(args.moves):
        partition = n % PARTITIONS
        current = owners(args)[partition]
        to = (current + 1) % SHARDS
        before = len(producer.acked)
        said = ringstream(args, "move", f"{TOPIC}/{partition}", "--shard", str(to))
        c.check(said.startswith(f"moved {TOPIC}/{partition} from shard {current} to shard {to}"), f"move said {said!r}")
        c.check(owners(args)[partition] == to, f"after moving {TOPIC}/{partition} to shard {to}: {owners(args)}")
        moves.append((partition, to, before, len(producer.acked)))
        time.sleep(0.15)
    under_load = [m for m in moves if m[2] < args.records]
    c.check(len(under_load) >= args.moves // 2, f"only {len(under_load)} of {args.moves} moves ran while records "
                                                 f"flowed: {moves}")

    c.check(producer.done.wait(90), "the producer did not finish in 90 s")
    c.check(not producer.errors, f"{len(producer.errors)} delivery errors, first: {producer.errors[:3]}")
    c.check(len(producer.acked) == args.records, f"{len(producer.acked)} of {args.records} acknowledged")
    ends = {p: 0 for p in range(PARTITIONS)}
    for partition, offset in producer.acked.values():
        ends[partition] = max(ends[partition], offset + 1)
    c.wait_until(lambda: len(consumer.reads) >= args.records, 60, f"the consumer to read {args.records} records")
    time.sleep(0.5)  # anything extra (a duplicate) would arrive now
    consumer.stop.set()
    consumer.join(10)
    c.check(not consumer.errors, f"consume errors: {consumer.errors[:3]}")
    c.check(not c.cf_errors, f"client errors: {[str(e) for e in c.cf_errors[:3]]}")

    reads = consumer.reads
    c.check(len(reads) == args.records, f"read {len(reads)} records for {args.records} acknowledged (duplicates?)")
    for partition in range(PARTITIONS):
        got = [r for r in reads if r[0] == partition]
        offsets = [r[1] for r in got]
        c.check(offsets == list(range(ends[partition])), f"partition {partition}: offsets are not 0..{ends[partition]} "
                                                         f"once each (first gap near {first_gap(offsets)})")
        seqs = [r[2] for r in got]
        c.check(seqs == sorted(seqs), f"partition {partition}: records out of production order")
        for _, offset, seq, value in got:
            c.check(producer.acked[seq] == (partition, offset),
                    f"seq {seq} read at {partition}/{offset}, acknowledged at {producer.acked[seq]}")
            c.check(value == f"record-{seq:08d}".encode() * 4, f"seq {seq}: value differs")
    # Each shard's partitions gauge follows the moves.
    listed = {}
    for line in ringstream(args, "list").splitlines()[1:]:
        shard = int(line.split()[2])
        listed[shard] = listed.get(shard, 0) + 1
    with urllib.request.urlopen(f"http://{args.admin}/metrics", timeout=10) as response:
        text = response.read().decode()
    gauges = {int(m.group(1)): int(float(m.group(2)))
              for m in re.finditer(r'^ringstream_partitions\{shard="(\d+)"\} (\S+)$', text, re.M)}
    c.check(gauges == {s: listed.get(s, 0) for s in range(SHARDS)},
            f"ringstream_partitions {gauges} disagrees with `ringstream partition list` {listed}")
    c.log(f"partition moves: {len(moves)} moves ({len(under_load)} while records flowed), {args.records} records "
          f"acknowledged and read once each, in order, no client errors")


def first_gap(offsets):
    for expected, offset in enumerate(offsets):
        if offset != expected:
            return expected
    return len(offsets)


if __name__ == "__main__":
    arguments = c.parse_args(__doc__, extra)
    c.run(lambda: main(arguments))
