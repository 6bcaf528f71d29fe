//! `ringstream tune`: probe this machine, derive a tuning profile, check
//! the system settings that hurt a broker; and the glue that applies a
//! profile to `ringstream serve`.
//!
//! The probes, the profile format, the derivation rules and the checks live
//! in the `ringstream-tuning` crate (see tuning/README.md); this module only
//! parses the command line, prints, and maps profile keys onto broker
//! settings. A profile is applied through the same setting names as
//! `--set`, so every value is checked exactly as a hand-written one is.
//!
//! Precedence when serving: the profile, then command-line flags
//! (`--shards`, `--flush`, `--spin-before-park-us`), then `--config FILE`,
//! then `--set` (later wins). Each profile value is logged when applied, and
//! again when a later source overrides it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ringstream_tuning::check;
use ringstream_tuning::disk::{probe_disk, DiskProbeConfig};
use ringstream_tuning::profile::{self, Profile, KEYS};
use ringstream_tuning::system::SystemProbe;
use tracing::info;

use ringstream_broker::config::Settings;

#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// Data directory whose device is probed: a temporary file is written
    /// there (O_DIRECT) and deleted afterwards.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Write the profile to FILE (default: stdout; the report then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Short probe (well under 5 s): for tests and a first look. The default
    /// probe takes about 20-30 s and gives steadier figures.
    #[arg(long)]
    pub quick: bool,
    /// Check system settings instead of probing: print each setting that
    /// hurts with its current and recommended value and the command that
    /// fixes it. Exit status 0 when nothing hurts, 1 when something does.
    #[arg(long)]
    pub check: bool,
    /// With --check: apply the safe fixes (vm.swappiness, fs.aio-max-nr,
    /// net.core.somaxconn, transparent huge pages, CPU governor), print each
    /// change as old -> new, then check again (the exit status is the second
    /// check's). IRQ affinity, limits and io_uring policy are only reported.
    #[arg(long, requires = "check")]
    pub apply: bool,
    /// Read (and with --apply, write) system files below DIR instead of /.
    #[arg(long, hide = true, default_value = "/", value_name = "DIR")]
    pub sysroot: PathBuf,
}

/// Runs `ringstream tune`; returns the process exit status.
pub fn run(args: &TuneArgs) -> Result<i32, String> {
    if args.check {
        return run_check(args);
    }
    let mode = if args.quick { "quick" } else { "full" };
    let config = if args.quick { DiskProbeConfig::quick() } else { DiskProbeConfig::full() };
    let system = SystemProbe::run(&args.sysroot).map_err(|e| format!("system probe: {e}"))?;
    let mut report = String::new();
    report.push_str(&system.render());
    let disk =
        probe_disk(&args.data_dir, &config).map_err(|e| format!("disk probe in {}: {e}", args.data_dir.display()))?;
    report.push_str(&disk.render());
    let derivation = profile::derive(&system, &disk);
    let mut profile = derivation.profile;
    profile.probe.insert("mode".to_owned(), profile::ProbeValue::Text(mode.to_owned()));
    report.push_str("profile:\n");
    for key in KEYS {
        let reason = derivation.reasons.get(key).map_or("", String::as_str);
        report.push_str(&format!("  {key} = {}  ({reason})\n", display_value(&profile, key)));
    }
    let text = profile.to_toml(&derivation.reasons);
    // The file we write must be one `serve --profile` accepts.
    assert_eq!(Profile::parse(&text).as_ref(), Ok(&profile), "written profile does not read back");
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
            print!("{report}");
            println!("wrote {}", path.display());
        }
        None => {
            eprint!("{report}");
            print!("{text}");
        }
    }
    let _ = std::io::stdout().flush();
    Ok(0)
}

fn run_check(args: &TuneArgs) -> Result<i32, String> {
    let root = &args.sysroot;
    let findings = check::check(root).map_err(|e| format!("check: {e}"))?;
    print!("{}", check::render(&findings));
    if !args.apply {
        return Ok(i32::from(check::hurts(&findings)));
    }
    let changes = check::apply(root, &findings);
    println!("--apply:");
    print!("{}", check::render_changes(&changes, &findings));
    if changes.is_empty() {
        println!("nothing to apply");
    }
    println!("after --apply:");
    let after = check::check(root).map_err(|e| format!("check after --apply: {e}"))?;
    print!("{}", check::render(&after));
    let failed = changes.iter().any(|c| c.error.is_some());
    Ok(i32::from(failed || check::hurts(&after)))
}

/// A profile value as logged and reported (cpulists unquoted).
fn display_value(profile: &Profile, key: &str) -> String {
    profile.value_text(key).trim_matches('"').to_owned()
}

/// The broker settings a profile key feeds. A later source that sets any of
/// these overrides the profile's value.
fn overriding_names(key: &str) -> &'static [&'static str] {
    match key {
        "shards" => &["--shards", "shard.cpus"],
        "cpus" => &["shard.cpus", "--shards"],
        "write_buffer_bytes" => &["shard.write.buffer.bytes"],
        "io_depth" => &["shard.io.depth"],
        "flush_interval_ms" => &["log.flush.policy", "log.flush.interval.ms", "--flush"],
        "batch_cache_bytes" => &["batch.cache.bytes"],
        "spin_before_park_us" => &["shard.spin.before.park.us", "--spin-before-park-us"],
        _ => panic!("unknown profile key {key:?}"),
    }
}

