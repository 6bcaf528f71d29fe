//! One producer connection: an open-loop record schedule, per-partition
//! batches (closed at `--batch-bytes` or after `--linger`), and produce
//! requests pipelined up to `--in-flight` deep.
//!
//! Two tasks share the socket: the writer (schedule, batching, sending) and
//! the reader (responses, in request order). Each request's record intended
//! send times travel with it to the reader over a bounded local channel, and
//! a semaphore of `in_flight` permits bounds what is outstanding.
//!
//! Open loop: with `--rate`, record k is due at `start + k / rate`. The writer
//! creates every record that is due whenever it runs, stamped with its due
//! (intended) time, not the time it got around to it, so a stall in the
//! broker or in this process shows up as latency instead of as fewer
//! samples (no coordinated omission). With `--rate 0` there is no schedule:
//! a record's intended time is when it was created, and records are created
//! only when a request slot is free.
//!
//! Workload shape: value sizes uniform in `--record-size` (min..max), keys
//! (`keys.rs`) choosing the partition as Kafka's default partitioner does
//! (round robin without keys), batches compressed with `--compression`, and
//! with `--idempotence` a producer id from InitProducerId (asked once, on
//! this connection, before the first record) plus per-partition sequences
//! in every batch. With `--messages` the connection stops creating records
//! after its share and finishes once they are answered.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::args::Compression;
use crate::batch::{BatchWriter, Sequenced};
use crate::keys::{key_bytes, KeyTable, Rng};
use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceResponse, ProducerId};

use crate::clock::{Clock, Phases};
use crate::limits::{
    drain_ms_max, key_bytes_max, produce_request_bytes_max, producer_buffer_bytes_max, request_timeout_ms_max,
};
use crate::stats::{Progress, ThreadStats};
use crate::wire;

const init_retry_backoff_ms: u64 = 250;
use crate::batch::header_bytes as batch_header_bytes;
use crate::limits::init_attempts_max;
use crate::limits::record_overhead_bytes_max;
/// The writer never sleeps less than this (a timer per record would cost
/// more than the batching saves).
const writer_sleep_ns_min: u64 = 20_000;

#[derive(Clone, Debug)]
pub struct ProducerSpec {
    pub name: String,
    pub address: SocketAddr,
    pub topic: String,
    pub partitions: Vec<i32>,
    /// Records per second on this connection; 0 = as fast as possible.
    pub rate: f64,
    /// Value bytes per record, uniform in `record_size_min..=record_size_max`.
    pub record_size_min: usize,
    pub record_size_max: usize,
    /// Keyed records: this connection's keys (those of its partitions).
    pub keys: Option<Arc<KeyTable>>,
    pub compression: Compression,
    /// `--idempotence`, and the InitProducerId version to ask with (None:
    /// the broker does not serve it).
    pub idempotence: bool,
    pub init_producer_id_version: Option<i16>,
    /// `--messages`: records this connection sends, then it finishes.
    pub records_max: Option<u64>,
    pub acks: i16,
    pub batch_bytes: usize,
    pub linger_ns: u64,
    pub in_flight: usize,
    pub version: i16,
    /// Talking to the raw-TCP sink: replies are 4-byte correlation ids.
    pub raw_sink: bool,
    pub seed: u64,
}

struct Open {
    writer: BatchWriter,
    times: Vec<u64>,
    opened_ns: u64,
    value_bytes: u64,
}

struct Closed {
    slot: usize,
    bytes: Bytes,
    times: Vec<u64>,
    /// The records' value bytes (what throughput counts).
    value_bytes: u64,
}

/// Batches being filled (one per partition) and closed batches waiting to be sent.
struct Accumulator {
    partitions: Vec<i32>,
    open: Vec<Option<Open>>,
    closed: VecDeque<Closed>,
    closed_bytes: usize,
    next_slot: usize,
    /// Filler for the largest value; a record takes a prefix of it.
    value: Vec<u8>,
    record_size_min: usize,
    keys: Option<Arc<KeyTable>>,
    rng: Rng,
    compression: Compression,
    /// Idempotent producer id and epoch, and each slot's next sequence.
    producer: Option<(i64, i16)>,
    sequences: Vec<i32>,
    /// Records of batches that failed to encode (a codec error), not yet counted.
    encode_failed: u64,
    encode_error: Option<String>,
    batch_bytes: usize,
    /// What a new batch's buffer reserves: a full batch at max throughput;
    /// at a set rate about twice what one linger brings, so slow runs do
    /// not hold a mostly empty `batch_bytes` buffer per batch.
    batch_capacity_bytes: usize,
}

