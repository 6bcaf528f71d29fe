"""aiokafka (asyncio) against the broker, as its users use it: the admin
client creates and describes topics (CreateTopics' null message on success
was an assertion failure in aiokafka's own suite), an idempotent producer
sends keyed records with each codec, a group consumer reads them all back in
order and commits, a second consumer in the same group resumes at the
committed offsets, and a DeleteRecords moves the earliest offset."""

import asyncio

import common as c

TOPIC = "aio-basic"
PARTITIONS = 3
PER_CODEC = 200
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


async def run(args):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
        for topic in response.topic_errors:
            # (name, error_code, error_message) from v1.
            c.check(topic[1] == 0, f"created: {topic}")
            c.check(topic[2] is None, f"error_message is null on success, as Kafka sends it: {topic}")
        described = await admin.describe_topics([TOPIC])
        c.check(len(described[0]["partitions"]) == PARTITIONS, f"described: {described}")

        sent = {}
        for codec in CODECS:
            producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, enable_idempotence=True,
                                        compression_type=codec, linger_ms=5)
            await producer.start()
            try:
                futures = []
                for i in range(PER_CODEC):
                    key = f"{codec}-{i}".encode()
                    futures.append((key, await producer.send(TOPIC, key=key, value=key * 10)))
                for key, future in futures:
                    meta = await future
                    sent[key] = (meta.partition, meta.offset)
            finally:
                await producer.stop()
        total = len(sent)
        c.check(total == PER_CODEC * len(CODECS), f"{total} acknowledged")

        async def consume(expect, commit):
            consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=args.bootstrap, group_id="aio-group",
                                        auto_offset_reset="earliest", enable_auto_commit=False,
                                        session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
                                        max_poll_interval_ms=30_000)
            await consumer.start()
            got = {}
            try:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60
                while len(got) < expect and loop.time() < deadline:
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    for tp, records in batches.items():
                        for record in records:
                            c.check(record.value == record.key * 10, f"value of {record.key}")
                            got[record.key] = (tp.partition, record.offset)
                if commit:
                    await consumer.commit()
            finally:
                await consumer.stop()
            return got

        got = await consume(total, commit=True)
        c.check(got == sent, f"group read {len(got)} of {total}, at their acknowledged offsets")
        # Another member of the group starts at the committed offsets: nothing left.
        sent_more = {}
        producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap)
        await producer.start()
        try:
            for i in range(30):
                key = f"more-{i}".encode()
                meta = await (await producer.send(TOPIC, key=key, value=key * 10))
                sent_more[key] = (meta.partition, meta.offset)
        finally:
            await producer.stop()
        resumed = await consume(len(sent_more), commit=True)
        c.check(resumed == sent_more, f"resumed at the committed offsets: {len(resumed)} of {len(sent_more)}")

        # DeleteRecords moves the earliest offset of partition 0.
        tp = TopicPartition(TOPIC, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=args.bootstrap)
        await consumer.start()
        try:
            end = (await consumer.end_offsets([tp]))[tp]
            c.check(end > 10, f"partition 0 has {end} records")
            await admin.delete_records({tp: RecordsToDelete(before_offset=10)})
            earliest = (await consumer.beginning_offsets([tp]))[tp]
            c.check(earliest == 10, f"earliest offset after DeleteRecords: {earliest}")
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    c.log(f"aiokafka: {total} records over {len(CODECS)} codecs produced idempotently and read back by a group; "
          f"resumed at committed offsets; DeleteRecords moved the earliest offset")


def main():
    args = c.parse_args(__doc__)
    asyncio.run(run(args))


if __name__ == "__main__":
    c.run(main)
