//! Tuning profiles: the broker settings the probes recommend, as a small
//! TOML file that `ringstream serve --profile FILE` loads.
//!
//! A profile has exactly seven values (see `KEYS`), an optional
//! `generated_by` line and an informational `[probe]` table of what was
//! measured. Parsing is strict: an unknown key, a wrong type or a value out
//! of range is an error that names the key, because a typo silently ignored
//! would leave the broker untuned without anyone noticing. Writing then
//! parsing gives back an equal `Profile` (comments are not part of it).
//!
//! `derive` turns probe results into a profile; each rule is one small
//! function below, documented with its reason, and pure, so tests feed it
//! synthetic measurements.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::disk::{DiskProbe, Op};
use crate::system::{Core, SystemProbe};
use crate::{format_cpu_list, parse_cpu_list};

// Bounds. They mirror `ringstream_core::limits` (this crate cannot depend on the
// broker); the broker asserts at compile time that they are equal.
/// `limits::shards_max`
pub const shards_max: usize = 1024;
/// `limits::io_alignment`: the smallest write round.
pub const write_buffer_bytes_min: u64 = 4096;
/// `limits::commit_round_bytes_max`
pub const write_buffer_bytes_max: u64 = 16 * 1024 * 1024;
/// `limits::io_depth_max`
pub const io_depth_max: u64 = 1024;
/// `log.flush.interval.ms` ceiling (as `FlushPolicy` parsing has it).
pub const flush_interval_ms_max: u64 = 3_600_000;
/// `limits::batch_cache_bytes_max`
pub const batch_cache_bytes_max: u64 = 64 * 1024 * 1024 * 1024;
/// `limits::spin_before_park_us_max`
pub const spin_before_park_us_max: u64 = 10_000;

/// Derivation bounds that are policy, not limits.
/// The write round is never derived below this: smaller rounds pay one
/// fdatasync per few blocks.
pub const derived_write_buffer_bytes_min: u64 = 64 * 1024;
/// The batch cache is never derived below this per shard.
pub const derived_batch_cache_bytes_min: u64 = 16 * 1024 * 1024;
/// Nor above this (the broker's default, `limits::batch_cache_bytes_default`):
/// a bigger cache keeps write buffers alive longer, so new ones are fresh
/// memory and every page of them faults on first touch. Measured on the dev
/// VM (BENCHMARKS.md, profile ablation): S1 at 3 GiB per shard ran 0.84x the
/// default broker, and 0.92x with only the cache put back to 256 MiB.
pub const derived_batch_cache_bytes_max: u64 = 256 * 1024 * 1024;
/// The tuned profile spins at least this long: it aims at peak throughput,
/// where a shard that parks between fdatasync completions pays a wake-up
/// per round. (The broker's default is 0, park at once: no CPU for idle or
/// light load.)
pub const derived_spin_before_park_us_min: u64 = 50;
/// "Close enough to the peak": 90%.
pub const saturation_percent: u64 = 90;
/// A full write round spends at most this share of its time in fdatasync.
pub const sync_share_percent_max: u64 = 10;

/// The profile's keys, in the order they are written.
pub const KEYS: [&str; 7] = [
    "shards",
    "cpus",
    "write_buffer_bytes",
    "io_depth",
    "flush_interval_ms",
    "batch_cache_bytes",
    "spin_before_park_us",
];

/// A tuning profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Number of shards; always `cpus.len()`.
    pub shards: usize,
    /// The CPUs the shards run on, one shard each, ascending.
    pub cpus: Vec<usize>,
    /// `shard.write.buffer.bytes`: bytes one group-commit round writes per partition.
    pub write_buffer_bytes: u64,
    /// `shard.io.depth`: DMA writes and fdatasyncs in flight per shard.
    pub io_depth: u64,
    /// 0: fdatasync before every acknowledgement (`log.flush.policy=always`);
    /// n > 0: `log.flush.interval.ms=n`.
    pub flush_interval_ms: u64,
    /// `batch.cache.bytes`, per shard.
    pub batch_cache_bytes: u64,
    /// `shard.spin.before.park.us`
    pub spin_before_park_us: u64,
    /// Who wrote the profile (informational).
    pub generated_by: Option<String>,
    /// What the probes measured (informational; never applied).
    pub probe: BTreeMap<String, ProbeValue>,
}

