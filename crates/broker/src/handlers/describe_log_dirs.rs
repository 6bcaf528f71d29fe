//! DescribeLogDirs (key 35), v1–v4: the one log dir (the data dir, by its
//! absolute path) with the size of each partition stored there, gathered
//! from every shard (`ShardStorage::partition_sizes`), and from v4 the
//! file system's total and usable bytes (statvfs).
//!
//! As Kafka: null topics means every partition (the internal offsets topic
//! included: it is a log in the dir); named topics or partitions that do
//! not exist are left out; offset lag is 0 (no future replica dirs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::{respond, str_bytes, ApiSpec, Pending};
use crate::broker::Broker;
use ringstream_core::types::{ShardId, TopicPartition};
use ringstream_protocol::{decode_body, error_code, Request, WireError};

pub const SPEC: ApiSpec = ApiSpec { key: ApiKey::DescribeLogDirs, min_version: 1, max_version: 4 };

pub fn handle(broker: &Rc<Broker>, request: Request) -> Result<Pending, WireError> {
    let version = request.api_version;
    let mut body = request.body;
    let describe: DescribeLogDirsRequest = decode_body(&mut body, version, "DescribeLogDirs request")?;
    let correlation_id = request.header.correlation_id;
    let broker = broker.clone();
    Ok(Box::pin(async move {
        let wanted: Option<HashMap<&str, HashSet<i32>>> = describe.topics.as_ref().map(|topics| {
            let mut wanted: HashMap<&str, HashSet<i32>> = HashMap::new();
            for topic in topics {
                wanted.entry(topic.topic.as_str()).or_default().extend(topic.partitions.iter().copied());
            }
            wanted
        });
        let mut by_topic: BTreeMap<String, Vec<(i32, u64)>> = BTreeMap::new();
        let mut error = error_code::NONE;
        for shard in 0..broker.shard.shard_count() {
            // A closure (see `Shard::run_on`): a read of another shard's storage totals for an admin API.
            let sizes = broker
                .shard
                .run_on(ShardId(shard as u16), |shard| async move { shard.storage.partition_sizes() })
                .await;
            let Ok(sizes) = sizes else {
                error = error_code::KAFKA_STORAGE_ERROR;
                continue;
            };
            for (TopicPartition { topic, partition }, size) in sizes {
                let included = match &wanted {
                    None => true,
                    Some(wanted) => wanted.get(topic.as_str()).is_some_and(|ps| ps.contains(&partition.0)),
                };
                if included {
                    by_topic.entry(topic).or_default().push((partition.0, size));
                }
            }
        }
        let topics = by_topic
            .into_iter()
            .map(|(name, mut partitions)| {
                partitions.sort();
                DescribeLogDirsTopic::default().with_name(TopicName(str_bytes(&name))).with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, size)| {
                            DescribeLogDirsPartition::default()
                                .with_partition_index(index)
                                .with_partition_size(size as i64)
                                .with_offset_lag(0)
                                .with_is_future_key(false)
                        })
                        .collect(),
                )
            })
            .collect();
        let data_dir = broker.shard.storage.config().data_dir.clone();
        let data_dir = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
        let mut result = DescribeLogDirsResult::default()
            .with_error_code(error)
            .with_log_dir(str_bytes(&data_dir.to_string_lossy()))
            .with_topics(topics);
        if version >= 4 {
            let (total, usable) = space(&data_dir).unwrap_or((-1, -1));
            result.total_bytes = total;
            result.usable_bytes = usable;
        }
        let mut response = DescribeLogDirsResponse::default().with_results(vec![result]);
        if version >= 3 {
            response.error_code = error_code::NONE;
        }
        respond(ApiKey::DescribeLogDirs, version, correlation_id, &response)
    }))
}

/// Total and usable (available to unprivileged users) bytes of the file
/// system holding `dir`.
pub fn space(dir: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` is a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as i64;
    Some(((stat.f_blocks as i64).saturating_mul(block), (stat.f_bavail as i64).saturating_mul(block)))
}
