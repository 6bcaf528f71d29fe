"""Topic administration through confluent-kafka's AdminClient: create (with
configs, validate_only, errors), describe (topics, cluster, configs), alter
(IncrementalAlterConfigs and AlterConfigs), grow partitions, delete. Every
change is checked through a second path (Metadata, DescribeConfigs, or
producing and reading back)."""

import common as c

TIMEOUT = 15


def main():
    args = c.parse_args(__doc__)
    from confluent_kafka import KafkaError, KafkaException, TopicCollection, TopicPartition
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions,
                                       NewTopic, ResourceType)
    admin = c.cf_admin(args.bootstrap)
    host, port = args.bootstrap.rsplit(":", 1)

    result = c.cf_result
    expect_error = c.cf_expect_error

    def metadata_partitions(topic):
        return len(c.cf_partitions(admin, topic))

    def configs_of(topic):
        resource = ConfigResource(ResourceType.TOPIC, topic)
        return result(admin.describe_configs([resource], request_timeout=TIMEOUT), resource)

    def create(topic, partitions, config=None):
        result(admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})],
                                   request_timeout=TIMEOUT), topic)
        c.wait_until(lambda: metadata_partitions(topic) == partitions, 10, f"{topic} in Metadata")

    def case_create(_):
        topic = "cfa-create"
        create(topic, 3, {"retention.ms": "3600000", "cleanup.policy": "delete"})
        c.check(metadata_partitions(topic) == 3, f"{topic}: {metadata_partitions(topic)} partitions in Metadata")
        for p, info in c.cf_partitions(admin, topic).items():
            c.check(info.leader == 0 and list(info.replicas) == [0] and list(info.isrs) == [0],
                    f"{topic}/{p}: leader {info.leader} replicas {info.replicas} isr {info.isrs}")
        futures = admin.create_topics([NewTopic("cfa-validate", 4, 1)], validate_only=True, request_timeout=TIMEOUT)
        result(futures, "cfa-validate")
        # Listing all topics (a Metadata request for one topic may auto-create it).
        c.check("cfa-validate" not in admin.list_topics(timeout=10).topics, "validate_only create made the topic")
        expect_error(admin.create_topics([NewTopic(topic, 3, 1)], request_timeout=TIMEOUT), topic,
                     KafkaError.TOPIC_ALREADY_EXISTS, "creating an existing topic")
        expect_error(admin.create_topics([NewTopic("cfa-rf3", 1, 3)], request_timeout=TIMEOUT), "cfa-rf3",
                     KafkaError.INVALID_REPLICATION_FACTOR, "replication factor 3 on one broker")
        expect_error(admin.create_topics([NewTopic("cfa-badconf", 1, 1, config={"retention.ms": "soon"})],
                                         request_timeout=TIMEOUT), "cfa-badconf",
                     KafkaError.INVALID_CONFIG, "retention.ms=soon")
        c.log("create: 3-partition topic with configs, validate_only, TOPIC_ALREADY_EXISTS, "
              "INVALID_REPLICATION_FACTOR, INVALID_CONFIG")

    def case_describe(_):
        topic = "cfa-describe"
        create(topic, 3, {"retention.ms": "3600000"})
        desc = result(admin.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT), topic)
        c.check(desc.name == topic, f"describe_topics name {desc.name}")
        c.check(len(desc.partitions) == 3, f"describe_topics: {len(desc.partitions)} partitions")
        for p in desc.partitions:
            c.check(p.leader.id == 0 and [r.id for r in p.replicas] == [0] and [r.id for r in p.isr] == [0],
                    f"describe_topics partition {p.id}: leader {p.leader} replicas {p.replicas} isr {p.isr}")
        c.check(str(desc.topic_id) not in ("", "AAAAAAAAAAAAAAAAAAAAAA"), f"topic id {desc.topic_id}")
        cluster = admin.describe_cluster(request_timeout=TIMEOUT).result(TIMEOUT)
        c.check(cluster.cluster_id, "describe_cluster: no cluster id")
        c.check([(n.id, n.host, n.port) for n in cluster.nodes] == [(0, host, int(port))],
                f"describe_cluster nodes {[(n.id, n.host, n.port) for n in cluster.nodes]}")
        c.check(cluster.controller is not None and cluster.controller.id == 0,
                f"describe_cluster controller {cluster.controller}")
        configs = configs_of(topic)
        entry = configs.get("retention.ms")
        c.check(entry is not None, f"describe_configs lacks retention.ms: {sorted(configs)}")
        c.check(entry.value == "3600000" and entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
                and not entry.is_default,
                f"retention.ms: value {entry.value} source {entry.source} is_default {entry.is_default}")
        for name in ("segment.bytes", "max.message.bytes", "cleanup.policy"):
            e = configs.get(name)
            c.check(e is not None, f"describe_configs lacks {name}: {sorted(configs)}")
            c.check(e.source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
                    f"{name} (never set) reported as a topic override: {e.value} source {e.source}")
        c.log(f"describe: describe_topics (3 partitions), describe_cluster (cluster {cluster.cluster_id}, node 0), "
              f"describe_configs ({len(configs)} configs, retention.ms override)")

    def case_alter(_):
        topic = "cfa-alter"
        create(topic, 2, {"cleanup.policy": "delete"})
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)])
        result(admin.incremental_alter_configs([resource], request_timeout=TIMEOUT), resource)
        configs = configs_of(topic)
        c.check(configs["retention.ms"].value == "7200000", f"retention.ms {configs['retention.ms'].value}")
        c.check(configs["segment.bytes"].value == "1048576", f"segment.bytes {configs['segment.bytes'].value}")
        c.check(configs["cleanup.policy"].value == "delete" and
                configs["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
                "incremental alter dropped the cleanup.policy override")
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
        result(admin.incremental_alter_configs([resource], request_timeout=TIMEOUT), resource)
        configs = configs_of(topic)
        c.check(configs["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
                f"retention.ms still an override after DELETE: {configs['retention.ms'].value}")
        bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("retention.ms", "later", incremental_operation=AlterConfigOpType.SET)])
        expect_error(admin.incremental_alter_configs([bad], request_timeout=TIMEOUT), bad,
                     KafkaError.INVALID_CONFIG, "retention.ms=later")
        # AlterConfigs (legacy) replaces the whole set of overrides.
        resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "1800000"})
        result(admin.alter_configs([resource], request_timeout=TIMEOUT), resource)
        configs = configs_of(topic)
        c.check(configs["retention.ms"].value == "1800000", f"AlterConfigs: retention.ms {configs['retention.ms'].value}")
        for name in ("segment.bytes", "cleanup.policy"):
            c.check(configs[name].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
                    f"AlterConfigs did not reset the {name} override ({configs[name].value})")
        missing = ConfigResource(ResourceType.TOPIC, "cfa-no-such-topic", set_config={"retention.ms": "1"})
        expect_error(admin.alter_configs([missing], request_timeout=TIMEOUT), missing,
                     KafkaError.UNKNOWN_TOPIC_OR_PART, "AlterConfigs on a missing topic")
        c.log("alter: IncrementalAlterConfigs SET/DELETE, INVALID_CONFIG, AlterConfigs replaces overrides, "
              "UNKNOWN_TOPIC_OR_PARTITION")

    def case_partitions(_):
        topic = "cfa-grow"
        create(topic, 3)
        result(admin.create_partitions([NewPartitions(topic, 8)], validate_only=True, request_timeout=TIMEOUT), topic)
        c.check(metadata_partitions(topic) == 3, "validate_only CreatePartitions changed the count")
        result(admin.create_partitions([NewPartitions(topic, 6)], request_timeout=TIMEOUT), topic)
        c.wait_until(lambda: metadata_partitions(topic) == 6, 10, f"{topic} with 6 partitions in Metadata")
        expect_error(admin.create_partitions([NewPartitions(topic, 2)], request_timeout=TIMEOUT), topic,
                     KafkaError.INVALID_PARTITIONS, "shrinking to 2 partitions")
        records = c.make_records(600, seed=7, ts_base=c.now_ms() - 60_000, big_values=False)
        acked = c.cf_produce(args.bootstrap, topic, records, partition_of=lambda r: r.seq % 6)
        consumed = c.cf_read_all(args.bootstrap, topic, c.ends_from_acks(acked))
        c.compare_exact(f"{topic} after growing", records, acked, consumed)
        c.log("partitions: validate_only, 3 -> 6, INVALID_PARTITIONS on shrink, new partitions 3-5 written and read")

    def case_delete(_):
        topic = "cfa-delete"
        create(topic, 3)
        before = result(admin.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT), topic).topic_id
        records = c.make_records(300, seed=8, ts_base=c.now_ms() - 60_000, big_values=False)
        c.cf_produce(args.bootstrap, topic, records)
        result(admin.delete_topics([topic], request_timeout=TIMEOUT), topic)
        c.wait_until(lambda: topic not in admin.list_topics(timeout=10).topics, 10, f"{topic} gone from Metadata")
        expect_error(admin.delete_topics([topic], request_timeout=TIMEOUT), topic,
                     KafkaError.UNKNOWN_TOPIC_OR_PART, "deleting a deleted topic")
        # The same name again is a new, empty topic.
        create(topic, 2)
        after = result(admin.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT), topic).topic_id
        c.check(str(after) != str(before), f"recreated topic kept its id {before}")
        consumer = c.cf_consumer(args.bootstrap)
        try:
            for p in range(2):
                marks = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                c.check(marks == (0, 0), f"recreated {topic}/{p}: watermarks {marks}, expected (0, 0)")
        finally:
            consumer.close()
        c.log("delete: topic with 300 records deleted, gone from Metadata, UNKNOWN_TOPIC_OR_PARTITION on repeat, "
              "recreated empty with a new id")

    def case_auto_create(_):
        # A producer's Metadata request for an unknown topic creates it
        # (auto.create.topics.enable, allow_auto_topic_creation). librdkafka
        # asks on two connections at once, so two creations race: Kafka answers
        # each with the topic or LEADER_NOT_AVAILABLE (retriable), never an error.
        from confluent_kafka import Producer
        producer = Producer(c.cf_config(args.bootstrap, **{"allow.auto.create.topics": True}))
        outcomes, examples = {}, {}
        for i in range(20):
            topic = f"cfa-auto-{i}"
            err = producer.list_topics(topic, timeout=10).topics[topic].error
            kind = err.name() if err else "NONE"
            outcomes[kind] = outcomes.get(kind, 0) + 1
            examples.setdefault(kind, f"{topic}: {err.str() if err else 'ok'}")
        bad = [examples[k] for k in outcomes if k not in ("NONE", "LEADER_NOT_AVAILABLE")]
        c.check(not bad, f"Metadata requests auto-creating 20 new topics were answered {outcomes}; Kafka answers "
                         f"with the topic or LEADER_NOT_AVAILABLE. Examples: {bad}")
        for i in range(20):
            topic = f"cfa-auto-{i}"
            c.wait_until(lambda: metadata_partitions(topic) == c.PARTITIONS, 10, f"{topic} with num.partitions=6")
        c.log(f"auto-create: 20 topics created by Metadata requests, each with 6 partitions ({outcomes})")

    # auto-create last: while it fails, the clients' retries keep creating
    # topics in the background, which would disturb the other cases.
    c.run_cases(["create", "describe", "alter", "partitions", "delete", "auto-create"],
                lambda name: {"create": case_create, "auto-create": case_auto_create, "describe": case_describe,
                              "alter": case_alter, "partitions": case_partitions, "delete": case_delete}[name](name))
    c.log("admin (confluent-kafka): all cases passed")


if __name__ == "__main__":
    c.run(main)
