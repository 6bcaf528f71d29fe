//! Hardware probes and tuning profiles for Ringstream's thread-per-core
//! runtime: the library behind `ringstream tune`.
//!
//! - `disk`: O_DIRECT bandwidth per block size and queue depth, fdatasync
//!   latency, on the data directory's device (one glommio executor).
//! - `system`: CPU topology (cores, SMT siblings, NUMA), allowed CPUs,
//!   memory, memlock/nofile limits, io_uring availability.
//! - `profile`: the TOML tuning profile, its strict parser, and the rules
//!   that derive it from the probes.
//! - `check`: system settings that hurt a broker (`tune --check`), and the
//!   safe ones `--apply` fixes.
//!
//! It is a separate crate so the probes, which need `libc` and root-ish
//! access, stay out of the broker's data path. Everything that reads system
//! files takes a root directory, so tests run against fake trees.
//!
//! This file holds the CPU-set helpers that the shard runtime uses to validate
//! `--shards N` and `shard.cpus`: each shard is one executor pinned to one CPU, so asking for
//! more shards than the CPUs this process may run on (its affinity mask, which
//! taskset, cgroups cpusets and container runtimes narrow) would put two
//! shards on one CPU and silently halve both. That is an error at startup,
//! with a message that says what would fit.

#![allow(non_upper_case_globals)] // bounds are named like values: `io_depth_max`.

use std::io;

pub mod check;
pub mod disk;
pub mod profile;
pub mod system;

/// The largest CPU number a cpulist may name: far beyond any kernel's
/// NR_CPUS (8192), so a typo like "0-99999999" fails instead of allocating.
pub const cpu_index_max: usize = 1 << 16;

/// The CPUs this process may run on (`sched_getaffinity(0)`), ascending.
/// Never empty on success: the kernel does not run a task with an empty mask.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // The mask is sized by the kernel's CPU count, which may exceed
    // `CPU_SETSIZE` (1024): grow the buffer until the kernel accepts it.
    let word_bits = 8 * std::mem::size_of::<libc::c_ulong>();
    let mask_words_max = (1 << 22) / word_bits; // 4M CPUs: far beyond any kernel's NR_CPUS.
    let mut mask_words = 1024 / word_bits;
    loop {
        let mut mask: Vec<libc::c_ulong> = vec![0; mask_words];
        let mask_bytes = mask_words * std::mem::size_of::<libc::c_ulong>();
        // SAFETY: `mask` is `mask_bytes` long and writable; the kernel writes
        // at most `mask_bytes` bytes into it. `cpu_set_t` is itself an array
        // of `c_ulong`, so the pointer cast does not change the layout.
        let result = unsafe { libc::sched_getaffinity(0, mask_bytes, mask.as_mut_ptr().cast::<libc::cpu_set_t>()) };
        if result == 0 {
            let mut cpus = Vec::new();
            for (word_index, word) in mask.iter().enumerate() {
                for bit in 0..word_bits {
                    if word & (1 << bit) != 0 {
                        cpus.push(word_index * word_bits + bit);
                    }
                }
            }
            assert!(cpus.windows(2).all(|pair| pair[0] < pair[1]));
            if cpus.is_empty() {
                return Err(io::Error::other("sched_getaffinity returned an empty CPU set"));
            }
            return Ok(cpus);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EINVAL) && mask_words < mask_words_max {
            mask_words *= 2;
            continue;
        }
        return Err(error);
    }
}

/// The CPUs this process may run on. Only Linux can tell (and run glommio).
#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "CPU affinity probing needs Linux"))
}

/// Why a `--shards` request cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum ShardPlanError {
    #[error(
        "--shards {requested} does not fit: this process may run on {available} CPU(s) ({cpus}); \
         use --shards 1..={available}"
    )]
    TooMany { requested: usize, available: usize, cpus: String },
    #[error("--shards must be at least 1")]
    Zero,
    #[error(
        "shard.cpus {requested} names CPU(s) {outside} that this process may not run on; \
         allowed: {allowed}"
    )]
    NotAllowed { requested: String, outside: String, allowed: String },
    #[error("--shards {shards} disagrees with shard.cpus {cpus} ({count} CPU(s)): one shard runs on each CPU")]
    Mismatch { shards: usize, cpus: String, count: usize },
}

