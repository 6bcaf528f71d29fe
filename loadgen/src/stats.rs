//! Measurements. Each executor thread keeps its own histograms and counts
//! (`ThreadStats`, never shared); the few numbers the live progress line
//! needs are relaxed atomics (`Progress`); per-second ack and end-to-end
//! histograms go to the main thread over a bounded channel, which prints the
//! progress line from them and keeps a bounded per-second `Timeline` for
//! `--plot`. At the end the threads' stats are merged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::limits::latency_us_max;
use crate::limits::timeline_seconds_max;
use crate::procstat::{CpuUse, HostUse};

/// A latency histogram in microseconds, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    let histogram = Histogram::new_with_bounds(1, latency_us_max, 3);
    histogram.expect("static bounds are valid")
}

/// Records `latency_ns` (rounded up to whole µs, at least 1, clamped to the maximum).
pub fn record_ns(histogram: &mut Histogram<u64>, latency_ns: u64) {
    let us = latency_ns.div_ceil(1000).clamp(1, latency_us_max);
    histogram.record(us).expect("value clamped into the histogram's range");
}

/// What one executor thread measured.
pub struct ThreadStats {
    pub ack: Histogram<u64>,
    pub e2e: Histogram<u64>,
    /// Ack latencies since the last progress line (not merged at the end).
    pub interval_ack: Histogram<u64>,
    /// End-to-end latencies since the last progress line (not merged at the end).
    pub interval_e2e: Histogram<u64>,
    /// Acknowledged (acks=0: written) during the measured window.
    pub window_records: u64,
    pub window_bytes: u64,
    /// When the last acknowledgement counted in the window arrived (0: none);
    /// a `--messages` run that ends early is measured up to here.
    pub last_window_ack_ns: u64,
    /// Read by consumers during the measured window.
    pub consumed_window_records: u64,
    /// Failed records (or failed requests where no record is involved), by kind.
    pub errors: BTreeMap<String, u64>,
}

impl ThreadStats {
    pub fn new() -> ThreadStats {
        ThreadStats {
            ack: latency_histogram(),
            e2e: latency_histogram(),
            interval_ack: latency_histogram(),
            interval_e2e: latency_histogram(),
            window_records: 0,
            window_bytes: 0,
            last_window_ack_ns: 0,
            consumed_window_records: 0,
            errors: BTreeMap::new(),
        }
    }

    pub fn merge(&mut self, other: &ThreadStats) {
        self.ack.add(&other.ack).expect("same bounds");
        self.e2e.add(&other.e2e).expect("same bounds");
        self.window_records += other.window_records;
        self.window_bytes += other.window_bytes;
        self.last_window_ack_ns = self.last_window_ack_ns.max(other.last_window_ack_ns);
        self.consumed_window_records += other.consumed_window_records;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }

    /// One produce acknowledgement `latency_ns` after its intended send
    /// time; `measured` when it was sent inside the measured window (the
    /// progress line counts warmup too).
    pub fn record_ack(&mut self, latency_ns: u64, measured: bool) {
        record_ns(&mut self.interval_ack, latency_ns);
        if measured {
            record_ns(&mut self.ack, latency_ns);
        }
    }

