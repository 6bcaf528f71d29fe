//! Load-aware placement policy and the balancer's decisions: pure
//! functions of sampled rates, used by the router (placing new partitions)
//! and by `balance` (the loop on shard 0 that samples and moves).
//!
//! Load is bytes per second through a partition, appended plus read, as
//! its owner counts them (`ShardStorage::partition_traffic`). Shard 0
//! samples every shard once per `sample_interval_ms` when a policy needs it
//! and keeps the last rates; the decisions themselves are pure functions of
//! those rates, so they are tested without shards.
//!
//! - `placement.policy=hash` (the default) places a new partition where
//!   `placement::place` says: deterministic, spread by topic and index.
//! - `placement.policy=least-loaded` places each new partition on the shard
//!   with the least projected load: its measured bytes/s plus the average
//!   partition's bytes/s for each partition placed there in this call, ties
//!   going to the shard with fewer partitions (so an idle broker spreads
//!   by count).
//! - `balancer.enable=true` moves, at most once per `balancer.interval.ms`,
//!   the partition of the busiest shard whose move to the idlest shard best
//!   evens the two, when the busiest runs more than
//!   `balancer.imbalance.percent` above the mean and at least
//!   `balancer.min.bytes.per.sec` above the idlest. A partition is only
//!   moved if the move lowers the busier of the two shards.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Instant;

use ringstream_core::types::{ShardId, TopicPartition};

/// How often shard 0 samples load when a policy needs it.
pub const sample_interval_ms: u64 = 1000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlacementPolicy {
    #[default]
    Hash,
    LeastLoaded,
}

