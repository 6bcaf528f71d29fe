//! Every bound in Ringstream, in one place.
//!
//! Each queue, channel, cache, frame and loop has a named `*_max` limit here,
//! and the relations between them are checked at compile time. A value a user
//! can configure is checked against these bounds when the configuration is
//! loaded, never on the data path.

/// O_DIRECT alignment for positions, lengths and buffers. The devices we run on
/// report 512-byte logical blocks but 4096-byte physical ones; writing whole
/// physical blocks avoids read-modify-write in the device (NOTES-glommio #4).
pub const io_alignment: usize = 4096;

/// Largest Kafka request frame the broker will ever accept (Kafka's
/// `socket.request.max.bytes` default is 100 MiB; this is the hard ceiling).
pub const frame_bytes_max: usize = 100 * 1024 * 1024;

/// Largest single RecordBatch (12-byte log overhead included) that storage accepts.
/// Kafka's `message.max.bytes` is configured below this.
pub const batch_bytes_max: usize = 64 * 1024 * 1024;

/// Smallest legal RecordBatch v2: the 61-byte header with zero records.
pub const batch_bytes_min: usize = 61;

/// A segment's positions are stored as `u32` in its offset index.
pub const segment_bytes_max: u64 = 2 * 1024 * 1024 * 1024 - 1;
/// Small segments are allowed so tests can exercise rolling; one aligned block.
pub const segment_bytes_min: u64 = io_alignment as u64;

/// Largest preallocation step for the active segment (fallocate with
/// KEEP_SIZE). Steps grow with the segment from `segment_prealloc_step_min_bytes`
/// up to this, so 10,000 idle partitions reserve 640 MiB, not 320 GiB.
pub const segment_prealloc_step_bytes: u64 = 32 * 1024 * 1024;
/// First preallocation step of a new segment.
pub const segment_prealloc_step_min_bytes: u64 = 64 * 1024;

/// Kafka's `index.interval.bytes` default: one offset-index entry per this many
/// bytes of log.
pub const index_interval_bytes: u32 = 4096;
/// Entries in one segment's offset index cannot exceed this.
pub const index_entries_max: usize = (segment_bytes_max / index_interval_bytes as u64) as usize + 1;

/// Bytes one group-commit round may write for a single partition. Pending
/// appends beyond it wait for the next round.
pub const commit_round_bytes_max: usize = 16 * 1024 * 1024;
/// DMA writes and fdatasyncs one shard keeps in flight at once
/// (`shard.io.depth`). Deeper queues stop helping any device long before
/// this; it bounds the io_uring submissions a round with many partitions
/// can queue.
pub const io_depth_max: usize = 1024;
/// `shard.io.depth` default: above the depth where the devices we measured
/// saturate (QD16-32), so the bound does not slow the commit path.
pub const io_depth_default: usize = 64;
/// Appends waiting for a group commit, per partition. A full queue pushes back
/// on the submitter (the append future waits), it never grows.
pub const partition_pending_appends_max: usize = 4096;
/// Bytes waiting for a group commit, per partition.
pub const partition_pending_bytes_max: usize = 128 * 1024 * 1024;

/// Depth of every router channel between two shards.
pub const router_queue_depth_max: usize = 1024;
/// Bytes of appends other shards routed to one shard that wait for their
/// partition's drainer; past it the shard's inbox waits for room.
pub const remote_append_bytes_max: usize = 256 * 1024 * 1024;
/// Vectors of lent batches a shard holds, per home shard, before it sends
/// them home: they ride along with the next message to that shard (one
/// wake-up there instead of two), and at this count go at once. They pin
/// the home shard's buffers meanwhile.
pub const homeward_vectors_max: usize = 64;
/// The longest lent batches wait for a message to ride with before they
/// are sent home on their own.
pub const homeward_hold_ms_max: u64 = 10;
/// Shards in one process.
pub const shards_max: usize = 1024;
/// Partitions owned by one shard.
pub const shard_partitions_max: usize = 100_000;
/// Partitions one shard opens (topic creation, start-up) or closes
/// (shutdown) at once; each creates or syncs a few files.
pub const partition_file_ops_in_flight_max: usize = 64;
/// How long a request waits for a partition that is moving between shards
/// before it fails with REQUEST_TIMED_OUT. A move drains the partition's
/// queued appends and closes and reopens it: milliseconds, not seconds.
pub const partition_move_wait_ms_max: u64 = 10_000;
/// How long a move waits for the partition's queued appends to commit.
pub const partition_release_wait_ms_max: u64 = 5_000;

