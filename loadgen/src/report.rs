//! The suite's report: reading a child run's JSON, the machine description,
//! and the Markdown (tables per scenario, ratios, the issue's targets).
//!
//! Units in the report: records/s; MB/s is 10^6 value bytes per second;
//! latencies in ms; broker CPU-s/GB is the broker's CPU seconds (user +
//! system, all threads) per 10^9 value bytes produced, and broker cores its
//! CPU seconds per wall second, both over the run's measured window (read
//! by the run itself, `--broker-pid`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::limits::json_depth_max;
use crate::suite::{Scenario, Target};

/// A parsed JSON value: just enough to read the child's documented fields.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// Parses a JSON document. Errors give the byte offset; nothing panics on
/// malformed input, and nesting is bounded by `json_depth_max`.
pub fn parse_json(text: &str) -> Result<Value, String> {
    let mut parser = JsonParser { bytes: text.as_bytes(), at: 0 };
    let value = parser.value(0)?;
    parser.space();
    if parser.at != parser.bytes.len() {
        return Err(format!("unexpected text at byte {}", parser.at));
    }
    Ok(value)
}

struct JsonParser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl JsonParser<'_> {
    fn space(&mut self) {
        while self.bytes.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.at))
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, String> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            self.fail("bad literal")
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > json_depth_max {
            return self.fail("nested too deep");
        }
        self.space();
        match self.bytes.get(self.at) {
            None => self.fail("unexpected end"),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::Str),
            Some(b'{') => {
                self.at += 1;
                let mut fields = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Value::Object(fields));
                }
                loop {
                    self.space();
                    if self.bytes.get(self.at) != Some(&b'"') {
                        return self.fail("expected a key");
                    }
                    let key = self.string()?;
                    self.space();
                    if self.bytes.get(self.at) != Some(&b':') {
                        return self.fail("expected ':'");
                    }
                    self.at += 1;
                    fields.push((key, self.value(depth + 1)?));
                    self.space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Value::Object(fields));
                        }
                        _ => return self.fail("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return self.fail("expected ',' or ']'"),
                    }
                }
            }
            Some(_) => {
                let start = self.at;
                while self.bytes.get(self.at).is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(b)) {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
                match text.parse::<f64>() {
                    Ok(n) if !text.is_empty() => Ok(Value::Number(n)),
                    _ => {
                        self.at = start;
                        self.fail("bad value")
                    }
                }
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        debug_assert_eq!(self.bytes.get(self.at), Some(&b'"'));
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.bytes.get(self.at) {
                None => return self.fail("unterminated string"),
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(out).map_err(|_| format!("invalid UTF-8 before byte {}", self.at));
                }
                Some(b'\\') => {
                    let escaped = self.bytes.get(self.at + 1).copied();
                    self.at += 2;
                    match escaped {
                        Some(b'"') => out.push(b'"'),
                        Some(b'\\') => out.push(b'\\'),
                        Some(b'/') => out.push(b'/'),
                        Some(b'n') => out.push(b'\n'),
                        Some(b't') => out.push(b'\t'),
                        Some(b'r') => out.push(b'\r'),
                        Some(b'b') => out.push(8),
                        Some(b'f') => out.push(12),
                        Some(b'u') => {
                            let hex = self.bytes.get(self.at..self.at + 4).and_then(|h| std::str::from_utf8(h).ok());
                            let code = hex.and_then(|h| u32::from_str_radix(h, 16).ok());
                            let c = code.and_then(char::from_u32).unwrap_or(char::REPLACEMENT_CHARACTER);
                            if code.is_none() {
                                return self.fail("bad \\u escape");
                            }
                            self.at += 4;
                            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        _ => return self.fail("bad escape"),
                    }
                }
                Some(&b) => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
    }
}

/// Percentiles of one latency histogram, in µs (the child's JSON).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub count: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

/// What the suite uses of a child run's JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildResult {
    pub records_per_sec: f64,
    pub bytes_per_sec: f64,
    pub errors: u64,
    pub errors_by_kind: Vec<(String, u64)>,
    pub ack: Option<Latency>,
    pub e2e: Option<Latency>,
    pub warmup_ms: f64,
    pub duration_ms: f64,
    /// Broker cores used over the measured window (`broker_cores`); None
    /// when the run had no `--broker-pid` or could not read it.
    pub broker_cores: Option<f64>,
    /// Broker CPU-seconds per 10^9 value bytes (`broker_cpu_s_per_gb`).
    pub broker_cpu_s_per_gb: Option<f64>,
    /// Host busy cores less the load generator's own over the same window
    /// (`host_minus_loadgen_cores`): the broker with the kernel work done
    /// for it outside its process, plus anything else on the host. None as
    /// for `broker_cores`, and for JSON older than the field.
    pub host_minus_loadgen_cores: Option<f64>,
}

