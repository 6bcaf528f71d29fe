//! Every bound the load generator keeps, with the relations between them
//! asserted at compile time.

/// Smallest record value: the first 8 bytes carry the intended send time.
pub const record_bytes_min: usize = 8;
/// Largest record value.
pub const record_bytes_max: usize = 1024 * 1024;
/// Largest batch a producer builds (`--batch-bytes`).
pub const batch_bytes_max: usize = 16 * 1024 * 1024;
/// Produce requests in flight per producer connection (`--in-flight`).
pub const produce_requests_in_flight_max: usize = 64;
/// Largest produce request a producer sends (several partitions' batches).
pub const produce_request_bytes_max: usize = 32 * 1024 * 1024;
/// Bytes a producer connection buffers in closed batches not yet sent;
/// past this it generates no more records (their intended times still
/// count, so the stall shows in the latency).
pub const producer_buffer_bytes_max: usize = 64 * 1024 * 1024;
/// Producers, and consumers, per run.
pub const connections_max: usize = 1024;
/// Partitions of the topic.
pub const partitions_max: usize = 100_000;
/// Largest response accepted (checked before allocating).
pub const response_bytes_max: usize = 128 * 1024 * 1024;
/// Fetch: bytes per response and per partition asked for.
pub const fetch_bytes_max: usize = 32 * 1024 * 1024;
pub const fetch_partition_bytes_max: usize = 4 * 1024 * 1024;
/// Fetch long-poll wait asked of the broker.
pub const fetch_wait_ms_max: i32 = 100;
/// A request whose response takes longer than this fails its connection.
pub const request_timeout_ms_max: u64 = 30_000;
/// After the measured time, producers wait at most this long for acks and
/// consumers at most this long to catch up; what is left counts as errors.
pub const drain_ms_max: u64 = 10_000;
/// Highest latency the histograms hold (values above are clamped and counted).
pub const latency_us_max: u64 = 3_600_000_000;
/// Distinct keys of `--keys uniform:N` / `zipf:N`. Each leader's key table
/// (cumulative weight, key and slot: 16 bytes a key) is built once at start.
pub const keys_max: usize = 1 << 20;
/// Bytes of one record key ("key-" and the key's decimal index).
pub const key_bytes_max: usize = 16;
/// Zipf exponent of `--keys zipf:N:S`.
pub const zipf_exponent_max: f64 = 10.0;
/// Produce requests in flight per connection with `--idempotence`: Kafka
/// brokers keep the last 5 batches per producer and partition to detect
/// duplicates, so more would be refused as out of order.
pub const idempotent_in_flight_max: usize = 5;
/// Consumer groups per run (`--groups`); members are counted in `connections_max`.
pub const groups_max: usize = 256;
/// Bytes of `--group-prefix`.
pub const group_prefix_bytes_max: usize = 200;
/// Members a JoinGroup response may list (the leader assigns to each).
pub const group_members_max: usize = 4096;
/// Largest PID `--broker-pid` accepts: Linux's PID_MAX_LIMIT (2^22 on 64-bit
/// systems), above which no process can exist.
pub const pid_max: u32 = 4 * 1024 * 1024;
/// A compressed batch's records, decompressed. The kafka-protocol codecs
/// decompress in one go, so this is checked on their output.
pub const decompressed_batch_bytes_max: usize = 64 * 1024 * 1024;
/// Records a compressed fetched batch may claim before it is decompressed.
pub const decompressed_batch_records_max: i32 = 1_000_000;

const _: () = assert!(record_bytes_min == 8);
const _: () = assert!(record_bytes_max + 64 <= batch_bytes_max);
const _: () = assert!(batch_bytes_max <= produce_request_bytes_max);
const _: () = assert!(produce_request_bytes_max <= producer_buffer_bytes_max);
const _: () = assert!(fetch_partition_bytes_max <= fetch_bytes_max);
const _: () = assert!(fetch_bytes_max + batch_bytes_max <= response_bytes_max);
const _: () = assert!(batch_bytes_max <= ringstream_core::limits::batch_bytes_max);
const _: () = assert!(request_timeout_ms_max >= fetch_wait_ms_max as u64 * 10);
const _: () = assert!(keys_max < 10_000_000_000 && "key-".len() + 10 <= key_bytes_max);
const _: () = assert!(idempotent_in_flight_max <= produce_requests_in_flight_max);
const _: () = assert!(groups_max <= connections_max && connections_max <= group_members_max);
const _: () = assert!(batch_bytes_max <= decompressed_batch_bytes_max);

// ---- Bounds of the suite runner, reports, probes and plots. ----

/// Rounds per scenario (`--rounds`).
pub const rounds_max: u32 = 100;

/// A child run may take this long beyond its warmup and duration (its
/// bootstrap, the drain of up to `drain_ms_max` for producers and again for
/// consumers, writing the plot) before it is killed and reported as hung.
pub const run_overhead_ms_max: u64 = 90_000;

/// The prepare child (topic creation, including the wait for leaders).
pub const prepare_ms_max: u64 = 120_000;

/// The child's JSON is read only up to this size; a larger file is an error.
pub const child_json_bytes_max: u64 = 1024 * 1024;

/// Bytes of a child's log read back for the report when it fails.
pub const log_tail_bytes_max: u64 = 16 * 1024;

/// Seconds a `Timeline` keeps (a day). A longer run's later seconds are
/// counted in `Timeline::dropped` and left out of the plot, so memory stays
/// bounded whatever `--duration` says.
pub const timeline_seconds_max: usize = 86_400;

/// Lines of one /proc/net/tcp* file looked at (a host with more sockets is
/// only partly searched, and the broker may then not be found).
pub const proc_net_tcp_lines_max: usize = 1_000_000;

/// Processes, and fds per process, looked at when searching for a socket.
pub const proc_pids_scanned_max: usize = 100_000;

/// File descriptors looked at per process in that search.
pub const proc_fds_per_pid_scanned_max: usize = 1_000_000;

/// Bytes read from the start of /proc/stat: the aggregate `cpu ` line is
/// its first line, a few hundred bytes at most (ten 20-digit counters).
pub const proc_stat_head_bytes_max: u64 = 4096;

/// Largest frame the sink takes (a produce request plus its header).
pub const sink_frame_bytes_max: usize = produce_request_bytes_max + 64 * 1024;

/// JoinGroup/SyncGroup rounds per join before backing off and starting over.
pub const join_rounds_max: u32 = 10;

/// The latency spectrum plot goes at most to 10^this (p99.99999).
pub const spectrum_decades_max: u32 = 7;

/// Bytes a record adds to a batch beyond its value and key, at most, for
/// sizing (length, attributes, timestamp and offset deltas, key length,
/// value length, header count as varints).
pub const record_overhead_bytes_max: usize = 24;

/// InitProducerId is asked again this many times while the broker answers
/// with a retriable error (a coordinator loading), `init_retry_backoff_ms` apart.
pub const init_attempts_max: u32 = 20;

/// Nesting accepted in a child's JSON (it uses 3 levels).
pub const json_depth_max: usize = 16;
