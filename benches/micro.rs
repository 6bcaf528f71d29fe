//! CPU-only micro-benchmarks, each paired with a baseline (divan):
//!
//! - `validate`: what the Produce path runs on each incoming batch (the
//!   handler's `split_batches` boundary check, then `ShardStorage::submit`'s
//!   `batch::validate`: length, magic, CRC-32C, codec, record count and, for
//!   an uncompressed batch, a walk over every record) against the bare
//!   `crc32c::crc32c` over the same CRC-covered bytes. `ours_no_walk` is the
//!   same batch flagged gzip (CRC rewritten), so `validate` stops after the
//!   header and the CRC: the gap to `ours` is the record walk.
//! - `produce_decode`: the broker's request decoding (`decode_request`, which
//!   bound-checks the header and hands it to the crate, then `decode_body`)
//!   against bare `RequestHeader::decode` + `ProduceRequest::decode` from
//!   `kafka-protocol`. The broker has no Produce decoder of its own; the
//!   pair shows what its wrapping costs.
//! - `produce_response_encode`: `protocol::encode_response` (what Produce's
//!   handler calls; it encodes with `kafka-protocol`) against the bare crate
//!   encode of the same header and body. Counted in responses.
//! - `fetch_encode`: the broker's hand-framed FetchResponse
//!   (`protocol::fetch_response::encode`, which returns pieces and leaves the
//!   record batches where they are) against `kafka-protocol`'s
//!   `FetchResponse::encode` of the same response into one buffer (which
//!   copies the records). `ours_contiguous` also gathers our pieces into one
//!   buffer, i.e. our encoder without the zero-copy write.
//!
//! Batch shapes: about 16 KiB of 1 KiB records, about 1 MiB of 1 KiB
//! records, about 16 KiB of 100-byte records (values pseudo-random, no key,
//! no headers). Every pair is checked before it is timed: both sides accept
//! the same batch, decode the same request, or produce identical bytes.
//!
//! `cargo bench --bench micro` (divan's options follow `--`; bytes/s are
//! shown in binary units unless `--bytes-format decimal`).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use divan::counter::{BytesCount, BytesFormat, ItemsCount};
use divan::{black_box, Bencher};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use ringstream_core::batch::{self, BatchInfo, CRC_START};
use ringstream_core::limits;
use ringstream_protocol::fetch_response::{self, FetchOut, PartitionOut, Piece, TopicOut};
use ringstream_protocol::{decode_body, decode_request, encode_response};
use ringstream_storage::log::LogConfig;

fn main() {
    divan::Divan::default().bytes_format(BytesFormat::Binary).config_with_args().main();
}

const TOPIC_NAME: &str = "bench-topic";
const CORRELATION_ID: i32 = 7;

/// A batch of about `batch_bytes` (never more) whose records each carry a
/// `value_bytes`-byte value.
#[derive(Clone, Copy, Debug)]
struct Shape {
    name: &'static str,
    batch_bytes: usize,
    value_bytes: usize,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

const SHAPES: [Shape; 3] = [
    Shape { name: "batch16k-rec1k", batch_bytes: 16 * 1024, value_bytes: 1024 },
    Shape { name: "batch1m-rec1k", batch_bytes: 1024 * 1024, value_bytes: 1024 },
    Shape { name: "batch16k-rec100", batch_bytes: 16 * 1024, value_bytes: 100 },
];

/// A request or response version with a batch shape.
#[derive(Clone, Copy, Debug)]
struct Case {
    version: i16,
    shape: Shape,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}-{}", self.version, self.shape.name)
    }
}

const fn cases(versions: [i16; 2]) -> [Case; 6] {
    [
        Case { version: versions[0], shape: SHAPES[0] },
        Case { version: versions[0], shape: SHAPES[1] },
        Case { version: versions[0], shape: SHAPES[2] },
        Case { version: versions[1], shape: SHAPES[0] },
        Case { version: versions[1], shape: SHAPES[1] },
        Case { version: versions[1], shape: SHAPES[2] },
    ]
}

/// Produce v3 (the oldest served, classic header) and v9 (the newest,
/// flexible).
const PRODUCE_CASES: [Case; 6] = cases([3, 9]);
/// Fetch v4 (the oldest served) and v12 (the newest, flexible).
const FETCH_CASES: [Case; 6] = cases([4, 12]);

/// The batch for `shape`: as many records as fit in `batch_bytes`.
fn batch_for(shape: Shape) -> Bytes {
    let one_record_bytes =
        batch::build_test_batch(1, shape.value_bytes, 1, 1_700_000_000_000).len() - batch::BATCH_HEADER_BYTES;
    let mut count = ((shape.batch_bytes - batch::BATCH_HEADER_BYTES) / one_record_bytes) as u32;
    for _ in 0..8 {
        assert!(count > 0);
        let built = batch::build_test_batch(count, shape.value_bytes, 1, 1_700_000_000_000);
        if built.len() <= shape.batch_bytes {
            assert!(built.len() + one_record_bytes + 2 > shape.batch_bytes, "{shape}: {} bytes", built.len());
            return Bytes::from(built);
        }
        count -= (built.len() - shape.batch_bytes).div_ceil(one_record_bytes) as u32;
    }
    panic!("{shape}: no batch of at most {} bytes", shape.batch_bytes);
}