impl Accumulator {
    fn new(spec: &ProducerSpec) -> Accumulator {
        assert!(!spec.partitions.is_empty());
        assert!(spec.record_size_min >= 8 && spec.record_size_min <= spec.record_size_max);
        assert!(batch_header_bytes + spec.record_size_max + record_overhead_bytes_max <= spec.batch_bytes + 64);
        assert!(!spec.keys.as_ref().is_some_and(|k| k.is_empty()));
        // Filler that does not compress to nothing: xorshift from the seed.
        let mut value = vec![0u8; spec.record_size_max];
        ringstream_core::batch::fill_pseudo_random(&mut value, spec.seed);
        let key_bytes = if spec.keys.is_some() { key_bytes_max } else { 0 };
        Accumulator {
            partitions: spec.partitions.clone(),
            open: spec.partitions.iter().map(|_| None).collect(),
            closed: VecDeque::new(),
            closed_bytes: 0,
            next_slot: 0,
            batch_capacity_bytes: if spec.rate > 0.0 {
                let per_linger = spec.rate * (spec.linger_ns as f64 / 1e9) / spec.partitions.len() as f64;
                let records = (per_linger * 2.0).ceil() as usize + 1;
                (records.saturating_mul(spec.record_size_max + key_bytes + record_overhead_bytes_max)
                    + batch_header_bytes)
                    .clamp(4096, spec.batch_bytes)
            } else {
                spec.batch_bytes
            },
            value,
            record_size_min: spec.record_size_min,
            keys: spec.keys.clone(),
            rng: Rng::new(spec.seed ^ 0x6B65_7973),
            compression: spec.compression,
            producer: None,
            sequences: vec![0; spec.partitions.len()],
            encode_failed: 0,
            encode_error: None,
            batch_bytes: spec.batch_bytes,
        }
    }

    /// Bytes the largest record takes in a batch (before compression).
    fn record_bytes(&self) -> usize {
        self.value.len() + if self.keys.is_some() { key_bytes_max } else { 0 } + record_overhead_bytes_max
    }

    /// Adds one record, due at `intended_ns`: to its key's partition, or
    /// without keys to the next partition (round robin).
    fn add(&mut self, intended_ns: u64, now_ns: u64, clock: &Clock) {
        let (slot, key) = match &self.keys {
            Some(table) => {
                let (key, slot) = table.sample(&mut self.rng);
                (slot as usize, Some(key))
            }
            None => {
                let slot = self.next_slot;
                self.next_slot = (slot + 1) % self.partitions.len();
                (slot, None)
            }
        };
        assert!(slot < self.partitions.len());
        let size = if self.record_size_min == self.value.len() {
            self.value.len()
        } else {
            self.rng.range_u32(self.record_size_min as u32, self.value.len() as u32) as usize
        };
        let timestamp = clock.realtime_ns(intended_ns);
        self.value[..8].copy_from_slice(&timestamp.to_be_bytes());
        let record_bytes = self.record_bytes();
        let capacity_bytes = self.batch_capacity_bytes;
        let open = self.open[slot].get_or_insert_with(|| Open {
            writer: BatchWriter::new(capacity_bytes, i64::try_from(clock.realtime_ns(now_ns) / 1_000_000).unwrap_or(0)),
            times: Vec::new(),
            opened_ns: now_ns,
            value_bytes: 0,
        });
        let mut key_buffer = [0u8; key_bytes_max];
        open.writer.push(key.map(|k| key_bytes(k, &mut key_buffer)), &self.value[..size]);
        open.times.push(intended_ns);
        open.value_bytes += size as u64;
        if open.writer.len() + record_bytes > self.batch_bytes {
            self.close(slot);
        }
    }