/// Largest read a single `read` call returns (sum of whole batches, except
/// that the first batch is always returned whole, as in Kafka's KIP-74).
pub const read_bytes_max: usize = 64 * 1024 * 1024;
/// What the records of one compressed batch may inflate to when the broker
/// looks inside it (compacted-topic key checks, timestamp lookups). Kafka
/// caps the compressed size only; a gzip bomb in a 1 MiB batch claims
/// gigabytes, so inflation stops here (`storage::codec`) and the batch is
/// refused (Produce) or answered at batch granularity (ListOffsets).
pub const decompressed_batch_bytes_max: usize = 64 * 1024 * 1024;
/// One disk read never asks for more than this.
pub const read_window_bytes_max: usize = 8 * 1024 * 1024;
/// Default disk read window when the caller's limit is smaller.
pub const read_window_bytes_min: usize = 64 * 1024;

/// Bytes of records one Fetch response carries (Kafka's broker
/// `fetch.max.bytes` default). With the first batch always whole, a
/// response stays below `fetch_response_bytes_max + batch_bytes_max`.
pub const fetch_response_bytes_max: usize = 57_671_680;

/// Default and ceiling of the per-shard batch cache.
pub const batch_cache_bytes_default: usize = 256 * 1024 * 1024;
pub const batch_cache_bytes_max: usize = 64 * 1024 * 1024 * 1024;

/// Recovery reads a segment in windows of this size.
pub const recovery_read_bytes: usize = 4 * 1024 * 1024;

/// Fetch long-polls parked on one partition at once.
pub const partition_data_waiters_max: usize = 4096;

/// Topic names, as in Kafka.
pub const topic_name_bytes_max: usize = 249;

/// Leader-epoch checkpoint entries kept per partition.
pub const epoch_entries_max: usize = 65_536;

/// Spin-before-park ceiling: spinning longer than this is never useful.
pub const spin_before_park_us_max: u64 = 10_000;

// Relations between the limits.
const _: () = assert!(io_alignment.is_power_of_two());
const _: () = assert!(batch_bytes_min < io_alignment);
const _: () = assert!(batch_bytes_max <= frame_bytes_max);
const _: () = assert!(batch_bytes_max <= commit_round_bytes_max * 4);
const _: () = assert!((batch_bytes_max as u64) < segment_bytes_max);
const _: () = assert!(segment_bytes_min % io_alignment as u64 == 0);
const _: () = assert!(segment_bytes_max <= u32::MAX as u64);
const _: () = assert!(segment_prealloc_step_bytes % io_alignment as u64 == 0);
const _: () = assert!(segment_prealloc_step_min_bytes % io_alignment as u64 == 0);
const _: () = assert!(segment_prealloc_step_min_bytes <= segment_prealloc_step_bytes);
const _: () = assert!(commit_round_bytes_max % io_alignment == 0);
const _: () = assert!(commit_round_bytes_max <= partition_pending_bytes_max);
const _: () = assert!(batch_bytes_max <= partition_pending_bytes_max);
const _: () = assert!(batch_bytes_max <= remote_append_bytes_max);
const _: () = assert!(read_window_bytes_min <= read_window_bytes_max);
const _: () = assert!(read_window_bytes_max <= read_bytes_max);
const _: () = assert!(read_window_bytes_max % io_alignment == 0);
const _: () = assert!(recovery_read_bytes % io_alignment == 0);
const _: () = assert!(recovery_read_bytes <= read_window_bytes_max);
const _: () = assert!(batch_cache_bytes_default <= batch_cache_bytes_max);
const _: () = assert!(fetch_response_bytes_max + batch_bytes_max < i32::MAX as usize / 2);
const _: () = assert!(router_queue_depth_max >= 1);
const _: () = assert!(io_depth_default >= 1 && io_depth_default <= io_depth_max);

/// Bytes of a truncation's cut the simulated disk keeps, to bring back at a
/// crash (simulation only).
pub const sim_cut_kept_bytes_max: u64 = 1 << 20;

/// Syncs tried to make the cut after a failed segment write durable.
pub const failed_write_cut_attempts_max: usize = 3;

/// Members in one consumer group (`group.max.size` is configured below it).
pub const group_members_max: usize = 10_000;
/// Consumer groups one shard coordinates; a join for a new group beyond it
/// is refused with COORDINATOR_NOT_AVAILABLE and a log line.
pub const shard_groups_max: usize = 100_000;
/// Protocols (assignors) one member may offer in a JoinGroup.
pub const group_protocols_max: usize = 64;
/// Partitions of the internal offsets log (`offsets.topic.num.partitions`).
pub const offsets_topic_partitions_max: i32 = 1000;
/// One batch written to the offsets log holds at most this many bytes of
/// records; larger commits and snapshots are split.
pub const offsets_log_batch_bytes_max: usize = 512 * 1024;
/// Largest single record in the offsets log (a group's metadata with all
/// its members' subscriptions and assignments); a larger one is refused.
pub const offsets_log_record_bytes_max: usize = 32 * 1024 * 1024;
const _: () = assert!(offsets_log_record_bytes_max + offsets_log_batch_bytes_max + 4096 < batch_bytes_max);