/// A value of the `[probe]` table.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeValue {
    Integer(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

/// Why a profile cannot be read. Every variant names the offending key.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error("profile is not valid TOML: {0}")]
    Syntax(String),
    #[error("profile key {key:?} is unknown (known keys: {known})")]
    Unknown { key: String, known: String },
    #[error("profile key {key:?} is missing")]
    Missing { key: String },
    #[error("profile key {key:?} must be {expected}, got {got}")]
    Type { key: String, expected: &'static str, got: String },
    #[error("profile key {key:?} is {value}, outside [{min}, {max}]")]
    Range { key: String, value: i64, min: u64, max: u64 },
    #[error("profile key {key:?}: {message}")]
    Invalid { key: String, message: String },
}

impl Profile {
    /// Checks every value against its bounds (the same checks `parse` does).
    pub fn validate(&self) -> Result<(), ProfileError> {
        let range = |key: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ProfileError::Range { key: key.to_owned(), value: value.min(i64::MAX as u64) as i64, min, max })
            }
        };
        range("shards", self.shards as u64, 1, shards_max as u64)?;
        if self.cpus.is_empty() || !self.cpus.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err(ProfileError::Invalid {
                key: "cpus".into(),
                message: format!("must list at least one CPU, ascending, each once; got {:?}", self.cpus),
            });
        }
        if self.cpus.len() != self.shards {
            return Err(ProfileError::Invalid {
                key: "shards".into(),
                message: format!(
                    "is {} but cpus {:?} lists {} CPU(s): one shard runs on each CPU",
                    self.shards,
                    format_cpu_list(&self.cpus),
                    self.cpus.len()
                ),
            });
        }
        range("write_buffer_bytes", self.write_buffer_bytes, write_buffer_bytes_min, write_buffer_bytes_max)?;
        range("io_depth", self.io_depth, 1, io_depth_max)?;
        range("flush_interval_ms", self.flush_interval_ms, 0, flush_interval_ms_max)?;
        range("batch_cache_bytes", self.batch_cache_bytes, 0, batch_cache_bytes_max)?;
        range("spin_before_park_us", self.spin_before_park_us, 0, spin_before_park_us_max)?;
        Ok(())
    }

    /// The value of `key` as the profile file writes it.
    pub fn value_text(&self, key: &str) -> String {
        match key {
            "shards" => self.shards.to_string(),
            "cpus" => format!("\"{}\"", format_cpu_list(&self.cpus)),
            "write_buffer_bytes" => self.write_buffer_bytes.to_string(),
            "io_depth" => self.io_depth.to_string(),
            "flush_interval_ms" => self.flush_interval_ms.to_string(),
            "batch_cache_bytes" => self.batch_cache_bytes.to_string(),
            "spin_before_park_us" => self.spin_before_park_us.to_string(),
            _ => panic!("unknown profile key {key:?}"),
        }
    }

    /// The profile as TOML, each key preceded by what it sets and, when
    /// `reasons` has one for it, why it has this value.
    pub fn to_toml(&self, reasons: &BTreeMap<&'static str, String>) -> String {
        self.validate().expect("writing an invalid profile");
        let mut out = String::new();
        out.push_str("# Ringstream tuning profile: `ringstream serve --profile FILE`.\n");
        out.push_str("# Later sources override it: --config FILE, then --set NAME=VALUE.\n");
        if let Some(by) = &self.generated_by {
            let _ = writeln!(out, "generated_by = {}", toml_string(by));
        }
        for key in KEYS {
            out.push('\n');
            let _ = writeln!(out, "# {}", describe(key));
            if let Some(reason) = reasons.get(key) {
                let _ = writeln!(out, "# derived: {reason}");
            }
            let _ = writeln!(out, "{key} = {}", self.value_text(key));
        }
        if !self.probe.is_empty() {
            out.push_str("\n# What the probes measured (informational, never applied).\n[probe]\n");
            for (key, value) in &self.probe {
                assert!(is_bare_key(key), "probe key {key:?}");
                let text = match value {
                    ProbeValue::Integer(v) => v.to_string(),
                    ProbeValue::Float(v) => {
                        assert!(v.is_finite(), "probe value {key} = {v}");
                        format!("{v:?}") // Debug keeps ".0": the value reads back as a float
                    }
                    ProbeValue::Text(v) => toml_string(v),
                    ProbeValue::Bool(v) => v.to_string(),
                };
                let _ = writeln!(out, "{key} = {text}");
            }
        }
        out
    }

    /// Parses a profile; strict (see the module docs).
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ProfileError::Syntax(e.to_string()))?;
        let known = || {
            let mut all: Vec<&str> = KEYS.to_vec();
            all.extend(["generated_by", "probe"]);
            all.join(", ")
        };
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) && key != "generated_by" && key != "probe" {
                return Err(ProfileError::Unknown { key: key.clone(), known: known() });
            }
        }
        let integer = |key: &str, min: u64, max: u64| -> Result<u64, ProfileError> {
            let value = table.get(key).ok_or_else(|| ProfileError::Missing { key: key.to_owned() })?;
            let toml::Value::Integer(value) = value else {
                return Err(ProfileError::Type { key: key.to_owned(), expected: "an integer", got: type_name(value) });
            };
            match u64::try_from(*value) {
                Ok(unsigned) if (min..=max).contains(&unsigned) => Ok(unsigned),
                _ => Err(ProfileError::Range { key: key.to_owned(), value: *value, min, max }),
            }
        };
        let shards = integer("shards", 1, shards_max as u64)? as usize;
        let cpus = match table.get("cpus") {
            None => return Err(ProfileError::Missing { key: "cpus".into() }),
            Some(toml::Value::String(text)) => {
                parse_cpu_list(text).map_err(|message| ProfileError::Invalid { key: "cpus".into(), message })?
            }
            Some(other) => {
                return Err(ProfileError::Type {
                    key: "cpus".into(),
                    expected: "a cpulist string like \"0-3,6\"",
                    got: type_name(other),
                })
            }
        };
        let generated_by = match table.get("generated_by") {
            None => None,
            Some(toml::Value::String(text)) => Some(text.clone()),
            Some(other) => {
                return Err(ProfileError::Type {
                    key: "generated_by".into(),
                    expected: "a string",
                    got: type_name(other),
                })
            }
        };
        let probe = match table.get("probe") {
            None => BTreeMap::new(),
            Some(toml::Value::Table(probe)) => parse_probe(probe)?,
            Some(other) => {
                return Err(ProfileError::Type { key: "probe".into(), expected: "a table", got: type_name(other) })
            }
        };
        let profile = Profile {
            shards,
            cpus,
            write_buffer_bytes: integer("write_buffer_bytes", write_buffer_bytes_min, write_buffer_bytes_max)?,
            io_depth: integer("io_depth", 1, io_depth_max)?,
            flush_interval_ms: integer("flush_interval_ms", 0, flush_interval_ms_max)?,
            batch_cache_bytes: integer("batch_cache_bytes", 0, batch_cache_bytes_max)?,
            spin_before_park_us: integer("spin_before_park_us", 0, spin_before_park_us_max)?,
            generated_by,
            probe,
        };
        profile.validate()?;
        Ok(profile)
    }
}

