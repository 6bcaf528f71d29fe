//! `ringstream-loadgen suite`: the fixed scenario list (S1-S7) against our
//! broker, the raw-TCP sink and an optional peer broker, interleaved, with
//! one Markdown report (see loadgen/README.md, "The suite").
//!
//! Every measurement is a child process of this same executable with the
//! ordinary flags plus `--json` and `--plot`: each run gets fresh executors,
//! sockets and memory, and a run that hangs or crashes is killed at a
//! deadline and reported, not inherited by the next one. The suite reads
//! only the child's JSON (documented fields) and its exit status.
//!
//! Order: for each scenario, for each round, ours, raw-TCP, peer. Targets
//! take turns within a round, so slow drift on a shared machine (other
//! builds, thermal limits) hits them alike, and each ratio is taken within
//! one round.
//!
//! Each broker run uses a fresh topic, created by a short "prepare" child
//! (`--producers 0 --consumers 1 --duration 100ms`, which writes nothing).
//! The broker's CPU time is read by the measuring child itself
//! (`--broker-pid`) at the start and end of its measured window, the window
//! of its throughput: topic creation, connecting, warmup and the drain are
//! not charged to the measurement.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

use crate::args::parse_duration;
use crate::limits::child_json_bytes_max;
use crate::limits::log_tail_bytes_max;
use crate::limits::pid_max;
use crate::limits::prepare_ms_max;
use crate::limits::rounds_max;
use crate::limits::run_overhead_ms_max;
use crate::procstat;
use crate::report::{self, ChildResult, Meta, RunRecord, TargetKind};

/// How long the prepare child consumes (it writes nothing).
const prepare_duration_ms: u64 = 100;
/// How often a running child is polled.
const child_poll_ms: u64 = 20;

const _: () = assert!(run_overhead_ms_max >= 2 * crate::limits::drain_ms_max + 30_000);
const _: () = assert!(prepare_duration_ms < prepare_ms_max);

/// A scenario's producer rate, over all producers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// As fast as possible (`--rate 0`).
    Max,
    /// A fraction of the base rate (our broker's S1 median records/s): the
    /// load follows what this machine and broker can do.
    FractionOfS1(f64),
    /// Records/s as given: the same load on every machine, so figures such
    /// as broker cores compare across machines and commits, and no S1 run is
    /// needed to set it.
    Fixed(u64),
}

/// One scenario of the fixed list.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub id: &'static str,
    /// One line, for the report.
    pub title: &'static str,
    pub partitions: u32,
    pub record_size: u32,
    pub rate: Rate,
    /// Consumer connections (per group when `groups` > 0).
    pub consumers: u32,
    /// Consumer groups (`--groups`); 0 for assign() consumers.
    pub groups: u32,
    /// `--linger` in ms (0 = each batch is sent at once); None for the default (5 ms).
    pub linger_ms: Option<u32>,
    pub warmup_sec: u32,
}

pub const all_scenarios: [Scenario; 7] = [
    Scenario {
        id: "S1",
        title: "produce 1 KiB records to 12 partitions, acks=all, max throughput",
        partitions: 12,
        record_size: 1024,
        rate: Rate::Max,
        consumers: 0,
        groups: 0,
        linger_ms: None,
        warmup_sec: 0,
    },
    Scenario {
        id: "S2",
        title: "end-to-end latency at 50% of S1's rate, one consumer on the tail, linger 1 ms, 2 s warmup",
        partitions: 12,
        record_size: 1024,
        rate: Rate::FractionOfS1(0.5),
        consumers: 1,
        groups: 0,
        linger_ms: Some(1),
        warmup_sec: 2,
    },
    Scenario {
        id: "S3",
        title: "fan-out: 4 consumer groups (1 member each) on the tail, producer at 25% of S1's rate, linger 1 ms, 2 s warmup",
        partitions: 12,
        record_size: 1024,
        rate: Rate::FractionOfS1(0.25),
        consumers: 1,
        groups: 4,
        linger_ms: Some(1),
        warmup_sec: 2,
    },
    Scenario {
        id: "S4",
        title: "produce 1 KiB records to 10,000 partitions, acks=all, max throughput",
        partitions: 10_000,
        record_size: 1024,
        rate: Rate::Max,
        consumers: 0,
        groups: 0,
        linger_ms: None,
        warmup_sec: 0,
    },
    Scenario {
        id: "S5",
        title: "produce 100-byte records to 12 partitions, acks=all, max throughput",
        partitions: 12,
        record_size: 100,
        rate: Rate::Max,
        consumers: 0,
        groups: 0,
        linger_ms: None,
        warmup_sec: 0,
    },
    Scenario {
        id: "S6",
        title: "light load: 5,000 records/s of 1 KiB to 12 partitions, acks=all, linger 0, one consumer on the tail, 2 s warmup",
        partitions: 12,
        record_size: 1024,
        rate: Rate::Fixed(5_000),
        consumers: 1,
        groups: 0,
        linger_ms: Some(0),
        warmup_sec: 2,
    },
    Scenario {
        id: "S7",
        title: "moderate load: 200,000 records/s of 1 KiB to 12 partitions, acks=all, linger 1 ms, one consumer on the tail, 2 s warmup",
        partitions: 12,
        record_size: 1024,
        rate: Rate::Fixed(200_000),
        consumers: 1,
        groups: 0,
        linger_ms: Some(1),
        warmup_sec: 2,
    },
];

