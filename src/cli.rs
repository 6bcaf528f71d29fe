//! The rpk-like tools: `ringstream topic ...`, `ringstream produce`,
//! `ringstream consume`. They speak the Kafka protocol (through `client`)
//! to a running broker, ours or any other.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::client::{partition_for_key, Client};
use crate::storage::batch::{self, BatchBuilder, Record};

#[derive(Args, Clone)]
pub struct Connection {
    /// Broker to talk to.
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092", global = true)]
    pub brokers: String,
}

impl Connection {
    fn connect(&self) -> Result<Client, String> {
        Client::connect(&self.brokers, Duration::from_secs(5)).map_err(|e| e.to_string())
    }
}

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p', default_value_t = -1)]
        partitions: i32,
        #[arg(long, short = 'r', default_value_t = -1)]
        replicas: i16,
        /// Topic config, e.g. -c retention.ms=60000 (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions, offsets and configs.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Change topic configs: --set KEY=VALUE, --delete KEY (repeatable).
    AlterConfig {
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

#[derive(Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Partition to write to (default: by key, as Kafka's partitioner does;
    /// round-robin without keys).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Split each input line into key and value at this separator.
    #[arg(long, short = 'k')]
    pub key_separator: Option<String>,
    /// acks: 1 or -1 (all).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub acks: i16,
    /// Lines per batch.
    #[arg(long, default_value_t = 100)]
    pub batch_records: usize,
}

#[derive(Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Partition to read (default: all).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Where to start: `start`, `end` or an offset.
    #[arg(long, short = 'o', default_value = "start")]
    pub offset: String,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub num: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print `partition offset key value` instead of just the value.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn kv(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<(), String> {
    if code == 0 {
        return Ok(());
    }
    let detail = message.map(|m| format!(": {}", m.as_str())).unwrap_or_default();
    Err(format!("{what} failed with Kafka error {code}{detail}"))
}

/// Topic names and partition counts, from Metadata.
fn metadata(client: &mut Client, topics: Option<Vec<String>>) -> Result<Vec<(String, i32, i16)>, String> {
    let version = client.version(ApiKey::Metadata, 12).map_err(|e| e.to_string())?;
    let mut request = MetadataRequest::default();
    request.topics = topics.map(|names| {
        names.into_iter().map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(s(&n))))).collect()
    });
    if version >= 4 {
        request.allow_auto_topic_creation = false;
    }
    let response: MetadataResponse = client.call(ApiKey::Metadata, version, &request).map_err(|e| e.to_string())?;
    Ok(response
        .topics
        .iter()
        .map(|t| {
            (t.name.as_ref().map(|n| n.0.as_str().to_owned()).unwrap_or_default(), t.partitions.len() as i32, t.error_code)
        })
        .collect())
}

fn partition_count(client: &mut Client, topic: &str) -> Result<i32, String> {
    let found = metadata(client, Some(vec![topic.to_owned()]))?;
    match found.first() {
        Some((_, count, 0)) => Ok(*count),
        Some((_, _, code)) => Err(format!("topic {topic:?}: Kafka error {code}")),
        None => Err(format!("topic {topic:?} not found")),
    }
}