impl FromStr for PlacementPolicy {
    type Err = String;
    fn from_str(text: &str) -> Result<PlacementPolicy, String> {
        match text {
            "hash" => Ok(PlacementPolicy::Hash),
            "least-loaded" => Ok(PlacementPolicy::LeastLoaded),
            _ => Err(format!("placement.policy must be hash or least-loaded, got {text:?}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BalanceConfig {
    pub policy: PlacementPolicy,
    pub balancer: bool,
    pub interval_ms: u64,
    pub imbalance_percent: u64,
    pub min_bytes_per_sec: u64,
}

impl Default for BalanceConfig {
    fn default() -> BalanceConfig {
        BalanceConfig {
            policy: PlacementPolicy::Hash,
            balancer: false,
            interval_ms: 10_000,
            imbalance_percent: 25,
            min_bytes_per_sec: 1024 * 1024,
        }
    }
}

impl BalanceConfig {
    /// Whether shard 0 needs to sample load at all.
    pub fn samples(&self) -> bool {
        self.balancer || self.policy == PlacementPolicy::LeastLoaded
    }
}

/// One shard's load over the last sample interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardLoad {
    pub bytes_per_sec: f64,
    pub partitions: Vec<(TopicPartition, f64)>,
}

/// Owners for `count` new partitions under least-loaded placement.
pub fn least_loaded(loads: &[ShardLoad], count: usize) -> Vec<ShardId> {
    assert!(!loads.is_empty());
    let partitions: usize = loads.iter().map(|l| l.partitions.len()).sum();
    let total: f64 = loads.iter().map(|l| l.bytes_per_sec).sum();
    let average = if partitions == 0 { 0.0 } else { total / partitions as f64 };
    let mut projected: Vec<(f64, usize)> = loads.iter().map(|l| (l.bytes_per_sec, l.partitions.len())).collect();
    let mut owners = Vec::with_capacity(count);
    for _ in 0..count {
        let (index, _) = projected
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .expect("at least one shard");
        projected[index].0 += average;
        projected[index].1 += 1;
        owners.push(ShardId(index as u16));
    }
    owners
}

/// A move the balancer would make.
#[derive(Clone, Debug, PartialEq)]
pub struct Move {
    pub tp: TopicPartition,
    pub from: ShardId,
    pub to: ShardId,
    pub bytes_per_sec: f64,
}

/// The balancer's decision for one interval, if any (see the module doc).
pub fn pick_move(loads: &[ShardLoad], config: &BalanceConfig) -> Option<Move> {
    if loads.len() < 2 {
        return None;
    }
    let by_load = |a: &(usize, &ShardLoad), b: &(usize, &ShardLoad)| a.1.bytes_per_sec.total_cmp(&b.1.bytes_per_sec);
    let (hot, hot_load) = loads.iter().enumerate().max_by(by_load)?;
    let (cold, cold_load) = loads.iter().enumerate().min_by(by_load)?;
    let mean = loads.iter().map(|l| l.bytes_per_sec).sum::<f64>() / loads.len() as f64;
    let gap = hot_load.bytes_per_sec - cold_load.bytes_per_sec;
    if hot == cold
        || hot_load.bytes_per_sec <= mean * (1.0 + config.imbalance_percent as f64 / 100.0)
        || gap < config.min_bytes_per_sec as f64
    {
        return None;
    }
    // Moving rate r leaves max(hot - r, cold + r): lower than hot iff
    // 0 < r < gap; best when the two end up closest.
    hot_load
        .partitions
        .iter()
        .filter(|(tp, rate)| *rate > 0.0 && *rate < gap && !tp.topic.starts_with("__"))
        .min_by(|a, b| (gap - 2.0 * a.1).abs().total_cmp(&(gap - 2.0 * b.1).abs()))
        .map(|(tp, rate)| Move {
            tp: tp.clone(),
            from: ShardId(hot as u16),
            to: ShardId(cold as u16),
            bytes_per_sec: *rate,
        })
}

/// Shard 0's load samples: the last traffic totals and the rates they gave.
#[derive(Default)]
pub struct LoadSampler {
    previous: HashMap<TopicPartition, u64>,
    taken: Option<Instant>,
    pub loads: Vec<ShardLoad>,
}

impl LoadSampler {
    /// Turns one sample of every shard's per-partition totals into rates.
    /// A partition that is new, or whose total went down (it moved and its
    /// new owner counts from zero), counts from its new total next time.
    pub fn record(&mut self, now: Instant, totals: Vec<Vec<(TopicPartition, u64)>>) {
        let seconds = self.taken.map(|t| now.duration_since(t).as_secs_f64()).filter(|s| *s > 0.0);
        let mut next = HashMap::new();
        self.loads = totals
            .into_iter()
            .map(|shard| {
                let mut load = ShardLoad::default();
                for (tp, total) in shard {
                    let rate = match (seconds, self.previous.get(&tp)) {
                        (Some(seconds), Some(&before)) if total >= before => (total - before) as f64 / seconds,
                        _ => 0.0,
                    };
                    load.bytes_per_sec += rate;
                    next.insert(tp.clone(), total);
                    load.partitions.push((tp, rate));
                }
                load
            })
            .collect();
        self.previous = next;
        self.taken = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn load(partitions: &[(&str, f64)]) -> ShardLoad {
        ShardLoad {
            bytes_per_sec: partitions.iter().map(|p| p.1).sum(),
            partitions: partitions.iter().map(|(name, rate)| (TopicPartition::new(*name, 0), *rate)).collect(),
        }
    }

    #[test]
    fn least_loaded_fills_the_idle_shard_then_spreads() {
        let loads = vec![load(&[("a", 30e6), ("b", 10e6)]), load(&[("c", 0.0)]), load(&[("d", 10e6)])];
        // Average partition: 50e6 / 4 = 12.5e6 added per placement. Projected
        // loads (40, 0, 10) -> shard 1 (12.5) -> shard 2 (22.5) -> shard 1
        // (25) -> shard 2; the busy shard 0 gets none.
        assert_eq!(least_loaded(&loads, 4), vec![ShardId(1), ShardId(2), ShardId(1), ShardId(2)]);
        // With no traffic at all, by partition count.
        let idle = vec![load(&[("a", 0.0), ("b", 0.0)]), load(&[]), load(&[("c", 0.0)])];
        assert_eq!(least_loaded(&idle, 3), vec![ShardId(1), ShardId(1), ShardId(2)]);
    }

    #[test]
    fn the_balancer_moves_the_partition_that_evens_the_extremes() {
        let config = BalanceConfig { balancer: true, min_bytes_per_sec: 1000, ..BalanceConfig::default() };
        // Shard 0: 125 MB/s over three partitions; shard 1: 10 MB/s. Gap
        // 115: moving 40 leaves 85 / 50, the closest pair; moving 80 leaves
        // 45 / 90, moving 5 leaves 120 / 15.
        let loads = vec![load(&[("hot", 80e6), ("warm", 40e6), ("cool", 5e6)]), load(&[("x", 10e6)])];
        let decision = pick_move(&loads, &config).unwrap();
        assert_eq!(
            decision,
            Move { tp: TopicPartition::new("warm", 0), from: ShardId(0), to: ShardId(1), bytes_per_sec: 40e6 }
        );
    }

    #[test]
    fn the_balancer_leaves_balanced_idle_or_unhelpable_shards_alone() {
        let config = BalanceConfig { balancer: true, min_bytes_per_sec: 1_000_000, ..BalanceConfig::default() };
        // Within the imbalance threshold.
        assert_eq!(pick_move(&[load(&[("a", 11e6)]), load(&[("b", 10e6)])], &config), None);
        // Imbalanced, but below the minimum gap.
        assert_eq!(pick_move(&[load(&[("a", 900e3)]), load(&[("b", 0.0)])], &config), None);
        // One partition carries all the load: moving it only moves the hot spot.
        assert_eq!(pick_move(&[load(&[("a", 50e6)]), load(&[("b", 0.0)])], &config), None);
        // Internal partitions stay with their coordinators.
        assert_eq!(
            pick_move(&[load(&[("__consumer_offsets", 20e6), ("a", 30e6)]), load(&[])], &config).unwrap().tp.topic,
            "a"
        );
        // One shard: nothing to balance.
        assert_eq!(pick_move(&[load(&[("a", 50e6), ("b", 1e6)])], &config), None);
    }

    #[test]
    fn the_sampler_turns_totals_into_rates_and_survives_moves() {
        let mut sampler = LoadSampler::default();
        let t0 = Instant::now();
        let a = TopicPartition::new("a", 0);
        let b = TopicPartition::new("b", 0);
        sampler.record(t0, vec![vec![(a.clone(), 1000)], vec![(b.clone(), 0)]]);
        assert_eq!(sampler.loads[0].bytes_per_sec, 0.0, "no rate from one sample");
        sampler.record(t0 + Duration::from_secs(2), vec![vec![(a.clone(), 5000)], vec![(b.clone(), 2000)]]);
        assert_eq!(sampler.loads[0].partitions, vec![(a.clone(), 2000.0)]);
        assert_eq!(sampler.loads[1].bytes_per_sec, 1000.0);
        // `a` moved to shard 1 and counts from zero there.
        sampler.record(t0 + Duration::from_secs(3), vec![vec![], vec![(b.clone(), 3000), (a.clone(), 10)]]);
        assert_eq!(sampler.loads[0].bytes_per_sec, 0.0);
        assert_eq!(sampler.loads[1].partitions, vec![(b, 1000.0), (a, 0.0)]);
    }
}