fn parse_probe(table: &toml::Table) -> Result<BTreeMap<String, ProbeValue>, ProfileError> {
    let mut probe = BTreeMap::new();
    for (key, value) in table {
        let value = match value {
            toml::Value::Integer(v) => ProbeValue::Integer(*v),
            toml::Value::Float(v) => ProbeValue::Float(*v),
            toml::Value::String(v) => ProbeValue::Text(v.clone()),
            toml::Value::Boolean(v) => ProbeValue::Bool(*v),
            other => {
                return Err(ProfileError::Type {
                    key: format!("probe.{key}"),
                    expected: "an integer, float, string or boolean",
                    got: type_name(other),
                })
            }
        };
        probe.insert(key.clone(), value);
    }
    Ok(probe)
}

fn type_name(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the float {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(d) => format!("the datetime {d}"),
        toml::Value::Array(_) => "an array".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

fn is_bare_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One line on what a key sets in the broker.
pub fn describe(key: &str) -> &'static str {
    match key {
        "shards" => "Shards (one executor each, pinned to one CPU of `cpus`).",
        "cpus" => "CPUs of the shards (`shard.cpus`), one shard per CPU.",
        "write_buffer_bytes" => "Bytes one group-commit round writes per partition (`shard.write.buffer.bytes`).",
        "io_depth" => "DMA writes and fdatasyncs in flight per shard (`shard.io.depth`).",
        "flush_interval_ms" => {
            "0: fdatasync before every ack (`log.flush.policy=always`); n: `log.flush.interval.ms=n`."
        }
        "batch_cache_bytes" => "Per-shard cache of recently written batches (`batch.cache.bytes`).",
        "spin_before_park_us" => "How long an idle shard spins before it parks (`shard.spin.before.park.us`).",
        _ => panic!("unknown profile key {key:?}"),
    }
}

/// A derived profile and, per key, the reason for its value.
#[derive(Clone, Debug)]
pub struct Derivation {
    pub profile: Profile,
    pub reasons: BTreeMap<&'static str, String>,
}

/// Derives a profile from the probes. Each rule is one function below.
pub fn derive(system: &SystemProbe, disk: &DiskProbe) -> Derivation {
    let mut reasons = BTreeMap::new();
    let (cpus, why) = choose_cpus(&system.allowed_cores());
    reasons.insert("cpus", why);
    let shards = cpus.len();
    reasons.insert("shards", format!("one shard per chosen CPU: {shards}"));
    let (write_buffer_bytes, why) = choose_write_buffer_bytes(disk);
    reasons.insert("write_buffer_bytes", why);
    let (io_depth, why) = choose_io_depth(disk);
    reasons.insert("io_depth", why);
    reasons.insert(
        "flush_interval_ms",
        "0 always: durability is a policy choice, never traded away by the tuner".to_owned(),
    );
    let (batch_cache_bytes, why) = choose_batch_cache_bytes(system.memory_bytes, shards);
    reasons.insert("batch_cache_bytes", why);
    let (spin_before_park_us, why) = choose_spin_before_park_us(disk.sync_latency_us(0.50));
    reasons.insert("spin_before_park_us", why);
    let profile = Profile {
        shards,
        cpus,
        write_buffer_bytes,
        io_depth,
        flush_interval_ms: 0,
        batch_cache_bytes,
        spin_before_park_us,
        generated_by: Some(format!("ringstream tune {}", env!("CARGO_PKG_VERSION"))),
        probe: probe_table(system, disk),
    };
    profile.validate().expect("derived profile within bounds");
    Derivation { profile, reasons }
}

/// One shard per physical core, on the core's first allowed CPU: SMT
/// siblings share a core's execution units and caches, so a second shard on
/// a sibling adds little and slows the first. With fewer than two physical
/// cores available, every allowed CPU gets a shard (siblings included):
/// leaving a hyperthread idle would then waste half the machine.
pub fn choose_cpus(allowed_cores: &[Core]) -> (Vec<usize>, String) {
    assert!(!allowed_cores.is_empty() && allowed_cores.iter().all(|core| !core.is_empty()));
    let (mut cpus, why): (Vec<usize>, String) = if allowed_cores.len() >= 2 {
        let firsts = allowed_cores.iter().map(|core| core[0]).collect();
        let smt = allowed_cores.iter().any(|core| core.len() > 1);
        let note = if smt { ", SMT siblings left free" } else { "" };
        (firsts, format!("one per physical core ({} cores{note})", allowed_cores.len()))
    } else {
        (allowed_cores[0].clone(), "fewer than two physical cores: every allowed CPU".to_owned())
    };
    cpus.sort_unstable();
    cpus.truncate(shards_max);
    assert!(!cpus.is_empty());
    (cpus, why)
}

/// Best write bandwidth at `block` over all queue depths.
fn write_peak_at(disk: &DiskProbe, block: usize) -> f64 {
    disk.cells
        .iter()
        .filter(|c| c.op == Op::Write && c.block_bytes == block)
        .map(|c| c.bytes_per_second())
        .fold(0.0, f64::max)
}

/// The write round must reach the device's bandwidth and amortize the
/// fdatasync that follows it. So: the larger of (a) the smallest block size
/// whose write bandwidth is within 90% of the peak, and (b) the bytes that
/// keep the median fdatasync to at most 10% of a full round's time, i.e.
/// 9 x (peak bandwidth x fdatasync p50). Rounded up to a power of two,
/// clamped to [64 KiB, 16 MiB = commit_round_bytes_max]. Smaller rounds cut
/// a backlog into more rounds (the first batches are acknowledged sooner)
/// but pay one fdatasync each; (b) bounds what that costs in bandwidth.
pub fn choose_write_buffer_bytes(disk: &DiskProbe) -> (u64, String) {
    let blocks = disk.block_sizes();
    assert!(!blocks.is_empty(), "no write cells");
    let peak = blocks.iter().map(|&b| write_peak_at(disk, b)).fold(0.0, f64::max);
    let saturating = blocks
        .iter()
        .copied()
        .find(|&b| write_peak_at(disk, b) * 100.0 >= peak * saturation_percent as f64)
        .unwrap_or(blocks[blocks.len() - 1]) as u64;
    let p50_us = disk.sync_latency_us(0.50);
    let sync_bytes = peak * p50_us as f64 / 1e6;
    let amortizing = (sync_bytes * (100 - sync_share_percent_max) as f64 / sync_share_percent_max as f64) as u64;
    let wanted = saturating.max(amortizing).max(1).next_power_of_two();
    let value = wanted.clamp(derived_write_buffer_bytes_min, write_buffer_bytes_max);
    let why = format!(
        "max(saturating block {}, 9 x peak {:.0} MB/s x fdatasync p50 {p50_us} us = {amortizing} bytes), \
         power of two, in [64 KiB, 16 MiB]",
        crate::disk::format_bytes(saturating),
        peak / 1e6,
    );
    (value, why)
}

/// Per block size, the smallest queue depth whose write bandwidth reaches
/// 90% of that block size's peak; the largest of these, so that even the
/// block size that needs the most concurrency (small writes, typical of
/// many partitions each committing a little) gets it. In [1, io_depth_max].
pub fn choose_io_depth(disk: &DiskProbe) -> (u64, String) {
    let mut depth = 1u64;
    let mut parts = Vec::new();
    for block in disk.block_sizes() {
        let peak = write_peak_at(disk, block);
        let reaching = disk
            .queue_depths()
            .into_iter()
            .find(|&qd| {
                disk.cell(Op::Write, block, qd)
                    .is_some_and(|c| c.bytes_per_second() * 100.0 >= peak * saturation_percent as f64)
            })
            .unwrap_or(1) as u64;
        parts.push(format!("{} QD{reaching}", crate::disk::format_bytes(block as u64)));
        depth = depth.max(reaching);
    }
    let value = depth.clamp(1, io_depth_max);
    (
        value,
        format!("smallest QD within 90% of the peak write bandwidth, largest over block sizes ({})", parts.join(", ")),
    )
}

/// A quarter of memory, split evenly among the shards, but no more than
/// `derived_batch_cache_bytes_max` (see there: a larger cache measured
/// slower). Segments are read with O_DIRECT, so the page cache does not
/// hold the hot tail: the batch cache is the only read cache, and the rest
/// of memory is left to the kernel, the connections and the DMA buffers.
/// Rounded down to a MiB, in [16 MiB, 256 MiB].
pub fn choose_batch_cache_bytes(memory_bytes: u64, shards: usize) -> (u64, String) {
    assert!(shards >= 1);
    let share = memory_bytes / 4 / shards as u64;
    let value = (share & !((1 << 20) - 1)).clamp(derived_batch_cache_bytes_min, derived_batch_cache_bytes_max);
    (value, format!("memory {} MiB / 4 / {shards} shard(s), in [16 MiB, 256 MiB]", memory_bytes >> 20))
}

/// The median fdatasync: under load, a shard's most common idle gap is the
/// wait for its round's fdatasync. Spinning through it keeps the executor
/// awake for the peer messages and requests that arrive meanwhile, instead
/// of paying the park/wake-up latency (milliseconds at p99, NOTES-glommio
/// #5). At least the default 50 us; at most spin_before_park_us_max.
pub fn choose_spin_before_park_us(sync_p50_us: u64) -> (u64, String) {
    let value = sync_p50_us.clamp(derived_spin_before_park_us_min, spin_before_park_us_max);
    (value, format!("fdatasync p50 {sync_p50_us} us, in [50, {spin_before_park_us_max}] us"))
}

/// The `[probe]` table: the measurements behind the derivation.
fn probe_table(system: &SystemProbe, disk: &DiskProbe) -> BTreeMap<String, ProbeValue> {
    let mut probe = BTreeMap::new();
    let mut put = |key: String, value: ProbeValue| {
        assert!(is_bare_key(&key));
        probe.insert(key, value);
    };
    for cell in &disk.cells {
        let mb_s = (cell.bytes_per_second() / 1e5).round() / 10.0;
        put(
            format!("{}_mb_s_{}_qd{}", cell.op.name(), block_key(cell.block_bytes), cell.queue_depth),
            ProbeValue::Float(mb_s),
        );
    }
    put("fdatasync_p50_us".into(), ProbeValue::Integer(disk.sync_latency_us(0.50) as i64));
    put("fdatasync_p99_us".into(), ProbeValue::Integer(disk.sync_latency_us(0.99) as i64));
    put("fdatasync_samples".into(), ProbeValue::Integer(disk.sync_latencies_us.len() as i64));
    let dir = disk.path.parent().unwrap_or(&disk.path);
    put("data_dir".into(), ProbeValue::Text(dir.display().to_string()));
    put("online_cpus".into(), ProbeValue::Text(format_cpu_list(&system.online)));
    put("allowed_cpus".into(), ProbeValue::Text(format_cpu_list(&system.allowed)));
    put("physical_cores".into(), ProbeValue::Integer(system.cores.len() as i64));
    put("smt".into(), ProbeValue::Bool(system.cores.iter().any(|core| core.len() > 1)));
    put("numa_nodes".into(), ProbeValue::Integer(system.numa_nodes.len() as i64));
    put("memory_bytes".into(), ProbeValue::Integer(system.memory_bytes.min(i64::MAX as u64) as i64));
    put("memlock_bytes".into(), ProbeValue::Text(system.memlock.to_string()));
    put("nofile".into(), ProbeValue::Text(system.nofile.to_string()));
    let uring = match &system.io_uring.setup {
        Ok(()) => "available".to_owned(),
        Err(e) => format!("unavailable: {e}"),
    };
    put("io_uring".into(), ProbeValue::Text(uring));
    probe
}

/// "4k", "64k", "1m": block sizes in probe keys.
fn block_key(bytes: usize) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{}m", bytes >> 20)
    } else {
        format!("{}k", bytes >> 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Cell;
    use crate::system::{IoUring, Limit};
    use std::path::PathBuf;
    use std::time::Duration;

    fn sample() -> Profile {
        let mut probe = BTreeMap::new();
        probe.insert("write_mb_s_4k_qd1".to_owned(), ProbeValue::Float(52.3));
        probe.insert("write_mb_s_1m_qd1".to_owned(), ProbeValue::Float(1000.0));
        probe.insert("fdatasync_p50_us".to_owned(), ProbeValue::Integer(1800));
        probe.insert("disk_path".to_owned(), ProbeValue::Text("/data/\"odd\" \\ dir".to_owned()));
        probe.insert("smt".to_owned(), ProbeValue::Bool(true));
        Profile {
            shards: 5,
            cpus: vec![0, 1, 2, 3, 6],
            write_buffer_bytes: 1 << 20,
            io_depth: 16,
            flush_interval_ms: 0,
            batch_cache_bytes: 512 << 20,
            spin_before_park_us: 1800,
            generated_by: Some("ringstream tune test".to_owned()),
            probe,
        }
    }

    #[test]
    fn profile_round_trips_exactly() {
        let profile = sample();
        let mut reasons = BTreeMap::new();
        reasons.insert("io_depth", "because".to_owned());
        let text = profile.to_toml(&reasons);
        assert!(text.contains("cpus = \"0-3,6\"\n"), "{text}");
        assert!(text.contains("# derived: because\nio_depth = 16\n"), "{text}");
        assert!(text.contains("write_mb_s_1m_qd1 = 1000.0\n"), "{text}");
        let parsed = Profile::parse(&text).unwrap();
        assert_eq!(parsed, profile);
        assert_eq!(parsed.to_toml(&reasons), text);
        // Without the informational parts, too.
        let bare = Profile { generated_by: None, probe: BTreeMap::new(), ..profile };
        assert_eq!(Profile::parse(&bare.to_toml(&BTreeMap::new())).unwrap(), bare);
    }

    fn with_line(key: &str, line: &str) -> String {
        let text = sample().to_toml(&BTreeMap::new());
        let mut out = String::new();
        for l in text.lines() {
            if l.starts_with(&format!("{key} = ")) {
                out.push_str(line);
            } else {
                out.push_str(l);
            }
            out.push('\n');
        }
        out
    }

    /// The checked-in example is a real `ringstream tune` output: it parses
    /// and writes back to the same values.
    #[test]
    fn example_profile_parses() {
        let profile = Profile::parse(include_str!("../profiles/example.toml")).unwrap();
        assert_eq!(profile.cpus, [0, 1]);
        assert_eq!(profile.flush_interval_ms, 0);
        assert!(matches!(profile.probe.get("fdatasync_p50_us"), Some(ProbeValue::Integer(_))));
        assert_eq!(Profile::parse(&profile.to_toml(&BTreeMap::new())).unwrap(), profile);
    }

    #[test]
    fn parse_rejects_bad_values_naming_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("io_depth", "io_depth = 0", "profile key \"io_depth\" is 0, outside [1, 1024]"),
            ("io_depth", "io_depth = 1025", "profile key \"io_depth\" is 1025, outside [1, 1024]"),
            ("io_depth", "io_depth = \"16\"", "profile key \"io_depth\" must be an integer, got the string \"16\""),
            (
                "write_buffer_bytes",
                "write_buffer_bytes = 33554432",
                "profile key \"write_buffer_bytes\" is 33554432, outside [4096, 16777216]",
            ),
            (
                "spin_before_park_us",
                "spin_before_park_us = 10001",
                "\"spin_before_park_us\" is 10001, outside [0, 10000]",
            ),
            ("batch_cache_bytes", "batch_cache_bytes = -1", "\"batch_cache_bytes\" is -1, outside [0, 68719476736]"),
            ("flush_interval_ms", "flush_interval_ms = 3600001", "\"flush_interval_ms\" is 3600001"),
            ("shards", "shards = 4", "profile key \"shards\": is 4 but cpus \"0-3,6\" lists 5 CPU(s)"),
            ("shards", "shards = 0", "profile key \"shards\" is 0, outside [1, 1024]"),
            ("cpus", "cpus = \"3-1\"", "profile key \"cpus\": "),
            ("cpus", "cpus = 3", "profile key \"cpus\" must be a cpulist string"),
            ("cpus", "cpus = \"\"", "profile key \"cpus\": "),
        ];
        for (key, line, expected) in cases {
            let error = Profile::parse(&with_line(key, line)).unwrap_err().to_string();
            assert!(error.contains(expected), "{line}: {error}");
        }
    }

    #[test]
    fn parse_rejects_unknown_and_missing_keys() {
        let text = sample().to_toml(&BTreeMap::new());
        let error = Profile::parse(&format!("io_dept = 3\n{text}")).unwrap_err();
        assert!(matches!(&error, ProfileError::Unknown { key, .. } if key == "io_dept"), "{error}");
        assert!(error.to_string().starts_with("profile key \"io_dept\" is unknown (known keys: shards, cpus,"));
        let missing = with_line("io_depth", "");
        assert_eq!(Profile::parse(&missing).unwrap_err(), ProfileError::Missing { key: "io_depth".into() });
        assert!(matches!(Profile::parse("shards = [").unwrap_err(), ProfileError::Syntax(_)));
        let nested = format!("{text}nested = [1, 2]\n");
        let error = Profile::parse(&nested).unwrap_err().to_string();
        assert!(error.contains("probe.nested"), "{error}");
    }

    fn cell(op: Op, block_bytes: usize, queue_depth: usize, mb_s: u64) -> Cell {
        Cell { op, block_bytes, queue_depth, bytes: mb_s * 1_000_000, elapsed: Duration::from_secs(1) }
    }

    /// An SSD-like disk: 4 KiB needs QD16 for 90% of its peak, 1 MiB
    /// saturates at QD4; 64 KiB reaches 950 of 1000 MB/s.
    fn ssd() -> DiskProbe {
        let table: &[(usize, [u64; 4])] =
            &[(4096, [40, 120, 300, 310]), (65536, [300, 800, 950, 950]), (1 << 20, [700, 990, 1000, 1000])];
        let mut cells = Vec::new();
        for (block, rates) in table {
            for (qd, rate) in [1, 4, 16, 32].into_iter().zip(rates) {
                cells.push(cell(Op::Write, *block, qd, *rate));
                cells.push(cell(Op::Read, *block, qd, rate * 2));
            }
        }
        DiskProbe { path: PathBuf::from("/data"), cells, sync_latencies_us: vec![200, 300, 400, 5000] }
    }

    fn system(cores: Vec<Core>, memory_bytes: u64) -> SystemProbe {
        let mut online: Vec<usize> = cores.iter().flatten().copied().collect();
        online.sort_unstable();
        SystemProbe {
            allowed: online.clone(),
            online,
            cores,
            numa_nodes: vec![],
            memory_bytes,
            memlock: Limit::Unlimited,
            nofile: Limit::Value(1 << 20),
            io_uring: IoUring { setup: Ok(()), disabled_sysctl: Some(0) },
        }
    }

    #[test]
    fn derivation_rules_on_synthetic_probes() {
        let machine = system(vec![vec![0, 4], vec![1, 5], vec![2, 6], vec![3, 7]], 32 << 30);
        let derived = derive(&machine, &ssd());
        let profile = &derived.profile;
        assert_eq!(profile.cpus, [0, 1, 2, 3], "one per physical core, no siblings");
        assert_eq!(profile.shards, 4);
        // 64 KiB reaches 95% of the peak; 9 x peak 1000 MB/s x p50 300 us =
        // 2.7 MB wants more: the next power of two is 4 MiB.
        assert_eq!(profile.write_buffer_bytes, 4 << 20);
        // 4 KiB: 90% of 310 = 279 first at QD16; 64 KiB: 855 at QD16; 1 MiB: QD4.
        assert_eq!(profile.io_depth, 16);
        assert_eq!(profile.flush_interval_ms, 0);
        assert_eq!(profile.batch_cache_bytes, 256 << 20, "32 GiB / 4 / 4 shards = 2 GiB, capped at 256 MiB");
        assert_eq!(profile.spin_before_park_us, 300, "fdatasync p50");
        assert_eq!(derived.reasons.len(), KEYS.len());
        assert!(profile.probe.contains_key("write_mb_s_4k_qd16"));
        let text = profile.to_toml(&derived.reasons);
        assert_eq!(Profile::parse(&text).unwrap(), *profile);
    }

    #[test]
    fn cpus_rule_uses_siblings_only_without_enough_cores() {
        assert_eq!(choose_cpus(&[vec![0, 1]]).0, [0, 1], "one core with SMT: both siblings");
        assert_eq!(choose_cpus(&[vec![0]]).0, [0]);
        assert_eq!(choose_cpus(&[vec![0], vec![1]]).0, [0, 1], "two cores, no SMT (this VM)");
        assert_eq!(choose_cpus(&[vec![2, 6], vec![3, 7]]).0, [2, 3]);
        assert_eq!(choose_cpus(&[vec![1, 3], vec![4]]).0, [1, 4]);
    }

    #[test]
    fn write_buffer_and_spin_rules_clamp() {
        // A slow disk with fast syncs: the saturating block wins, floored at 64 KiB.
        let mut disk = ssd();
        disk.cells.retain(|c| c.block_bytes == 4096);
        disk.sync_latencies_us = vec![10];
        assert_eq!(choose_write_buffer_bytes(&disk).0, 64 * 1024);
        // A fast disk with slow syncs: capped at commit_round_bytes_max.
        let mut disk = ssd();
        disk.sync_latencies_us = vec![100_000];
        assert_eq!(choose_write_buffer_bytes(&disk).0, 16 << 20);
        assert_eq!(choose_spin_before_park_us(0).0, 50);
        assert_eq!(choose_spin_before_park_us(2500).0, 2500);
        assert_eq!(choose_spin_before_park_us(50_000).0, spin_before_park_us_max);
    }

    #[test]
    fn io_depth_and_cache_rules() {
        let flat: Vec<Cell> = [1, 4, 16, 32].into_iter().map(|qd| cell(Op::Write, 1 << 20, qd, 500)).collect();
        let disk = DiskProbe { path: PathBuf::from("/d"), cells: flat, sync_latencies_us: vec![1000] };
        assert_eq!(choose_io_depth(&disk).0, 1, "saturated at QD1");
        assert_eq!(choose_batch_cache_bytes(1 << 30, 64).0, 16 << 20, "floored at 16 MiB");
        assert_eq!(choose_batch_cache_bytes(4 << 40, 1).0, 256 << 20, "capped at 256 MiB");
        assert_eq!(choose_batch_cache_bytes((512 << 20) + 12345, 1).0, 128 << 20, "a quarter, rounded to a MiB");
    }
}