    /// Closes a slot's open batch: sequenced when idempotent, compressed,
    /// signed. A batch the codec fails on is counted in `encode_failed`.
    fn close(&mut self, slot: usize) {
        let Some(open) = self.open[slot].take() else { return };
        assert!(!open.times.is_empty());
        assert_eq!(open.times.len(), open.writer.records_count() as usize);
        let sequenced = self.producer.map(|(producer_id, producer_epoch)| {
            let base_sequence = self.sequences[slot];
            self.sequences[slot] = next_sequence(base_sequence, open.writer.records_count());
            Sequenced { producer_id, producer_epoch, base_sequence }
        });
        match open.writer.finish(sequenced, self.compression) {
            Ok(bytes) => {
                let bytes = Bytes::from(bytes);
                self.closed_bytes += bytes.len();
                self.closed.push_back(Closed { slot, bytes, times: open.times, value_bytes: open.value_bytes });
            }
            Err(e) => {
                self.encode_failed += open.times.len() as u64;
                self.encode_error.get_or_insert(e);
            }
        }
    }

    /// Closes batches open for `linger_ns` or longer (all of them if `all`).
    fn close_lingered(&mut self, now_ns: u64, linger_ns: u64, all: bool) {
        for slot in 0..self.open.len() {
            let due = match &self.open[slot] {
                Some(open) => all || now_ns.saturating_sub(open.opened_ns) >= linger_ns,
                None => false,
            };
            if due {
                self.close(slot);
            }
        }
    }

    fn oldest_open_ns(&self) -> Option<u64> {
        self.open.iter().flatten().map(|o| o.opened_ns).min()
    }

    fn buffered_bytes(&self) -> usize {
        self.closed_bytes + self.open.iter().flatten().map(|o| o.writer.len()).sum::<usize>()
    }

    /// The oldest closed batches for one request: at most one per partition
    /// (Kafka refuses more since Produce v3), within `bytes_max` (always at
    /// least one batch).
    fn take_request(&mut self, bytes_max: usize) -> Vec<Closed> {
        let mut taken: Vec<Closed> = Vec::new();
        let mut used = vec![false; self.partitions.len()];
        let mut bytes = 0usize;
        let mut kept = VecDeque::with_capacity(self.closed.len());
        while let Some(batch) = self.closed.pop_front() {
            let fits = taken.is_empty() || bytes + batch.bytes.len() <= bytes_max;
            if used[batch.slot] || !fits {
                kept.push_back(batch);
                continue;
            }
            used[batch.slot] = true;
            bytes += batch.bytes.len();
            self.closed_bytes -= batch.bytes.len();
            taken.push(batch);
        }
        self.closed = kept;
        taken
    }
}

/// The sequence after `count` records from `sequence`, wrapping past
/// i32::MAX to 0 as Kafka's `DefaultRecordBatch.incrementSequence` does.
fn next_sequence(sequence: i32, count: i32) -> i32 {
    assert!(sequence >= 0 && count > 0);
    if sequence > i32::MAX - count {
        count - (i32::MAX - sequence) - 1
    } else {
        sequence + count
    }
}

/// A request awaiting its response: per batch, the partition, the
/// records' intended send times and their value bytes.
struct InFlight {
    correlation_id: i32,
    batches: Vec<(i32, Vec<u64>, u64)>,
}

struct Shared {
    clock: Clock,
    phases: Phases,
    spec: ProducerSpec,
    stats: Rc<RefCell<ThreadStats>>,
    progress: Arc<Progress>,
}

impl Shared {
    fn error(&self, kind: &str, records: u64) {
        *self.stats.borrow_mut().errors.entry(kind.to_owned()).or_default() += records;
        Progress::add(&self.progress.errors, records);
    }

    /// Records `times` (holding `bytes` of values) as acknowledged now.
    fn acked(&self, times: &[u64], bytes: u64, now_ns: u64) {
        let count = times.len() as u64;
        let mut stats = self.stats.borrow_mut();
        if self.spec.acks != 0 {
            for &intended in times {
                stats.record_ack(now_ns.saturating_sub(intended), self.phases.measured(intended));
            }
        }
        if self.phases.measured(now_ns) {
            stats.window_records += count;
            stats.window_bytes += bytes;
            stats.last_window_ack_ns = stats.last_window_ack_ns.max(now_ns);
        }
        drop(stats);
        Progress::add(&self.progress.acked_records, count);
        Progress::add(&self.progress.acked_bytes, bytes);
    }
}

