"""Topic administration through kafka-python's KafkaAdminClient: create
(with configs, validate_only, errors), describe (topics, cluster, configs),
alter (incremental and legacy), grow partitions, delete. Every change is
checked through a second path."""

import common as c


def main():
    args = c.parse_args(__doc__)
    import kafka.errors as Errors
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.admin._configs import AlterConfigOp
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=15000)
    c.on_exit(admin.close)
    host, port = args.bootstrap.rsplit(":", 1)

    def expect_error(fn, error_type, what):
        try:
            fn()
        except error_type:
            return
        except Exception as e:
            c.fail(f"{what}: raised {e!r}, expected {error_type.__name__}")
        c.fail(f"{what}: succeeded, expected {error_type.__name__}")

    def describe(topic):
        topics = admin.describe_topics([topic])
        c.check(len(topics) == 1, f"describe_topics([{topic}]) returned {len(topics)} topics")
        return topics[0]

    def partitions_of(topic):
        t = describe(topic)
        return len(t["partitions"]) if t["error_code"] == 0 else 0

    def create(topic, partitions, configs=None):
        admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs or {})])
        c.wait_until(lambda: partitions_of(topic) == partitions, 10, f"{topic} in Metadata")

    def configs_of(topic, config_filter="all"):
        result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter=config_filter)
        return result["topic"][topic]

    def case_create(_):
        topic = "kpa-create"
        create(topic, 3, {"retention.ms": "3600000", "cleanup.policy": "delete"})
        t = describe(topic)
        for p in t["partitions"]:
            c.check(p["leader_id"] == 0 and list(p["replica_nodes"]) == [0] and list(p["isr_nodes"]) == [0],
                    f"{topic}/{p['partition_index']}: {p}")
        admin.create_topics([NewTopic("kpa-validate", 4, 1)], validate_only=True)
        c.check("kpa-validate" not in admin.list_topics(), "validate_only create made the topic")
        expect_error(lambda: admin.create_topics([NewTopic(topic, 3, 1)]), Errors.TopicAlreadyExistsError,
                     "creating an existing topic")
        expect_error(lambda: admin.create_topics([NewTopic("kpa-rf3", 1, 3)]), Errors.InvalidReplicationFactorError,
                     "replication factor 3 on one broker")
        expect_error(lambda: admin.create_topics([NewTopic("kpa-bad", 1, 1, topic_configs={"retention.ms": "soon"})]),
                     Errors.InvalidConfigurationError, "retention.ms=soon")
        c.log("create: with configs, validate_only, TopicAlreadyExists, InvalidReplicationFactor, InvalidConfiguration")

    def case_describe(_):
        topic = "kpa-describe"
        create(topic, 3, {"retention.ms": "3600000"})
        t = describe(topic)
        c.check(len(t["partitions"]) == 3, f"describe_topics: {t}")
        cluster = admin.describe_cluster()
        c.check(cluster.get("cluster_id"), f"describe_cluster: no cluster id: {cluster}")
        c.check(cluster.get("controller_id") == 0, f"describe_cluster controller: {cluster}")
        brokers = [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]]
        c.check(brokers == [(0, host, int(port))], f"describe_cluster brokers {brokers}")
        modified = configs_of(topic, "modified")
        c.check(set(modified) == {"retention.ms"} and modified["retention.ms"]["value"] == "3600000",
                f"describe_configs (modified): {modified}")
        everything = configs_of(topic)
        for name in ("segment.bytes", "max.message.bytes", "cleanup.policy", "retention.ms"):
            c.check(name in everything, f"describe_configs (all) lacks {name}: {sorted(everything)}")
        c.log(f"describe: describe_topics, describe_cluster ({cluster['cluster_id']}), describe_configs "
              f"({len(everything)} configs, 1 modified)")

    def case_alter(_):
        topic = "kpa-alter"
        create(topic, 2, {"cleanup.policy": "delete"})
        # Incremental (IncrementalAlterConfigs when the broker serves it).
        result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                     configs={"retention.ms": "7200000", "segment.bytes": "1048576"})])
        c.check(result == {"topic": {topic: "OK"}}, f"alter_configs: {result}")
        modified = configs_of(topic, "modified")
        c.check({k: v["value"] for k, v in modified.items()} ==
                {"retention.ms": "7200000", "segment.bytes": "1048576", "cleanup.policy": "delete"},
                f"after incremental alter: {modified}")
        result = admin.reset_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=["retention.ms"])])
        c.check(result == {"topic": {topic: "OK"}}, f"reset_configs: {result}")
        modified = configs_of(topic, "modified")
        c.check(set(modified) == {"segment.bytes", "cleanup.policy"}, f"after reset of retention.ms: {modified}")
        # Legacy AlterConfigs (kafka-python carries the other overrides over).
        result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                     configs={"retention.ms": "1800000"})], incremental=False)
        c.check(result == {"topic": {topic: "OK"}}, f"alter_configs(incremental=False): {result}")
        modified = configs_of(topic, "modified")
        c.check({k: v["value"] for k, v in modified.items()} ==
                {"retention.ms": "1800000", "segment.bytes": "1048576", "cleanup.policy": "delete"},
                f"after legacy alter: {modified}")
        result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                     configs={"retention.ms": (AlterConfigOp.SET, "later")})],
                                     raise_on_unknown=False)
        c.check("InvalidConfiguration" in str(result["topic"][topic]) or "INVALID_CONFIG" in str(result),
                f"retention.ms=later: {result}")
        c.log("alter: incremental SET, reset (DELETE), legacy AlterConfigs, InvalidConfiguration")

    def case_partitions(_):
        topic = "kpa-grow"
        create(topic, 3)
        admin.create_partitions({topic: 8}, validate_only=True)
        c.check(partitions_of(topic) == 3, "validate_only create_partitions changed the count")
        admin.create_partitions({topic: 6})
        c.wait_until(lambda: partitions_of(topic) == 6, 10, f"{topic} with 6 partitions")
        expect_error(lambda: admin.create_partitions({topic: 2}), Errors.InvalidPartitionsError, "shrinking")
        records = c.make_records(300, seed=9, ts_base=c.now_ms() - 60_000, big_values=False, null_header_values=False)
        producer = c.kp_producer(args.bootstrap)
        try:
            futures = [(r.seq, producer.send(topic, key=r.key, value=r.value, headers=r.headers,
                                             partition=r.seq % 6, timestamp_ms=r.timestamp)) for r in records]
            producer.flush(30)
            acked = {seq: (f.get(1).partition, f.get(1).offset) for seq, f in futures}
        finally:
            producer.close(5)
        consumed = c.kp_read_all(args.bootstrap, topic, c.ends_from_acks(acked))
        c.compare_exact(f"{topic} after growing", records, acked, consumed)
        c.log("partitions: validate_only, 3 -> 6, InvalidPartitions on shrink, new partitions written and read")

    def case_delete(_):
        topic = "kpa-delete"
        create(topic, 3)
        records = c.make_records(300, seed=10, ts_base=c.now_ms() - 60_000, big_values=False, null_header_values=False)
        c.kp_produce(args.bootstrap, topic, records)
        admin.delete_topics([topic])
        c.wait_until(lambda: topic not in admin.list_topics(), 10, f"{topic} gone")
        expect_error(lambda: admin.delete_topics([topic]), Errors.UnknownTopicOrPartitionError, "deleting again")
        create(topic, 2)
        consumer = c.kp_consumer(args.bootstrap)
        try:
            tps = [TopicPartition(topic, p) for p in range(2)]
            ends = consumer.end_offsets(tps)
            c.check(all(v == 0 for v in ends.values()), f"recreated topic not empty: {ends}")
        finally:
            consumer.close()
        c.log("delete: deleted with data, UnknownTopicOrPartition on repeat, recreated empty")

    c.run_cases(["create", "describe", "alter", "partitions", "delete"],
                lambda name: {"create": case_create, "describe": case_describe, "alter": case_alter,
                              "partitions": case_partitions, "delete": case_delete}[name](name))
    c.log("admin (kafka-python): all cases passed")


if __name__ == "__main__":
    c.run(main)
