//! The automatic core balancer: shard 0 samples every shard's per-partition
//! traffic through the router and, when `balancer.enable` is set, moves the
//! partition that best evens the busiest and idlest shards. The decisions
//! are `policy`'s; this module only runs them.

use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::policy::{pick_move, sample_interval_ms};
use crate::router::Shard;
use ringstream_core::types::{ShardId, TopicPartition};

/// Every shard's per-partition traffic totals, gathered from shard 0.
async fn sample(shard: &Rc<Shard>) -> Option<Vec<Vec<(TopicPartition, u64)>>> {
    let mut totals = Vec::with_capacity(shard.shard_count());
    for index in 0..shard.shard_count() {
        let to = ShardId(index as u16);
        // A closure (see `Shard::run_on`): shard 0's control plane reads each shard's traffic totals.
        totals.push(shard.run_on(to, |other| async move { other.storage.partition_traffic() }).await.ok()?);
    }
    Some(totals)
}

/// Starts shard 0's sampler (and the balancer, when enabled). Stops when
/// the router stops (a failed sample means the shards are shutting down).
pub fn start(shard: Rc<Shard>) {
    assert_eq!(shard.id, ShardId(0), "load is sampled on shard 0");
    let config = shard.balance_config();
    if !config.samples() {
        return;
    }
    info!(policy = ?config.policy, balancer = config.balancer, "load sampling started");
    glommio::spawn_local(async move {
        let mut last_balance = Instant::now();
        loop {
            glommio::timer::sleep(Duration::from_millis(sample_interval_ms)).await;
            let Some(totals) = sample(&shard).await else { break };
            shard.load_sampler().borrow_mut().record(Instant::now(), totals);
            if !config.balancer || last_balance.elapsed() < Duration::from_millis(config.interval_ms) {
                continue;
            }
            last_balance = Instant::now();
            let decision = pick_move(&shard.load_sampler().borrow().loads, &config);
            if let Some(decision) = decision {
                info!(
                    partition = %decision.tp,
                    from = %decision.from,
                    to = %decision.to,
                    bytes_per_sec = decision.bytes_per_sec as u64,
                    "balancer: moving a partition off the busiest shard"
                );
                if let Err(e) = shard.move_partition(decision.tp.clone(), decision.to).await {
                    warn!(partition = %decision.tp, "balancer: move failed: {e}");
                }
            }
        }
    })
    .detach();
}