/// Reads the documented fields (loadgen/README.md, "JSON"). A missing or
/// mistyped field is an error naming it.
pub fn parse_child_json(text: &str) -> Result<ChildResult, String> {
    let document = parse_json(text)?;
    let number = |value: &Value, key: &str| -> Result<f64, String> {
        value
            .get(key)
            .and_then(Value::as_f64)
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("field {key:?} missing or not a number"))
    };
    let latency = |key: &str| -> Result<Option<Latency>, String> {
        match document.get(key) {
            Some(Value::Null) => Ok(None),
            Some(object @ Value::Object(_)) => {
                let field = |name: &str| number(object, name).map_err(|e| format!("{key}: {e}"));
                Ok(Some(Latency {
                    count: field("count")?,
                    p50: field("p50")?,
                    p90: field("p90")?,
                    p99: field("p99")?,
                    p999: field("p999")?,
                    p9999: field("p9999")?,
                    max: field("max")?,
                }))
            }
            _ => Err(format!("field {key:?} missing or not an object or null")),
        }
    };
    // Optional: null without --broker-pid, and absent from older runs' JSON.
    let optional = |key: &str| -> Result<Option<f64>, String> {
        match document.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => number(&document, key).map(Some),
        }
    };
    let parameters = document.get("parameters").ok_or("field \"parameters\" missing")?;
    let errors_by_kind = match document.get("errors_by_kind") {
        Some(Value::Object(fields)) => {
            fields.iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0) as u64)).collect()
        }
        _ => Vec::new(),
    };
    Ok(ChildResult {
        records_per_sec: number(&document, "throughput_records_per_sec")?,
        bytes_per_sec: number(&document, "throughput_bytes_per_sec")?,
        errors: number(&document, "errors")? as u64,
        errors_by_kind,
        ack: latency("latency_ack_us")?,
        e2e: latency("latency_e2e_us")?,
        warmup_ms: number(parameters, "warmup_ms")?,
        duration_ms: number(parameters, "duration_ms")?,
        broker_cores: optional("broker_cores")?,
        broker_cpu_s_per_gb: optional("broker_cpu_s_per_gb")?,
        host_minus_loadgen_cores: optional("host_minus_loadgen_cores")?,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Ours,
    RawTcp,
    Peer,
}

/// One run of the suite.
#[derive(Clone, Debug)]
pub struct RunRecord {
    pub scenario: &'static str,
    pub target: String,
    pub target_kind: TargetKind,
    /// 1-based; 0 for the S1 calibration run.
    pub round: u32,
    /// The run's files: `<files>.json`, `.svg`, `.log`.
    pub files: String,
    /// Records/s asked for (0 = max).
    pub rate: u64,
    pub exit_code: Option<i32>,
    /// The child's results (broker CPU included), or why there are none.
    pub outcome: Result<ChildResult, String>,
    /// Time the prepare child took to create the topic (brokers only).
    pub setup_sec: Option<f64>,
    /// Whether the SVG was written.
    pub plot: bool,
}

/// The report's header.
pub struct Meta {
    pub date_unix: u64,
    pub command: String,
    pub machine: Vec<(String, String)>,
    pub git: Option<String>,
    pub duration: Duration,
    pub rounds: u32,
    /// How S2's and S3's rates were set, if they were.
    pub base_rate: Option<String>,
    pub notes: Vec<String>,
}

/// The median; None for no values. Even counts average the middle two.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[middle] } else { (sorted[middle - 1] + sorted[middle]) / 2.0 })
}

/// `median [min–max]` of per-round values, or `n/a`.
fn spread(values: &[f64], format: fn(f64) -> String) -> String {
    match median(values) {
        None => "n/a".to_owned(),
        Some(m) if values.len() == 1 => format(m),
        Some(m) => {
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{} [{}–{}]", format(m), format(low), format(high))
        }
    }
}

/// Two decimals, or two significant digits for ratios under 0.1 (a p99
/// against a broker that fell seconds behind is 0.0012, not 0.00).
fn ratio_text(r: f64) -> String {
    if r > 0.0 && r < 0.1 {
        let decimals = (-r.log10().floor()) as usize + 1;
        format!("{r:.decimals$}")
    } else {
        format!("{r:.2}")
    }
}

fn ms_text(us: f64) -> String {
    let ms = us / 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// Broker CPU-s/GB, broker cores and host−loadgen cores: three decimals
/// (S6's target is 0.15 cores).
fn cpu_text(value: f64) -> String {
    format!("{value:.3}")
}

fn or_na(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "n/a".to_owned(), format)
}

