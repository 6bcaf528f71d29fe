//! Shards: executors pinned to CPUs, partition placement, and the router.
//!
//! Each shard is one glommio executor on one CPU and owns a set of
//! partitions end to end. Only the router crosses cores; everything else a
//! shard touches is its own.
#![allow(non_upper_case_globals)] // limits are named like values: `batch_bytes_max`.

pub mod balance;
pub mod placement;
pub mod policy;
pub mod reactor;
pub mod router;
pub mod runtime;

pub use placement::{place, PlacementTable};
pub use router::{RoutedRead, Shard};
pub use runtime::{RuntimeConfig, RuntimeError, ShardSet};

use ringstream_core::limits;

// The tuning crate's profile bounds mirror these limits (it depends on no
// crate of ours); a profile in range is a configuration in range.
const _: () = assert!(ringstream_tuning::profile::shards_max == limits::shards_max);
const _: () = assert!(ringstream_tuning::profile::write_buffer_bytes_min == limits::io_alignment as u64);
const _: () = assert!(ringstream_tuning::profile::write_buffer_bytes_max == limits::commit_round_bytes_max as u64);
const _: () = assert!(ringstream_tuning::profile::io_depth_max == limits::io_depth_max as u64);
const _: () = assert!(ringstream_tuning::profile::batch_cache_bytes_max == limits::batch_cache_bytes_max as u64);
const _: () = assert!(ringstream_tuning::profile::spin_before_park_us_max == limits::spin_before_park_us_max);