/// Checks explicit shard CPUs (`shard.cpus`, ascending, non-empty) against
/// the allowed ones: a shard pinned to a CPU outside the affinity mask would
/// fail to start or, worse, share a CPU with another shard. `shards`, when
/// given too, must match their count.
pub fn plan_shards_on(cpus: &[usize], shards: Option<usize>, allowed: &[usize]) -> Result<Vec<usize>, ShardPlanError> {
    assert!(!cpus.is_empty(), "no shard CPUs");
    assert!(cpus.windows(2).all(|pair| pair[0] < pair[1]), "shard CPUs not ascending");
    let outside: Vec<usize> = cpus.iter().copied().filter(|cpu| !allowed.contains(cpu)).collect();
    if !outside.is_empty() {
        return Err(ShardPlanError::NotAllowed {
            requested: format_cpu_list(cpus),
            outside: format_cpu_list(&outside),
            allowed: format_cpu_list(allowed),
        });
    }
    if let Some(shards) = shards.filter(|&shards| shards != cpus.len()) {
        return Err(ShardPlanError::Mismatch { shards, cpus: format_cpu_list(cpus), count: cpus.len() });
    }
    Ok(cpus.to_vec())
}

/// Parses a Linux cpulist ("0-3,6", "0,2", "5"): ascending, each CPU once.
/// Errors say what is wrong with which part.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty CPU list".to_owned());
    }
    let number = |part: &str| -> Result<usize, String> {
        let cpu: usize = part.trim().parse().map_err(|_| format!("{part:?} is not a CPU number"))?;
        if cpu > cpu_index_max {
            return Err(format!("CPU {cpu} exceeds {cpu_index_max}"));
        }
        Ok(cpu)
    };
    let mut cpus: Vec<usize> = Vec::new();
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (number(first)?, number(last)?),
            None => {
                let cpu = number(part)?;
                (cpu, cpu)
            }
        };
        if first > last {
            return Err(format!("range {part:?} runs backwards"));
        }
        if cpus.last().is_some_and(|&previous| previous >= first) {
            return Err(format!("{part:?} is not ascending or repeats a CPU"));
        }
        cpus.extend(first..=last);
    }
    assert!(cpus.windows(2).all(|pair| pair[0] < pair[1]));
    Ok(cpus)
}

/// Chooses the CPUs for `requested` shards (`None`: one shard per allowed
/// CPU): the first N of `allowed`, one shard per CPU. Pure over the allowed
/// list (ascending, non-empty, as `allowed_cpus` returns it) so it is
/// testable without touching the process's affinity.
pub fn plan_shards(requested: Option<usize>, allowed: &[usize]) -> Result<Vec<usize>, ShardPlanError> {
    assert!(!allowed.is_empty(), "no allowed CPUs");
    assert!(allowed.windows(2).all(|pair| pair[0] < pair[1]), "allowed CPUs not ascending");
    let count = requested.unwrap_or(allowed.len());
    if count == 0 {
        return Err(ShardPlanError::Zero);
    }
    if count > allowed.len() {
        return Err(ShardPlanError::TooMany {
            requested: count,
            available: allowed.len(),
            cpus: format_cpu_list(allowed),
        });
    }
    let plan = allowed[..count].to_vec();
    assert_eq!(plan.len(), count);
    Ok(plan)
}

