//! Ringstream: a Kafka-compatible event streaming broker, thread-per-core on
//! glommio and io_uring. See ARCHITECTURE.md for the map.
//!
//! Layers, with dependencies running downwards only:
//! - `broker`, `handlers`: the Kafka broker: listening, connections, one
//!   handler per Kafka API, the topic table.
//! - `protocol`: Kafka framing and codecs; no I/O.
//! - `shard`: executors pinned to CPUs, placement of partitions onto shards,
//!   and the router, the only code that crosses cores.
//! - `storage`: record-batch validation, segments, indexes, the partition log,
//!   group commit, recovery and the per-shard batch cache. It knows record
//!   batches, never Kafka requests.
//! - `limits`, `types`: bounds and newtypes used everywhere.
//! - `metrics`, `http`: per-shard counters (single-writer atomics) and the
//!   Prometheus endpoint served from shard 0; `ringstream status`.
//! - `admin`: the admin API on the metrics listener (partition list and live
//!   moves) and `ringstream partition`.
#![allow(non_upper_case_globals)] // limits are named like values: `batch_bytes_max`.

pub mod admin;
pub mod alloc;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod groups;
pub mod handlers;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod shard;
pub mod storage;
pub mod tune;
pub mod types;
