//! The admin API, served beside `/metrics` on the `--metrics-listen`
//! address (as Redpanda serves its admin API and metrics on one port), and
//! the `ringstream partition` commands that use it.
//!
//! - `GET /v1/partitions`: one line per partition, `TOPIC PARTITION SHARD
//!   BYTES_PER_SEC` (bytes/s from shard 0's last load sample; 0 when no
//!   policy samples load), after a header line.
//! - `POST /v1/partitions/move?topic=T&partition=P&shard=N`: moves a
//!   partition to shard N live (see `Shard::move_partition`). 200 with a
//!   line saying what moved; 400 for bad parameters or a refused move
//!   (unknown partition or shard, internal topic); 503 when it failed and
//!   the partition stayed where it was.
//!
//! Kafka has no protocol API for moving a partition between the cores of
//! one broker, so this is not a Kafka request. The listener binds where
//! `--metrics-listen` says (loopback in every example); it is not meant to
//! face untrusted networks.

use std::rc::Rc;
use std::time::Instant;

use clap::Subcommand;

use crate::http::{Request, Response, Routes};
use ringstream_client::status::http_request;
use ringstream_core::types::{ShardId, TopicPartition};
use ringstream_shard::Shard;
use ringstream_storage::StorageError;

/// Adds the admin routes to the metrics listener's table.
pub fn routes(routes: Routes) -> Routes {
    routes.route("GET", "/v1/partitions", |shard, request| Box::pin(list(shard, request))).route(
        "POST",
        "/v1/partitions/move",
        |shard, request| Box::pin(move_partition(shard, request)),
    )
}

async fn list(shard: Rc<Shard>, _request: Request) -> Response {
    let rates: std::collections::HashMap<TopicPartition, f64> =
        shard.load_sampler().borrow().loads.iter().flat_map(|load| load.partitions.iter().cloned()).collect();
    let mut body = String::from("topic partition shard bytes_per_sec\n");
    for (tp, owner) in shard.placement_snapshot() {
        let rate = rates.get(&tp).copied().unwrap_or(0.0);
        body.push_str(&format!("{} {} {} {}\n", tp.topic, tp.partition.0, owner.0, rate.round() as u64));
    }
    Response::text(200, body)
}

async fn move_partition(shard: Rc<Shard>, request: Request) -> Response {
    let parsed = (|| -> Result<(TopicPartition, ShardId), String> {
        let topic = request.query_param("topic").ok_or("missing topic=")?;
        let partition: i32 = request
            .query_param("partition")
            .ok_or("missing partition=")?
            .parse()
            .map_err(|_| "partition= must be a number")?;
        let to: u16 =
            request.query_param("shard").ok_or("missing shard=")?.parse().map_err(|_| "shard= must be a number")?;
        Ok((TopicPartition::new(topic, partition), ShardId(to)))
    })();
    let (tp, to) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return Response::text(400, format!("{message}\n")),
    };
    let started = Instant::now();
    match shard.move_partition(tp.clone(), to).await {
        Ok(from) if from == to => Response::text(200, format!("{tp} is already on shard {to}\n")),
        Ok(from) => Response::text(
            200,
            format!(
                "moved {tp} from shard {from} to shard {to} in {:.1} ms\n",
                started.elapsed().as_secs_f64() * 1000.0
            ),
        ),
        Err(StorageError::UnknownPartition(_)) => Response::text(400, format!("no such partition: {tp}\n")),
        Err(e @ StorageError::Config(_)) => Response::text(400, format!("{e}\n")),
        Err(e) => Response::text(503, format!("move failed, {tp} stays where it was: {e}\n")),
    }
}

/// `ringstream partition ...`
#[derive(Subcommand)]
pub enum PartitionCommand {
    /// Move a partition to another shard (core) of the running broker, live.
    Move {
        /// TOPIC/PARTITION, e.g. orders/3
        partition: String,
        /// The shard to move it to.
        #[arg(long)]
        shard: u16,
    },
    /// List every partition with its shard and its bytes/s.
    List,
}

/// Runs a partition command against the admin API at `admin` (the
/// broker's `--metrics-listen` address).
pub fn partition(admin: &str, command: PartitionCommand) -> Result<(), String> {
    let (status, body) = match command {
        PartitionCommand::Move { partition, shard } => {
            let (topic, index) = partition
                .rsplit_once('/')
                .filter(|(topic, _)| !topic.is_empty())
                .ok_or_else(|| format!("{partition:?}: expected TOPIC/PARTITION"))?;
            let index: i32 = index.parse().map_err(|_| format!("{partition:?}: the partition must be a number"))?;
            if !ringstream_core::types::is_valid_topic_name(topic) {
                return Err(format!("{topic:?} is not a valid topic name"));
            }
            http_request(admin, "POST", &format!("/v1/partitions/move?topic={topic}&partition={index}&shard={shard}"))?
        }
        PartitionCommand::List => http_request(admin, "GET", "/v1/partitions")?,
    };
    if status != 200 {
        return Err(format!("{} (HTTP {status})", body.trim_end()));
    }
    print!("{body}");
    Ok(())
}
