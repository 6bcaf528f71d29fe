"""Admin APIs through confluent-kafka's AdminClient (issue 11): broker
configs (DescribeConfigs on the BROKER resource with sources, including the
static ones given with --set; IncrementalAlterConfigs of dynamic settings
for this broker, reported back as DYNAMIC_BROKER_CONFIG and taking effect on
topics without an override; read-only settings and bad values refused), DeleteRecords with list_offsets
earliest following it, and ElectLeaders."""

import common as c

TIMEOUT = 15


def main():
    args = c.parse_args(__doc__)
    from confluent_kafka import (ElectionType, KafkaError, KafkaException, TopicPartition, OFFSET_BEGINNING)
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, OffsetSpec,
                                       ResourceType)
    admin = c.cf_admin(args.bootstrap)

    result = c.cf_result
    expect_error = c.cf_expect_error

    broker = ConfigResource(ResourceType.BROKER, "0")

    def describe(resource):
        return result(admin.describe_configs([resource], request_timeout=TIMEOUT), resource, f"describe {resource}")

    configs = describe(broker)
    c.log(f"broker configs: {sorted(configs)}")
    for name, value, source, read_only in [
        ("num.partitions", "6", ConfigSource.STATIC_BROKER_CONFIG, True),          # --set num.partitions=6
        ("log.retention.ms", "604800000", ConfigSource.DEFAULT_CONFIG, False),
        ("message.max.bytes", "1048588", ConfigSource.DEFAULT_CONFIG, False),
        ("auto.create.topics.enable", "true", ConfigSource.DEFAULT_CONFIG, True),
        ("node.id", "0", ConfigSource.STATIC_BROKER_CONFIG, True),
    ]:
        entry = configs.get(name)
        c.check(entry is not None, f"broker config {name} missing")
        c.check((entry.value, entry.source, entry.is_read_only) == (value, source.value, read_only),
                f"{name}: {entry.value!r} source {entry.source} read-only {entry.is_read_only}, "
                f"expected {value!r} {source} {read_only}")
    def alter(resource, entries):
        resource = ConfigResource(resource.restype, resource.name, incremental_configs=entries)
        return admin.incremental_alter_configs([resource], request_timeout=TIMEOUT), resource

    # A topic without overrides follows the broker's dynamic value.
    topic = "cfa-apis"
    c.cf_create_topic(args.bootstrap, topic, partitions=2)
    topic_resource = ConfigResource(ResourceType.TOPIC, topic)

    def topic_retention():
        entry = describe(topic_resource)["retention.ms"]
        return entry.value, entry.source

    futures, key = alter(broker, [ConfigEntry("log.retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
                                  ConfigEntry("log.segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)])
    result(futures, key, "per-broker SET")
    configs = describe(broker)
    for name, value in [("log.retention.ms", "3600000"), ("log.segment.bytes", "1048576")]:
        entry = configs[name]
        c.check((entry.value, entry.source) == (value, ConfigSource.DYNAMIC_BROKER_CONFIG.value),
                f"{name} after SET: {entry.value} source {entry.source}")
    c.check(topic_retention() == ("3600000", ConfigSource.DYNAMIC_BROKER_CONFIG.value),
            f"topic without override follows the broker's dynamic value: {topic_retention()}")
    # Read-only and bad values.
    futures, key = alter(broker, [ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)])
    expect_error(futures, key, KafkaError.INVALID_REQUEST, "SET of the read-only num.partitions")
    futures, key = alter(broker, [ConfigEntry("log.retention.ms", "abc", incremental_operation=AlterConfigOpType.SET)])
    expect_error(futures, key, KafkaError.INVALID_CONFIG, "SET of a bad value")
    futures, key = alter(broker, [ConfigEntry("log.retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND)])
    expect_error(futures, key, KafkaError.INVALID_CONFIG, "APPEND to a LONG")
    c.check(describe(broker)["log.retention.ms"].value == "3600000", "refused changes changed nothing")
    # DELETE falls back to Kafka's default.
    futures, key = alter(broker, [ConfigEntry("log.retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    result(futures, key, "per-broker DELETE")
    entry = describe(broker)["log.retention.ms"]
    c.check((entry.value, entry.source) == ("604800000", ConfigSource.DEFAULT_CONFIG.value), f"after DELETEs: {entry}")
    c.check(topic_retention()[0] == "604800000", f"topic back to the default: {topic_retention()}")

    # --- DeleteRecords + ListOffsets earliest -------------------------------
    records = c.make_records(200, seed=21, ts_base=c.now_ms(), nkeys=20)
    c.cf_produce(args.bootstrap, topic, records, partition_of=lambda r: 1, flush_every=25)
    tp = TopicPartition(topic, 1)

    def earliest():
        futures = admin.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=TIMEOUT)
        return result(futures, tp, "list_offsets earliest").offset

    c.check(earliest() == 0, f"earliest before: {earliest()}")
    futures = admin.delete_records([TopicPartition(topic, 1, 120)], request_timeout=TIMEOUT)
    deleted = result(futures, TopicPartition(topic, 1, 120), "delete_records 120")
    c.log(f"delete_records: {deleted}")
    c.check(deleted.low_watermark == 120, f"low watermark {deleted.low_watermark}")
    c.check(earliest() == 120, f"earliest after DeleteRecords: {earliest()}")
    futures = admin.delete_records([TopicPartition(topic, 1, 500)], request_timeout=TIMEOUT)
    expect_error(futures, TopicPartition(topic, 1, 500), KafkaError.OFFSET_OUT_OF_RANGE, "DeleteRecords past the HW")
    # A consumer from the beginning starts at the new log start.
    consumer = c.cf_consumer(args.bootstrap)
    consumer.assign([TopicPartition(topic, 1, OFFSET_BEGINNING)])
    first = None
    for _ in range(30):
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            first = msg.offset()
            break
    consumer.close()
    c.check(first == 120, f"first offset consumed from the beginning: {first}")

    # --- ElectLeaders ---------------------------------------------------------
    # (No keyword arguments: confluent-kafka 2.16's binding refuses them here.)
    futures = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0), TopicPartition(topic, 1)])
    outcome = futures.result(TIMEOUT)
    c.log(f"elect_leaders: {outcome}")
    codes = {(p.topic, p.partition): (e.code() if e is not None else 0) for p, e in outcome.items()}
    c.check(codes == {(topic, 0): KafkaError.ELECTION_NOT_NEEDED, (topic, 1): KafkaError.ELECTION_NOT_NEEDED},
            f"ELECTION_NOT_NEEDED expected: {codes}")
    c.log("admin_apis_confluent: broker configs (describe, dynamic set/delete), DeleteRecords, ListOffsets, ElectLeaders checked")


if __name__ == "__main__":
    c.run(main)
