//! Command-line flags. Every value is checked here, so a bad flag is a clap
//! error that names it, before any connection is made.

use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::keys::{parse_keys, KeySpec};
use crate::limits::{
    batch_bytes_max, connections_max, group_prefix_bytes_max, groups_max, idempotent_in_flight_max, key_bytes_max,
    partitions_max, pid_max, produce_requests_in_flight_max, record_bytes_max, record_bytes_min,
};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ringstream-loadgen",
    version,
    about = "Load generator for Kafka-compatible brokers (thread-per-core, open-loop latency)"
)]
pub struct Args {
    /// Bootstrap broker, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic to produce to and consume from; created if missing.
    #[arg(long, default_value = "loadgen")]
    pub topic: String,
    /// Partitions when the topic is created (an existing topic keeps its own count).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..=partitions_max as i64))]
    pub partitions: i32,
    /// Bytes per record value: a fixed size (1024) or a uniform range
    /// (100..2000); at least 8 (the first 8 carry the send timestamp).
    #[arg(long = "record-size", default_value = "1024", value_parser = parse_record_size)]
    pub record_sizes: RecordSize,
    /// Record keys: none, uniform:N or zipf:N[:S] (S defaults to 0.99).
    /// Keyed records go to murmur2(key) % partitions, as Kafka's default partitioner.
    #[arg(long, default_value = "none", value_parser = parse_keys)]
    pub keys: KeySpec,
    /// Batch compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Idempotent producers: InitProducerId per connection, producer id,
    /// epoch and sequences in every batch (needs --acks all, --in-flight at most 5).
    #[arg(long)]
    pub idempotence: bool,
    /// Total records over all producers (split among them); a producer stops
    /// after its share. The run ends when they are acknowledged and consumed,
    /// or at the end of --duration, whichever is first.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Consumer groups (classic protocol, range assignor); 0 = assign() consumers.
    /// With groups, --consumers is the number of members per group.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=groups_max as i64))]
    pub groups: u32,
    /// Group names are <prefix>-0, <prefix>-1, ...; default loadgen-<pid>-<unix seconds>.
    #[arg(long)]
    pub group_prefix: Option<String>,
    /// Producer acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: i16,
    /// Producer connections (each writes every partition, round robin).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=connections_max as i64))]
    pub producers: u32,
    /// Consumer connections (assign() semantics: partitions split among them, from the current end).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=connections_max as i64))]
    pub consumers: u32,
    /// Target records per second over all producers, open loop; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Measured time, e.g. 15s, 500ms, 2m.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before measuring starts (not counted), e.g. 2s; 0 for none.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// A partition's batch is closed at this many bytes.
    #[arg(long, default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(64..=batch_bytes_max as i64))]
    pub batch_bytes: u32,
    /// A partition's open batch is sent at most this long after its first record, e.g. 5ms; 0 = at once.
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    pub linger: Duration,
    /// Produce requests in flight per producer connection.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=produce_requests_in_flight_max as i64))]
    pub in_flight: u32,
    /// Executor threads (one glommio LocalExecutor each); default: one per CPU, at most one per connection.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Write an SVG with latency over time and the percentile spectrum to this file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Run against a built-in baseline instead of --brokers.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Seconds to wait for a connection (and for the bootstrap requests).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// The broker's PID (any process: ours or a peer). Its CPU time (all
    /// threads, /proc/PID/stat) over the measured window gives broker cores
    /// used and broker CPU-seconds per GB produced.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=pid_max as i64))]
    pub broker_pid: Option<u32>,
}

/// Record value sizes: `min..=max` bytes, uniform (min == max: fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSize {
    pub min: u32,
    pub max: u32,
}

impl RecordSize {
    /// The mean size, shown where one size is expected.
    pub fn nominal(&self) -> u32 {
        self.min + (self.max - self.min) / 2
    }
}

impl std::fmt::Display for RecordSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

