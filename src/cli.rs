//! The rpk-like tools: `ringstream topic ...`, `ringstream produce`,
//! `ringstream consume`, `ringstream group ...` (modelled on Kafka's
//! kafka-consumer-groups.sh). They speak the Kafka protocol (through `client`)
//! to a running broker, ours or any other.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::time::Duration;

use bytes::Bytes;
use clap::{ArgGroup, Args, Subcommand};
use kafka_protocol::error::ResponseError;
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

use ringstream_client::{
    by_topic, decode_consumer_assignment, describe_error, partition_for_key, Client, ClientError, GroupDescription,
    ListedGroup,
};
use ringstream_core::batch::{self, BatchBuilder, Record};
use ringstream_core::types::TopicPartition;

/// Why a tool command failed. `main` prints it and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The broker could not be reached, or its answer could not be used.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The broker refused an operation with a Kafka error code.
    #[error("{what}: {}", describe_error(*code, message.as_deref()))]
    Kafka { what: String, code: i16, message: Option<String> },
    /// A topic, partition, group or offset the command names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An argument the command cannot use.
    #[error("{0}")]
    Usage(String),
    /// The broker's answer cannot be used (missing or undecodable parts).
    #[error("{0}")]
    BadResponse(String),
    /// Some of several operations failed; each was reported as it failed.
    #[error("{0}")]
    Partial(String),
    /// Reading input or writing output.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Args, Clone)]
pub struct Connection {
    /// Broker to talk to.
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092", global = true)]
    pub brokers: String,
}

impl Connection {
    pub(crate) fn connect(&self) -> Result<Client, CliError> {
        Ok(Client::connect(&self.brokers, Duration::from_secs(5))?)
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

fn kv(pair: &str) -> Result<(String, String), CliError> {
    pair.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| CliError::Usage(format!("{pair:?} is not KEY=VALUE")))
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<(), CliError> {
    if code == 0 {
        return Ok(());
    }
    Err(CliError::Kafka { what: format!("{what} failed"), code, message: message.map(|m| m.as_str().to_owned()) })
}

/// Topic names and partition counts, from Metadata.
fn metadata(client: &mut Client, topics: Option<Vec<String>>) -> Result<Vec<(String, i32, i16)>, CliError> {
    let version = client.version(ApiKey::Metadata, 12)?;
    let mut request = MetadataRequest::default();
    request.topics = topics.map(|names| {
        names.into_iter().map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(s(&n))))).collect()
    });
    if version >= 4 {
        request.allow_auto_topic_creation = false;
    }
    let response: MetadataResponse = client.call(ApiKey::Metadata, version, &request)?;
    Ok(response
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.0.as_str().to_owned()).unwrap_or_default(),
                t.partitions.len() as i32,
                t.error_code,
            )
        })
        .collect())
}

fn partition_count(client: &mut Client, topic: &str) -> Result<i32, CliError> {
    let found = metadata(client, Some(vec![topic.to_owned()]))?;
    match found.first() {
        Some((_, count, 0)) => Ok(*count),
        Some((_, _, code)) => Err(CliError::Kafka { what: format!("topic {topic:?}"), code: *code, message: None }),
        None => Err(CliError::NotFound(format!("topic {topic:?} not found"))),
    }
}

