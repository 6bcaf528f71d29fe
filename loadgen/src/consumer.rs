//! One consumer connection with assign() semantics: a fixed set of
//! partitions, read with Fetch from the offsets they had when the run began
//! (the log end), one request at a time with a long-poll wait. Each record's
//! value starts with its producer's intended send time (wall-clock ns), so
//! end-to-end latency is now minus that. Compressed batches are
//! decompressed first (`batch::uncompressed`).
//!
//! A consumer group member (`--groups`) runs `group::run` instead, which
//! uses the same `Fetcher` for the partitions its group assigns it.

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
use ringstream_core::batch::{self, BatchError, BatchHeader, RecordView};

use crate::clock::{Clock, Phases};
use crate::group::{self, GroupSpec, GroupTally};
use crate::limits::{
    batch_bytes_max, fetch_bytes_max, fetch_partition_bytes_max, fetch_wait_ms_max, request_timeout_ms_max,
};
use crate::stats::{Progress, ThreadStats};
use crate::wire;

#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    pub name: String,
    pub address: SocketAddr,
    pub topic: String,
    /// assign(): partition and the offset to start from. Empty for a group
    /// member, which is assigned partitions by its group.
    pub partitions: Vec<(i32, i64)>,
    pub version: i16,
    /// A consumer group member (`--groups`); `address` is then the
    /// bootstrap broker, where it looks for its coordinator.
    pub group: Option<GroupSpec>,
}

/// A pause after a failed fetch, so a persistent error is counted a few
/// times a second rather than in a tight loop.
pub const error_backoff_ms: u64 = 100;

/// Where a consumer connection's measurements go.
pub struct Reading {
    pub clock: Clock,
    pub phases: Phases,
    pub stats: Rc<RefCell<ThreadStats>>,
    pub progress: Arc<Progress>,
    /// A group member's group tally and group index; None for assign().
    pub tally: Option<(Arc<GroupTally>, usize)>,
}

impl Reading {
    pub fn error(&self, kind: &str, count: u64) {
        *self.stats.borrow_mut().errors.entry(kind.to_owned()).or_default() += count;
        Progress::add(&self.progress.errors, count);
    }

    /// Counts `records` read. With groups the progress line's consumed
    /// count is the slowest group's, which is what "caught up" needs.
    fn consumed(&self, records: u64) {
        match &self.tally {
            Some((tally, group)) => tally.add(*group, records, &self.progress),
            None => Progress::add(&self.progress.consumed_records, records),
        }
    }
}

pub async fn run(
    spec: ConsumerSpec,
    stream: TcpStream,
    clock: Clock,
    phases: Phases,
    stats: Rc<RefCell<ThreadStats>>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) {
    let tally = spec.group.as_ref().map(|g| (g.tally.clone(), g.index));
    let reading = Reading { clock, phases, stats, progress, tally };
    if spec.group.is_some() {
        group::run(&spec, stream, &reading, &stop).await;
        return;
    }
    assert!(!spec.partitions.is_empty());
    let mut stream = stream;
    let mut offsets = spec.partitions.clone();
    let mut fetcher = Fetcher::new(&spec);
    while !stop.load(Ordering::Relaxed) {
        match fetcher.fetch(&mut stream, &mut offsets, &reading).await {
            Ok(false) => {}
            Ok(true) => glommio::timer::sleep(Duration::from_millis(error_backoff_ms)).await,
            Err(()) => return, // counted; assign() consumers do not reconnect
        }
    }
}

/// Fetch requests for one connection's partitions of the topic.
pub struct Fetcher {
    name: String,
    topic: TopicName,
    topic_text: String,
    version: i16,
    correlation_id: i32,
}

impl Fetcher {
    pub fn new(spec: &ConsumerSpec) -> Fetcher {
        Fetcher {
            name: spec.name.clone(),
            topic: TopicName(StrBytes::from_string(spec.topic.clone())),
            topic_text: spec.topic.clone(),
            version: spec.version,
            correlation_id: 0,
        }
    }

