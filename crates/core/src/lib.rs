//! The ground floor of Ringstream: what every other crate shares and nothing
//! here depends on: newtypes, limits, Kafka error codes, the RecordBatch
//! codec, the clock, and the per-shard metric cells. No I/O, no executor.
#![allow(non_upper_case_globals)] // limits are named like values: `batch_bytes_max`.

pub mod alloc;
pub mod batch;
pub mod clock;
pub mod codec;
pub mod error_code;
pub mod limits;
pub mod metrics;
pub mod rng;
pub mod types;