/// Formats CPUs (ascending) compactly, as Linux's cpulist does: "0-3,6".
pub fn format_cpu_list(cpus: &[usize]) -> String {
    assert!(cpus.windows(2).all(|pair| pair[0] < pair[1]), "CPUs not ascending");
    let mut text = String::new();
    let mut index = 0;
    while index < cpus.len() {
        let first = cpus[index];
        let mut last = first;
        while index + 1 < cpus.len() && cpus[index + 1] == last + 1 {
            index += 1;
            last = cpus[index];
        }
        if !text.is_empty() {
            text.push(',');
        }
        if first == last {
            text.push_str(&first.to_string());
        } else {
            text.push_str(&format!("{first}-{last}"));
        }
        index += 1;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_cpu_list_ranges() {
        let cases: &[(&[usize], &str)] = &[
            (&[], ""),
            (&[0], "0"),
            (&[0, 1, 2, 3, 6], "0-3,6"),
            (&[0, 1], "0-1"),
            (&[1, 3, 5], "1,3,5"),
            (&[2, 3, 4, 8, 9, 10, 11, 63], "2-4,8-11,63"),
            (&[1023, 1024], "1023-1024"),
        ];
        for (cpus, expected) in cases {
            assert_eq!(format_cpu_list(cpus), *expected, "{cpus:?}");
        }
    }

    #[test]
    fn parse_cpu_list_round_trips_and_rejects_bad_lists() {
        let cases: &[(&str, &[usize])] = &[
            ("0", &[0]),
            ("0-3,6", &[0, 1, 2, 3, 6]),
            ("1,3,5", &[1, 3, 5]),
            (" 2-4,8-11,63\n", &[2, 3, 4, 8, 9, 10, 11, 63]),
            ("7-7", &[7]),
        ];
        for (text, cpus) in cases {
            assert_eq!(parse_cpu_list(text).unwrap(), *cpus, "{text:?}");
            assert_eq!(parse_cpu_list(&format_cpu_list(cpus)).unwrap(), *cpus);
        }
        for bad in ["", "a", "3-1", "1,1", "2,1", "0-3,2", "1-", "-1", "0,,1", "99999999"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_cpu_list("3-1").unwrap_err(), "range \"3-1\" runs backwards");
    }

    #[test]
    fn plan_shards_on_checks_explicit_cpus() {
        let allowed = [0, 1, 2, 3];
        assert_eq!(plan_shards_on(&[1, 3], None, &allowed).unwrap(), [1, 3]);
        assert_eq!(plan_shards_on(&[1, 3], Some(2), &allowed).unwrap(), [1, 3]);
        let error = plan_shards_on(&[2, 3, 4, 5], None, &allowed).unwrap_err();
        assert_eq!(error.to_string(), "shard.cpus 2-5 names CPU(s) 4-5 that this process may not run on; allowed: 0-3");
        let error = plan_shards_on(&[1, 3], Some(3), &allowed).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--shards 3 disagrees with shard.cpus 1,3 (2 CPU(s)): one shard runs on each CPU"
        );
    }

    #[test]
    #[should_panic(expected = "not ascending")]
    fn format_cpu_list_asserts_ascending() {
        format_cpu_list(&[3, 1]);
    }

    #[test]
    fn plan_shards_takes_the_first_allowed_cpus() {
        let allowed = [2, 3, 4, 5, 8];
        assert_eq!(plan_shards(None, &allowed).unwrap(), allowed);
        assert_eq!(plan_shards(Some(1), &allowed).unwrap(), [2]);
        assert_eq!(plan_shards(Some(3), &allowed).unwrap(), [2, 3, 4]);
        assert_eq!(plan_shards(Some(5), &allowed).unwrap(), allowed);
        assert!(matches!(plan_shards(Some(0), &allowed), Err(ShardPlanError::Zero)));
    }

    #[test]
    fn plan_shards_too_many_says_what_fits() {
        let error = plan_shards(Some(6), &[2, 3, 4, 5, 8]).unwrap_err();
        assert!(matches!(
            &error,
            ShardPlanError::TooMany { requested: 6, available: 5, cpus } if cpus == "2-5,8"
        ));
        assert_eq!(
            error.to_string(),
            "--shards 6 does not fit: this process may run on 5 CPU(s) (2-5,8); use --shards 1..=5"
        );
        assert_eq!(ShardPlanError::Zero.to_string(), "--shards must be at least 1");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn allowed_cpus_is_not_empty_and_ascending() {
        let cpus = allowed_cpus().expect("sched_getaffinity");
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|pair| pair[0] < pair[1]));
        // Rust's own probe honours the affinity mask too (and cgroup quotas,
        // which can only lower it).
        let parallelism = std::thread::available_parallelism().expect("available_parallelism").get();
        assert!(parallelism <= cpus.len(), "{parallelism} > {cpus:?}");
        assert_eq!(plan_shards(None, &cpus).unwrap(), cpus);
    }
}