    /// One record read `latency_ns` after it was sent, sent inside the
    /// measured window.
    pub fn record_e2e(&mut self, latency_ns: u64) {
        record_ns(&mut self.interval_e2e, latency_ns);
        record_ns(&mut self.e2e, latency_ns);
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Counters for the live progress line, shared by all threads.
#[derive(Default)]
pub struct Progress {
    pub acked_records: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub consumed_records: AtomicU64,
    pub errors: AtomicU64,
    /// Producer and consumer connections that have finished.
    pub finished_producers: AtomicU64,
    pub finished_consumers: AtomicU64,
}

impl Progress {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One second of the run, as the progress line printed it.
#[derive(Clone, Copy, Debug)]
pub struct Second {
    /// Seconds since the load began; this entry covers `[index - 1, index)`.
    pub index: u64,
    /// The phase the second began in: `warmup`, `run` or `drain`.
    pub phase: &'static str,
    pub acked_records: u64,
    pub consumed_records: u64,
    /// Ack latencies recorded in this second (warmup included); None if none.
    pub ack: Option<Percentiles>,
    /// End-to-end latencies recorded in this second (records sent in the
    /// measured window only); None if none.
    pub e2e: Option<Percentiles>,
}

/// The run second by second, at most `timeline_seconds_max` entries.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub seconds: Vec<Second>,
    /// Seconds past `timeline_seconds_max`, not kept.
    pub dropped: u64,
}

impl Timeline {
    pub fn push(&mut self, second: Second) {
        if self.seconds.len() < timeline_seconds_max {
            assert!(self.seconds.last().map_or(true, |last| last.index < second.index));
            self.seconds.push(second);
        } else {
            self.dropped += 1;
        }
    }
}

/// Percentiles of one histogram, in µs; None when it holds nothing.
#[derive(Clone, Copy, Debug)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
}

pub fn percentiles(histogram: &Histogram<u64>) -> Option<Percentiles> {
    if histogram.is_empty() {
        return None;
    }
    Some(Percentiles {
        count: histogram.len(),
        p50: histogram.value_at_quantile(0.50),
        p90: histogram.value_at_quantile(0.90),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        p9999: histogram.value_at_quantile(0.9999),
        max: histogram.max(),
    })
}

/// The run's results, ready to print or write.
pub struct Summary {
    pub target: String,
    pub measured: Duration,
    pub stats: ThreadStats,
    /// `--record-size` as given: `1024` or a range `100..2000`.
    pub record_size: String,
    pub acks: i16,
    /// `--broker-pid` and its CPU time over the measured window, or why
    /// that could not be read; None without `--broker-pid`.
    pub broker_cpu: Option<(u32, Result<CpuUse, String>)>,
    /// The host's busy CPU and the load generator's own over the same
    /// window (read with the broker's), or why not; None without
    /// `--broker-pid`.
    pub host_cpu: Option<Result<HostUse, String>>,
}

impl Summary {
    pub fn records_per_sec(&self) -> f64 {
        self.stats.window_records as f64 / self.measured.as_secs_f64()
    }
    pub fn bytes_per_sec(&self) -> f64 {
        self.stats.window_bytes as f64 / self.measured.as_secs_f64()
    }

    /// The broker's CPU over the measured window, when it was read.
    fn broker_cpu_use(&self) -> Option<CpuUse> {
        self.broker_cpu.as_ref().and_then(|(_, cpu)| cpu.as_ref().ok().copied())
    }

    /// The `broker CPU` line of the table: CPU-seconds, cores and CPU-s/GB.
    fn broker_cpu_line(&self) -> Option<String> {
        let (pid, cpu) = self.broker_cpu.as_ref()?;
        let figure = |value: Option<f64>| value.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        Some(match cpu {
            Ok(cpu) => format!(
                "broker CPU    PID {pid}: {:.2} CPU-s in {:.3} s = {} cores, {} CPU-s/GB\n",
                cpu.cpu_sec,
                cpu.wall_sec,
                figure(cpu.cores()),
                figure(cpu.cpu_s_per_gb(self.stats.window_bytes)),
            ),
            Err(e) => format!("broker CPU    PID {pid}: n/a ({e})\n"),
        })
    }

    /// The host's CPU over the measured window, when it was read.
    fn host_cpu_use(&self) -> Option<HostUse> {
        self.host_cpu.as_ref().and_then(|host| host.as_ref().ok().copied())
    }