/// Batch compression codec; the value is the RecordBatch attributes bits 0-2.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    pub fn label(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// An in-process TCP sink on 127.0.0.1: reads length-prefixed frames,
    /// answers each with a fixed 8-byte reply; no parsing, no storage.
    RawTcp,
}

impl Args {
    /// The group name prefix: `--group-prefix`, or one unique to this run so
    /// that new groups start at the log end.
    /// The default is made once per process, so every caller sees the same.
    pub fn group_prefix(&self) -> String {
        static default_prefix: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        self.group_prefix.clone().unwrap_or_else(|| {
            default_prefix
                .get_or_init(|| {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                    format!("loadgen-{}-{}", std::process::id(), now.map_or(0, |d| d.as_secs()))
                })
                .clone()
        })
    }

    /// Checks that need more than one flag. Returns a message naming the flags.
    pub fn check(&self) -> Result<(), String> {
        if self.producers == 0 && self.consumers == 0 {
            return Err("nothing to run: --producers and --consumers are both 0".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be more than 0".into());
        }
        if self.baseline.is_some() && self.consumers > 0 {
            return Err("--baseline raw-tcp stores nothing, so it has nothing to consume: use --consumers 0".into());
        }
        if self.baseline.is_some() && self.producers == 0 {
            return Err("--baseline raw-tcp needs --producers 1 or more".into());
        }
        if self.baseline.is_some() && self.acks == 0 {
            return Err(
                "--baseline raw-tcp answers every request, which acks=0 would not read: use --acks 1 or all".into()
            );
        }
        if self.connect_timeout.is_zero() {
            return Err("--connect-timeout must be more than 0".into());
        }
        let key_bytes = if self.keys == KeySpec::None { 0 } else { key_bytes_max as u64 };
        let record_bytes = u64::from(self.record_sizes.max) + key_bytes + 64;
        if record_bytes > u64::from(self.batch_bytes) {
            return Err(format!(
                "--batch-bytes {} cannot hold one record of --record-size {}{} (needs {record_bytes} bytes with its framing)",
                self.batch_bytes,
                self.record_sizes,
                if key_bytes > 0 { " with a key" } else { "" },
            ));
        }
        if self.idempotence {
            if self.in_flight as usize > idempotent_in_flight_max {
                return Err(format!(
                    "--idempotence allows at most --in-flight {idempotent_in_flight_max} (brokers track 5 batches per partition), not {}",
                    self.in_flight
                ));
            }
            if self.acks != -1 {
                return Err("--idempotence needs --acks all".into());
            }
            if self.baseline.is_some() {
                return Err("--baseline raw-tcp cannot answer InitProducerId: drop --idempotence".into());
            }
        }
        if self.messages.is_some() && self.producers == 0 {
            return Err("--messages needs --producers 1 or more".into());
        }
        if self.groups > 0 && self.consumers == 0 {
            return Err("--groups needs --consumers 1 or more (members per group)".into());
        }
        if u64::from(self.groups) * u64::from(self.consumers) > connections_max as u64 {
            return Err(format!(
                "--groups {} with --consumers {} is {} members, more than {connections_max}",
                self.groups,
                self.consumers,
                u64::from(self.groups) * u64::from(self.consumers)
            ));
        }
        if let Some(prefix) = &self.group_prefix {
            if self.groups == 0 {
                return Err("--group-prefix needs --groups 1 or more".into());
            }
            if prefix.is_empty() || prefix.len() > group_prefix_bytes_max {
                return Err(format!("--group-prefix must be 1 to {group_prefix_bytes_max} bytes"));
            }
        }
        Ok(())
    }

    pub fn acks_label(&self) -> &'static str {
        match self.acks {
            0 => "0",
            1 => "1",
            _ => "all",
        }
    }
}