pub fn topic(connection: &Connection, command: TopicCommand) -> Result<(), String> {
    let mut client = connection.connect()?;
    match command {
        TopicCommand::Create { name, partitions, replicas, configs } => {
            let version = client.version(ApiKey::CreateTopics, 5).map_err(|e| e.to_string())?;
            let configs = configs
                .iter()
                .map(|c| kv(c).map(|(k, v)| CreatableTopicConfig::default().with_name(s(&k)).with_value(Some(s(&v)))))
                .collect::<Result<Vec<_>, _>>()?;
            let topic = CreatableTopic::default()
                .with_name(TopicName(s(&name)))
                .with_num_partitions(partitions)
                .with_replication_factor(replicas)
                .with_configs(configs);
            let request = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000);
            let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, version, &request).map_err(|e| e.to_string())?;
            let result = response.topics.first().ok_or("empty CreateTopics response")?;
            check(result.error_code, result.error_message.as_ref(), "create")?;
            println!("created {name}");
        }
        TopicCommand::List => {
            let mut topics = metadata(&mut client, None)?;
            topics.sort();
            println!("{:<40} {:>10}", "NAME", "PARTITIONS");
            for (name, partitions, _) in topics {
                println!("{name:<40} {partitions:>10}");
            }
        }
        TopicCommand::Describe { name } => {
            let partitions = partition_count(&mut client, &name)?;
            let starts = list_offsets(&mut client, &name, partitions, -2)?;
            let ends = list_offsets(&mut client, &name, partitions, -1)?;
            println!("topic {name}: {partitions} partition(s)");
            println!("{:>9} {:>12} {:>12}", "PARTITION", "LOG-START", "HIGH-WATER");
            for p in 0..partitions as usize {
                println!("{p:>9} {:>12} {:>12}", starts[p], ends[p]);
            }
            let version = client.version(ApiKey::DescribeConfigs, 4).map_err(|e| e.to_string())?;
            let request = DescribeConfigsRequest::default()
                .with_resources(vec![DescribeConfigsResource::default().with_resource_type(2).with_resource_name(s(&name))]);
            let response: DescribeConfigsResponse =
                client.call(ApiKey::DescribeConfigs, version, &request).map_err(|e| e.to_string())?;
            let result = response.results.first().ok_or("empty DescribeConfigs response")?;
            check(result.error_code, result.error_message.as_ref(), "describe configs")?;
            println!("configs:");
            for config in &result.configs {
                let value = config.value.as_ref().map_or("(null)", |v| v.as_str());
                println!("  {} = {value}", config.name.as_str());
            }
        }
        TopicCommand::Delete { name } => {
            let version = client.version(ApiKey::DeleteTopics, 5).map_err(|e| e.to_string())?;
            let request = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s(&name))]).with_timeout_ms(30_000);
            let response: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, version, &request).map_err(|e| e.to_string())?;
            let result = response.responses.first().ok_or("empty DeleteTopics response")?;
            check(result.error_code, result.error_message.as_ref(), "delete")?;
            println!("deleted {name}");
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            let version = client.version(ApiKey::IncrementalAlterConfigs, 1).map_err(|e| e.to_string())?;
            let mut configs = Vec::new();
            for pair in &set {
                let (k, v) = kv(pair)?;
                configs.push(AlterableConfig::default().with_name(s(&k)).with_config_operation(0).with_value(Some(s(&v))));
            }
            for key in &delete {
                configs.push(AlterableConfig::default().with_name(s(key)).with_config_operation(1));
            }
            let request = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(&name))
                .with_configs(configs)]);
            let response: IncrementalAlterConfigsResponse =
                client.call(ApiKey::IncrementalAlterConfigs, version, &request).map_err(|e| e.to_string())?;
            let result = response.responses.first().ok_or("empty IncrementalAlterConfigs response")?;
            check(result.error_code, result.error_message.as_ref(), "alter config")?;
            println!("altered {name}");
        }
    }
    Ok(())
}

/// Offsets per partition at `timestamp` (-2 earliest, -1 latest).
fn list_offsets(client: &mut Client, topic: &str, partitions: i32, timestamp: i64) -> Result<Vec<i64>, String> {
    let version = client.version(ApiKey::ListOffsets, 7).map_err(|e| e.to_string())?;
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(s(topic)))
        .with_partitions(
            (0..partitions).map(|p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(timestamp)).collect(),
        )]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, version, &request).map_err(|e| e.to_string())?;
    let mut offsets = vec![-1; partitions as usize];
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        check(partition.error_code, None, "list offsets")?;
        if let Some(slot) = offsets.get_mut(partition.partition_index as usize) {
            *slot = partition.offset;
        }
    }
    Ok(offsets)
}

pub fn produce(connection: &Connection, args: ProduceArgs) -> Result<(), String> {
    if !matches!(args.acks, 1 | -1) {
        return Err("--acks must be 1 or -1 (this tool reports what the broker acknowledged)".into());
    }
    let mut client = connection.connect()?;
    let partitions = partition_count(&mut client, &args.topic)?;
    if let Some(p) = args.partition {
        if p < 0 || p >= partitions {
            return Err(format!("partition {p} does not exist ({partitions} partitions)"));
        }
    }
    let version = client.version(ApiKey::Produce, 9).map_err(|e| e.to_string())?;
    let batch_records = args.batch_records.clamp(1, 100_000);
    let mut pending: BTreeMap<i32, Vec<(Option<Vec<u8>>, Vec<u8>)>> = BTreeMap::new();
    let mut round_robin = 0i32;
    let mut sent = 0u64;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let line = lines.next().transpose().map_err(|e| e.to_string())?;
        if let Some(line) = &line {
            let (key, value) = match &args.key_separator {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => (Some(k.as_bytes().to_vec()), v.as_bytes().to_vec()),
                    None => (None, line.as_bytes().to_vec()),
                },
                None => (None, line.as_bytes().to_vec()),
            };
            let partition = args.partition.unwrap_or_else(|| match &key {
                Some(k) => partition_for_key(k, partitions),
                None => {
                    round_robin = (round_robin + 1) % partitions;
                    round_robin
                }
            });
            pending.entry(partition).or_default().push((key, value));
        }
        let full = pending.values().any(|records| records.len() >= batch_records);
        if full || (line.is_none() && !pending.is_empty()) {
            sent += send_batches(&mut client, version, &args.topic, args.acks, std::mem::take(&mut pending))?;
        }
        if line.is_none() {
            break;
        }
    }
    eprintln!("produced {sent} record(s) to {}", args.topic);
    Ok(())
}