/// Runs one producer connection until the end of the measured window and
/// the drain after it. Every record that is not acknowledged is counted as
/// an error of some kind.
pub async fn run(
    spec: ProducerSpec,
    stream: TcpStream,
    clock: Clock,
    phases: Phases,
    stats: Rc<RefCell<ThreadStats>>,
    progress: Arc<Progress>,
) {
    let mut stream = stream;
    let mut producer = None;
    if spec.idempotence {
        let initialized = match spec.init_producer_id_version {
            Some(version) => init_producer_id(&mut stream, version).await,
            None => Err(("UNSUPPORTED_VERSION".to_owned(), "the broker does not serve InitProducerId".to_owned())),
        };
        match initialized {
            Ok(ids) => producer = Some(ids),
            Err((kind, message)) => {
                eprintln!("{}: InitProducerId: {message}", spec.name);
                *stats.borrow_mut().errors.entry(kind).or_default() += 1;
                Progress::add(&progress.errors, 1);
                return;
            }
        }
    }
    let fd = stream.as_raw_fd();
    let (reader, mut writer) = futures_lite::io::split(stream);
    let in_flight = spec.in_flight;
    assert!(in_flight >= 1);
    let expects_replies = spec.acks != 0;
    let shared = Rc::new(Shared { clock, phases, spec, stats, progress });
    let slots = Rc::new(Semaphore::new(in_flight as u64));
    let (queue, pending) = local_channel::new_bounded::<InFlight>(in_flight);
    let reader_task = expects_replies.then(|| {
        let shared = shared.clone();
        let slots = slots.clone();
        glommio::spawn_local(read_responses(shared, reader, pending, slots)).detach()
    });

    let spec = &shared.spec;
    let mut accumulator = Accumulator::new(spec);
    accumulator.producer = producer;
    let records_max = spec.records_max.unwrap_or(u64::MAX);
    let per_batch = ((spec.batch_bytes - batch_header_bytes) / accumulator.record_bytes()).max(1);
    let ns_per_record = if spec.rate > 0.0 { 1e9 / spec.rate } else { 0.0 };
    let due_ns = |k: u64| phases.start_ns + (k as f64 * ns_per_record) as u64;
    let mut next_record: u64 = 0;
    let mut correlation_id: i32 = 0;
    let connection_failed = Rc::new(Cell::new(false));

    'requests: loop {
        if expects_replies && slots.acquire(1).await.is_err() {
            connection_failed.set(true);
            break; // the reader failed and closed the semaphore
        }
        let batches = loop {
            let now = clock.now_ns();
            let finishing = if spec.rate > 0.0 {
                while due_ns(next_record) <= now
                    && due_ns(next_record) < phases.end_ns
                    && next_record < records_max
                    && accumulator.buffered_bytes() < producer_buffer_bytes_max
                {
                    accumulator.add(due_ns(next_record), now, &clock);
                    next_record += 1;
                }
                due_ns(next_record) >= phases.end_ns || next_record >= records_max
            } else {
                if now < phases.end_ns && accumulator.closed.is_empty() {
                    // Max throughput: a full batch for every partition, but
                    // never more than the producer buffer holds (10,000
                    // partitions of full batches would be gigabytes; there
                    // the batches close by linger instead).
                    let buffer_records = (producer_buffer_bytes_max / accumulator.record_bytes()).max(1);
                    let records =
                        ((per_batch * spec.partitions.len()).min(buffer_records) as u64).min(records_max - next_record);
                    for _ in 0..records {
                        accumulator.add(now, now, &clock);
                    }
                    next_record += records;
                }
                now >= phases.end_ns || next_record >= records_max
            };
            accumulator.close_lingered(now, spec.linger_ns, finishing);
            if accumulator.encode_failed > 0 {
                if let Some(e) = accumulator.encode_error.take() {
                    eprintln!("{}: {e}", spec.name);
                }
                shared.error("ENCODE_FAILED", accumulator.encode_failed);
                accumulator.encode_failed = 0;
            }
            if !accumulator.closed.is_empty() {
                break accumulator.take_request(produce_request_bytes_max);
            }
            if finishing {
                if expects_replies {
                    slots.signal(1);
                }
                break 'requests;
            }
            let mut wake = accumulator.oldest_open_ns().map_or(u64::MAX, |o| o.saturating_add(spec.linger_ns));
            if spec.rate > 0.0 {
                wake = wake.min(due_ns(next_record));
            }
            let sleep_ns = wake.min(phases.end_ns).saturating_sub(now).max(writer_sleep_ns_min);
            glommio::timer::sleep(Duration::from_nanos(sleep_ns)).await;
        };
        assert!(!batches.is_empty());
        correlation_id = correlation_id.wrapping_add(1);
        let partitions: Vec<(i32, Bytes)> =
            batches.iter().map(|b| (spec.partitions[b.slot], b.bytes.clone())).collect();
        let frame = match wire::produce_pieces(
            spec.version,
            correlation_id,
            spec.acks,
            request_timeout_ms_max as i32,
            &spec.topic,
            &partitions,
        ) {
            Ok(pieces) => pieces,
            Err(e) => {
                eprintln!("{}: {e}", spec.name);
                shared.error("ENCODE_FAILED", batches.iter().map(|b| b.times.len() as u64).sum());
                connection_failed.set(true);
                break;
            }
        };
        let entry = InFlight {
            correlation_id,
            batches: batches.into_iter().map(|b| (spec.partitions[b.slot], b.times, b.value_bytes)).collect(),
        };
        if !expects_replies {
            if let Err(e) = wire::write_pieces(&mut writer, &frame).await {
                eprintln!("{}: write failed: {e}", spec.name);
                shared.error("CONNECTION_FAILED", entry.batches.iter().map(|b| b.1.len() as u64).sum());
                connection_failed.set(true);
                break;
            }
            let now = clock.now_ns();
            for (_, times, bytes) in &entry.batches {
                shared.acked(times, *bytes, now);
            }
            continue;
        }
        // Queued before the write, so the reader knows the request when its
        // response arrives; the permit guarantees room.
        if let Err(e) = queue.try_send(entry) {
            unreachable!("in-flight queue full despite the permit: {e}");
        }
        if let Err(e) = wire::write_pieces(&mut writer, &frame).await {
            eprintln!("{}: write failed: {e}", spec.name);
            connection_failed.set(true);
            break; // the reader counts what is queued as failed
        }
    }

    // Records never sent (still batched) failed.
    let unsent: u64 = accumulator.closed.iter().map(|b| b.times.len() as u64).sum::<u64>()
        + accumulator.open.iter().flatten().map(|o| o.times.len() as u64).sum::<u64>();
    if unsent > 0 {
        shared.error(if connection_failed.get() { "CONNECTION_FAILED" } else { "NOT_SENT" }, unsent);
    }
    if let Some(reader_task) = reader_task {
        // Drain: wait for every permit back (all responses read), bounded.
        let drained = glommio::timer::timeout(Duration::from_millis(drain_ms_max), async {
            slots.acquire(in_flight as u64).await
        })
        .await;
        if drained.is_err() && !connection_failed.get() {
            eprintln!("{}: responses still outstanding {drain_ms_max} ms after the end; counted as errors", spec.name);
        }
        drop(queue);
        wire::shutdown(fd); // ends the reader's pending read, if any
        let _ = reader_task.await;
    }
    let _ = writer.close().await;
}

