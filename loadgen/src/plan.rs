//! What a run does: the producer and consumer connections made from the
//! flags and the broker's layout, and the parameters echoed in the JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::args::{Args, Baseline};
use crate::consumer::ConsumerSpec;
use crate::group::{GroupSpec, GroupTally};
use crate::keys::{KeySpec, KeyTable};
use crate::producer::ProducerSpec;
use crate::run::Job;
use crate::setup;
use crate::stats::Json;

/// Producer and consumer connections: every producer writes every
/// partition, one connection per leader; consumers split the partitions
/// (assign()), or with `--groups` each group has `--consumers` members.
pub fn jobs(args: &Args, layout: &setup::Layout, raw_sink: bool) -> Vec<Job> {
    let mut by_leader: BTreeMap<SocketAddr, Vec<i32>> = BTreeMap::new();
    for (&partition, &leader) in &layout.leaders {
        by_leader.entry(leader).or_default().push(partition);
    }
    let total_partitions = layout.leaders.len() as f64;
    // Keyed: one key table per leader, shared by every producer; a leader's
    // share of the traffic is the weight of the keys its partitions get.
    let key_tables: BTreeMap<SocketAddr, Arc<KeyTable>> = if args.keys == KeySpec::None {
        BTreeMap::new()
    } else {
        by_leader
            .iter()
            .map(|(address, partitions)| {
                (*address, Arc::new(KeyTable::build(&args.keys, layout.leaders.len() as i32, partitions)))
            })
            .collect()
    };
    let shares: Vec<f64> = by_leader
        .iter()
        .map(|(address, partitions)| match key_tables.get(address) {
            Some(table) => table.share(),
            None => partitions.len() as f64 / total_partitions,
        })
        .collect();
    let mut jobs = Vec::new();
    for producer in 0..args.producers {
        let producer_records = args.messages.map(|n| split_evenly(n, u64::from(args.producers), u64::from(producer)));
        let mut records_before = 0u64;
        let mut share_before = 0.0;
        for (index, ((address, partitions), &share)) in by_leader.iter().zip(&shares).enumerate() {
            // This connection's records of the producer's share, rounded so
            // that the connections' counts add up to it exactly (the last
            // takes what is left, whatever the float sums came to).
            let last = index + 1 == by_leader.len();
            let records_max = producer_records.map(|total| {
                share_before += share;
                let through = if last { total } else { ((total as f64) * share_before.min(1.0)).round() as u64 };
                let records = through.saturating_sub(records_before).min(total - records_before);
                records_before += records;
                records
            });
            let keys = key_tables.get(address).cloned();
            if keys.as_ref().is_some_and(|k| k.is_empty()) || records_max == Some(0) {
                continue; // no key lands here, or nothing left to send
            }
            jobs.push(Job::Produce(ProducerSpec {
                name: format!("producer {producer} ({address})"),
                address: *address,
                topic: args.topic.clone(),
                partitions: partitions.clone(),
                rate: args.rate as f64 / f64::from(args.producers) * share,
                record_size_min: args.record_sizes.min as usize,
                record_size_max: args.record_sizes.max as usize,
                keys,
                compression: args.compression,
                idempotence: args.idempotence,
                init_producer_id_version: layout.init_producer_id_version,
                records_max,
                acks: args.acks,
                batch_bytes: args.batch_bytes as usize,
                linger_ns: u64::try_from(args.linger.as_nanos()).unwrap_or(u64::MAX),
                in_flight: args.in_flight as usize,
                version: layout.produce_version,
                raw_sink,
                seed: 0x5EED_0000 + u64::from(producer),
            }));
        }
    }
    if args.groups > 0 {
        // Any broker answers FindCoordinator: members ask the first leader.
        let Some(&bootstrap) = layout.leaders.values().next() else { return jobs };
        let prefix = args.group_prefix();
        let tally = Arc::new(GroupTally::new(args.groups as usize));
        for group in 0..args.groups {
            let group_id = format!("{prefix}-{group}");
            for member in 0..args.consumers {
                jobs.push(Job::Consume(ConsumerSpec {
                    name: format!("group {group_id} member {member}"),
                    address: bootstrap,
                    topic: args.topic.clone(),
                    partitions: Vec::new(),
                    version: layout.fetch_version,
                    group: Some(GroupSpec {
                        group_id: group_id.clone(),
                        index: group as usize,
                        versions: layout.group_versions.clone(),
                        leaders: layout.leaders.clone(),
                        start_offsets: layout.start_offsets.clone(),
                        tally: tally.clone(),
                        connect_timeout: args.connect_timeout,
                    }),
                }));
            }
        }
        return jobs;
    }
    for consumer in 0..args.consumers {
        let mine: Vec<(i32, SocketAddr)> = layout
            .leaders
            .iter()
            .filter(|(&p, _)| p as u32 % args.consumers == consumer)
            .map(|(&p, &a)| (p, a))
            .collect();
        let mut by_address: BTreeMap<SocketAddr, Vec<(i32, i64)>> = BTreeMap::new();
        for (partition, address) in mine {
            let offset = layout.start_offsets.get(&partition).copied().unwrap_or(0);
            by_address.entry(address).or_default().push((partition, offset));
        }
        for (address, partitions) in by_address {
            jobs.push(Job::Consume(ConsumerSpec {
                name: format!("consumer {consumer} ({address})"),
                address,
                topic: args.topic.clone(),
                partitions,
                version: layout.fetch_version,
                group: None,
            }));
        }
    }
    jobs
}