pub fn topic(connection: &Connection, command: TopicCommand) -> Result<(), CliError> {
    let mut client = connection.connect()?;
    match command {
        TopicCommand::Create { name, partitions, replicas, configs } => {
            let version = client.version(ApiKey::CreateTopics, 5)?;
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
            let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, version, &request)?;
            let result =
                response.topics.first().ok_or_else(|| CliError::BadResponse("empty CreateTopics response".into()))?;
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
            let version = client.version(ApiKey::DescribeConfigs, 4)?;
            let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(&name))]);
            let response: DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, version, &request)?;
            let result = response
                .results
                .first()
                .ok_or_else(|| CliError::BadResponse("empty DescribeConfigs response".into()))?;
            check(result.error_code, result.error_message.as_ref(), "describe configs")?;
            println!("configs:");
            for config in &result.configs {
                let value = config.value.as_ref().map_or("(null)", |v| v.as_str());
                println!("  {} = {value}", config.name.as_str());
            }
        }
        TopicCommand::Delete { name } => {
            let version = client.version(ApiKey::DeleteTopics, 5)?;
            let request =
                DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s(&name))]).with_timeout_ms(30_000);
            let response: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, version, &request)?;
            let result = response
                .responses
                .first()
                .ok_or_else(|| CliError::BadResponse("empty DeleteTopics response".into()))?;
            check(result.error_code, result.error_message.as_ref(), "delete")?;
            println!("deleted {name}");
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            let version = client.version(ApiKey::IncrementalAlterConfigs, 1)?;
            let mut configs = Vec::new();
            for pair in &set {
                let (k, v) = kv(pair)?;
                configs
                    .push(AlterableConfig::default().with_name(s(&k)).with_config_operation(0).with_value(Some(s(&v))));
            }
            for key in &delete {
                configs.push(AlterableConfig::default().with_name(s(key)).with_config_operation(1));
            }
            let request =
                IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(&name))
                    .with_configs(configs)]);
            let response: IncrementalAlterConfigsResponse =
                client.call(ApiKey::IncrementalAlterConfigs, version, &request)?;
            let result = response
                .responses
                .first()
                .ok_or_else(|| CliError::BadResponse("empty IncrementalAlterConfigs response".into()))?;
            check(result.error_code, result.error_message.as_ref(), "alter config")?;
            println!("altered {name}");
        }
    }
    Ok(())
}

/// Offsets per partition at `timestamp` (-2 earliest, -1 latest).
fn list_offsets(client: &mut Client, topic: &str, partitions: i32, timestamp: i64) -> Result<Vec<i64>, CliError> {
    let version = client.version(ApiKey::ListOffsets, 7)?;
    let request =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(
                (0..partitions)
                    .map(|p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(timestamp))
                    .collect(),
            )]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, version, &request)?;
    let mut offsets = vec![-1; partitions as usize];
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        check(partition.error_code, None, "list offsets")?;
        if let Some(slot) = offsets.get_mut(partition.partition_index as usize) {
            *slot = partition.offset;
        }
    }
    Ok(offsets)
}

/// Records waiting to be sent, by partition: (key, value) each.
type PendingRecords = BTreeMap<i32, Vec<(Option<Vec<u8>>, Vec<u8>)>>;

pub fn produce(connection: &Connection, args: ProduceArgs) -> Result<(), CliError> {
    if !matches!(args.acks, 1 | -1) {
        return Err(CliError::Usage("--acks must be 1 or -1 (this tool reports what the broker acknowledged)".into()));
    }
    let mut client = connection.connect()?;
    let partitions = partition_count(&mut client, &args.topic)?;
    if let Some(p) = args.partition {
        if p < 0 || p >= partitions {
            return Err(CliError::NotFound(format!("partition {p} does not exist ({partitions} partitions)")));
        }
    }
    let version = client.version(ApiKey::Produce, 9)?;
    let batch_records = args.batch_records.clamp(1, 100_000);
    let mut pending: PendingRecords = BTreeMap::new();
    let mut round_robin = 0i32;
    let mut sent = 0u64;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let line = lines.next().transpose()?;
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
    pending: PendingRecords,
) -> Result<u64, CliError> {
    let now = ringstream_core::clock::now_ms();
    let mut count = 0u64;
    let mut data = Vec::new();
    for (partition, records) in &pending {
        let mut builder = BatchBuilder::new(now);
        for (key, value) in records {
            builder.push(&Record { key: key.as_deref(), value: Some(value), headers: &[], timestamp_delta: 0 });
        }
        count += records.len() as u64;
        data.push(
            PartitionProduceData::default().with_index(*partition).with_records(Some(Bytes::from(builder.build()))),
        );
    }
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(data)]);
    let response: ProduceResponse = client.call(ApiKey::Produce, version, &request)?;
    for partition in response.responses.iter().flat_map(|t| &t.partition_responses) {
        check(
            partition.error_code,
            partition.error_message.as_ref(),
            &format!("produce to partition {}", partition.index),
        )?;
    }
    Ok(count)
}