    /// The `host CPU` line of the table: busy cores, the load generator's
    /// cores, and the rest (host less load generator) as cores and CPU-s/GB.
    /// The broker's line misses kernel work done for it in kworkers and
    /// softirqs; this one does not (but counts anything else on the host).
    fn host_cpu_line(&self) -> Option<String> {
        let figure = |value: Option<f64>| value.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        Some(match self.host_cpu.as_ref()? {
            Ok(host) => {
                let rest = host.rest();
                let clamped = rest.clamped_from.map_or(String::new(), |raw| {
                    format!(
                        " (clamped to 0 from {} cores)",
                        figure(Some(raw / host.wall_sec).filter(|v| v.is_finite()))
                    )
                });
                format!(
                    "host CPU      {} cores busy, load generator {}, the rest {} cores{clamped} = {} CPU-s/GB\n",
                    figure(host.busy_cores()),
                    figure(host.loadgen_cores()),
                    figure(host.rest_cores()),
                    figure(host.rest_cpu_s_per_gb(self.stats.window_bytes)),
                )
            }
            Err(e) => format!("host CPU      n/a ({e})\n"),
        })
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let mib = self.bytes_per_sec() / (1024.0 * 1024.0);
        out.push_str(&format!("target        {}\n", self.target));
        out.push_str(&format!("measured      {:.3} s\n", self.measured.as_secs_f64()));
        out.push_str(&format!(
            "throughput    {:.0} records/s   {:.1} MiB/s   ({} records of {} B {})\n",
            self.records_per_sec(),
            mib,
            self.stats.window_records,
            self.record_size,
            if self.acks == 0 { "written, acks=0" } else { "acknowledged" }
        ));
        if self.stats.consumed_window_records > 0 {
            out.push_str(&format!(
                "consumed      {} records (sent in the window)\n",
                self.stats.consumed_window_records
            ));
        }
        out.push_str(&format!("errors        {}\n", self.stats.errors_total()));
        for (kind, count) in &self.stats.errors {
            out.push_str(&format!("  {kind:<30} {count}\n"));
        }
        if let Some(line) = self.broker_cpu_line() {
            out.push_str(&line);
        }
        if let Some(line) = self.host_cpu_line() {
            out.push_str(&line);
        }
        out.push_str(&format!(
            "\n{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            "latency ms", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        ));
        for (name, histogram) in [("ack", &self.stats.ack), ("e2e", &self.stats.e2e)] {
            match percentiles(histogram) {
                Some(p) => out.push_str(&format!(
                    "{:<10} {:>10} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}\n",
                    name,
                    p.count,
                    ms(p.p50),
                    ms(p.p90),
                    ms(p.p99),
                    ms(p.p999),
                    ms(p.p9999),
                    ms(p.max)
                )),
                None => out.push_str(&format!("{name:<10} {:>10}   (not measured)\n", 0)),
            }
        }
        out
    }

    /// The JSON document (field names documented in loadgen/README.md).
    pub fn json(&self, parameters: &[(&str, Json)]) -> String {
        let latency = |histogram: &Histogram<u64>| match percentiles(histogram) {
            None => Json::Null,
            Some(p) => Json::Object(vec![
                ("count", Json::Int(p.count)),
                ("p50", Json::Int(p.p50)),
                ("p90", Json::Int(p.p90)),
                ("p99", Json::Int(p.p99)),
                ("p999", Json::Int(p.p999)),
                ("p9999", Json::Int(p.p9999)),
                ("max", Json::Int(p.max)),
            ]),
        };
        let errors_by_kind = self.stats.errors.iter().map(|(k, v)| (k.as_str(), Json::Int(*v))).collect::<Vec<_>>();
        let cpu = self.broker_cpu_use();
        let host = self.host_cpu_use();
        let float = |value: Option<f64>| value.map_or(Json::Null, Json::Float);
        let document = Json::Object(vec![
            ("format_version", Json::Int(1)),
            ("target", Json::Str(self.target.clone())),
            ("parameters", Json::Object(parameters.to_vec())),
            ("measured_sec", Json::Float(self.measured.as_secs_f64())),
            ("records", Json::Int(self.stats.window_records)),
            ("bytes", Json::Int(self.stats.window_bytes)),
            ("records_consumed", Json::Int(self.stats.consumed_window_records)),
            ("throughput_records_per_sec", Json::Float(self.records_per_sec())),
            ("throughput_bytes_per_sec", Json::Float(self.bytes_per_sec())),
            ("errors", Json::Int(self.stats.errors_total())),
            ("errors_by_kind", Json::Object(errors_by_kind)),
            ("latency_ack_us", latency(&self.stats.ack)),
            ("latency_e2e_us", latency(&self.stats.e2e)),
            ("broker_cpu_sec", float(cpu.map(|c| c.cpu_sec))),
            ("broker_cpu_wall_sec", float(cpu.map(|c| c.wall_sec))),
            ("broker_cores", float(cpu.and_then(|c| c.cores()))),
            ("broker_cpu_s_per_gb", float(cpu.and_then(|c| c.cpu_s_per_gb(self.stats.window_bytes)))),
            ("host_busy_cores", float(host.and_then(|h| h.busy_cores()))),
            ("loadgen_cores", float(host.and_then(|h| h.loadgen_cores()))),
            ("host_minus_loadgen_cores", float(host.and_then(|h| h.rest_cores()))),
            ("host_minus_loadgen_cpu_s_per_gb", float(host.and_then(|h| h.rest_cpu_s_per_gb(self.stats.window_bytes)))),
        ]);
        let mut out = String::new();
        document.write(&mut out, 0);
        out.push('\n');
        out
    }
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A minimal JSON value, enough for the report (no dependency for it).
#[derive(Clone, Debug)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Int(u64),
    Float(f64),
    Str(String),
    Object(Vec<(&'a str, Json<'a>)>),
}

impl Json<'_> {
    fn write(&self, out: &mut String, indent: usize) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => out.push_str(&i.to_string()),
            Json::Float(f) if f.is_finite() => out.push_str(&format!("{f:.3}")),
            Json::Float(_) => out.push_str("null"),
            Json::Str(s) => write_string(out, s),
            Json::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    out.push_str(&"  ".repeat(indent + 1));
                    write_string(out, key);
                    out.push_str(": ");
                    value.write(out, indent + 1);
                }
                if !fields.is_empty() {
                    out.push('\n');
                    out.push_str(&"  ".repeat(indent));
                }
                out.push('}');
            }
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_nests() {
        let mut out = String::new();
        Json::Object(vec![("a\"b", Json::Str("x\\y\n".into())), ("n", Json::Null), ("o", Json::Object(vec![]))])
            .write(&mut out, 0);
        assert_eq!(out, "{\n  \"a\\\"b\": \"x\\\\y\\n\",\n  \"n\": null,\n  \"o\": {}\n}");
    }