#[derive(Parser, Debug)]
#[command(
    name = "ringstream-loadgen suite",
    about = "Runs the scenario list S1-S7 against a broker, the raw-TCP sink and an optional peer, interleaved, and writes one Markdown report"
)]
struct SuiteArgs {
    /// Our broker, HOST:PORT.
    #[arg(long)]
    brokers: String,
    /// A peer broker to compare with, HOST:PORT.
    #[arg(long)]
    peer: Option<String>,
    /// The peer's name in file names and the report (letters, digits, `-`, `_`).
    #[arg(long, default_value = "peer", value_parser = parse_peer_name)]
    peer_name: String,
    /// Measured time of each run, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Rounds per scenario; the report gives medians over rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=rounds_max as i64))]
    rounds: u32,
    /// Scenarios to run, comma-separated (always run in the order S1..S7).
    #[arg(long, default_value = "S1,S2,S3,S4,S5,S6,S7", value_delimiter = ',', value_parser = parse_scenario)]
    scenarios: Vec<&'static Scenario>,
    /// Output directory (report.md, per-run JSON, SVG and logs); default suite-<UTC time>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Our broker's PID, for CPU time (default: found from its listening socket).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=pid_max as i64))]
    broker_pid: Option<u32>,
    /// The peer's PID, for CPU time (default: found from its listening socket).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=pid_max as i64))]
    peer_pid: Option<u32>,
    /// Records/s that stands in for S1's median on our broker when deriving
    /// S2's and S3's rates (default: measured by S1, or by one S1 run first).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    base_rate: Option<u64>,
    /// Passed to every run's --connect-timeout.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    connect_timeout: Duration,
}

fn parse_peer_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 40
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && text != "ours"
        && text != "raw-tcp";
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?}: use 1 to 40 letters, digits, '-' or '_', other than \"ours\" and \"raw-tcp\""))
    }
}

fn parse_scenario(text: &str) -> Result<&'static Scenario, String> {
    all_scenarios.iter().find(|s| s.id.eq_ignore_ascii_case(text.trim())).ok_or_else(|| {
        let ids: Vec<&str> = all_scenarios.iter().map(|s| s.id).collect();
        format!("{text:?} is not one of {}", ids.join(", "))
    })
}

/// A target of the suite: where its runs go and whose CPU is read.
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: TargetKind,
    /// `ours`, `raw-tcp` or the peer's name: file names and report rows.
    pub label: String,
    /// HOST:PORT; None for the raw-TCP sink.
    pub address: Option<String>,
    /// The broker process, when known.
    pub pid: Option<u32>,
    /// Why the PID is unknown, or how it was found.
    pub pid_note: String,
}