pub fn parameters<'a>(args: &Args) -> Vec<(&'a str, Json<'a>)> {
    let ms = |d: std::time::Duration| Json::Int(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    vec![
        ("brokers", if args.baseline.is_some() { Json::Null } else { Json::Str(args.brokers.clone()) }),
        (
            "baseline",
            match args.baseline {
                Some(Baseline::RawTcp) => Json::Str("raw-tcp".into()),
                None => Json::Null,
            },
        ),
        ("topic", Json::Str(args.topic.clone())),
        ("partitions", Json::Int(args.partitions as u64)),
        ("record_size", Json::Int(u64::from(args.record_sizes.nominal()))),
        ("record_size_min", Json::Int(u64::from(args.record_sizes.min))),
        ("record_size_max", Json::Int(u64::from(args.record_sizes.max))),
        ("keys", Json::Str(args.keys.label())),
        ("compression", Json::Str(args.compression.label().into())),
        ("idempotence", Json::Bool(args.idempotence)),
        ("messages", args.messages.map_or(Json::Null, Json::Int)),
        ("groups", Json::Int(u64::from(args.groups))),
        ("group_prefix", if args.groups > 0 { Json::Str(args.group_prefix()) } else { Json::Null }),
        ("acks", Json::Str(args.acks_label().into())),
        ("producers", Json::Int(u64::from(args.producers))),
        ("consumers", Json::Int(u64::from(args.consumers))),
        ("rate", Json::Int(args.rate)),
        ("duration_ms", ms(args.duration)),
        ("warmup_ms", ms(args.warmup)),
        ("batch_bytes", Json::Int(u64::from(args.batch_bytes))),
        ("linger_ms", Json::Float(args.linger.as_secs_f64() * 1000.0)),
        ("in_flight", Json::Int(u64::from(args.in_flight))),
        ("threads", args.threads.map_or(Json::Null, |t| Json::Int(u64::from(t)))),
        ("open_loop", Json::Bool(args.rate > 0)),
        ("broker_pid", args.broker_pid.map_or(Json::Null, |pid| Json::Int(u64::from(pid)))),
    ]
}

/// The `index`-th of `parts` near-equal shares of `total` (the first
/// `total % parts` get one more), so the shares add up to `total`.
fn split_evenly(total: u64, parts: u64, index: u64) -> u64 {
    assert!(parts > 0 && index < parts);
    total / parts + u64::from(index < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn messages_split_exactly() {
        for (total, parts) in [(10u64, 3u64), (2, 5), (1_000_003, 7), (5, 5)] {
            let shares: Vec<u64> = (0..parts).map(|i| split_evenly(total, parts, i)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total);
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }

    fn layout(leaders: &[(i32, &str)]) -> setup::Layout {
        setup::Layout {
            leaders: leaders.iter().map(|&(p, a)| (p, a.parse().unwrap())).collect(),
            produce_version: 9,
            fetch_version: 12,
            start_offsets: BTreeMap::new(),
            created: false,
            group_versions: Err("test".into()),
            init_producer_id_version: Some(4),
        }
    }

    fn args(words: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("loadgen").chain(words.iter().copied())).unwrap()
    }

    /// Over two leaders and three producers, the connections' record counts
    /// add up to --messages exactly, keyed or not.
    #[test]
    fn messages_are_split_over_producers_and_leaders() {
        let layout = layout(&[(0, "10.0.0.1:9092"), (1, "10.0.0.2:9092"), (2, "10.0.0.1:9092"), (3, "10.0.0.2:9092")]);
        for keys in ["none", "uniform:100", "zipf:1000:1.2"] {
            let jobs = jobs(&args(&["--producers", "3", "--messages", "1001", "--keys", keys]), &layout, false);
            let total: u64 = jobs
                .iter()
                .map(|j| match j {
                    Job::Produce(spec) => spec.records_max.unwrap(),
                    Job::Consume(_) => 0,
                })
                .sum();
            assert_eq!(total, 1001, "{keys}");
        }
    }

    #[test]
    fn groups_make_members() {
        let layout = layout(&[(0, "10.0.0.1:9092"), (1, "10.0.0.1:9092")]);
        let jobs = jobs(&args(&["--groups", "3", "--consumers", "2", "--group-prefix", "g"]), &layout, false);
        let members: Vec<(String, usize)> = jobs
            .iter()
            .filter_map(|j| match j {
                Job::Consume(spec) => spec.group.as_ref().map(|g| (g.group_id.clone(), g.index)),
                Job::Produce(_) => None,
            })
            .collect();
        assert_eq!(members.len(), 6);
        assert_eq!(members[0], ("g-0".to_owned(), 0));
        assert_eq!(members[5], ("g-2".to_owned(), 2));
    }
}