/// Bytes of one HTTP request to the metrics endpoint (request line,
/// headers and body together); a larger one is answered 413 and closed.
pub const http_request_bytes_max: usize = 16 * 1024;
/// HTTP connections served at once on the metrics listener; the accept loop
/// waits for a free slot (the kernel's backlog holds the rest).
pub const http_connections_max: usize = 64;
/// Time a client has to send its whole HTTP request.
pub const http_request_ms_max: u64 = 5_000;
/// Time a handler and the response write may take together.
pub const http_response_ms_max: u64 = 10_000;
/// A scrape waits this long for each shard's refresh (reactor busy time)
/// before it reports that shard's last values.
pub const metrics_refresh_ms_max: u64 = 1_000;
/// Kafka API keys the request-latency histograms cover (keys 0..this).
pub const metrics_api_keys_max: usize = 128;
const _: () = assert!(http_request_bytes_max >= 1024);
const _: () = assert!(http_connections_max >= 1);
const _: () = assert!(metrics_refresh_ms_max < http_response_ms_max);

/// Partitions one DescribeTopicPartitions response holds at most (Kafka's
/// `max.request.partition.size.limit` default); a request asking for more,
/// or for fewer than one, gets this many and a cursor for the rest.
pub const describe_topic_partitions_max: i32 = 2000;
/// DeleteRecords partitions worked on at once (each writes a checkpoint).
pub const delete_records_in_flight_max: usize = 64;
const _: () = assert!(describe_topic_partitions_max >= 1);
const _: () = assert!(delete_records_in_flight_max >= 1);

// ---- Bounds of the broker, storage, router and client, gathered here from
// the modules that enforce them. ----

/// KIP-467 record errors a response reports per partition, at most; Kafka's
/// message shows the first three.
pub const record_errors_max: usize = 1000;

/// Requests naming more topics than this are answered for the first ones only.
pub const metadata_topics_max: usize = 100_000;

/// Keys in one batched request.
pub const coordinator_keys_max: usize = 10_000;

/// Longest a fetch may wait, whatever the client asks.
pub const fetch_wait_ms_max: i32 = 30_000;

/// Partitions one fetch may name.
pub const fetch_partitions_max: usize = 10_000;

/// A response that makes no progress for this long closes its connection.
pub const send_stall_ms_max: u64 = 60_000;

/// Pieces per sendmsg call (Linux's IOV_MAX).
pub const iov_max: usize = 1024;

/// Kafka's `max.incremental.fetch.session.cache.slots` default.
pub const fetch_sessions_max: usize = 1000;

/// Partitions one incremental fetch session tracks.
pub const session_partitions_max: usize = 10_000;

/// Topics one broker holds.
pub const topics_max: usize = 100_000;

/// Partitions one topic may have.
pub const topic_partitions_max: i32 = 100_000;

/// How long and how much a closing connection discards (lingering close).
pub const http_linger_ms_max: u64 = 1_000;

/// Bytes a closing HTTP connection discards before it closes.
pub const http_linger_bytes_max: usize = 4 * http_request_bytes_max;

/// Compiled size of one subscription regex.
pub const subscription_regex_bytes_max: usize = 1024 * 1024;

/// How long a duplicate waits for its original to be acknowledged.
pub const duplicate_wait_ms_max: u64 = 30_000;

/// Records a compressed batch may hold for its timestamps to be unpacked.
pub const timestamp_scan_records_max: i32 = 1_000_000;

/// Most entries a placement table can hold.
pub const placement_entries_max: u64 = shard_partitions_max as u64 * shards_max as u64;

/// Batches remembered per producer (Kafka's max in-flight for idempotence).
pub const producer_batches_max: usize = 5;

/// Producers remembered per partition; beyond it the one idle longest is
/// forgotten (a producer forgotten this way may see one more duplicate).
pub const partition_producers_max: usize = 10_000;

/// Open transactions one partition tracks; a transactional batch of a new
/// producer beyond it is refused (retriable: CONCURRENT_TRANSACTIONS).
pub const partition_open_txns_max: usize = 10_000;

/// Aborted transactions one partition keeps in memory for read_committed
/// fetches; beyond it the oldest is forgotten, with a log line.
pub const partition_aborted_txns_max: usize = 1_000_000;