/// Asks for a producer id and epoch (no transactional id: idempotence
/// only), retrying while the broker answers with a retriable error. The
/// error is its kind (for the error counts) and a message.
async fn init_producer_id(stream: &mut TcpStream, version: i16) -> Result<(i64, i16), (String, String)> {
    let mut request = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000);
    if version >= 3 {
        request = request.with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    }
    for attempt in 1..=init_attempts_max {
        let correlation_id = -(attempt as i32); // apart from the produce requests' ids
        let frame = wire::encode_request(ApiKey::InitProducerId, version, correlation_id, &request, 128)
            .map_err(|e| ("ENCODE_FAILED".to_owned(), e))?;
        let exchanged = glommio::timer::timeout(Duration::from_millis(request_timeout_ms_max), async {
            stream.write_all(&frame).await?;
            Ok(wire::read_frame(stream).await)
        })
        .await;
        let frame = match exchanged {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Err(("CONNECTION_FAILED".into(), "connection closed by the broker".into())),
            Ok(Err(e)) => return Err(("CONNECTION_FAILED".into(), e)),
            Err(e) => return Err(("CONNECTION_FAILED".into(), e.to_string())),
        };
        let response: InitProducerIdResponse =
            wire::decode_response(ApiKey::InitProducerId, version, correlation_id, frame)
                .map_err(|e| ("BAD_RESPONSE".to_owned(), e))?;
        match response.error_code {
            0 if response.producer_id.0 >= 0 && response.producer_epoch >= 0 => {
                return Ok((response.producer_id.0, response.producer_epoch));
            }
            0 => {
                let ids = format!("producer id {} epoch {}", response.producer_id.0, response.producer_epoch);
                return Err(("BAD_RESPONSE".into(), ids));
            }
            code if wire::is_retriable(code) && attempt < init_attempts_max => {
                glommio::timer::sleep(Duration::from_millis(init_retry_backoff_ms)).await;
            }
            code => return Err((wire::error_kind(code), ringstream_client::describe_error(code, None))),
        }
    }
    unreachable!("the last attempt returns")
}