pub fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().take(1).chain(std::env::args_os().skip(2)).collect();
    let args = SuiteArgs::parse_from(argv);
    match run_suite(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn run_suite(args: &SuiteArgs) -> Result<ExitCode, String> {
    let started = SystemTime::now();
    let started_unix = started.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("suite-{}", report::utc_compact(started_unix))));
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    let mut targets =
        vec![broker_target(TargetKind::Ours, "ours", &args.brokers, args.broker_pid, args.connect_timeout)?];
    targets.push(Target {
        kind: TargetKind::RawTcp,
        label: "raw-tcp".into(),
        address: None,
        pid: None,
        pid_note: "the sink runs inside the load generator: no broker CPU to read".into(),
    });
    if let Some(peer) = &args.peer {
        targets.push(broker_target(TargetKind::Peer, &args.peer_name, peer, args.peer_pid, args.connect_timeout)?);
    }
    for target in &targets {
        eprintln!(
            "suite: {} = {} ({})",
            target.label,
            target.address.as_deref().unwrap_or("in-process raw-TCP sink"),
            target.pid_note
        );
    }

    let mut chosen: Vec<&'static Scenario> = args.scenarios.clone();
    chosen.sort_by_key(|s| s.id);
    chosen.dedup_by_key(|s| s.id);
    let context = RunContext {
        exe,
        out: out.clone(),
        duration: args.duration,
        connect_timeout: args.connect_timeout,
        stamp: started_unix,
    };

    let mut runs: Vec<RunRecord> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut base_rate: Option<(f64, String)> =
        args.base_rate.map(|r| (r as f64, format!("{r} records/s, given with --base-rate")));
    let mut aborted: Option<String> = None;
    'scenarios: for scenario in &chosen {
        let rate = match scenario.rate {
            Rate::Max => 0,
            Rate::Fixed(records_per_sec) => records_per_sec,
            Rate::FractionOfS1(fraction) => {
                let Some(base) = base_rate_for(scenario, &context, &targets[0], &runs, &mut base_rate, &mut notes)
                else {
                    continue 'scenarios;
                };
                ((base * fraction).round() as u64).max(1)
            }
        };
        for round in 1..=args.rounds {
            for target in &targets {
                let record = context.run_one(scenario, target, round, rate);
                eprintln!("suite: {}", report::one_line(&record));
                let unreachable = target.kind != TargetKind::RawTcp
                    && record.outcome.as_ref().err().is_some_and(|e| e.contains("cannot reach broker"));
                runs.push(record);
                if unreachable {
                    aborted = Some(format!(
                        "{} ({}) became unreachable during {} round {round}; the suite stopped there.",
                        target.label,
                        target.address.as_deref().unwrap_or("?"),
                        scenario.id
                    ));
                    break 'scenarios;
                }
            }
        }
    }
    if let Some(message) = &aborted {
        notes.push(message.clone());
    }

    let meta = Meta {
        date_unix: started_unix,
        command: report::command_line(),
        machine: report::machine(),
        git: report::git_commit(),
        duration: args.duration,
        rounds: args.rounds,
        base_rate: base_rate.map(|(_, how)| how),
        notes,
    };
    let (markdown, summary) = report::render(&meta, &targets, &chosen, &runs);
    let report_path = out.join("report.md");
    std::fs::write(&report_path, &markdown).map_err(|e| format!("cannot write {}: {e}", report_path.display()))?;
    print!("{summary}");
    println!("\nreport: {}", report_path.display());
    if aborted.is_some() {
        return Ok(ExitCode::from(1));
    }
    let clean = runs.iter().all(|r| r.outcome.as_ref().is_ok_and(|c| c.errors == 0));
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// A broker target: reachable now (or the suite cannot run), with its PID
/// from the flag or from /proc.
fn broker_target(
    kind: TargetKind,
    label: &str,
    address: &str,
    pid: Option<u32>,
    timeout: Duration,
) -> Result<Target, String> {
    check_reachable(address, timeout)?;
    let (pid, pid_note) = match pid {
        Some(pid) if Path::new(&format!("/proc/{pid}/stat")).exists() => (Some(pid), format!("PID {pid}, given")),
        Some(pid) => {
            eprintln!("warning: {label}: PID {pid} has no /proc/{pid}/stat; broker CPU will be n/a");
            (None, format!("PID {pid} given but not running: CPU n/a"))
        }
        None => {
            match procstat::pid_of_listener(address) {
                Ok(pid) => (Some(pid), format!("PID {pid}, found from its listening socket")),
                Err(e) => {
                    eprintln!("warning: {label}: cannot find the broker's PID ({e}); broker CPU will be n/a (or pass its PID)");
                    (None, format!("PID not found ({e}): CPU n/a"))
                }
            }
        }
    };
    Ok(Target { kind, label: label.to_owned(), address: Some(address.to_owned()), pid, pid_note })
}