pub fn consume(connection: &Connection, args: ConsumeArgs) -> Result<(), CliError> {
    let mut client = connection.connect()?;
    let partitions = partition_count(&mut client, &args.topic)?;
    let wanted: Vec<i32> = match args.partition {
        Some(p) if p < 0 || p >= partitions => {
            return Err(CliError::NotFound(format!("partition {p} does not exist ({partitions} partitions)")))
        }
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
            let offset: i64 = n
                .parse()
                .map_err(|_| CliError::Usage(format!("--offset must be start, end or a number, got {n:?}")))?;
            wanted.iter().map(|p| (*p, offset)).collect()
        }
    };
    let version = client.version(ApiKey::Fetch, 12)?;
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
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*offset)
                            .with_partition_max_bytes(1024 * 1024)
                    })
                    .collect(),
            )]);
        let response: FetchResponse = client.call(ApiKey::Fetch, version, &request)?;
        check(response.error_code, None, "fetch")?;
        let mut progressed = false;
        let mut at_end = true;
        for partition in response.responses.iter().flat_map(|t| &t.partitions) {
            check(partition.error_code, None, &format!("fetch partition {}", partition.partition_index))?;
            let position = positions
                .get_mut(&partition.partition_index)
                .ok_or_else(|| CliError::BadResponse("fetch answered an unrequested partition".into()))?;
            let Some(records) = &partition.records else { continue };
            // Only whole batches: a broker may cut the last one short.
            let whole: usize = batch::split_batches(records, ringstream_core::limits::batch_bytes_max)
                .map_while(Result::ok)
                .map(<[u8]>::len)
                .sum();
            let mut buf = records.slice(..whole);
            for set in RecordBatchDecoder::decode_all(&mut buf)
                .map_err(|e| CliError::BadResponse(format!("decoding records: {e}")))?
            {
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
                    written?;
                    printed += 1;
                    if args.num.is_some_and(|n| printed >= n) {
                        return Ok(out.flush()?);
                    }
                }
            }
            if *position < partition.high_watermark {
                at_end = false;
            }
        }
        if !args.follow && at_end && !progressed {
            return Ok(out.flush()?);
        }
    }
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// List consumer groups: id, state and protocol type.
    List,
    /// Show a group: state, members and their partitions, and per partition
    /// the committed offset, log end offset and lag.
    Describe { group: String },
    /// Delete groups that have no active members, with their committed offsets.
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets; prints the plan and commits it only
    /// with --execute (Kafka takes it only while the group has no members).
    ResetOffsets(ResetOffsetsArgs),
}

#[derive(Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["topics", "all_topics"])))]
#[command(group(
    ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "shift_by", "to_datetime"])
))]
pub struct ResetOffsetsArgs {
    pub group: String,
    /// A topic, all its partitions, or some: orders:0,2 (repeatable).
    #[arg(long = "topic", value_name = "TOPIC[:P,P..]")]
    pub topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    /// To each partition's log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// To each partition's log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset (kept within the log's start and end).
    #[arg(long, value_name = "OFFSET", allow_negative_numbers = true)]
    pub to_offset: Option<i64>,
    /// Move the committed offset by N, e.g. --shift-by -10 (kept within the log).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// To the first offset at or after this time: RFC 3339
    /// (2024-05-01T12:00:00Z, 2024-05-01T14:00:00.5+02:00) or epoch milliseconds.
    #[arg(long, value_name = "TIME")]
    pub to_datetime: Option<String>,
    /// Commit the new offsets (default: only print them).
    #[arg(long, conflicts_with = "dry_run")]
    pub execute: bool,
    /// Only print the new offsets (the default).
    #[arg(long)]
    pub dry_run: bool,
}

/// Prints rows under a header, columns left-aligned and two spaces apart;
/// an empty cell prints as `-`.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let cell = |text: &str| if text.is_empty() { "-".to_owned() } else { text.to_owned() };
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        assert_eq!(row.len(), header.len());
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell(text).chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, text) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&text);
            } else {
                let pad = widths[i] - text.chars().count();
                out.push_str(&text);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{out}");
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.iter().map(|text| cell(text)).collect());
    }
}

/// A connection to `group`'s coordinator (the bootstrap broker's own when
/// it is the coordinator).
fn coordinator(connection: &Connection, group: &str) -> Result<Client, CliError> {
    let mut client = connection.connect()?;
    let address = client.group_coordinator(group)?;
    if address == connection.brokers {
        return Ok(client);
    }
    Ok(Client::connect(&address, Duration::from_secs(5))?)
}