/// `1024` (fixed) or `100..2000` (uniform, both ends included).
pub fn parse_record_size(text: &str) -> Result<RecordSize, String> {
    let number = |part: &str| -> Result<u32, String> {
        let value: u64 =
            part.trim().parse().map_err(|_| format!("{text:?} is not a size like 1024 or a range like 100..2000"))?;
        if value < record_bytes_min as u64 || value > record_bytes_max as u64 {
            return Err(format!("{text:?}: sizes must be {record_bytes_min} to {record_bytes_max} bytes"));
        }
        Ok(value as u32)
    };
    let (min, max) = match text.split_once("..") {
        Some((low, high)) => (number(low)?, number(high)?),
        None => {
            let size = number(text)?;
            (size, size)
        }
    };
    if min > max {
        return Err(format!("{text:?}: the range's low end is above its high end"));
    }
    Ok(RecordSize { min, max })
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("{text:?} is not 0, 1 or all")),
    }
}

/// `15s`, `500ms`, `2m`, `1.5s`, `250us`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 15s, 500ms or 2m"))?;
    let seconds_per_unit = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use us, ms, s, m or h)")),
    };
    let seconds = value * seconds_per_unit;
    if !(0.0..=7.0 * 24.0 * 3600.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range (0 to 7 days)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1e9s").is_err());
    }

    #[test]
    fn record_sizes() {
        assert_eq!(parse_record_size("1024").unwrap(), RecordSize { min: 1024, max: 1024 });
        assert_eq!(parse_record_size("100..2000").unwrap(), RecordSize { min: 100, max: 2000 });
        assert_eq!(parse_record_size("8..8").unwrap().nominal(), 8);
        assert_eq!(parse_record_size("100..2000").unwrap().nominal(), 1050);
        assert_eq!(parse_record_size("100..2000").unwrap().to_string(), "100..2000");
        for bad in ["4", "7..100", "100..50", "10..", "..10", "x", "1..2..3", "2000000"] {
            assert!(parse_record_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flag_combinations() {
        let parse =
            |words: &[&str]| Args::try_parse_from(std::iter::once("loadgen").chain(words.iter().copied())).unwrap();
        let args = parse(&["--record-size", "100..300"]);
        assert_eq!(args.record_sizes.nominal(), 200);
        assert!(args.check().is_ok());
        assert!(parse(&["--idempotence", "--in-flight", "6"]).check().unwrap_err().contains("--in-flight"));
        assert!(parse(&["--idempotence", "--acks", "1"]).check().unwrap_err().contains("--acks all"));
        assert!(parse(&["--idempotence", "--in-flight", "5"]).check().is_ok());
        assert!(parse(&["--groups", "2"]).check().unwrap_err().contains("--consumers"));
        assert!(parse(&["--groups", "2", "--consumers", "600"]).check().unwrap_err().contains("members"));
        assert!(parse(&["--group-prefix", "x"]).check().unwrap_err().contains("--groups"));
        assert!(parse(&["--messages", "10", "--producers", "0", "--consumers", "1"])
            .check()
            .unwrap_err()
            .contains("--messages"));
        assert!(Args::try_parse_from(["loadgen", "--messages", "0"]).is_err());
        assert!(Args::try_parse_from(["loadgen", "--compression", "brotli"]).is_err());
        assert!(parse(&["--compression", "zstd", "--keys", "zipf:1000:1.1"]).check().is_ok());
    }

    #[test]
    fn broker_pid() {
        let parse = |words: &[&str]| Args::try_parse_from(std::iter::once("loadgen").chain(words.iter().copied()));
        assert_eq!(parse(&[]).unwrap().broker_pid, None);
        assert_eq!(parse(&["--broker-pid", "4242"]).unwrap().broker_pid, Some(4242));
        assert_eq!(
            parse(&["--broker-pid", "4242", "--baseline", "raw-tcp"]).unwrap().broker_pid,
            Some(4242),
            "any process may be measured"
        );
        for bad in ["0", "-1", "auto", "", "12x", "4194305", "99999999999"] {
            let error = parse(&[&format!("--broker-pid={bad}")]).unwrap_err().to_string();
            assert!(error.contains("--broker-pid"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn acks() {
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert_eq!(parse_acks("0").unwrap(), 0);
        assert!(parse_acks("2").is_err());
    }
}