fn check_reachable(address: &str, timeout: Duration) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let addresses: Vec<_> =
        address.to_socket_addrs().map_err(|e| format!("cannot reach broker {address}: {e}"))?.collect();
    let mut last = format!("cannot reach broker {address}: no address");
    for resolved in addresses {
        match std::net::TcpStream::connect_timeout(&resolved, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("cannot reach broker {address}: {e}"),
        }
    }
    Err(last)
}

/// The base rate (records/s) for an S1-relative scenario: `--base-rate`,
/// the median of this suite's S1 runs on our broker, or one S1 calibration
/// run on `ours` now. None, with a note for the report, when that run fails.
fn base_rate_for(
    scenario: &Scenario,
    context: &RunContext,
    ours: &Target,
    runs: &[RunRecord],
    base_rate: &mut Option<(f64, String)>,
    notes: &mut Vec<String>,
) -> Option<f64> {
    if base_rate.is_none() {
        *base_rate = base_rate_from_runs(runs);
    }
    if base_rate.is_none() {
        // S1 was not chosen (or failed on our broker): one S1 run on our broker sets it.
        eprintln!("suite: {} needs S1's rate on our broker; measuring it once", scenario.id);
        let calibration = context.run_one(&all_scenarios[0], ours, 0, 0);
        match &calibration.outcome {
            Ok(result) if result.records_per_sec > 0.0 => {
                *base_rate = Some((
                    result.records_per_sec,
                    format!(
                        "{:.0} records/s, from one S1 calibration run on our broker (S1-ours-calibration)",
                        result.records_per_sec
                    ),
                ));
            }
            outcome => notes.push(format!(
                "The S1 calibration run on our broker failed ({}), so {} was skipped.",
                outcome.as_ref().err().map_or("no throughput", String::as_str),
                scenario.id
            )),
        }
    }
    base_rate.as_ref().map(|(base, _)| *base)
}

/// The median records/s of our broker's successful S1 runs, if any.
fn base_rate_from_runs(runs: &[RunRecord]) -> Option<(f64, String)> {
    let rates: Vec<f64> = runs
        .iter()
        .filter(|r| r.scenario == "S1" && r.target_kind == TargetKind::Ours)
        .filter_map(|r| r.outcome.as_ref().ok())
        .map(|c| c.records_per_sec)
        .filter(|r| *r > 0.0)
        .collect();
    let median = report::median(&rates)?;
    Some((median, format!("{median:.0} records/s, the median of our broker's {} S1 runs", rates.len())))
}

struct RunContext {
    exe: PathBuf,
    out: PathBuf,
    duration: Duration,
    connect_timeout: Duration,
    /// Suite start (Unix seconds), part of every topic name.
    stamp: u64,
}