/// The group's description; an error when it does not exist (newer brokers
/// answer GROUP_ID_NOT_FOUND, older ones describe it as `Dead`).
fn existing_group(client: &mut Client, group: &str) -> Result<GroupDescription, CliError> {
    let description = client.describe_group(group)?;
    if description.error_code == ResponseError::GroupIdNotFound.code()
        || (description.error_code == 0 && description.state == "Dead")
    {
        return Err(CliError::NotFound(format!("consumer group {group:?} does not exist")));
    }
    if description.error_code != 0 {
        return Err(CliError::Kafka {
            what: format!("describing group {group:?}"),
            code: description.error_code,
            message: description.error_message.clone(),
        });
    }
    Ok(description)
}

/// A member's partitions, or why they cannot be shown. Only the consumer
/// protocol's assignments are decoded (Kafka's tool does the same).
fn member_partitions(protocol_type: &str, assignment: &[u8]) -> Result<Vec<TopicPartition>, String> {
    if assignment.is_empty() {
        return Ok(Vec::new()); // joined, not yet assigned
    }
    if protocol_type != "consumer" {
        return Err(format!("protocol type {protocol_type:?}"));
    }
    decode_consumer_assignment(assignment).map(|a| a.partitions).map_err(|e| e.to_string())
}

pub fn group(connection: &Connection, command: GroupCommand) -> Result<(), CliError> {
    match command {
        GroupCommand::List => group_list(connection),
        GroupCommand::Describe { group } => group_describe(connection, &group),
        GroupCommand::Delete { groups } => group_delete(connection, &groups),
        GroupCommand::ResetOffsets(args) => group_reset_offsets(connection, args),
    }
}

fn group_list(connection: &Connection) -> Result<(), CliError> {
    let mut client = connection.connect()?;
    // Each broker lists the groups it coordinates: ask them all.
    let brokers = client.brokers()?;
    let mut groups: BTreeMap<String, ListedGroup> = BTreeMap::new();
    if brokers.len() <= 1 {
        groups.extend(client.list_groups()?.into_iter().map(|g| (g.group_id.clone(), g)));
    } else {
        for broker in &brokers {
            let mut client = Client::connect(broker, Duration::from_secs(5))?;
            let listed = client.list_groups()?;
            groups.extend(listed.into_iter().map(|g| (g.group_id.clone(), g)));
        }
    }
    let rows: Vec<Vec<String>> = groups
        .into_values()
        .map(|g| vec![g.group_id, g.state.unwrap_or_else(|| "?".into()), g.protocol_type])
        .collect();
    print_table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows);
    Ok(())
}