    fn summary(broker_cpu: Option<(u32, Result<CpuUse, String>)>) -> Summary {
        let mut stats = ThreadStats::new();
        stats.window_records = 1000;
        stats.window_bytes = 2_000_000_000;
        Summary {
            target: "broker x".into(),
            measured: Duration::from_secs(10),
            stats,
            record_size: "1024".into(),
            acks: -1,
            broker_cpu,
            host_cpu: None,
        }
    }

    const host_fields: [&str; 4] =
        ["host_busy_cores", "loadgen_cores", "host_minus_loadgen_cores", "host_minus_loadgen_cpu_s_per_gb"];

    #[test]
    fn host_cpu_in_the_json_and_the_table() {
        let none = summary(None);
        let json = none.json(&[]);
        for field in host_fields {
            assert!(json.contains(&format!("\"{field}\": null")), "{field} is null without --broker-pid: {json}");
        }
        assert!(!none.table().contains("host CPU"));

        let mut measured = summary(Some((42, Ok(CpuUse { cpu_sec: 1.5, wall_sec: 10.0 }))));
        measured.host_cpu = Some(Ok(HostUse { busy_sec: 16.5, loadgen_sec: 4.75, wall_sec: 10.0 }));
        let json = measured.json(&[]);
        let expected = [
            ("host_busy_cores", "1.650"),
            ("loadgen_cores", "0.475"),
            ("host_minus_loadgen_cores", "1.175"),
            ("host_minus_loadgen_cpu_s_per_gb", "5.875"),
        ];
        for (field, value) in expected {
            assert!(json.contains(&format!("\"{field}\": {value}")), "{field}: {json}");
        }
        let table = measured.table();
        assert!(
            table.contains(
                "host CPU      1.650 cores busy, load generator 0.475, the rest 1.175 cores = 5.875 CPU-s/GB\n"
            ),
            "{table}"
        );
        assert!(table.find("broker CPU") < table.find("host CPU"), "the host under the broker: {table}");

        measured.host_cpu = Some(Ok(HostUse { busy_sec: 0.5, loadgen_sec: 0.75, wall_sec: 10.0 }));
        assert!(measured.json(&[]).contains("\"host_minus_loadgen_cores\": 0.000"), "clamped to 0");
        let table = measured.table();
        assert!(table.contains("the rest 0.000 cores (clamped to 0 from -0.025 cores) = 0.000 CPU-s/GB"), "{table}");

        measured.host_cpu = Some(Err("cannot read /proc/stat".into()));
        let json = measured.json(&[]);
        for field in host_fields {
            assert!(json.contains(&format!("\"{field}\": null")), "{field}: {json}");
        }
        assert!(json.contains("\"broker_cores\": 0.150"), "the broker's figure stands: {json}");
        assert!(measured.table().contains("host CPU      n/a (cannot read /proc/stat)"));
    }