/// The `name=value` setting a profile key becomes (None: `shards`, which
/// has no setting name and is set on the runtime configuration directly).
fn setting_for(profile: &Profile, key: &str) -> Option<String> {
    let value = display_value(profile, key);
    match key {
        "shards" => None,
        "cpus" => Some(format!("shard.cpus={value}")),
        "write_buffer_bytes" => Some(format!("shard.write.buffer.bytes={value}")),
        "io_depth" => Some(format!("shard.io.depth={value}")),
        "flush_interval_ms" if profile.flush_interval_ms == 0 => Some("log.flush.policy=always".to_owned()),
        "flush_interval_ms" => Some(format!("log.flush.interval.ms={value}")),
        "batch_cache_bytes" => Some(format!("batch.cache.bytes={value}")),
        "spin_before_park_us" => Some(format!("shard.spin.before.park.us={value}")),
        _ => panic!("unknown profile key {key:?}"),
    }
}

/// Reads and parses a profile file.
pub fn load_profile(path: &Path) -> Result<Profile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("profile {}: {e}", path.display()))?;
    Profile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Applies every value of `profile` to `settings`, logging each.
pub fn apply_profile(settings: &mut Settings, profile: &Profile, path: &Path) -> Result<(), String> {
    profile.validate().map_err(|e| e.to_string())?;
    for key in KEYS {
        let setting = setting_for(profile, key);
        if let Some(setting) = &setting {
            settings.apply(setting).map_err(|e| format!("{}: {key}: {e}", path.display()))?;
        }
        info!(key = %key, value = %display_value(profile, key), setting = %setting.as_deref().unwrap_or("--shards"), profile = %path.display(), "profile value");
    }
    // After `shard.cpus`, which resets the count: the profile's own count,
    // which `validate` checked is the number of its CPUs.
    settings.runtime.shards = Some(profile.shards);
    assert_eq!(settings.runtime.cpus.as_deref(), Some(profile.cpus.as_slice()));
    assert_eq!(settings.runtime.shards, Some(profile.cpus.len()));
    Ok(())
}

/// Logs each profile value that `names` (set by `source`) override.
pub fn log_overrides(profile: &Profile, source: &str, names: &[String]) {
    let mut overridden: BTreeMap<&str, &str> = BTreeMap::new();
    for key in KEYS {
        if let Some(name) = names.iter().find(|name| overriding_names(key).contains(&name.as_str())) {
            overridden.insert(key, name);
        }
    }
    for (key, name) in overridden {
        info!(key = %key, profile_value = %display_value(profile, key), by = %name, source, "profile value overridden");
    }
}

/// The setting names in `--set` arguments (`name=value`).
pub fn setting_names(settings: &[String]) -> Vec<String> {
    settings.iter().map(|s| s.split_once('=').map_or(s.as_str(), |(name, _)| name).trim().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringstream_shard::RuntimeConfig;
    use ringstream_storage::log::FlushPolicy;
    use ringstream_storage::shard_storage::StorageConfig;

    fn sample(flush_interval_ms: u64) -> Profile {
        Profile {
            shards: 2,
            cpus: vec![0, 1],
            write_buffer_bytes: 1 << 20,
            io_depth: 16,
            flush_interval_ms,
            batch_cache_bytes: 64 << 20,
            spin_before_park_us: 700,
            generated_by: None,
            probe: BTreeMap::new(),
        }
    }

    fn settings() -> Settings {
        Settings { runtime: RuntimeConfig::new(StorageConfig::new("/tmp/x")), broker: Default::default() }
    }

    #[test]
    fn every_profile_value_takes_effect() {
        let mut settings = settings();
        apply_profile(&mut settings, &sample(0), Path::new("p.toml")).unwrap();
        let runtime = &settings.runtime;
        assert_eq!(runtime.shards, Some(2));
        assert_eq!(runtime.cpus, Some(vec![0, 1]));
        assert_eq!(runtime.storage.write_buffer_bytes, 1 << 20);
        assert_eq!(runtime.storage.io_depth, 16);
        assert_eq!(runtime.storage.flush, FlushPolicy::Always);
        assert_eq!(runtime.storage.batch_cache_bytes, 64 << 20);
        assert_eq!(runtime.spin_before_park_us, 700);
        let mut settings = self::settings();
        apply_profile(&mut settings, &sample(25), Path::new("p.toml")).unwrap();
        assert_eq!(settings.runtime.storage.flush, FlushPolicy::Interval { interval_ms: 25 });
    }

    #[test]
    fn later_sources_win_over_the_profile() {
        let mut settings = settings();
        apply_profile(&mut settings, &sample(0), Path::new("p.toml")).unwrap();
        let names = settings.apply_toml("\"shard.io.depth\" = 4\n").unwrap();
        assert_eq!(names, ["shard.io.depth"]);
        settings.apply("shard.cpus=1").unwrap();
        assert_eq!(settings.runtime.storage.io_depth, 4);
        assert_eq!((settings.runtime.cpus.clone(), settings.runtime.shards), (Some(vec![1]), None));
        assert_eq!(setting_names(&["shard.cpus=1".to_owned(), " a.b = c".to_owned()]), ["shard.cpus", "a.b"]);
    }
}