// ------------------------------------------------------------------ validate

/// What a produced partition's records go through before they are queued:
/// `handlers::produce::queue` (exactly one batch, by `split_batches`) and
/// `ShardStorage::submit` (size against the topic's limit, then
/// `batch::validate`), with the default topic config.
fn produce_path_validate(records: &[u8], limit_bytes: usize) -> BatchInfo {
    let mut batches = batch::split_batches(records, limits::batch_bytes_max);
    let one = match (batches.next(), batches.next()) {
        (Some(Ok(one)), None) if one.len() == records.len() => one,
        other => panic!("not exactly one batch: {:?}", other.0.map(|r| r.map(<[u8]>::len))),
    };
    assert!(one.len() <= limit_bytes);
    batch::validate(one, limit_bytes).expect("valid batch")
}

fn limit_bytes() -> usize {
    let config = LogConfig::default();
    config.max_message_bytes.min(config.segment_bytes as usize)
}

mod validate {
    use super::*;

    #[divan::bench(args = SHAPES)]
    fn ours(bencher: Bencher, shape: Shape) {
        let records = batch_for(shape);
        let limit = limit_bytes();
        let info = produce_path_validate(&records, limit);
        assert_eq!(info.total_bytes as usize, records.len());
        bencher.counter(BytesCount::new(records.len())).bench(|| produce_path_validate(black_box(&records), limit));
    }

    /// The same batch flagged gzip, CRC rewritten: `validate` checks the
    /// header and the CRC and skips the record walk.
    #[divan::bench(args = SHAPES)]
    fn ours_no_walk(bencher: Bencher, shape: Shape) {
        let mut bytes = batch_for(shape).to_vec();
        bytes[CRC_START + 1] |= 1; // attributes (i16, big-endian): codec 1 = gzip
        batch::write_crc(&mut bytes);
        let limit = limit_bytes();
        produce_path_validate(&bytes, limit);
        bencher.counter(BytesCount::new(bytes.len())).bench(|| produce_path_validate(black_box(&bytes), limit));
    }

    /// Bare CRC-32C over what the batch CRC covers (attributes to the end).
    #[divan::bench(args = SHAPES)]
    fn crc32c_bare(bencher: Bencher, shape: Shape) {
        let records = batch_for(shape);
        let header = batch::BatchHeader::ref_from_prefix(&records).unwrap();
        assert_eq!(crc32c::crc32c(&records[CRC_START..]), header.crc());
        bencher.counter(BytesCount::new(records.len())).bench(|| crc32c::crc32c(&black_box(&records)[CRC_START..]));
    }
}

// ------------------------------------------------------------ produce_decode

/// A Produce request frame as the connection hands it over (no size
/// prefix): header, then one topic with one partition carrying the batch.
fn produce_frame(case: Case) -> Bytes {
    let version = case.version;
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str(TOPIC_NAME))).with_partition_data(
            vec![PartitionProduceData::default().with_index(0).with_records(Some(batch_for(case.shape)))],
        ),
    ]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(CORRELATION_ID)
        .with_client_id(Some(StrBytes::from_static_str("rdkafka")));
    let mut out = BytesMut::new();
    header.encode(&mut out, ApiKey::Produce.request_header_version(version)).unwrap();
    request.encode(&mut out, version).unwrap();
    out.freeze()
}

fn records_len(request: &ProduceRequest) -> usize {
    request.topic_data[0].partition_data[0].records.as_ref().map_or(0, Bytes::len)
}

mod produce_decode {
    use super::*;

    /// `protocol::decode_request` + `decode_body`, as the connection and
    /// `handlers::produce::start` call them.
    fn ours_decode(frame: &Bytes) -> ProduceRequest {
        let request = decode_request(frame.clone(), ringstream_broker::handlers::max_version).unwrap();
        let mut body = request.body;
        decode_body(&mut body, request.api_version, "Produce request").unwrap()
    }

    fn crate_decode(frame: &Bytes, version: i16) -> ProduceRequest {
        let mut body = frame.clone();
        let header = RequestHeader::decode(&mut body, ApiKey::Produce.request_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, CORRELATION_ID);
        ProduceRequest::decode(&mut body, version).unwrap()
    }

    #[divan::bench(args = PRODUCE_CASES)]
    fn ours(bencher: Bencher, case: Case) {
        let frame = produce_frame(case);
        assert_eq!(ours_decode(&frame), crate_decode(&frame, case.version));
        assert!(records_len(&ours_decode(&frame)) > 0);
        bencher
            .counter(BytesCount::new(frame.len()))
            .counter(ItemsCount::new(1usize))
            .bench(|| ours_decode(black_box(&frame)));
    }