/// One line per run for the progress output.
pub fn one_line(run: &RunRecord) -> String {
    let round = if run.round == 0 { "calibration".to_owned() } else { format!("round {}", run.round) };
    match &run.outcome {
        Ok(c) => format!(
            "{} {round} {}: {:.0} records/s, {:.1} MB/s, ack p99 {}, e2e p99 {}, errors {}, broker CPU-s/GB {}, broker cores {}, host−loadgen cores {}",
            run.scenario,
            run.target,
            c.records_per_sec,
            c.bytes_per_sec / 1e6,
            or_na(c.ack.map(|l| l.p99), |us| format!("{} ms", ms_text(us))),
            or_na(c.e2e.map(|l| l.p99), |us| format!("{} ms", ms_text(us))),
            c.errors,
            or_na(c.broker_cpu_s_per_gb, |v| format!("{v:.3}")),
            or_na(c.broker_cores, |v| format!("{v:.3}")),
            or_na(c.host_minus_loadgen_cores, |v| format!("{v:.3}")),
        ),
        Err(e) => format!("{} {round} {}: FAILED: {e}", run.scenario, run.target),
    }
}

/// A value of the runs of one scenario and target, per round.
fn per_round(runs: &[&RunRecord], value: impl Fn(&RunRecord, &ChildResult) -> Option<f64>) -> Vec<f64> {
    runs.iter().filter_map(|r| r.outcome.as_ref().ok().and_then(|c| value(r, c))).collect()
}

/// Per-round ratios `ours / other` of `value`, both from the same round.
fn round_ratios(ours: &[&RunRecord], other: &[&RunRecord], value: impl Fn(&ChildResult) -> Option<f64>) -> Vec<f64> {
    let mut ratios = Vec::new();
    for mine in ours {
        let Some(theirs) = other.iter().find(|o| o.round == mine.round) else { continue };
        if let (Ok(a), Ok(b)) = (&mine.outcome, &theirs.outcome) {
            if let (Some(a), Some(b)) = (value(a), value(b)) {
                if b > 0.0 {
                    ratios.push(a / b);
                }
            }
        }
    }
    ratios
}

/// One row of the targets table: `name`, the per-round `values` as
/// `median [min–max] unit`, and whether the median meets `ok`.
fn target_row(
    summary: &mut String,
    name: &str,
    values: &[f64],
    unit: &str,
    format: fn(f64) -> String,
    ok: impl Fn(f64) -> bool,
) {
    let _ = writeln!(summary, "| {name} | {} {unit} | {} |", spread(values, format), verdict(median(values), ok));
}

/// A target row: `met`, `missed` or `n/a`.
fn verdict(value: Option<f64>, ok: impl Fn(f64) -> bool) -> &'static str {
    match value {
        None => "n/a",
        Some(v) if ok(v) => "**met**",
        Some(_) => "**missed**",
    }
}

