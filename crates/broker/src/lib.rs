//! The Kafka broker: listening, connections, one handler per Kafka API, the
//! topic table, consumer groups, broker configuration, the Prometheus export
//! and the admin API. Runs on the shards of `ringstream-shard`; stores
//! through `ringstream-storage`; frames with `ringstream-protocol`.
#![allow(non_upper_case_globals)] // limits are named like values: `batch_bytes_max`.

pub mod admin;
pub mod broker;
pub mod config;
pub mod connection;
pub mod export;
pub mod groups;
pub mod handlers;
pub mod http;
pub mod txn;
