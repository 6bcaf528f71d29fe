//! Shards: executors pinned to CPUs, partition placement, and the router.
//!
//! Each shard is one glommio executor on one CPU and owns a set of
//! partitions end to end. Only the router crosses cores; everything else a
//! shard touches is its own.

pub mod balance;
pub mod placement;
pub mod router;
pub mod runtime;

pub use placement::{place, PlacementTable};
pub use router::{RoutedRead, Shard};
pub use runtime::{RuntimeConfig, RuntimeError, ShardSet};