impl RunContext {
    /// One measurement: prepare the topic, run the child (which reads the
    /// broker's CPU over its measured window), parse its JSON. Round 0 is
    /// the calibration run.
    fn run_one(&self, scenario: &Scenario, target: &Target, round: u32, rate: u64) -> RunRecord {
        let base = if round == 0 {
            format!("{}-{}-calibration", scenario.id, target.label)
        } else {
            format!("{}-{}-{round}", scenario.id, target.label)
        };
        let json = self.out.join(format!("{base}.json"));
        let svg = self.out.join(format!("{base}.svg"));
        let log = self.out.join(format!("{base}.log"));
        let topic = format!(
            "suite-{}-{}-{}-{}-r{round}",
            self.stamp,
            std::process::id(),
            scenario.id.to_ascii_lowercase(),
            target.label
        );
        let mut record = RunRecord {
            scenario: scenario.id,
            target: target.label.clone(),
            target_kind: target.kind,
            round,
            files: base.clone(),
            rate,
            exit_code: None,
            outcome: Err(String::new()),
            setup_sec: None,
            plot: false,
        };
        let _ = std::fs::remove_file(&json);
        let _ = std::fs::remove_file(&svg);

        if let Some(address) = &target.address {
            let prepare_log = self.out.join(format!("{base}.prepare.log"));
            let mut prepare = vec![OsString::from("--brokers"), address.into(), "--topic".into(), topic.clone().into()];
            prepare.extend(["--partitions".into(), scenario.partitions.to_string().into()]);
            prepare.extend(["--producers", "0", "--consumers", "1"].map(OsString::from));
            prepare.extend(["--duration".into(), format!("{prepare_duration_ms}ms").into()]);
            prepare.extend(["--connect-timeout".into(), format!("{}ms", self.connect_timeout.as_millis()).into()]);
            let started = Instant::now();
            match spawn_bounded(&self.exe, &prepare, &prepare_log, Duration::from_millis(prepare_ms_max)) {
                Ok(Some(0)) => record.setup_sec = Some(started.elapsed().as_secs_f64()),
                Ok(code) => {
                    record.exit_code = code;
                    record.outcome = Err(format!("creating the topic failed: {}", failure_text(&prepare_log)));
                    return record;
                }
                Err(e) => {
                    record.outcome = Err(format!("creating the topic failed: {e}"));
                    return record;
                }
            }
        }

        let args = child_args(scenario, target, &topic, rate, self.duration, self.connect_timeout, &json, &svg);
        let deadline = self.duration
            + Duration::from_secs(u64::from(scenario.warmup_sec))
            + Duration::from_millis(run_overhead_ms_max);
        let exited = spawn_bounded(&self.exe, &args, &log, deadline);
        record.plot = svg.is_file();
        match exited {
            Err(e) => {
                record.outcome = Err(e);
                return record;
            }
            Ok(code) => record.exit_code = code,
        }
        record.outcome = match record.exit_code {
            Some(0) | Some(3) => read_child_json(&json),
            Some(2) => Err(format!("bad flags: {}", failure_text(&log))),
            _ => Err(failure_text(&log)),
        };
        // Each S1 run writes gigabytes; without this a suite fills the disk.
        if let Some(address) = &target.address {
            if let Err(e) = delete_topic(address, &topic, self.connect_timeout) {
                eprintln!("warning: could not delete topic {topic:?} on {}: {e}", target.label);
            }
        }
        record
    }
}

/// Deletes a run's topic (DeleteTopics v0-5, which every broker serves).
fn delete_topic(address: &str, topic: &str, timeout: Duration) -> Result<(), String> {
    use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut client = ringstream_client::Client::connect(address, timeout).map_err(|e| e.to_string())?;
    let version = client.version(ApiKey::DeleteTopics, 5).map_err(|e| e.to_string())?;
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(StrBytes::from_string(topic.to_owned()))])
        .with_timeout_ms(30_000);
    let response: DeleteTopicsResponse =
        client.call(ApiKey::DeleteTopics, version, &request).map_err(|e| e.to_string())?;
    match response.responses.iter().find(|r| r.error_code != 0) {
        Some(failed) => {
            Err(ringstream_client::describe_error(failed.error_code, failed.error_message.as_ref().map(|m| m.as_str())))
        }
        None => Ok(()),
    }
}

/// The child's flags for `scenario` against `target`.
#[allow(clippy::too_many_arguments)]
fn child_args(
    scenario: &Scenario,
    target: &Target,
    topic: &str,
    rate: u64,
    duration: Duration,
    connect_timeout: Duration,
    json: &Path,
    svg: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, value: String| {
        args.push(name.into());
        args.push(value.into());
    };
    match &target.address {
        Some(address) => flag("--brokers", address.clone()),
        None => flag("--baseline", "raw-tcp".into()),
    }
    flag("--topic", topic.to_owned());
    flag("--partitions", scenario.partitions.to_string());
    flag("--record-size", scenario.record_size.to_string());
    flag("--acks", "all".into());
    flag("--rate", rate.to_string());
    flag("--duration", format!("{}ms", duration.as_millis()));
    flag("--warmup", format!("{}s", scenario.warmup_sec));
    flag("--connect-timeout", format!("{}ms", connect_timeout.as_millis()));
    if let Some(linger) = scenario.linger_ms {
        flag("--linger", format!("{linger}ms"));
    }
    // The child reads the broker's CPU over its own measured window.
    if let (Some(pid), Some(_)) = (target.pid, &target.address) {
        flag("--broker-pid", pid.to_string());
    }
    // The raw-TCP sink stores nothing, so it runs the producers only.
    if target.kind != TargetKind::RawTcp && scenario.consumers > 0 {
        flag("--consumers", scenario.consumers.to_string());
        if scenario.groups > 0 {
            flag("--groups", scenario.groups.to_string());
        }
    }
    args.push("--json".into());
    args.push(json.into());
    args.push("--plot".into());
    args.push(svg.into());
    args
}

