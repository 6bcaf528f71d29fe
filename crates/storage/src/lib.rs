//! Storage: durable partition logs owned by one shard each.
//!
//! ```text
//!   append(batch) ─▶ batch::validate ─▶ PartitionLog::enqueue (offset assigned)
//!                                              │ pending queue (bounded)
//!                                              ▼
//!              ShardStorage::commit_round  (one per shard, group commit)
//!                copy pending batches into one 4 KiB-aligned DmaBuffer per partition
//!                write_rc_at ─▶ fdatasync (policy) ─▶ resolve waiters
//!                                              │ Rc<DmaBuffer> slices
//!                                              ▼
//!                                        BatchCache (LRU, bytes-bounded)
//!   read(offset, max_bytes) ─▶ cache hit ─▶ slices of the written buffers
//!                           └▶ miss ─▶ offset index ─▶ DMA read of the segment
//! ```
//!
//! Storage knows record batches, never Kafka requests. Everything here runs on
//! the shard that owns the partition: `Rc`/`RefCell`, no locks, no `Send`.
#![allow(non_upper_case_globals)] // limits are named like values: `batch_bytes_max`.

pub mod cache;
pub mod checkpoint;
pub mod dir;
pub mod disk;
pub mod error;
pub mod faults;
pub mod index;
pub mod log;
pub mod producer_state;
pub mod recovery;
pub mod replica;
pub mod segment;
pub mod shard_storage;
pub mod txn;

pub use error::{StorageError, StorageResult};