async fn read_responses(
    shared: Rc<Shared>,
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
    pending: local_channel::LocalReceiver<InFlight>,
    slots: Rc<Semaphore>,
) {
    let spec = &shared.spec;
    let mut failure: Option<String> = None;
    while let Some(entry) = pending.recv().await {
        let frame = match &failure {
            Some(_) => None,
            None => match glommio::timer::timeout(Duration::from_millis(request_timeout_ms_max), async {
                Ok(wire::read_frame(&mut reader).await)
            })
            .await
            {
                Ok(Ok(Some(frame))) => Some(frame),
                Ok(Ok(None)) => {
                    failure = Some("connection closed by the broker".into());
                    None
                }
                Ok(Err(e)) => {
                    failure = Some(e);
                    None
                }
                Err(_) => {
                    failure = Some(format!("no response within {request_timeout_ms_max} ms"));
                    None
                }
            },
        };
        let records: u64 = entry.batches.iter().map(|b| b.1.len() as u64).sum();
        let Some(frame) = frame else {
            shared.error("CONNECTION_FAILED", records);
            slots.signal(1);
            slots.close(); // stops the writer; what it queued is counted here as it drains
            continue;
        };
        let now = shared.clock.now_ns();
        if spec.raw_sink {
            if frame.len() != 4 || wire::correlation_of(&frame) != Some(entry.correlation_id) {
                failure =
                    Some(format!("sink reply {:?} for request {}", &frame[..frame.len().min(8)], entry.correlation_id));
                shared.error("CONNECTION_FAILED", records);
            } else {
                for (_, times, bytes) in &entry.batches {
                    shared.acked(times, *bytes, now);
                }
            }
            slots.signal(1);
            if failure.is_some() {
                slots.close();
            }
            continue;
        }
        match wire::decode_response::<ProduceResponse>(ApiKey::Produce, spec.version, entry.correlation_id, frame) {
            Ok(response) => {
                let mut codes: BTreeMap<i32, i16> = BTreeMap::new();
                for topic in response.responses.iter().filter(|t| t.name.0.as_str() == spec.topic) {
                    for partition in &topic.partition_responses {
                        codes.insert(partition.index, partition.error_code);
                    }
                }
                for (partition, times, bytes) in &entry.batches {
                    match codes.get(partition) {
                        Some(0) => shared.acked(times, *bytes, now),
                        Some(&code) => shared.error(&wire::error_kind(code), times.len() as u64),
                        None => shared.error("MISSING_FROM_RESPONSE", times.len() as u64),
                    }
                }
            }
            Err(e) => {
                failure = Some(e);
                shared.error("BAD_RESPONSE", records);
            }
        }
        slots.signal(1);
        if failure.is_some() {
            // Stop the writer; what it already queued is counted above as it drains.
            slots.close();
        }
    }
    if let Some(failure) = failure {
        eprintln!("{}: {failure}", spec.name);
        slots.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(partitions: usize, batch_bytes: usize) -> ProducerSpec {
        ProducerSpec {
            name: "test".into(),
            address: "127.0.0.1:1".parse().unwrap(),
            topic: "t".into(),
            partitions: (0..partitions as i32).collect(),
            rate: 0.0,
            record_size_min: 100,
            record_size_max: 100,
            keys: None,
            compression: Compression::None,
            idempotence: false,
            init_producer_id_version: None,
            records_max: None,
            acks: -1,
            batch_bytes,
            linger_ns: 1_000_000,
            in_flight: 1,
            version: 9,
            raw_sink: false,
            seed: 7,
        }
    }

    #[test]
    fn batches_close_full_or_lingered_and_requests_take_one_per_partition() {
        let clock = Clock::new();
        let mut acc = Accumulator::new(&spec(2, 1000));
        for i in 0..40 {
            acc.add(i, 0, &clock);
        }
        // 2 partitions, ~124 bytes a record: several full batches each.
        assert!(acc.closed.len() >= 4);
        let request = acc.take_request(usize::MAX);
        assert_eq!(request.len(), 2);
        assert_ne!(request[0].slot, request[1].slot);
        for batch in &request {
            let info = ringstream_core::batch::validate(&batch.bytes, 1 << 20).unwrap();
            assert_eq!(info.records_count as usize, batch.times.len());
            assert!(batch.bytes.len() <= 1000);
            let records = ringstream_core::batch::records(&batch.bytes).unwrap();
            let stamp = u64::from_be_bytes(records[0].value.unwrap()[..8].try_into().unwrap());
            assert_eq!(clock.mono_of_realtime(stamp), Some(batch.times[0]));
        }
        let before = acc.closed.len();
        acc.close_lingered(500_000, 1_000_000, false);
        assert_eq!(acc.closed.len(), before, "nothing has lingered 1 ms yet");
        acc.close_lingered(1_000_000, 1_000_000, false);
        assert!(acc.open.iter().all(Option::is_none));
        let total: usize = acc.closed.iter().map(|b| b.times.len()).sum();
        let sent: usize = request.iter().map(|b| b.times.len()).sum();
        assert_eq!(total + sent, 40);
    }

    /// Sizes stay in the range and are what `value_bytes` counts; keys go to
    /// their murmur2 partition; idempotent batches carry consecutive
    /// sequences per partition.
    #[test]
    fn sizes_keys_and_sequences() {
        let clock = Clock::new();
        let mut spec = spec(4, 4096);
        spec.record_size_min = 10;
        spec.record_size_max = 200;
        spec.keys =
            Some(Arc::new(KeyTable::build(&crate::keys::KeySpec::Zipf { keys: 50, exponent: 0.99 }, 4, &[0, 1, 2, 3])));
        let mut acc = Accumulator::new(&spec);
        acc.producer = Some((77, 2));
        for i in 0..500 {
            acc.add(i, 0, &clock);
        }
        acc.close_lingered(0, 0, true);
        let mut next_sequence_of = [0i32; 4];
        let mut records = 0;
        let mut sizes = std::collections::BTreeSet::new();
        for batch in &acc.closed {
            let header = ringstream_core::batch::BatchHeader::ref_from_prefix(&batch.bytes).unwrap();
            assert_eq!((header.producer_id(), header.producer_epoch()), (77, 2));
            assert_eq!(header.base_sequence(), next_sequence_of[batch.slot]);
            next_sequence_of[batch.slot] += header.records_count();
            let views = ringstream_core::batch::records(&batch.bytes).unwrap();
            let mut value_bytes = 0;
            for view in &views {
                let value = view.value.unwrap();
                assert!((10..=200).contains(&value.len()));
                sizes.insert(value.len());
                value_bytes += value.len() as u64;
                let key = view.key.expect("keyed");
                assert!(key.starts_with(b"key-"));
                assert_eq!(crate::keys::partition_for_key(key, 4), batch.slot as i32);
            }
            assert_eq!(value_bytes, batch.value_bytes);
            records += views.len();
        }
        assert_eq!(records, 500);
        assert!(sizes.len() > 50, "sizes vary: {}", sizes.len());
        assert_eq!(next_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(next_sequence(5, 3), 8);
    }
}