fn send_batches(
    client: &mut Client,
    version: i16,
    topic: &str,
    acks: i16,
    pending: BTreeMap<i32, Vec<(Option<Vec<u8>>, Vec<u8>)>>,
) -> Result<u64, String> {
    let now = crate::storage::shard_storage::now_ms();
    let mut count = 0u64;
    let mut data = Vec::new();
    for (partition, records) in &pending {
        let mut builder = BatchBuilder::new(now);
        for (key, value) in records {
            builder.push(&Record { key: key.as_deref(), value: Some(value), headers: &[], timestamp_delta: 0 });
        }
        count += records.len() as u64;
        data.push(PartitionProduceData::default().with_index(*partition).with_records(Some(Bytes::from(builder.build()))));
    }
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(data)]);
    let response: ProduceResponse = client.call(ApiKey::Produce, version, &request).map_err(|e| e.to_string())?;
    for partition in response.responses.iter().flat_map(|t| &t.partition_responses) {
        check(partition.error_code, partition.error_message.as_ref(), &format!("produce to partition {}", partition.index))?;
    }
    Ok(count)
}

pub fn consume(connection: &Connection, args: ConsumeArgs) -> Result<(), String> {
    let mut client = connection.connect()?;
    let partitions = partition_count(&mut client, &args.topic)?;
    let wanted: Vec<i32> = match args.partition {
        Some(p) if p < 0 || p >= partitions => return Err(format!("partition {p} does not exist ({partitions} partitions)")),
        Some(p) => vec![p],
        None => (0..partitions).collect(),
    };
    let mut positions: BTreeMap<i32, i64> = match args.offset.as_str() {
        "start" | "end" => {
            let at = if args.offset == "start" { -2 } else { -1 };
            let offsets = list_offsets(&mut client, &args.topic, partitions, at)?;
            wanted.iter().map(|p| (*p, offsets[*p as usize])).collect()
        }
        n => {
            let offset: i64 = n.parse().map_err(|_| format!("--offset must be start, end or a number, got {n:?}"))?;
            wanted.iter().map(|p| (*p, offset)).collect()
        }
    };
    let version = client.version(ApiKey::Fetch, 12).map_err(|e| e.to_string())?;
    let mut printed = 0u64;
    let out = std::io::stdout();
    let mut out = out.lock();
    loop {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(if args.follow { 1000 } else { 100 })
            .with_min_bytes(1)
            .with_max_bytes(16 * 1024 * 1024)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(TopicName(s(&args.topic))).with_partitions(
                positions
                    .iter()
                    .map(|(p, offset)| {
                        FetchPartition::default().with_partition(*p).with_fetch_offset(*offset).with_partition_max_bytes(1024 * 1024)
                    })
                    .collect(),
            )]);
        let response: FetchResponse = client.call(ApiKey::Fetch, version, &request).map_err(|e| e.to_string())?;
        check(response.error_code, None, "fetch")?;
        let mut progressed = false;
        let mut at_end = true;
        for partition in response.responses.iter().flat_map(|t| &t.partitions) {
            check(partition.error_code, None, &format!("fetch partition {}", partition.partition_index))?;
            let position = positions.get_mut(&partition.partition_index).ok_or("fetch answered an unrequested partition")?;
            let Some(records) = &partition.records else { continue };
            // Only whole batches: a broker may cut the last one short.
            let whole: usize =
                batch::split_batches(records, crate::limits::batch_bytes_max).map_while(Result::ok).map(<[u8]>::len).sum();
            let mut buf = records.slice(..whole);
            for set in RecordBatchDecoder::decode_all(&mut buf).map_err(|e| format!("decoding records: {e}"))? {
                for record in set.records {
                    if record.offset < *position || record.control {
                        continue;
                    }
                    *position = record.offset + 1;
                    progressed = true;
                    let value = record.value.as_deref().unwrap_or(b"");
                    let written = if args.verbose {
                        let key = record.key.as_deref().unwrap_or(b"");
                        writeln!(
                            out,
                            "{} {} {} {}",
                            partition.partition_index,
                            record.offset,
                            String::from_utf8_lossy(key),
                            String::from_utf8_lossy(value)
                        )
                    } else {
                        out.write_all(value).and_then(|()| out.write_all(b"\n"))
                    };
                    written.map_err(|e| e.to_string())?;
                    printed += 1;
                    if args.num.is_some_and(|n| printed >= n) {
                        return out.flush().map_err(|e| e.to_string());
                    }
                }
            }
            if *position < partition.high_watermark {
                at_end = false;
            }
        }
        if !args.follow && at_end && !progressed {
            return out.flush().map_err(|e| e.to_string());
        }
    }
}