/// The report (Markdown) and the summary printed to stdout.
pub fn render(meta: &Meta, targets: &[Target], chosen: &[&Scenario], runs: &[RunRecord]) -> (String, String) {
    let mut md = String::new();
    let runs_of = |scenario: &str, label: &str| -> Vec<&RunRecord> {
        runs.iter().filter(|r| r.scenario == scenario && r.target == label && r.round > 0).collect()
    };
    let ours = &targets[0];
    let raw = targets.iter().find(|t| t.kind == TargetKind::RawTcp);
    let peer = targets.iter().find(|t| t.kind == TargetKind::Peer);

    let _ = writeln!(md, "# Ringstream load suite\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| date | {} |", utc_text(meta.date_unix));
    let _ = writeln!(md, "| command | `{}` |", meta.command.replace('|', "\\|").replace('`', "'"));
    let _ = writeln!(md, "| git commit | {} |", meta.git.as_deref().unwrap_or("n/a (not a git checkout)"));
    for (key, value) in &meta.machine {
        let _ = writeln!(md, "| {key} | {value} |");
    }
    for target in targets {
        let _ = writeln!(
            md,
            "| target `{}` | {} ({}) |",
            target.label,
            target.address.as_deref().unwrap_or("built-in raw-TCP sink (`--baseline raw-tcp`), the loopback ceiling"),
            target.pid_note
        );
    }
    let _ = writeln!(
        md,
        "| runs | {} s measured per run, {} round(s), interleaved: for each scenario, for each round: {} |",
        meta.duration.as_secs_f64(),
        meta.rounds,
        targets.iter().map(|t| t.label.as_str()).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(md, "| S2/S3 rate | {} |", meta.base_rate.as_deref().unwrap_or("n/a (no S2 or S3)"));
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Units: MB/s is 10^6 value bytes per second; latencies are ms; **broker CPU-s/GB** is the broker \
         process's CPU time (user + system, all threads, from /proc/PID/stat) over the run's measured window \
         divided by the value bytes produced in that window (10^9 bytes = 1 GB), and **broker cores** is the \
         same CPU time divided by the window's wall seconds (1.00 = one core busy throughout). \
         **host−loadgen cores** is the whole machine's busy CPU time over the same window (/proc/stat: user, \
         nice, system, irq, softirq and steal of every CPU) less the load generator's own CPU time \
         (/proc/self/stat), divided by the window's wall seconds: the broker, the kernel work done on its behalf, \
         and anything else running on the host. Both exist because process CPU misses kernel work that belongs \
         to no process: workqueue kworkers (O_DSYNC direct-I/O completion, unwritten-extent conversion, block \
         flushes) and softirqs charged to whatever they interrupted, so a change that moves fsync work from \
         io_uring's io-wq threads (counted in the broker) into kworkers (not counted) looks cheaper in broker \
         cores while the host does about the same work, and host−loadgen cores shows it. It is only meaningful \
         on an otherwise idle machine. The run reads both itself (`--broker-pid`), at the same two instants as \
         its measured window starts and ends, so topic creation, warmup and the drain are excluded. With consumers (S2, S3, S6, S7) it includes serving them. Every figure is the \
         median over rounds, with [min–max] when there is more than one round; errors are summed over rounds. \
         The S2 and S3 rates are the same absolute records/s for every target: a fraction of **our broker's** \
         S1 median; S6 and S7 run at fixed rates (5,000 and 200,000 records/s). The raw-TCP sink stores \
         nothing and cannot serve consumers, so in S2, S3, S6 and S7 it runs the producer only, at the same \
         rate, and its e2e, broker CPU and host−loadgen columns are n/a.\n"
    );
    for note in &meta.notes {
        let _ = writeln!(md, "**Note:** {note}\n");
    }

    // Ratios and targets.
    let mut summary = String::new();
    let _ = writeln!(summary, "## Ratios and targets\n");
    let _ = writeln!(
        summary,
        "Ratios are taken within each round (interleaved runs), then the median [min–max] over rounds.\n"
    );
    let _ = writeln!(summary, "| scenario | comparison | records/s ratio | ack p99 ratio | e2e p99 ratio |");
    let _ = writeln!(summary, "|---|---|---|---|---|");
    for scenario in chosen {
        let mine = runs_of(scenario.id, &ours.label);
        for other in [raw, peer].into_iter().flatten() {
            let theirs = runs_of(scenario.id, &other.label);
            let throughput = round_ratios(&mine, &theirs, |c| Some(c.records_per_sec));
            let ack = round_ratios(&mine, &theirs, |c| c.ack.map(|l| l.p99));
            let e2e = round_ratios(&mine, &theirs, |c| c.e2e.map(|l| l.p99));
            let _ = writeln!(
                summary,
                "| {} | ours / {} | {} | {} | {} |",
                scenario.id,
                other.label,
                spread(&throughput, ratio_text),
                spread(&ack, ratio_text),
                spread(&e2e, ratio_text),
            );
        }
    }
    let _ = writeln!(
        summary,
        "\nFor records/s, higher is better for ours; for p99, lower is. At a set rate (S2, S3, S6, S7) records/s ratios are about 1 by design.\n"
    );
    let _ = writeln!(summary, "| issue target | measured (ours) | status |");
    let _ = writeln!(summary, "|---|---|---|");
    let has = |id: &str| chosen.iter().any(|s| s.id == id);
    if has("S1") {
        let mine = runs_of("S1", &ours.label);
        if let Some(raw) = raw {
            let r = round_ratios(&mine, &runs_of("S1", &raw.label), |c| Some(c.records_per_sec));
            let _ = writeln!(
                summary,
                "| S1 throughput ≥ 0.8 × raw-TCP | {} × | {} |",
                spread(&r, ratio_text),
                verdict(median(&r), |v| v >= 0.8)
            );
        }
        match peer {
            Some(peer) => {
                let r = round_ratios(&mine, &runs_of("S1", &peer.label), |c| Some(c.records_per_sec));
                let _ = writeln!(
                    summary,
                    "| S1 throughput ≥ 2 × {} | {} × | {} |",
                    peer.label,
                    spread(&r, ratio_text),
                    verdict(median(&r), |v| v >= 2.0)
                );
            }
            None => {
                let _ = writeln!(summary, "| S1 throughput ≥ 2 × peer | no peer | n/a |");
            }
        }
    }
    if has("S2") {
        let mine = runs_of("S2", &ours.label);
        let p99 = per_round(&mine, |_, c| c.e2e.map(|l| l.p99));
        let p9999 = per_round(&mine, |_, c| c.e2e.map(|l| l.p9999));
        let cpu = per_round(&mine, |_, c| c.broker_cpu_s_per_gb);
        target_row(&mut summary, "S2 e2e p99 ≤ 5 ms", &p99, "ms", ms_text, |v| v <= 5000.0);
        target_row(&mut summary, "S2 e2e p99.99 ≤ 8 ms", &p9999, "ms", ms_text, |v| v <= 8000.0);
        target_row(
            &mut summary,
            "broker CPU ≤ 0.3 CPU-s/GB, produce + one consumer (S2)",
            &cpu,
            "CPU-s/GB",
            cpu_text,
            |v| v <= 0.3,
        );
    }
    if has("S6") {
        let mine = runs_of("S6", &ours.label);
        let cores = per_round(&mine, |_, c| c.broker_cores);
        let ack = per_round(&mine, |_, c| c.ack.map(|l| l.p99));
        target_row(
            &mut summary,
            "S6 ≤ 0.15 broker cores (light load, 5,000 records/s)",
            &cores,
            "cores",
            cpu_text,
            |v| v <= 0.15,
        );
        target_row(&mut summary, "S6 ack p99 ≤ 3 ms", &ack, "ms", ms_text, |v| v <= 3000.0);
    }
    if has("S7") {
        let mine = runs_of("S7", &ours.label);
        let cpu = per_round(&mine, |_, c| c.broker_cpu_s_per_gb);
        let e2e = per_round(&mine, |_, c| c.e2e.map(|l| l.p99));
        target_row(
            &mut summary,
            "S7 ≤ 1.0 broker CPU-s/GB (moderate load, 200,000 records/s)",
            &cpu,
            "CPU-s/GB",
            cpu_text,
            |v| v <= 1.0,
        );
        target_row(&mut summary, "S7 e2e p99 ≤ 5 ms", &e2e, "ms", ms_text, |v| v <= 5000.0);
    }
    let _ = writeln!(summary);

    // One table per scenario.
    for scenario in chosen {
        let rate = runs.iter().find(|r| r.scenario == scenario.id && r.round > 0).map_or(0, |r| r.rate);
        let _ = writeln!(summary, "## {}: {}\n", scenario.id, scenario.title);
        let _ = writeln!(
            summary,
            "{} partitions, {} B records, acks=all, rate {}{}{}.\n",
            scenario.partitions,
            scenario.record_size,
            if rate == 0 { "max".to_owned() } else { format!("{rate} records/s") },
            if scenario.consumers > 0 && scenario.groups > 0 {
                format!(", {} consumer groups of {} (brokers only)", scenario.groups, scenario.consumers)
            } else if scenario.consumers > 0 {
                format!(", {} consumer (brokers only)", scenario.consumers)
            } else {
                String::new()
            },
            scenario.linger_ms.map_or(String::new(), |l| format!(", linger {l} ms, warmup {} s", scenario.warmup_sec)),
        );
        let _ = writeln!(
            summary,
            "| target | runs ok | records/s | MB/s | ack p50 | ack p99 | ack p99.99 | ack max | e2e p50 | e2e p99 | e2e p99.99 | errors | broker CPU-s/GB | broker cores | host−loadgen cores |"
        );
        let _ = writeln!(summary, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut failures = Vec::new();
        let mut plots = Vec::new();
        for target in targets {
            let mine = runs_of(scenario.id, &target.label);
            if mine.is_empty() {
                continue;
            }
            let ok = mine.iter().filter(|r| r.outcome.is_ok()).count();
            let lat = |pick: fn(&Latency) -> f64, which: fn(&ChildResult) -> Option<Latency>| {
                spread(&per_round(&mine, |_, c| which(c).map(|l| pick(&l))), ms_text)
            };
            let ack = |pick: fn(&Latency) -> f64| lat(pick, |c| c.ack);
            let e2e = |pick: fn(&Latency) -> f64| {
                if target.kind == TargetKind::RawTcp {
                    "n/a".to_owned()
                } else {
                    lat(pick, |c| c.e2e)
                }
            };
            let errors: u64 = mine.iter().filter_map(|r| r.outcome.as_ref().ok()).map(|c| c.errors).sum();
            // The raw-TCP sink runs inside the load generator: no broker
            // process, and its work is the load generator's own.
            let broker = |value: fn(&ChildResult) -> Option<f64>| {
                if target.kind == TargetKind::RawTcp {
                    "n/a".to_owned()
                } else {
                    spread(&per_round(&mine, |_, c| value(c)), cpu_text)
                }
            };
            let cpu = broker(|c| c.broker_cpu_s_per_gb);
            let cores = broker(|c| c.broker_cores);
            let host_cores = broker(|c| c.host_minus_loadgen_cores);
            let _ = writeln!(
                summary,
                "| {} | {ok}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {errors} | {cpu} | {cores} | {host_cores} |",
                target.label,
                mine.len(),
                spread(&per_round(&mine, |_, c| Some(c.records_per_sec)), |v| format!("{v:.0}")),
                spread(&per_round(&mine, |_, c| Some(c.bytes_per_sec / 1e6)), |v| format!("{v:.1}")),
                ack(|l| l.p50),
                ack(|l| l.p99),
                ack(|l| l.p9999),
                ack(|l| l.max),
                e2e(|l| l.p50),
                e2e(|l| l.p99),
                e2e(|l| l.p9999),
            );
            for run in &mine {
                match &run.outcome {
                    Err(e) => failures.push(format!("{} round {}: {e}", run.target, run.round)),
                    Ok(c) if c.records_per_sec == 0.0 && c.ack.is_some_and(|l| l.count > 0.0) => {
                        failures.push(format!(
                            "{} round {}: no acknowledgement arrived inside the measured window; the {:.0} records sent in it \
                             were all acknowledged after it (ack p50 {} ms), so records/s is 0 and CPU-s/GB n/a",
                            run.target,
                            run.round,
                            c.ack.map_or(0.0, |l| l.count),
                            c.ack.map_or("n/a".to_owned(), |l| ms_text(l.p50)),
                        ));
                    }
                    Ok(c) if c.errors > 0 => {
                        let kinds: Vec<String> = c.errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
                        failures.push(format!(
                            "{} round {}: {} errors ({})",
                            run.target,
                            run.round,
                            c.errors,
                            kinds.join(", ")
                        ));
                    }
                    Ok(_) => {}
                }
                if run.plot {
                    plots.push(format!("[{}]({}.svg)", run.files, run.files));
                }
            }
        }
        let _ = writeln!(summary);
        for failure in &failures {
            let _ = writeln!(summary, "- {}", failure.replace('\n', " "));
        }
        if !failures.is_empty() {
            let _ = writeln!(summary);
        }
        let setup: Vec<f64> =
            runs.iter().filter(|r| r.scenario == scenario.id && r.round > 0).filter_map(|r| r.setup_sec).collect();
        if !setup.is_empty() && scenario.partitions >= 1000 {
            let _ = writeln!(
                summary,
                "Topic creation (the prepare run, not measured) took {} s.\n",
                spread(&setup, |v| format!("{v:.1}"))
            );
        }
        if !plots.is_empty() {
            let _ =
                writeln!(summary, "Plots (latency over time, throughput, percentile spectrum): {}\n", plots.join(", "));
        }
    }
    md.push_str(&summary);
    let _ = writeln!(
        md,
        "## Files\n\nPer run: `<scenario>-<target>-<round>.json` (the run's `--json`), `.svg` (its `--plot`), \
         `.log` (its progress and summary), and for brokers `.prepare.log` (topic creation)."
    );
    (md, summary)
}

/// Shell-quoted command line of this process.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c)) {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU count, CPU model, kernel and memory, each "n/a" when unknown.
pub fn machine() -> Vec<(String, String)> {
    let cpus = std::thread::available_parallelism().map_or("n/a".to_owned(), |n| n.get().to_string());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model") || l.starts_with("Hardware"))
        .and_then(|l| l.split_once(':'))
        .map_or("n/a".to_owned(), |(_, v)| v.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or("n/a".to_owned(), |kib| format!("{:.1} GiB", kib / (1024.0 * 1024.0)));
    vec![
        ("CPUs (nproc)".into(), cpus),
        ("CPU model".into(), model),
        ("kernel (uname)".into(), kernel()),
        ("memory".into(), memory),
    ]
}

fn kernel() -> String {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return "n/a".into();
    }
    let field = |chars: &[libc::c_char]| -> String {
        let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {} {} {}", field(&name.sysname), field(&name.release), field(&name.version), field(&name.machine))
}

/// `git rev-parse HEAD` in the working directory, noting uncommitted changes
/// to tracked files; None when git or the checkout is missing.
pub fn git_commit() -> Option<String> {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !head.status.success() {
        return None;
    }
    let commit = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    Some(if dirty { format!("{commit} (with uncommitted changes to tracked files)") } else { commit })
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn utc_parts(unix: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (year, month, day) = civil_from_days((unix / 86_400) as i64);
    let seconds = unix % 86_400;
    (year, month, day, seconds / 3600, seconds % 3600 / 60, seconds % 60)
}

/// `2026-11-22 03:06:46 UTC`.
pub fn utc_text(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(unix);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `20261122T030646Z`, for directory names.
pub fn utc_compact(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(unix);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ratios_keep_two_significant_digits() {
        assert_eq!(ratio_text(2.8712), "2.87");
        assert_eq!(ratio_text(0.47), "0.47");
        assert_eq!(ratio_text(0.0873), "0.087");
        assert_eq!(ratio_text(0.00123), "0.0012");
        assert_eq!(ratio_text(0.0), "0.00");
    }

    const child: &str = r#"{
  "format_version": 1,
  "target": "broker 127.0.0.1:1",
  "parameters": {
    "brokers": "127.0.0.1:1",
    "warmup_ms": 2000,
    "duration_ms": 10000,
    "linger_ms": 1.000
  },
  "throughput_records_per_sec": 5000.500,
  "throughput_bytes_per_sec": 5120512.000,
  "errors": 2,
  "errors_by_kind": {
    "NOT_SENT": 2
  },
  "latency_ack_us": {
    "count": 50000,
    "p50": 3021,
    "p90": 4053,
    "p99": 7075,
    "p999": 9551,
    "p9999": 10551,
    "max": 10951
  },
  "latency_e2e_us": null
}
"#;

    #[test]
    fn reads_the_child_json() {
        let result = parse_child_json(child).unwrap();
        assert_eq!(result.records_per_sec, 5000.5);
        assert_eq!(result.errors, 2);
        assert_eq!(result.errors_by_kind, vec![("NOT_SENT".to_owned(), 2)]);
        assert_eq!(result.ack.unwrap().p9999, 10551.0);
        assert_eq!(result.e2e, None);
        assert_eq!((result.warmup_ms, result.duration_ms), (2000.0, 10000.0));
    }

    #[test]
    fn reads_the_broker_cpu_fields() {
        let older = parse_child_json(child).unwrap();
        assert_eq!((older.broker_cores, older.broker_cpu_s_per_gb), (None, None), "an older run's JSON has none");
        let with = |cores: &str, per_gb: &str| {
            let fields =
                format!("\"latency_e2e_us\": null,\n  \"broker_cores\": {cores},\n  \"broker_cpu_s_per_gb\": {per_gb}");
            child.replace("\"latency_e2e_us\": null", &fields)
        };
        let result = parse_child_json(&with("0.125", "0.730")).unwrap();
        assert_eq!((result.broker_cores, result.broker_cpu_s_per_gb), (Some(0.125), Some(0.73)));
        let result = parse_child_json(&with("null", "null")).unwrap();
        assert_eq!((result.broker_cores, result.broker_cpu_s_per_gb), (None, None), "no --broker-pid");
        assert!(parse_child_json(&with("\"many\"", "null")).unwrap_err().contains("broker_cores"));
        assert!(parse_child_json(&with("0.1", "-1")).unwrap_err().contains("broker_cpu_s_per_gb"));
    }

    #[test]
    fn reads_the_host_cpu_field() {
        assert_eq!(parse_child_json(child).unwrap().host_minus_loadgen_cores, None, "an older run's JSON has none");
        let with = |cores: &str| {
            child.replace(
                "\"latency_e2e_us\": null",
                &format!("\"latency_e2e_us\": null,\n  \"host_minus_loadgen_cores\": {cores}"),
            )
        };
        assert_eq!(parse_child_json(&with("1.175")).unwrap().host_minus_loadgen_cores, Some(1.175));
        assert_eq!(parse_child_json(&with("null")).unwrap().host_minus_loadgen_cores, None, "no --broker-pid");
        assert!(parse_child_json(&with("\"many\"")).unwrap_err().contains("host_minus_loadgen_cores"));
    }

    fn result(
        records_per_sec: f64,
        ack_p99_us: f64,
        e2e_p99_us: Option<f64>,
        cores: Option<f64>,
        per_gb: Option<f64>,
    ) -> ChildResult {
        let latency =
            |p99: f64| Latency { count: 1000.0, p50: p99 / 2.0, p90: p99 * 0.9, p99, p999: p99, p9999: p99, max: p99 };
        ChildResult {
            records_per_sec,
            bytes_per_sec: records_per_sec * 1024.0,
            errors: 0,
            errors_by_kind: Vec::new(),
            ack: Some(latency(ack_p99_us)),
            e2e: e2e_p99_us.map(latency),
            warmup_ms: 2000.0,
            duration_ms: 10_000.0,
            broker_cores: cores,
            broker_cpu_s_per_gb: per_gb,
            host_minus_loadgen_cores: None,
        }
    }

    fn run_of(scenario: &'static str, target: &Target, outcome: ChildResult) -> RunRecord {
        RunRecord {
            scenario,
            target: target.label.clone(),
            target_kind: target.kind,
            round: 1,
            files: format!("{scenario}-{}-1", target.label),
            rate: outcome.records_per_sec as u64,
            exit_code: Some(0),
            outcome: Ok(outcome),
            setup_sec: None,
            plot: false,
        }
    }

    /// S6 and S7 rows carry broker cores, CPU-s/GB and ack and e2e
    /// percentiles for the brokers, ack percentiles only for the raw-TCP
    /// sink; their targets are judged from our broker's medians.
    #[test]
    fn fixed_rate_scenarios_report_cores_and_latency() {
        let target =
            |kind, label: &str| Target { kind, label: label.into(), address: None, pid: None, pid_note: String::new() };
        let targets = [
            target(TargetKind::Ours, "ours"),
            target(TargetKind::RawTcp, "raw-tcp"),
            target(TargetKind::Peer, "tansu"),
        ];
        let chosen: Vec<&Scenario> =
            crate::suite::all_scenarios.iter().filter(|s| s.id == "S6" || s.id == "S7").collect();
        let with_host = |mut result: ChildResult, cores| {
            result.host_minus_loadgen_cores = Some(cores);
            result
        };
        let runs = vec![
            run_of("S6", &targets[0], with_host(result(5000.0, 2500.0, Some(2800.0), Some(0.12), Some(23.4)), 0.185)),
            run_of("S6", &targets[1], result(5000.0, 900.0, None, None, None)),
            run_of("S6", &targets[2], result(5000.0, 9000.0, Some(12000.0), Some(0.6), Some(117.0))),
            run_of("S7", &targets[0], result(200_000.0, 4000.0, Some(6000.0), Some(0.5), Some(2.441))),
            run_of("S7", &targets[1], result(200_000.0, 1500.0, None, None, None)),
        ];
        let meta = Meta {
            date_unix: 0,
            command: "suite".into(),
            machine: Vec::new(),
            git: None,
            duration: Duration::from_secs(10),
            rounds: 1,
            base_rate: None,
            notes: Vec::new(),
        };
        let (markdown, summary) = render(&meta, &targets, &chosen, &runs);
        assert!(markdown.contains(&summary));
        let row = |scenario: &str, label: &str| -> Vec<String> {
            let section = &summary[summary.find(&format!("## {scenario}: ")).unwrap()..];
            let line = section
                .lines()
                .find(|l| l.starts_with(&format!("| {label} |")))
                .unwrap_or_else(|| panic!("{label} row in {section}"));
            line.trim_matches('|').split('|').map(|cell| cell.trim().to_owned()).collect()
        };
        // target, runs ok, records/s, MB/s, ack p50/p99/p99.99/max, e2e p50/p99/p99.99, errors, CPU-s/GB,
        // broker cores, host−loadgen cores
        let ours = row("S6", "ours");
        assert_eq!(ours.len(), 15, "{ours:?}");
        assert_eq!((ours[2].as_str(), ours[5].as_str(), ours[9].as_str()), ("5000", "2.50", "2.80"), "{ours:?}");
        assert_eq!((ours[12].as_str(), ours[13].as_str(), ours[14].as_str()), ("23.400", "0.120", "0.185"), "{ours:?}");
        let raw = row("S6", "raw-tcp");
        assert_eq!(
            (raw[5].as_str(), raw[9].as_str(), raw[12].as_str(), raw[13].as_str()),
            ("0.90", "n/a", "n/a", "n/a"),
            "{raw:?}"
        );
        assert_eq!(raw[14], "n/a", "the sink's work is the load generator's own");
        assert_eq!(
            (row("S6", "tansu")[13].as_str(), row("S6", "tansu")[14].as_str()),
            ("0.600", "n/a"),
            "older child JSON: n/a"
        );
        assert!(summary.contains("| broker cores | host−loadgen cores |"), "{summary}");
        assert!(
            markdown.contains("**host−loadgen cores**") && markdown.contains("kworkers"),
            "the units paragraph defines it"
        );
        assert_eq!(row("S7", "ours")[10], "6.00", "e2e p99.99");
        assert!(summary.contains("5000 records/s") && summary.contains("200000 records/s"), "{summary}");
        assert!(
            summary.contains("linger 0 ms, warmup 2 s") && summary.contains("linger 1 ms, warmup 2 s"),
            "{summary}"
        );
        for (name, status) in [
            ("S6 ≤ 0.15 broker cores", "**met**"),
            ("S6 ack p99 ≤ 3 ms", "**met**"),
            ("S7 ≤ 1.0 broker CPU-s/GB", "**missed**"),
            ("S7 e2e p99 ≤ 5 ms", "**missed**"),
        ] {
            let line =
                summary.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} missing:\n{summary}"));
            assert!(line.ends_with(&format!("| {status} |")), "{line}");
        }
        assert!(!summary.contains("S2 e2e"), "only the chosen scenarios' targets");
        assert!(summary.contains("| S6 | ours / tansu | 1.00 | 0.28 | 0.23 |"), "{summary}");
    }

    #[test]
    fn garbled_json_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{",
            "{\"a\": }",
            "[1, 2",
            "\"\\u12\"",
            "nul",
            "{\"throughput_records_per_sec\": \"fast\"}",
            &child[..child.len() / 2],
            &child.replace("\"p99\"", "\"p98\""),
            &"[".repeat(100),
        ] {
            assert!(parse_child_json(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            parse_json(r#"{"s": "a\"b\u00e9", "l": [true, false, null, -1.5e3]}"#).unwrap(),
            Value::Object(vec![
                ("s".into(), Value::Str("a\"bé".into())),
                (
                    "l".into(),
                    Value::Array(vec![Value::Bool(true), Value::Bool(false), Value::Null, Value::Number(-1500.0)])
                ),
            ])
        );
    }

    #[test]
    fn medians_and_dates() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(spread(&[1.0, 3.0, 2.0], ratio_text), "2.00 [1.00–3.00]");
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(1_795_835_206), "2026-11-28 03:06:46 UTC");
        assert_eq!(utc_compact(951_782_400), "20000229T000000Z");
    }
}