fn group_describe(connection: &Connection, group: &str) -> Result<(), CliError> {
    let mut coordinator = coordinator(connection, group)?;
    let description = existing_group(&mut coordinator, group)?;
    let committed = coordinator.offset_fetch(group, None)?;

    let assignments: Vec<Result<Vec<TopicPartition>, String>> =
        description.members.iter().map(|m| member_partitions(&description.protocol_type, &m.assignment)).collect();
    let mut owner: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    for (member, partitions) in assignments.iter().enumerate() {
        for tp in partitions.iter().flatten() {
            owner.insert(tp.clone(), member);
        }
    }
    let partitions: Vec<TopicPartition> =
        committed.keys().chain(owner.keys()).cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let ends = if partitions.is_empty() {
        BTreeMap::new()
    } else {
        let mut client = connection.connect()?;
        client.list_offsets(&by_topic(&partitions), -1)?
    };

    print_table(
        &["GROUP", "STATE", "PROTOCOL-TYPE", "ASSIGNOR", "MEMBERS"],
        &[vec![
            group.to_owned(),
            description.state.clone(),
            description.protocol_type.clone(),
            description.protocol.clone(),
            description.members.len().to_string(),
        ]],
    );
    println!();
    if description.members.is_empty() {
        println!("consumer group {group:?} has no active members");
    } else {
        let rows: Vec<Vec<String>> = description
            .members
            .iter()
            .zip(&assignments)
            .map(|(m, partitions)| {
                let assigned = match partitions {
                    Ok(partitions) => by_topic(partitions)
                        .iter()
                        .map(|(topic, ps)| {
                            format!("{topic}:{}", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(","))
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    Err(_) => "<undecodable>".to_owned(),
                };
                vec![
                    m.member_id.clone(),
                    m.group_instance_id.clone().unwrap_or_default(),
                    m.client_id.clone(),
                    m.host.clone(),
                    assigned,
                ]
            })
            .collect();
        print_table(&["MEMBER-ID", "GROUP-INSTANCE-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"], &rows);
        for (m, partitions) in description.members.iter().zip(&assignments) {
            if let Err(why) = partitions {
                eprintln!("warning: member {}'s assignment is undecodable: {why}", m.member_id);
            }
        }
    }
    println!();

    let mut rows = Vec::new();
    for tp in &partitions {
        let current = match committed.get(tp) {
            Some(Ok(offset)) => Some(*offset),
            Some(Err(code)) => {
                eprintln!("warning: committed offset of {tp}: {}", describe_error(*code, None));
                None
            }
            None => None,
        };
        let end = match ends.get(tp) {
            Some(Ok(offset)) => Some(*offset),
            Some(Err(code)) => {
                eprintln!("warning: log end offset of {tp}: {}", describe_error(*code, None));
                None
            }
            None => None,
        };
        let lag = current.zip(end).map(|(current, end)| end - current);
        let show = |value: Option<i64>| value.map_or_else(String::new, |v| v.to_string());
        let member = owner.get(tp).map(|i| &description.members[*i]);
        rows.push(vec![
            tp.topic.clone(),
            tp.partition.0.to_string(),
            show(current),
            show(end),
            show(lag),
            member.map(|m| m.member_id.clone()).unwrap_or_default(),
            member.map(|m| m.host.clone()).unwrap_or_default(),
            member.map(|m| m.client_id.clone()).unwrap_or_default(),
        ]);
    }
    // Members with nothing assigned, as Kafka's tool shows them.
    for (m, partitions) in description.members.iter().zip(&assignments) {
        if partitions.as_ref().is_ok_and(Vec::is_empty) {
            let mut row = vec![String::new(); 5];
            row.extend([m.member_id.clone(), m.host.clone(), m.client_id.clone()]);
            rows.push(row);
        }
    }
    print_table(
        &["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"],
        &rows,
    );
    Ok(())
}

fn group_delete(connection: &Connection, groups: &[String]) -> Result<(), CliError> {
    let mut client = connection.connect()?;
    let mut outcomes: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    // One DeleteGroups per coordinator, with its groups.
    let mut by_coordinator: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for group in groups {
        match client.group_coordinator(group) {
            Ok(address) => by_coordinator.entry(address).or_default().push(group.clone()),
            Err(e) => {
                outcomes.insert(group.clone(), Err(e.to_string()));
            }
        }
    }
    for (address, groups) in &by_coordinator {
        let results = if *address == connection.brokers {
            client.delete_groups(groups)
        } else {
            Client::connect(address, Duration::from_secs(5)).and_then(|mut c| c.delete_groups(groups))
        };
        match results {
            Ok(results) => {
                for (group, code) in results {
                    let outcome = if code == 0 { Ok(()) } else { Err(describe_error(code, None)) };
                    outcomes.insert(group, outcome);
                }
            }
            Err(e) => {
                for group in groups {
                    outcomes.insert(group.clone(), Err(e.to_string()));
                }
            }
        }
    }
    let mut failed = 0;
    for group in groups {
        match &outcomes[group] {
            Ok(()) => println!("deleted group {group}"),
            Err(why) => {
                failed += 1;
                println!("group {group} not deleted: {why}");
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Partial(format!("{failed} of {} group(s) not deleted", groups.len())));
    }
    Ok(())
}

/// `orders` (every partition) or `orders:0,2`.
fn parse_topic_spec(client: &mut Client, spec: &str) -> Result<Vec<TopicPartition>, CliError> {
    let (topic, list) = match spec.split_once(':') {
        Some((topic, list)) => (topic, Some(list)),
        None => (spec, None),
    };
    if topic.is_empty() {
        return Err(CliError::Usage(format!("--topic {spec:?}: no topic name")));
    }
    let count = partition_count(client, topic)?;
    let Some(list) = list else {
        return Ok((0..count).map(|p| TopicPartition::new(topic, p)).collect());
    };
    list.split(',')
        .map(|p| {
            let p: i32 = p
                .trim()
                .parse()
                .map_err(|_| CliError::Usage(format!("--topic {spec:?}: {p:?} is not a partition number")))?;
            if p < 0 || p >= count {
                return Err(CliError::NotFound(format!(
                    "--topic {spec:?}: partition {p} does not exist ({count} partitions)"
                )));
            }
            Ok(TopicPartition::new(topic, p))
        })
        .collect()
}

/// Milliseconds since the epoch: digits are taken as epoch milliseconds,
/// anything else as RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fraction]` and `Z` or
/// `±HH:MM`; the zone is required).
pub fn parse_datetime_ms(text: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        format!("--to-datetime {text:?}: {why} (want RFC 3339, e.g. 2024-05-01T12:00:00Z, or epoch milliseconds)")
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad("too large"));
    }
    let b = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let digits = b.get(range).ok_or_else(|| bad("too short"))?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad("not a date and time"));
        }
        Ok(digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let separators_ok = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok {
        return Err(bad("not a date and time"));
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return Err(bad("no such date"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("no such time"));
    }
    let mut at = 19;
    let mut fraction_ms = 0i64;
    if b.get(at) == Some(&b'.') {
        let digits = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad("no digits after '.'"));
        }
        // Milliseconds: the first three digits; finer ones are dropped.
        for i in 0..3 {
            fraction_ms =
                fraction_ms * 10 + b.get(at + 1 + i).filter(|_| i < digits).map_or(0, |d| i64::from(d - b'0'));
        }
        at += 1 + digits;
    }
    let offset_ms = match &b[at..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == at + 6 && b[at + 3] == b':' => {
            let (hours, minutes) = (number(at + 1..at + 3)?, number(at + 4..at + 6)?);
            if hours > 23 || minutes > 59 {
                return Err(bad("no such time zone offset"));
            }
            let ms = (hours * 60 + minutes) * 60_000;
            if *sign == b'+' {
                ms
            } else {
                -ms
            }
        }
        [] => return Err(bad("no time zone (add Z for UTC, or +HH:MM)")),
        _ => return Err(bad("bad time zone")),
    };
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let ms = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + fraction_ms - offset_ms;
    if ms < 0 {
        return Err(bad("before 1970"));
    }
    Ok(ms)
}

