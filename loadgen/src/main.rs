//! `ringstream-loadgen`: Ringstream's bundled load generator. See
//! loadgen/README.md for flags, output fields and how to read them.
//!
//! Exit status: 0 when the run completed with no errors, 3 when it
//! completed but records failed (the report says which), 1 when it could
//! not run (unreachable broker, bad topic), 2 for bad flags (clap).

#![allow(non_upper_case_globals)]

mod args;
mod batch;
mod clock;
mod consumer;
mod limits;
mod producer;
mod run;
mod setup;
mod sink;
mod stats;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Args, Baseline};
use crate::consumer::ConsumerSpec;
use crate::producer::ProducerSpec;
use crate::run::Job;
use crate::stats::{Json, Summary};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = args.check() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(summary) => {
            print!("{}", summary.table());
            if let Some(path) = &args.json {
                if let Err(e) = std::fs::write(path, summary.json(&parameters(&args))) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            if summary.stats.errors_total() > 0 {
                eprintln!("completed with {} errors", summary.stats.errors_total());
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<Summary, String> {
    let sink = match args.baseline {
        Some(Baseline::RawTcp) => Some(sink::Sink::start().map_err(|e| format!("cannot start the raw-TCP sink: {e}"))?),
        None => None,
    };
    let layout = match &sink {
        Some(sink) => setup::sink_layout(sink.address, args.partitions),
        None => setup::discover(&args.brokers, &args.topic, args.partitions, args.consumers > 0, args.connect_timeout)?,
    };
    let target = match &sink {
        Some(sink) => format!("raw-tcp sink {}", sink.address),
        None => format!("broker {}", args.brokers),
    };
    let jobs = jobs(args, &layout, sink.is_some());
    let threads = match args.threads {
        Some(threads) => threads as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len()),
    };
    eprintln!(
        "{target}: topic {:?} ({} partitions{}), {} producer and {} consumer connections on {threads} threads, {} B records, acks={}, rate {}",
        args.topic,
        layout.leaders.len(),
        if layout.created { ", created" } else { "" },
        jobs.iter().filter(|j| matches!(j, Job::Produce(_))).count(),
        jobs.iter().filter(|j| matches!(j, Job::Consume(_))).count(),
        args.record_size,
        args.acks_label(),
        if args.rate == 0 { "max".to_owned() } else { format!("{} records/s", args.rate) },
    );
    let outcome = run::run(jobs, threads, args.warmup, args.duration, args.connect_timeout)?;
    drop(sink);
    let measured = std::time::Duration::from_nanos(outcome.phases.end_ns - outcome.phases.warm_ns);
    Ok(Summary { target, measured, stats: outcome.stats, record_size: args.record_size, acks: args.acks })
}

/// Producer and consumer connections: every producer writes every
/// partition, one connection per leader; consumers split the partitions.
fn jobs(args: &Args, layout: &setup::Layout, raw_sink: bool) -> Vec<Job> {
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

fn parameters<'a>(args: &Args) -> Vec<(&'a str, Json<'a>)> {
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
