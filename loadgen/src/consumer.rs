//! One consumer connection with assign() semantics: a fixed set of
//! partitions, read with Fetch from the offsets they had when the run began
//! (the log end), one request at a time with a long-poll wait. Each record's
//! value starts with its producer's intended send time (wall-clock ns), so
//! end-to-end latency is now minus that.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use ringstream::storage::batch::{self, BatchError, BatchHeader};

use crate::clock::{Clock, Phases};
use crate::limits::{batch_bytes_max, fetch_bytes_max, fetch_partition_bytes_max, fetch_wait_ms_max, request_timeout_ms_max};
use crate::stats::{Progress, ThreadStats};
use crate::wire;

#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    pub name: String,
    pub address: SocketAddr,
    pub topic: String,
    /// Partition and the offset to start from.
    pub partitions: Vec<(i32, i64)>,
    pub version: i16,
}

/// A pause after a failed fetch, so a persistent error is counted a few
/// times a second rather than in a tight loop.
const error_backoff_ms: u64 = 100;

pub async fn run(
    spec: ConsumerSpec,
    stream: TcpStream,
    clock: Clock,
    phases: Phases,
    stats: Rc<RefCell<ThreadStats>>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) {
    assert!(!spec.partitions.is_empty());
    let mut stream = stream;
    let mut offsets = spec.partitions.clone();
    let topic = TopicName(StrBytes::from_string(spec.topic.clone()));
    let mut correlation_id: i32 = 0;
    let error = |kind: &str, count: u64| {
        *stats.borrow_mut().errors.entry(kind.to_owned()).or_default() += count;
        Progress::add(&progress.errors, count);
    };
    while !stop.load(Ordering::Relaxed) {
        correlation_id = correlation_id.wrapping_add(1);
        let request = FetchRequest::default()
            .with_max_wait_ms(fetch_wait_ms_max)
            .with_min_bytes(1)
            .with_max_bytes(fetch_bytes_max as i32)
            .with_topics(vec![FetchTopic::default().with_topic(topic.clone()).with_partitions(
                offsets
                    .iter()
                    .map(|&(partition, offset)| {
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(fetch_partition_bytes_max as i32)
                    })
                    .collect(),
            )]);
        let frame = match wire::encode_request(ApiKey::Fetch, spec.version, correlation_id, &request, 256 + 32 * offsets.len()) {
            Ok(frame) => frame,
            Err(e) => {
                eprintln!("{}: {e}", spec.name);
                error("ENCODE_FAILED", 1);
                return;
            }
        };
        let exchanged = glommio::timer::timeout(Duration::from_millis(request_timeout_ms_max), async {
            stream.write_all(&frame).await?;
            Ok(wire::read_frame(&mut stream).await)
        })
        .await;
        let frame = match exchanged {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => {
                eprintln!("{}: connection closed by the broker", spec.name);
                error("CONNECTION_FAILED", 1);
                return;
            }
            Ok(Err(e)) => {
                eprintln!("{}: {e}", spec.name);
                error("CONNECTION_FAILED", 1);
                return;
            }
            Err(e) => {
                eprintln!("{}: fetch failed: {e}", spec.name);
                error("CONNECTION_FAILED", 1);
                return;
            }
        };
        let response = match wire::decode_response::<FetchResponse>(ApiKey::Fetch, spec.version, correlation_id, frame) {
            Ok(response) => response,
            Err(e) => {
                eprintln!("{}: {e}", spec.name);
                error("BAD_RESPONSE", 1);
                return;
            }
        };
        if response.error_code != 0 {
            error(&wire::error_kind(response.error_code), 1);
            glommio::timer::sleep(Duration::from_millis(error_backoff_ms)).await;
            continue;
        }
        let now = clock.now_ns();
        let now_realtime = clock.realtime_ns(now);
        let mut failed = false;
        for topic_response in response.responses.iter().filter(|t| t.topic.0.as_str() == spec.topic) {
            for partition in &topic_response.partitions {
                let Some(slot) = offsets.iter().position(|&(p, _)| p == partition.partition_index) else { continue };
                if partition.error_code != 0 {
                    error(&wire::error_kind(partition.error_code), 1);
                    failed = true;
                    continue;
                }
                let Some(records) = &partition.records else { continue };
                let read = read_records(records, offsets[slot].1, &clock, &phases, now_realtime, &mut stats.borrow_mut());
                offsets[slot].1 = read.next_offset;
                Progress::add(&progress.consumed_records, read.records);
                if let Some(e) = read.failure {
                    eprintln!("{}: partition {}: {e}", spec.name, partition.partition_index);
                    error("CORRUPT_RESPONSE", 1);
                    failed = true;
                }
            }
        }
        if failed {
            glommio::timer::sleep(Duration::from_millis(error_backoff_ms)).await;
        }
    }
}

struct Read {
    next_offset: i64,
    records: u64,
    failure: Option<String>,
}

/// Walks the batches of one partition's fetched records from `offset` on,
/// recording end-to-end latency for records sent in the measured window.
fn read_records(
    records: &[u8],
    offset: i64,
    clock: &Clock,
    phases: &Phases,
    now_realtime_ns: u64,
    stats: &mut ThreadStats,
) -> Read {
    let mut read = Read { next_offset: offset, records: 0, failure: None };
    for piece in batch::split_batches(records, batch_bytes_max) {
        let bytes = match piece {
            Ok(bytes) => bytes,
            // A batch cut at the response's size limit: fetched again next time.
            Err(BatchError::Truncated { .. }) => break,
            Err(e) => {
                read.failure = Some(e.to_string());
                break;
            }
        };
        let Some(header) = BatchHeader::ref_from_prefix(bytes) else { break };
        let base = header.base_offset().0;
        let last = base + i64::from(header.last_offset_delta());
        if last < read.next_offset {
            continue; // before the position (a fetch may start mid-batch)
        }
        if header.is_control() {
            read.next_offset = last + 1;
            continue;
        }
        let views = match batch::records(bytes) {
            Ok(views) => views,
            Err(e) => {
                read.failure = Some(format!("batch at offset {base}: {e}"));
                break;
            }
        };
        for view in &views {
            let record_offset = base + i64::from(view.offset_delta);
            if record_offset < read.next_offset {
                continue;
            }
            read.records += 1;
            let stamp = view.value.and_then(|v| v.get(..8)).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
            if let Some(sent_mono) = stamp.and_then(|s| clock.mono_of_realtime(s)) {
                if phases.measured(sent_mono) {
                    let sent_realtime = clock.realtime_ns(sent_mono);
                    stats.record_e2e(now_realtime_ns.saturating_sub(sent_realtime));
                    stats.consumed_window_records += 1;
                }
            }
        }
        read.next_offset = last + 1;
    }
    read
}
