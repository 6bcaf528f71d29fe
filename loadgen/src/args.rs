//! Command-line flags. Every value is checked here, so a bad flag is a clap
//! error that names it, before any connection is made.

use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::limits::{
    batch_bytes_max, connections_max, partitions_max, produce_requests_in_flight_max, record_bytes_max,
    record_bytes_min,
};

#[derive(Parser, Debug, Clone)]
#[command(name = "ringstream-loadgen", version, about = "Load generator for Kafka-compatible brokers (thread-per-core, open-loop latency)")]
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
    /// Bytes per record value (at least 8: the first 8 carry the send timestamp).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(record_bytes_min as i64..=record_bytes_max as i64))]
    pub record_size: u32,
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
    /// Run against a built-in baseline instead of --brokers.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Seconds to wait for a connection (and for the bootstrap requests).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// An in-process TCP sink on 127.0.0.1: reads length-prefixed frames,
    /// answers each with a fixed 8-byte reply; no parsing, no storage.
    RawTcp,
}

impl Args {
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
            return Err("--baseline raw-tcp answers every request, which acks=0 would not read: use --acks 1 or all".into());
        }
        if self.connect_timeout.is_zero() {
            return Err("--connect-timeout must be more than 0".into());
        }
        if u64::from(self.record_size) + 64 > u64::from(self.batch_bytes) {
            return Err(format!(
                "--batch-bytes {} cannot hold one record of --record-size {} (needs {} bytes with its framing)",
                self.batch_bytes,
                self.record_size,
                u64::from(self.record_size) + 64
            ));
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
    fn acks() {
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert_eq!(parse_acks("0").unwrap(), 0);
        assert!(parse_acks("2").is_err());
    }
}