/// Transactional ids one transaction coordinator shard holds; InitProducerId
/// for a new one beyond it gets COORDINATOR_NOT_AVAILABLE (retriable) until
/// expired ids are removed.
pub const transactional_ids_max: usize = 100_000;

/// Partitions one transaction may span (AddPartitionsToTxn beyond it gets
/// INVALID_REQUEST for the partitions over).
pub const txn_partitions_max: usize = 10_000;

/// Partitions of the internal transaction log (`transaction.state.log.num.partitions`).
pub const txn_topic_partitions_max: i32 = 1000;

/// Transactions one ListTransactions or DescribeTransactions answer carries.
pub const txn_listing_max: usize = 100_000;

/// Times a request is sent again after reaching a shard that had just
/// given its partition away (each time it waits out the move first).
pub const route_attempts_max: usize = 3;

/// Largest response the tools accept.
pub const client_response_bytes_max: usize = 256 * 1024 * 1024;

/// FindCoordinator asks again while the coordinator loads, at most this often.
pub const client_coordinator_attempts_max: u32 = 20;

/// Largest `/metrics` response the tool reads.
pub const scrape_response_bytes_max: usize = 64 * 1024 * 1024;
const _: () = assert!(fetch_partitions_max <= session_partitions_max);
const _: () = assert!(metadata_topics_max <= topics_max);
const _: () = assert!(topic_partitions_max as usize <= shard_partitions_max * shards_max);
const _: () = assert!(scrape_response_bytes_max <= client_response_bytes_max);
const _: () = assert!(route_attempts_max >= 1 && client_coordinator_attempts_max >= 1);

// ---- The cluster: metadata quorum and controller ----

/// Largest frame on the controller listener (Raft messages, broker to
/// controller requests, metadata fetches). A snapshot of the metadata image
/// travels in one Raft message, so this also bounds the image.
pub const controller_frame_bytes_max: usize = 64 * 1024 * 1024;
/// Frames queued for one peer connection; Raft resends what is dropped.
pub const controller_peer_queue_max: usize = 1024;
/// Connections one controller listener serves at once.
pub const controller_connections_max: usize = 1024;
/// Requests one controller connection may have in flight.
pub const controller_requests_in_flight_max: usize = 64;
/// Voters in `controller.quorum.voters`.
pub const quorum_voters_max: usize = 64;
/// Brokers registered in one cluster.
pub const cluster_brokers_max: usize = 10_000;
/// Committed metadata entries kept in the log before a snapshot compacts it.
pub const metadata_log_entries_max: u64 = 2_000;
/// Records in one metadata-log entry (a whole CreateTopics of 100,000
/// partitions is one entry).
pub const metadata_entry_records_max: usize = 200_000;
/// Entries one metadata fetch returns.
pub const metadata_fetch_entries_max: usize = 512;
/// Bytes of one Raft append message (raft-rs `max_size_per_msg`).
pub const raft_message_bytes_max: u64 = 4 * 1024 * 1024;
/// Appends a Raft leader sends ahead of acknowledgement to one follower.
pub const raft_inflight_messages_max: usize = 64;
/// Proposals waiting for commit on the active controller.
pub const controller_proposals_max: usize = 4096;
/// How long a request forwarded to the controller may wait for an answer.
pub const controller_request_ms_max: u64 = 30_000;

// ---- Replication: followers fetching from leaders ----

/// Bytes one follower fetch asks for in all (Kafka's
/// `replica.fetch.response.max.bytes`).
pub const replica_fetch_bytes_max: usize = 10 * 1024 * 1024;
/// Bytes one follower fetch asks for per partition (`replica.fetch.max.bytes`).
pub const replica_partition_fetch_bytes_max: usize = 1024 * 1024;
/// Largest fetch response a follower reads: the request's limit, one
/// oversized first batch (KIP-74) and framing.
pub const replica_fetch_response_bytes_max: usize = replica_fetch_bytes_max + batch_bytes_max + 1024 * 1024;
/// Partitions in one follower fetch; more wait for the next one.
pub const replica_fetch_partitions_max: usize = 1000;
/// Fetcher connections one shard keeps: one per leader broker.
pub const replica_fetchers_max: usize = cluster_brokers_max;
/// How long an ISR change the controller has not answered waits before it
/// is asked again.
pub const isr_change_retry_ms: i64 = 5_000;
const _: () = assert!(replica_fetch_response_bytes_max <= frame_bytes_max);
const _: () = assert!(replica_partition_fetch_bytes_max <= replica_fetch_bytes_max);
const _: () = assert!(replica_fetch_partitions_max <= fetch_partitions_max);