    #[divan::bench(args = PRODUCE_CASES)]
    fn kafka_protocol(bencher: Bencher, case: Case) {
        let frame = produce_frame(case);
        bencher
            .counter(BytesCount::new(frame.len()))
            .counter(ItemsCount::new(1usize))
            .bench(|| crate_decode(black_box(&frame), case.version));
    }
}

// --------------------------------------------------- produce_response_encode

/// What Produce's handler answers for one partition appended at offset 1000.
fn produce_response(version: i16) -> ProduceResponse {
    let partition = PartitionProduceResponse::default()
        .with_index(0)
        .with_error_code(0)
        .with_base_offset(1000)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(if version >= 5 { 0 } else { -1 });
    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC_NAME)))
        .with_partition_responses(vec![partition])])
}

/// Size prefix, header and body with the crate alone.
fn crate_encode<T: Encodable>(api_key: ApiKey, version: i16, body: &T) -> Bytes {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(CORRELATION_ID);
    let size = header.compute_size(header_version).unwrap() + body.compute_size(version).unwrap();
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version).unwrap();
    body.encode(&mut out, version).unwrap();
    out.freeze()
}

mod produce_response_encode {
    use super::*;

    #[divan::bench(args = [3i16, 9])]
    fn ours(bencher: Bencher, version: i16) {
        let response = produce_response(version);
        assert_eq!(
            encode_response(ApiKey::Produce, version, CORRELATION_ID, &response).unwrap(),
            crate_encode(ApiKey::Produce, version, &response)
        );
        bencher
            .counter(ItemsCount::new(1usize))
            .bench(|| encode_response(ApiKey::Produce, version, CORRELATION_ID, black_box(&response)).unwrap());
    }

    #[divan::bench(args = [3i16, 9])]
    fn kafka_protocol(bencher: Bencher, version: i16) {
        let response = produce_response(version);
        bencher.counter(ItemsCount::new(1usize)).bench(|| crate_encode(ApiKey::Produce, version, black_box(&response)));
    }
}

// -------------------------------------------------------------- fetch_encode

/// One topic, one partition, the batch as its records: ours.
fn fetch_out(batch: &Bytes) -> FetchOut<Bytes> {
    FetchOut {
        throttle_time_ms: 0,
        error_code: 0,
        session_id: 0,
        topics: vec![TopicOut {
            name: TOPIC_NAME.to_owned(),
            topic_id: [0; 16],
            partitions: vec![PartitionOut {
                partition_index: 0,
                error_code: 0,
                high_watermark: 5000,
                last_stable_offset: 5000,
                log_start_offset: 0,
                batches: vec![batch.clone()],
                current_leader: None,
                diverging_epoch: None,
                preferred_read_replica: -1,
                aborted_transactions: None,
            }],
        }],
        node_endpoints: Vec::new(),
    }
}

/// The same response for the crate (the fields our encoder writes).
fn fetch_response_for_crate(batch: &Bytes) -> FetchResponse {
    FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str(TOPIC_NAME)))
        .with_partitions(vec![PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(5000)
            .with_last_stable_offset(5000)
            .with_log_start_offset(0)
            .with_aborted_transactions(None)
            .with_records(Some(batch.clone()))])])
}

fn gather(pieces: &[Piece<Bytes>]) -> Bytes {
    let total = pieces.iter().map(Piece::len).sum();
    let mut out = BytesMut::with_capacity(total);
    for piece in pieces {
        out.put_slice(piece.as_slice());
    }
    out.freeze()
}

mod fetch_encode {
    use super::*;

    /// Pieces: the framing in owned buffers, the batch as a handle.
    #[divan::bench(args = FETCH_CASES)]
    fn ours(bencher: Bencher, case: Case) {
        let batch = batch_for(case.shape);
        let response = fetch_out(&batch);
        let frame = gather(&fetch_response::encode(case.version, CORRELATION_ID, &response));
        assert_eq!(frame, crate_encode(ApiKey::Fetch, case.version, &fetch_response_for_crate(&batch)));
        bencher
            .counter(BytesCount::new(frame.len()))
            .bench(|| fetch_response::encode(case.version, CORRELATION_ID, black_box(&response)));
    }

    /// Ours, then the pieces copied into one buffer.
    #[divan::bench(args = FETCH_CASES)]
    fn ours_contiguous(bencher: Bencher, case: Case) {
        let batch = batch_for(case.shape);
        let response = fetch_out(&batch);
        let frame_bytes = gather(&fetch_response::encode(case.version, CORRELATION_ID, &response)).len();
        bencher
            .counter(BytesCount::new(frame_bytes))
            .bench(|| gather(&fetch_response::encode(case.version, CORRELATION_ID, black_box(&response))));
    }

    #[divan::bench(args = FETCH_CASES)]
    fn kafka_protocol(bencher: Bencher, case: Case) {
        let batch = batch_for(case.shape);
        let response = fetch_response_for_crate(&batch);
        let frame_bytes = crate_encode(ApiKey::Fetch, case.version, &response).len();
        bencher
            .counter(BytesCount::new(frame_bytes))
            .bench(|| crate_encode(ApiKey::Fetch, case.version, black_box(&response)));
    }
}