    #[test]
    fn broker_cpu_in_the_json_and_the_table() {
        let none = summary(None);
        let json = none.json(&[]);
        for field in ["broker_cpu_sec", "broker_cpu_wall_sec", "broker_cores", "broker_cpu_s_per_gb"] {
            assert!(json.contains(&format!("\"{field}\": null")), "{field} is null without --broker-pid: {json}");
        }
        assert!(!none.table().contains("broker CPU"));

        let measured = summary(Some((42, Ok(CpuUse { cpu_sec: 1.5, wall_sec: 10.0 }))));
        let json = measured.json(&[]);
        let expected = [
            ("broker_cpu_sec", "1.500"),
            ("broker_cpu_wall_sec", "10.000"),
            ("broker_cores", "0.150"),
            ("broker_cpu_s_per_gb", "0.750"),
        ];
        for (field, value) in expected {
            assert!(json.contains(&format!("\"{field}\": {value}")), "{field}: {json}");
        }
        let table = measured.table();
        assert!(
            table.contains("broker CPU    PID 42: 1.50 CPU-s in 10.000 s = 0.150 cores, 0.750 CPU-s/GB"),
            "{table}"
        );

        let failed = summary(Some((42, Err("cannot read /proc/42/stat".into()))));
        assert!(failed.json(&[]).contains("\"broker_cores\": null"));
        assert!(failed.table().contains("PID 42: n/a (cannot read /proc/42/stat)"));
    }

    #[test]
    fn timeline_is_bounded() {
        let mut timeline = Timeline::default();
        let second =
            |index| Second { index, phase: "run", acked_records: 1, consumed_records: 0, ack: None, e2e: None };
        for index in 1..=(timeline_seconds_max as u64 + 5) {
            timeline.push(second(index));
        }
        assert_eq!(timeline.seconds.len(), timeline_seconds_max);
        assert_eq!(timeline.dropped, 5);
        assert_eq!(timeline.seconds.last().map(|s| s.index), Some(timeline_seconds_max as u64));
    }

    #[test]
    fn e2e_goes_to_the_interval_and_the_total() {
        let mut stats = ThreadStats::new();
        stats.record_e2e(2_000_000);
        stats.record_ack(1_000_000, false);
        assert_eq!((stats.e2e.len(), stats.interval_e2e.len()), (1, 1));
        assert_eq!((stats.ack.len(), stats.interval_ack.len()), (0, 1), "warmup acks only in the interval");
    }

    #[test]
    fn latency_rounds_up_and_clamps() {
        let mut h = latency_histogram();
        record_ns(&mut h, 1);
        record_ns(&mut h, 1500);
        record_ns(&mut h, u64::MAX);
        assert_eq!(h.min(), 1);
        assert_eq!(h.len(), 3);
        assert!(h.max() >= latency_us_max - latency_us_max / 1000);
    }
}