fn group_reset_offsets(connection: &Connection, args: ResetOffsetsArgs) -> Result<(), CliError> {
    let group = args.group.as_str();
    let timestamp_ms = args.to_datetime.as_deref().map(parse_datetime_ms).transpose().map_err(CliError::Usage)?;
    let mut coordinator = coordinator(connection, group)?;
    let mut client = connection.connect()?;

    // Kafka moves the offsets of inactive groups only; say so before --execute fails.
    let description = coordinator.describe_group(group)?;
    let active = description.error_code == 0 && !matches!(description.state.as_str(), "Empty" | "Dead");
    if active {
        eprintln!(
            "warning: group {group:?} is {} with {} member(s); Kafka resets the offsets of inactive groups only, \
             so --execute fails until its consumers stop",
            description.state,
            description.members.len()
        );
    }

    let committed = coordinator.offset_fetch(group, None)?;
    let mut partitions: BTreeSet<TopicPartition> = BTreeSet::new();
    if args.all_topics {
        partitions.extend(committed.iter().filter(|(_, offset)| offset.is_ok()).map(|(tp, _)| tp.clone()));
        if partitions.is_empty() {
            return Err(CliError::Usage(format!("group {group:?} has no committed offsets; name topics with --topic")));
        }
    }
    for spec in &args.topics {
        partitions.extend(parse_topic_spec(&mut client, spec)?);
    }
    let topics = by_topic(&partitions);
    let offsets_at = |client: &mut Client,
                      timestamp: i64,
                      what: &str|
     -> Result<BTreeMap<TopicPartition, i64>, CliError> {
        let found = client.list_offsets(&topics, timestamp)?;
        partitions
            .iter()
            .map(|tp| match found.get(tp) {
                Some(Ok(offset)) => Ok((tp.clone(), *offset)),
                Some(Err(code)) => Err(CliError::Kafka { what: format!("{what} of {tp}"), code: *code, message: None }),
                None => Err(CliError::BadResponse(format!("{what} of {tp}: not in the ListOffsets response"))),
            })
            .collect()
    };
    let starts = offsets_at(&mut client, -2, "log start offset")?;
    let ends = offsets_at(&mut client, -1, "log end offset")?;
    let by_time = match timestamp_ms {
        Some(ms) => Some(offsets_at(&mut client, ms, "offset for the time")?),
        None => None,
    };

    let mut plan: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for tp in &partitions {
        let (start, end) = (starts[tp], ends[tp]);
        let wanted = if args.to_earliest {
            start
        } else if args.to_latest {
            end
        } else if let Some(offset) = args.to_offset {
            offset
        } else if let Some(shift) = args.shift_by {
            match committed.get(tp) {
                Some(Ok(current)) => current.saturating_add(shift),
                _ => {
                    return Err(CliError::NotFound(format!(
                        "cannot shift the offset of {tp}: the group has no committed offset there"
                    )))
                }
            }
        } else if let Some(by_time) = &by_time {
            match by_time[tp] {
                -1 => end, // nothing at or after the time, as Kafka's tool falls back
                offset => offset,
            }
        } else {
            unreachable!("clap requires one of the --to-*/--shift-by options")
        };
        let new = wanted.clamp(start, end.max(start));
        if new != wanted {
            eprintln!("note: {tp}: offset {wanted} is outside the log [{start}, {end}]; using {new}");
        }
        plan.insert(tp.clone(), new);
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(tp, offset)| vec![tp.topic.clone(), tp.partition.0.to_string(), offset.to_string()])
        .collect();
    print_table(&["TOPIC", "PARTITION", "NEW-OFFSET"], &rows);
    if !args.execute {
        eprintln!("dry run: nothing committed (add --execute to commit these offsets)");
        return Ok(());
    }
    // An admin commit: no generation, no member.
    let results = coordinator.offset_commit(group, -1, "", &plan)?;
    let failures: Vec<(&TopicPartition, i16)> =
        results.iter().filter(|(_, code)| **code != 0).map(|(tp, code)| (tp, *code)).collect();
    if failures.is_empty() {
        eprintln!("committed {} offset(s) for group {group}", plan.len());
        return Ok(());
    }
    for (tp, code) in &failures {
        eprintln!("{tp}: {}", describe_error(*code, None));
    }
    let mut codes: Vec<i16> = failures.iter().map(|(_, code)| *code).collect();
    codes.sort_unstable();
    codes.dedup();
    let names: Vec<String> = codes.iter().map(|code| describe_error(*code, None)).collect();
    let member_errors =
        [ResponseError::UnknownMemberId, ResponseError::RebalanceInProgress, ResponseError::IllegalGeneration]
            .map(|e| e.code());
    let hint = if codes.iter().any(|code| member_errors.contains(code)) {
        "; Kafka resets the offsets of a group only while it has no active members: stop its consumers first"
    } else {
        ""
    };
    Err(CliError::Partial(format!(
        "offsets not committed for {} of {} partition(s) of group {group}: {}{hint}",
        failures.len(),
        plan.len(),
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_as_rfc3339_or_epoch_ms() {
        assert_eq!(parse_datetime_ms("0"), Ok(0));
        assert_eq!(parse_datetime_ms("1714564800000"), Ok(1_714_564_800_000));
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime_ms("2024-05-01T12:00:00Z"), Ok(1_714_564_800_000));
        assert_eq!(parse_datetime_ms("2024-05-01t12:00:00z"), Ok(1_714_564_800_000));
        assert_eq!(parse_datetime_ms("2024-05-01 14:00:00+02:00"), Ok(1_714_564_800_000));
        assert_eq!(parse_datetime_ms("2024-05-01T07:30:00-04:30"), Ok(1_714_564_800_000));
        assert_eq!(parse_datetime_ms("2024-05-01T12:00:00.5Z"), Ok(1_714_564_800_500));
        assert_eq!(parse_datetime_ms("2024-05-01T12:00:00.123456789Z"), Ok(1_714_564_800_123));
        assert_eq!(parse_datetime_ms("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        assert_eq!(parse_datetime_ms("2100-03-01T00:00:00Z"), Ok(4_107_542_400_000));
        for bad in [
            "",
            "yesterday",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00Z",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+2:00",
            "2024-05-01T12:00:00+02:00junk",
            "1969-12-31T23:59:59Z",
            "-5",
            "99999999999999999999",
        ] {
            assert!(parse_datetime_ms(bad).is_err(), "{bad:?} parsed");
        }
    }
}