    /// One Fetch for `offsets` (partition, position), advancing the
    /// positions past what it read. Ok(true) when the broker reported an
    /// error for the request or a partition (counted; the caller backs off);
    /// Err when the connection is unusable (counted).
    pub async fn fetch(
        &mut self,
        stream: &mut TcpStream,
        offsets: &mut [(i32, i64)],
        reading: &Reading,
    ) -> Result<bool, ()> {
        assert!(!offsets.is_empty());
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let request = FetchRequest::default()
            .with_max_wait_ms(fetch_wait_ms_max)
            .with_min_bytes(1)
            .with_max_bytes(fetch_bytes_max as i32)
            .with_topics(vec![FetchTopic::default().with_topic(self.topic.clone()).with_partitions(
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
        let frame =
            match wire::encode_request(ApiKey::Fetch, self.version, correlation_id, &request, 256 + 32 * offsets.len())
            {
                Ok(frame) => frame,
                Err(e) => {
                    eprintln!("{}: {e}", self.name);
                    reading.error("ENCODE_FAILED", 1);
                    return Err(());
                }
            };
        let exchanged = glommio::timer::timeout(Duration::from_millis(request_timeout_ms_max), async {
            stream.write_all(&frame).await?;
            Ok(wire::read_frame(stream).await)
        })
        .await;
        let frame = match exchanged {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => {
                eprintln!("{}: connection closed by the broker", self.name);
                reading.error("CONNECTION_FAILED", 1);
                return Err(());
            }
            Ok(Err(e)) => {
                eprintln!("{}: {e}", self.name);
                reading.error("CONNECTION_FAILED", 1);
                return Err(());
            }
            Err(e) => {
                eprintln!("{}: fetch failed: {e}", self.name);
                reading.error("CONNECTION_FAILED", 1);
                return Err(());
            }
        };
        let response = match wire::decode_response::<FetchResponse>(ApiKey::Fetch, self.version, correlation_id, frame)
        {
            Ok(response) => response,
            Err(e) => {
                eprintln!("{}: {e}", self.name);
                reading.error("BAD_RESPONSE", 1);
                return Err(());
            }
        };
        if response.error_code != 0 {
            reading.error(&wire::error_kind(response.error_code), 1);
            return Ok(true);
        }
        let now = reading.clock.now_ns();
        let now_realtime = reading.clock.realtime_ns(now);
        let mut failed = false;
        for topic_response in response.responses.iter().filter(|t| t.topic.0.as_str() == self.topic_text) {
            for partition in &topic_response.partitions {
                let Some(slot) = offsets.iter().position(|&(p, _)| p == partition.partition_index) else { continue };
                if partition.error_code != 0 {
                    reading.error(&wire::error_kind(partition.error_code), 1);
                    failed = true;
                    continue;
                }
                let Some(records) = &partition.records else { continue };
                let read = read_records(
                    records,
                    offsets[slot].1,
                    &reading.clock,
                    &reading.phases,
                    now_realtime,
                    &mut reading.stats.borrow_mut(),
                );
                offsets[slot].1 = read.next_offset;
                reading.consumed(read.records);
                if let Some(e) = read.failure {
                    eprintln!("{}: partition {}: {e}", self.name, partition.partition_index);
                    reading.error("CORRUPT_RESPONSE", 1);
                    failed = true;
                }
            }
        }
        Ok(failed)
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
        let decompressed;
        let plain = if header.attributes() & 0x07 != 0 {
            match crate::batch::uncompressed(bytes) {
                Ok(owned) => {
                    decompressed = owned;
                    &decompressed[..]
                }
                Err(e) => {
                    read.failure = Some(format!("batch at offset {base}: {e}"));
                    break;
                }
            }
        } else {
            bytes
        };
        let views: Vec<RecordView<'_>> = match batch::records(plain) {
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
