//! What a run does: the producer and consumer connections made from the
//! flags and the broker's layout, and the parameters echoed in the JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::args::{Args, Baseline};
use crate::consumer::ConsumerSpec;
use crate::producer::ProducerSpec;
use crate::run::Job;
use crate::setup;
use crate::stats::Json;

/// Producer and consumer connections: every producer writes every
/// partition, one connection per leader; consumers split the partitions.
pub fn jobs(args: &Args, layout: &setup::Layout, raw_sink: bool) -> Vec<Job> {
    let mut by_leader: BTreeMap<SocketAddr, Vec<i32>> = BTreeMap::new();
    for (&partition, &leader) in &layout.leaders {
        by_leader.entry(leader).or_default().push(partition);
    }
    let total_partitions = layout.leaders.len() as f64;
    let mut jobs = Vec::new();
    for producer in 0..args.producers {
        for (address, partitions) in &by_leader {
            let share = partitions.len() as f64 / total_partitions;
            jobs.push(Job::Produce(ProducerSpec {
                name: format!("producer {producer} ({address})"),
                address: *address,
                topic: args.topic.clone(),
                partitions: partitions.clone(),
                rate: args.rate as f64 / f64::from(args.producers) * share,
                record_size: args.record_size as usize,
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
            }));
        }
    }
    jobs
}

pub fn parameters<'a>(args: &Args) -> Vec<(&'a str, Json<'a>)> {
    let ms = |d: std::time::Duration| Json::Int(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    vec![
        ("brokers", if args.baseline.is_some() { Json::Null } else { Json::Str(args.brokers.clone()) }),
        ("baseline", match args.baseline {
            Some(Baseline::RawTcp) => Json::Str("raw-tcp".into()),
            None => Json::Null,
        }),
        ("topic", Json::Str(args.topic.clone())),
        ("partitions", Json::Int(args.partitions as u64)),
        ("record_size", Json::Int(u64::from(args.record_size))),
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
    ]
}