/// Runs `exe args` with stdout and stderr to `log`, killing it (by its
/// PID, it is our child) after `deadline`. Returns its exit code (None if a
/// signal ended it), or why it could not run or was killed.
fn spawn_bounded(exe: &Path, args: &[OsString], log: &Path, deadline: Duration) -> Result<Option<i32>, String> {
    let file = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let file_err = file.try_clone().map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(file_err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.code()),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for the run: {e}")),
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("killed after {:.0} s, past its deadline ({})", deadline.as_secs_f64(), log.display()));
        }
        std::thread::sleep(Duration::from_millis(child_poll_ms));
    }
}

/// The child's JSON as a result, or why it cannot be used.
fn read_child_json(path: &Path) -> Result<ChildResult, String> {
    let size = std::fs::metadata(path).map_err(|e| format!("no JSON from the run ({}: {e})", path.display()))?.len();
    if size > child_json_bytes_max {
        return Err(format!("{} is {size} bytes, more than {child_json_bytes_max}", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    report::parse_child_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The last `error:` line of a child's log, or its last line.
fn failure_text(log: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(log) else { return format!("no log at {}", log.display()) };
    let size = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(size.saturating_sub(log_tail_bytes_max)));
    let mut tail = Vec::new();
    let _ = file.take(log_tail_bytes_max).read_to_end(&mut tail);
    let text = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let line = lines.iter().rev().find(|l| l.starts_with("error")).or(lines.last()).copied().unwrap_or("(empty log)");
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: TargetKind) -> Target {
        Target {
            kind,
            label: "x".into(),
            address: (kind != TargetKind::RawTcp).then(|| "127.0.0.1:1".to_owned()),
            pid: None,
            pid_note: String::new(),
        }
    }

    fn text(args: &[OsString]) -> String {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn scenario_flags() {
        let p = Path::new("o");
        let d = Duration::from_secs(10);
        let t = Duration::from_secs(3);
        let s2 = text(&child_args(&all_scenarios[1], &target(TargetKind::Ours), "t", 5000, d, t, p, p));
        assert!(s2.contains("--rate 5000") && s2.contains("--consumers 1") && s2.contains("--linger 1ms"), "{s2}");
        assert!(s2.contains("--warmup 2s") && s2.contains("--brokers 127.0.0.1:1") && !s2.contains("--groups"), "{s2}");
        let raw = text(&child_args(&all_scenarios[1], &target(TargetKind::RawTcp), "t", 5000, d, t, p, p));
        assert!(
            raw.contains("--baseline raw-tcp") && !raw.contains("--consumers"),
            "raw-TCP runs producers only: {raw}"
        );
        let s3 = text(&child_args(&all_scenarios[2], &target(TargetKind::Peer), "t", 100, d, t, p, p));
        assert!(s3.contains("--groups 4") && s3.contains("--consumers 1"), "{s3}");
        let s4 = text(&child_args(&all_scenarios[3], &target(TargetKind::Ours), "t", 0, d, t, p, p));
        assert!(
            s4.contains("--partitions 10000") && s4.contains("--rate 0") && s4.contains("--json o --plot o"),
            "{s4}"
        );
        let s5 = text(&child_args(&all_scenarios[4], &target(TargetKind::Ours), "t", 0, d, t, p, p));
        assert!(s5.contains("--record-size 100") && s5.contains("--duration 10000ms"), "{s5}");
        assert!(!s5.contains("--broker-pid"), "no PID known, so no CPU figure asked for: {s5}");
    }

    /// S6 and S7 run at their own fixed rates with one consumer on the tail,
    /// on brokers; the raw-TCP sink runs their producer only.
    #[test]
    fn fixed_rate_scenario_flags() {
        let p = Path::new("o");
        let d = Duration::from_secs(10);
        let t = Duration::from_secs(3);
        let s6 = parse_scenario("S6").unwrap();
        let s7 = parse_scenario("S7").unwrap();
        assert_eq!((s6.rate, s7.rate), (Rate::Fixed(5000), Rate::Fixed(200_000)));
        for (scenario, rate, linger) in [(s6, "--rate 5000", "--linger 0ms"), (s7, "--rate 200000", "--linger 1ms")] {
            let Rate::Fixed(records_per_sec) = scenario.rate else { panic!("{} has a fixed rate", scenario.id) };
            let ours = text(&child_args(scenario, &target(TargetKind::Ours), "t", records_per_sec, d, t, p, p));
            for expected in
                [rate, linger, "--partitions 12", "--record-size 1024", "--acks all", "--consumers 1", "--warmup 2s"]
            {
                assert!(ours.contains(expected), "{}: {expected} missing from {ours}", scenario.id);
            }
            assert!(!ours.contains("--groups"), "{ours}");
            let raw = text(&child_args(scenario, &target(TargetKind::RawTcp), "t", records_per_sec, d, t, p, p));
            assert!(raw.contains(rate) && raw.contains(linger) && !raw.contains("--consumers"), "{raw}");
        }
    }

    /// A known broker PID goes to the child, which reads the CPU over its
    /// measured window; the raw-TCP sink has no broker to read.
    #[test]
    fn broker_pid_goes_to_broker_runs_only() {
        let p = Path::new("o");
        let d = Duration::from_secs(10);
        let t = Duration::from_secs(3);
        let mut peer = target(TargetKind::Peer);
        peer.pid = Some(4242);
        let args = text(&child_args(&all_scenarios[5], &peer, "t", 5000, d, t, p, p));
        assert!(args.contains("--broker-pid 4242"), "{args}");
        let mut raw = target(TargetKind::RawTcp);
        raw.pid = Some(4242);
        assert!(!text(&child_args(&all_scenarios[5], &raw, "t", 5000, d, t, p, p)).contains("--broker-pid"));
    }

    #[test]
    fn scenario_list() {
        let ids: Vec<&str> = all_scenarios.iter().map(|s| s.id).collect();
        assert_eq!(ids, ["S1", "S2", "S3", "S4", "S5", "S6", "S7"]);
        let rates: Vec<Rate> = all_scenarios.iter().map(|s| s.rate).collect();
        assert_eq!(rates[..5], [Rate::Max, Rate::FractionOfS1(0.5), Rate::FractionOfS1(0.25), Rate::Max, Rate::Max]);
        let defaults = SuiteArgs::try_parse_from(["suite", "--brokers", "127.0.0.1:1"]).unwrap();
        let chosen: Vec<&str> = defaults.scenarios.iter().map(|s| s.id).collect();
        assert_eq!(chosen, ids, "every scenario by default");
        let some = SuiteArgs::try_parse_from(["suite", "--brokers", "x:1", "--scenarios", "s7,S6"]).unwrap();
        assert_eq!(some.scenarios.iter().map(|s| s.id).collect::<Vec<_>>(), ["S7", "S6"]);
        assert!(SuiteArgs::try_parse_from(["suite", "--brokers", "x:1", "--broker-pid", "0"]).is_err());
        // S6 and S7 need no base rate: every S1-relative scenario is S2 or S3.
        let relative: Vec<&str> =
            all_scenarios.iter().filter(|s| matches!(s.rate, Rate::FractionOfS1(_))).map(|s| s.id).collect();
        assert_eq!(relative, ["S2", "S3"]);
    }

    #[test]
    fn scenario_and_peer_names() {
        assert_eq!(parse_scenario("s3").unwrap().id, "S3");
        assert_eq!(parse_scenario(" s7 ").unwrap().id, "S7");
        let error = parse_scenario("S8").unwrap_err();
        assert!(error.contains("S1, S2, S3, S4, S5, S6, S7"), "{error}");
        assert!(parse_peer_name("tansu").is_ok());
        assert!(parse_peer_name("ours").is_err());
        assert!(parse_peer_name("a/b").is_err());
        assert!(parse_peer_name("").is_err());
    }

    #[test]
    fn failure_text_prefers_the_error_line() {
        let dir = std::env::temp_dir().join(format!("loadgen-suite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("x.log");
        std::fs::write(&log, "progress\nerror: cannot reach broker 1.2.3.4:5\nmore\n").unwrap();
        assert_eq!(failure_text(&log), "error: cannot reach broker 1.2.3.4:5");
        assert!(failure_text(&dir.join("missing.log")).starts_with("no log"));
        std::fs::write(dir.join("bad.json"), "{\"throughput_records_per_sec\": ").unwrap();
        assert!(read_child_json(&dir.join("bad.json")).is_err());
        assert!(read_child_json(&dir.join("missing.json")).unwrap_err().contains("no JSON"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
