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
mod group;
mod keys;
mod limits;
mod plan;
mod plot;
mod procstat;
mod producer;
mod report;
mod run;
mod setup;
mod sink;
mod stats;
mod suite;
mod wire;

use std::process::ExitCode;

use crate::args::{Args, Baseline};
use crate::plan::{jobs, parameters};
use crate::run::Job;
use crate::stats::{Summary, Timeline};

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|first| first == "suite") {
        return suite::main();
    }
    let args = <Args as clap::Parser>::parse();
    if let Err(message) = args.check() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok((summary, timeline)) => {
            print!("{}", summary.table());
            if let Some(path) = &args.json {
                if let Err(e) = std::fs::write(path, summary.json(&parameters(&args))) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            if let Some(path) = &args.plot {
                let input = plot::PlotInput {
                    title: &summary.target,
                    timeline: &timeline,
                    warmup_sec: args.warmup.as_secs_f64(),
                    ack: &summary.stats.ack,
                    e2e: &summary.stats.e2e,
                };
                if let Err(message) = plot::write_svg(path, &input) {
                    eprintln!("error: {message}");
                    return ExitCode::from(1);
                }
                if timeline.dropped > 0 {
                    eprintln!("note: the plot shows the first {} seconds only", timeline.seconds.len());
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

fn run(args: &Args) -> Result<(Summary, Timeline), String> {
    // A PID that is not there now would only show up as a null at the end.
    if let Some(pid) = args.broker_pid {
        procstat::cpu_seconds(pid).map_err(|e| format!("--broker-pid {pid}: no such process to measure ({e})"))?;
    }
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
        args.record_sizes,
        args.acks_label(),
        if args.rate == 0 { "max".to_owned() } else { format!("{} records/s", args.rate) },
    );
    let outcome = run::run(jobs, threads, args.warmup, args.duration, args.connect_timeout, args.broker_pid)?;
    drop(sink);
    // A `--messages` run that finished early is measured up to its last
    // acknowledgement, not to the end of --duration.
    let mut end_ns = outcome.phases.end_ns;
    if args.messages.is_some() && outcome.stats.last_window_ack_ns > outcome.phases.warm_ns {
        end_ns = end_ns.min(outcome.stats.last_window_ack_ns);
    }
    let measured = std::time::Duration::from_nanos(end_ns - outcome.phases.warm_ns);
    let (broker_cpu, host_cpu) = match outcome.cpu {
        Some(cpu) => (Some(cpu.broker), Some(cpu.host)),
        None => (None, None),
    };
    if let (Some(pid), Some(Err(e))) = (args.broker_pid, &broker_cpu) {
        eprintln!("warning: --broker-pid {pid}: no CPU figure for the measured window: {e}");
    }
    if let Some(Err(e)) = &host_cpu {
        eprintln!("warning: no host CPU figure for the measured window: {e}");
    }
    let summary = Summary {
        target,
        measured,
        stats: outcome.stats,
        record_size: args.record_sizes.to_string(),
        acks: args.acks,
        broker_cpu: args.broker_pid.zip(broker_cpu),
        host_cpu,
    };
    Ok((summary, outcome.timeline))
}
