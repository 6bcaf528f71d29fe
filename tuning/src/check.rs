//! `ringstream tune --check`: system settings that hurt a broker, each with
//! its current value, the recommended one and the command that fixes it;
//! `--apply` changes the safe ones.
//!
//! Every file is read (and written) below a root directory, `/` in real
//! use, so tests check and apply against a fake tree and never touch the
//! machine's settings. Safe means: a sysctl or sysfs knob whose new value
//! cannot take a running system down and that the kernel takes at once
//! (swappiness, aio-max-nr, somaxconn, transparent huge pages, the CPU
//! governor). IRQ affinity, process limits and io_uring policy are reported
//! with their fix but never applied (see `irq_findings` and `limit_findings`).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::format_cpu_list;
use crate::system::{Limit, SystemProbe};

/// How a setting stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Hurts the broker: the check exits 1.
    Hurts,
    /// Not exposed or nothing to do; does not fail the check.
    Info,
}

/// One checked setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub name: String,
    pub current: String,
    pub recommended: String,
    pub status: Status,
    /// The exact command that fixes it (when it hurts).
    pub fix: Option<String>,
    /// Why the recommendation, or why it is not applied.
    pub why: String,
    /// Files (relative to the root) and the values `--apply` writes; empty
    /// when the fix is not one `--apply` makes.
    pub apply: Vec<(PathBuf, String)>,
}

/// Recommended floors and ceilings.
pub const swappiness_max: u64 = 1;
pub const aio_max_nr_min: u64 = 1_048_576;
pub const somaxconn_min: u64 = 4096;
pub const nofile_min: u64 = 65_536;
/// glommio registers 2 MiB of DMA memory with io_uring per shard
/// (`RuntimeConfig::io_memory_bytes`), plus about 1 MiB for the rings.
pub const memlock_per_shard_bytes: u64 = 2 * 1024 * 1024;
pub const memlock_base_bytes: u64 = 1024 * 1024;

/// Runs every check below `root`.
pub fn check(root: &Path) -> io::Result<Vec<Finding>> {
    let system = SystemProbe::run(root)?;
    let (shard_cpus, _) = crate::profile::choose_cpus(&system.allowed_cores());
    let mut findings = vec![
        governor_finding(root)?,
        thp_finding(root)?,
        sysctl_finding(
            root,
            "vm.swappiness",
            Bound::AtMost(swappiness_max),
            "1 keeps the batch cache and DMA buffers in memory rather than page cache; \
             unlike 0 it still lets the kernel swap under real pressure instead of OOM-killing early",
        )?,
        sysctl_finding(
            root,
            "fs.aio-max-nr",
            Bound::AtLeast(aio_max_nr_min),
            "Linux AIO contexts: glommio uses io_uring, but co-located tools (and older \
             fallbacks) fail with EAGAIN once the system-wide pool is used up",
        )?,
        sysctl_finding(
            root,
            "net.core.somaxconn",
            Bound::AtLeast(somaxconn_min),
            "caps each listener's accept backlog: a burst of client connections beyond it is dropped or reset",
        )?,
    ];
    findings.extend(irq_findings(root, &system.online, &shard_cpus)?);
    findings.extend(limit_findings(&system, shard_cpus.len()));
    findings.push(io_uring_finding(&system));
    Ok(findings)
}

/// True when any finding hurts: `--check` exits 1.
pub fn hurts(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.status == Status::Hurts)
}

/// The findings as text, one setting a line, fixes indented below.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        let status = match finding.status {
            Status::Ok => "ok",
            Status::Hurts => "HURTS",
            Status::Info => "info",
        };
        let _ = writeln!(
            out,
            "{status:<6} {}: current {}, recommended {}",
            finding.name, finding.current, finding.recommended
        );
        if finding.status == Status::Hurts {
            if let Some(fix) = &finding.fix {
                let _ = writeln!(out, "       fix: {fix}");
            }
            let applied = if finding.apply.is_empty() { "not applied by --apply" } else { "--apply fixes it" };
            let _ = writeln!(out, "       why: {} ({applied})", finding.why);
        }
    }
    let verdict = if hurts(findings) { "something hurts (exit 1)" } else { "nothing hurts (exit 0)" };
    let _ = writeln!(out, "{verdict}");
    out
}

/// One change `apply` made (or failed to make).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub name: String,
    pub path: PathBuf,
    pub old: String,
    pub new: String,
    pub error: Option<String>,
}

/// Applies the safe fixes of the findings that hurt, below `root`. Each
/// file is read before and after, so the change reports what the kernel
/// really holds now.
pub fn apply(root: &Path, findings: &[Finding]) -> Vec<Change> {
    let mut changes = Vec::new();
    for finding in findings.iter().filter(|f| f.status == Status::Hurts) {
        for (relative, value) in &finding.apply {
            assert!(relative.is_relative(), "apply path {relative:?} must be relative to the root");
            let path = root.join(relative);
            let old = read_value(&path).unwrap_or_else(|e| format!("? ({e})"));
            let written = fs::write(&path, format!("{value}\n"));
            let new = read_value(&path).unwrap_or_else(|e| format!("? ({e})"));
            let error = match written {
                Err(e) => Some(e.to_string()),
                Ok(()) if new != *value => Some(format!("reads back {new:?}, not {value:?}")),
                Ok(()) => None,
            };
            changes.push(Change { name: finding.name.clone(), path: Path::new("/").join(relative), old, new, error });
        }
    }
    changes
}

/// The changes as text: `applied NAME (PATH): OLD -> NEW`.
pub fn render_changes(changes: &[Change], findings: &[Finding]) -> String {
    let mut out = String::new();
    for change in changes {
        match &change.error {
            None => {
                let _ = writeln!(
                    out,
                    "applied {} ({}): {} -> {}",
                    change.name,
                    change.path.display(),
                    change.old,
                    change.new
                );
            }
            Some(e) => {
                let _ = writeln!(
                    out,
                    "FAILED  {} ({}): {} -> {}: {e}",
                    change.name,
                    change.path.display(),
                    change.old,
                    change.new
                );
            }
        }
    }
    for finding in findings.iter().filter(|f| f.status == Status::Hurts && f.apply.is_empty()) {
        let _ = writeln!(out, "not applied {}: {}", finding.name, finding.why);
    }
    out
}

/// A file's value: the bracketed choice of a sysfs selector
/// ("always [madvise] never" -> "madvise"), else the trimmed contents.
fn read_value(path: &Path) -> io::Result<String> {
    let text = fs::read_to_string(path)?;
    Ok(selected(&text))
}

fn selected(text: &str) -> String {
    if let (Some(open), Some(close)) = (text.find('['), text.find(']')) {
        if open < close {
            return text[open + 1..close].to_owned();
        }
    }
    text.trim().to_owned()
}

fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match read_value(path) {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

fn not_exposed(name: &str, recommended: &str, what: &str) -> Finding {
    Finding {
        name: name.to_owned(),
        current: format!("not exposed ({what})"),
        recommended: recommended.to_owned(),
        status: Status::Info,
        fix: None,
        why: "nothing to change".to_owned(),
        apply: Vec::new(),
    }
}

/// `performance` keeps cores at full clock: other governors ramp up only
/// after load appears, adding latency to every burst after an idle spell.
fn governor_finding(root: &Path) -> io::Result<Finding> {
    let name = "cpufreq.scaling_governor";
    let cpu_dir = root.join("sys/devices/system/cpu");
    let mut files: Vec<(usize, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir(&cpu_dir) {
        for entry in entries {
            let entry = entry?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(cpu) = file_name.strip_prefix("cpu").and_then(|n| n.parse::<usize>().ok()) else { continue };
            let path = entry.path().join("cpufreq/scaling_governor");
            if path.exists() {
                files.push((cpu, path));
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Ok(not_exposed(name, "performance", "VM?"));
    }
    let mut governors: Vec<String> = Vec::new();
    let mut apply = Vec::new();
    for (cpu, path) in &files {
        let governor = read_value(path)?;
        if governor != "performance" {
            apply.push((
                PathBuf::from(format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")),
                "performance".to_owned(),
            ));
        }
        if !governors.contains(&governor) {
            governors.push(governor);
        }
    }
    let hurts = !apply.is_empty();
    Ok(Finding {
        name: name.to_owned(),
        current: governors.join("/"),
        recommended: "performance".to_owned(),
        status: if hurts { Status::Hurts } else { Status::Ok },
        fix: hurts.then(|| "echo performance | tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor".to_owned()),
        why: "other governors lower the clock when idle and ramp up only after load arrives".to_owned(),
        apply,
    })
}

/// `always` makes khugepaged compact and collapse pages in the background
/// and can stall allocations on compaction; the broker gains nothing from
/// it (its DMA buffers are allocated once). `madvise` leaves it to
/// programs that ask.
fn thp_finding(root: &Path) -> io::Result<Finding> {
    let name = "transparent_hugepage";
    let relative = PathBuf::from("sys/kernel/mm/transparent_hugepage/enabled");
    let Some(current) = read_optional(&root.join(&relative))? else {
        return Ok(not_exposed(name, "madvise or never", "kernel without THP"));
    };
    let hurts = current == "always";
    Ok(Finding {
        name: name.to_owned(),
        current,
        recommended: "madvise or never".to_owned(),
        status: if hurts { Status::Hurts } else { Status::Ok },
        fix: hurts.then(|| "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled".to_owned()),
        why: "`always` brings khugepaged compaction stalls and memory bloat for no gain".to_owned(),
        apply: if hurts { vec![(relative, "madvise".to_owned())] } else { Vec::new() },
    })
}

enum Bound {
    AtMost(u64),
    AtLeast(u64),
}

fn sysctl_finding(root: &Path, name: &str, bound: Bound, why: &str) -> io::Result<Finding> {
    let relative = PathBuf::from("proc/sys").join(name.replace('.', "/"));
    let (recommended, target) = match bound {
        Bound::AtMost(max) => (format!("<= {max}"), max),
        Bound::AtLeast(min) => (format!(">= {min}"), min),
    };
    let Some(current) = read_optional(&root.join(&relative))? else {
        return Ok(not_exposed(name, &recommended, "no such sysctl"));
    };
    let value: u64 = current.parse().map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {current:?} is not a number", relative.display()))
    })?;
    let hurts = match bound {
        Bound::AtMost(max) => value > max,
        Bound::AtLeast(min) => value < min,
    };
    Ok(Finding {
        name: name.to_owned(),
        current,
        recommended,
        status: if hurts { Status::Hurts } else { Status::Ok },
        fix: hurts.then(|| format!("sysctl -w {name}={target}")),
        why: why.to_owned(),
        apply: if hurts { vec![(relative, target.to_string())] } else { Vec::new() },
    })
}

/// Names of NIC queue interrupts as drivers register them: virtio-net
/// ("virtio2-input.0"), and the usual physical NIC drivers/interfaces.
pub fn is_nic_irq(name: &str) -> bool {
    let virtio_net = name.starts_with("virtio") && (name.contains("-input.") || name.contains("-output."));
    let prefixes =
        ["eth", "ens", "enp", "eno", "enx", "mlx", "ixgbe", "i40e", "ice", "igb", "ena", "bnxt", "gve", "nfp", "qede"];
    virtio_net || prefixes.iter().any(|p| name.starts_with(p))
}

/// NIC IRQs landing on shard CPUs. A NIC interrupt on a shard's CPU steals
/// that shard's time (softirq processing runs there too); when some CPUs run
/// no shard, the interrupts belong there. Reported, never applied: irqbalance
/// rewrites affinities on its own, which CPUs are spare depends on how the
/// broker is deployed, and a wrong mask can leave a NIC queue without a CPU.
fn irq_findings(root: &Path, online: &[usize], shard_cpus: &[usize]) -> io::Result<Vec<Finding>> {
    let Some(text) = fs::read_to_string(root.join("proc/interrupts")).ok() else {
        return Ok(vec![not_exposed("irq affinity", "NIC IRQs off shard CPUs", "no /proc/interrupts")]);
    };
    let spare: Vec<usize> = online.iter().copied().filter(|cpu| !shard_cpus.contains(cpu)).collect();
    let mut findings = Vec::new();
    for line in text.lines() {
        let Some((number, rest)) = line.trim_start().split_once(':') else { continue };
        let Ok(irq) = number.parse::<u32>() else { continue };
        let Some(device) = rest.split_whitespace().last() else { continue };
        if !is_nic_irq(device) {
            continue;
        }
        let relative = format!("proc/irq/{irq}/smp_affinity_list");
        let Some(affinity) = read_optional(&root.join(&relative))? else { continue };
        let cpus = crate::parse_cpu_list(&affinity).unwrap_or_default();
        let on_shards: Vec<usize> = cpus.iter().copied().filter(|cpu| shard_cpus.contains(cpu)).collect();
        let name = format!("irq {irq} ({device})");
        let finding = if spare.is_empty() {
            Finding {
                name,
                current: affinity,
                recommended: "a CPU without a shard".to_owned(),
                status: Status::Info,
                fix: None,
                why: "every online CPU runs a shard: no spare CPU to move it to".to_owned(),
                apply: Vec::new(),
            }
        } else {
            let spare_list = format_cpu_list(&spare);
            let hurts = !on_shards.is_empty();
            Finding {
                name,
                current: affinity,
                recommended: spare_list.clone(),
                status: if hurts { Status::Hurts } else { Status::Ok },
                fix: hurts.then(|| format!("echo {spare_list} > /proc/irq/{irq}/smp_affinity_list")),
                why: format!(
                    "lands on shard CPU(s) {}; irqbalance may rewrite it and the right spare CPUs depend \
                     on the deployment, so the operator applies it (stop irqbalance or use --banirq)",
                    format_cpu_list(&on_shards)
                ),
                apply: Vec::new(),
            }
        };
        findings.push(finding);
    }
    if findings.is_empty() {
        findings.push(Finding {
            name: "irq affinity".to_owned(),
            current: "no NIC IRQs found in /proc/interrupts".to_owned(),
            recommended: "NIC IRQs off shard CPUs".to_owned(),
            status: Status::Info,
            fix: None,
            why: "nothing to check".to_owned(),
            apply: Vec::new(),
        });
    }
    Ok(findings)
}

/// Process limits: reported, not applied, because they belong to the shell
/// or service manager that starts the broker, not to a sysctl.
fn limit_findings(system: &SystemProbe, shards: usize) -> Vec<Finding> {
    let memlock_min = memlock_base_bytes + memlock_per_shard_bytes * shards as u64;
    let memlock_hurts = !system.memlock.allows(memlock_min);
    let nofile_hurts = !system.nofile.allows(nofile_min);
    vec![
        Finding {
            name: "RLIMIT_MEMLOCK".to_owned(),
            current: limit_text(system.memlock, "bytes"),
            recommended: format!(">= {memlock_min} bytes"),
            status: if memlock_hurts { Status::Hurts } else { Status::Ok },
            fix: memlock_hurts.then(|| "ulimit -l unlimited (systemd: LimitMEMLOCK=infinity)".to_owned()),
            why: format!("glommio registers 2 MiB of DMA memory per shard ({shards} shard(s)) plus its rings"),
            apply: Vec::new(),
        },
        Finding {
            name: "RLIMIT_NOFILE".to_owned(),
            current: limit_text(system.nofile, "files"),
            recommended: format!(">= {nofile_min}"),
            status: if nofile_hurts { Status::Hurts } else { Status::Ok },
            fix: nofile_hurts.then(|| format!("ulimit -n {nofile_min} (systemd: LimitNOFILE={nofile_min})")),
            why: "every segment, index and client connection holds a file descriptor".to_owned(),
            apply: Vec::new(),
        },
    ]
}

fn limit_text(limit: Limit, unit: &str) -> String {
    match limit {
        Limit::Unlimited => "unlimited".to_owned(),
        Limit::Value(value) => format!("{value} {unit}"),
    }
}

/// io_uring is required: glommio runs every shard on one. Not applied: the
/// sysctl is a security policy someone chose.
fn io_uring_finding(system: &SystemProbe) -> Finding {
    let sysctl = system.io_uring.disabled_sysctl;
    let current = match (&system.io_uring.setup, sysctl) {
        (Ok(()), Some(v)) => format!("available (kernel.io_uring_disabled={v})"),
        (Ok(()), None) => "available".to_owned(),
        (Err(e), Some(v)) => format!("unavailable: {e} (kernel.io_uring_disabled={v})"),
        (Err(e), None) => format!("unavailable: {e}"),
    };
    let hurts = !system.io_uring.available();
    let fix = match sysctl {
        Some(v) if v != 0 => "sysctl -w kernel.io_uring_disabled=0".to_owned(),
        _ => "run on Linux 5.8+ and allow io_uring_setup in the container's seccomp profile".to_owned(),
    };
    Finding {
        name: "io_uring".to_owned(),
        current,
        recommended: "available".to_owned(),
        status: if hurts { Status::Hurts } else { Status::Ok },
        fix: hurts.then_some(fix),
        why: "every shard runs on its own io_uring; the broker cannot start without it".to_owned(),
        apply: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::tests::{fake_machine, write_tree};

    /// The fake machine, badly tuned: every safe knob wrong, one NIC IRQ on
    /// a shard CPU (0) and one on a spare CPU (3); somaxconn already fine.
    fn badly_tuned(root: &Path) {
        fake_machine(root);
        write_tree(
            root,
            &[
                ("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "powersave\n"),
                ("sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", "performance\n"),
                ("sys/devices/system/cpu/cpu2/cpufreq/scaling_governor", "schedutil\n"),
                ("sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n"),
                ("proc/sys/vm/swappiness", "60\n"),
                ("proc/sys/fs/aio-max-nr", "65536\n"),
                ("proc/sys/net/core/somaxconn", "4096\n"),
                (
                    "proc/interrupts",
                    "           CPU0       CPU1       CPU2       CPU3\n \
                     26:          0         15          0          0  IO-APIC   4-edge      ttyS0\n \
                     38:          0      12483          0          0  PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\n \
                     39:      10378          0          0          0  PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0\n \
                     NMI:          0          0          0          0   Non-maskable interrupts\n",
                ),
                ("proc/irq/38/smp_affinity_list", "0-1\n"),
                ("proc/irq/39/smp_affinity_list", "3\n"),
                ("proc/irq/26/smp_affinity_list", "1\n"),
            ],
        );
    }

    fn find<'a>(findings: &'a [Finding], name: &str) -> &'a Finding {
        findings.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no finding {name}: {findings:#?}"))
    }

    #[test]
    fn check_finds_what_hurts_on_a_fake_tree() {
        let root = tempfile::tempdir().unwrap();
        badly_tuned(root.path());
        let findings = check(root.path()).unwrap();
        assert!(hurts(&findings));
        let governor = find(&findings, "cpufreq.scaling_governor");
        assert_eq!((governor.status, governor.current.as_str()), (Status::Hurts, "powersave/performance/schedutil"));
        assert_eq!(governor.apply.len(), 2, "cpu1 is already performance");
        let thp = find(&findings, "transparent_hugepage");
        assert_eq!((thp.status, thp.current.as_str()), (Status::Hurts, "always"));
        let swappiness = find(&findings, "vm.swappiness");
        assert_eq!((swappiness.status, swappiness.current.as_str()), (Status::Hurts, "60"));
        assert_eq!(swappiness.fix.as_deref(), Some("sysctl -w vm.swappiness=1"));
        assert_eq!(find(&findings, "fs.aio-max-nr").status, Status::Hurts);
        assert_eq!(find(&findings, "net.core.somaxconn").status, Status::Ok);
        // Shards on 0 and 1 (one per core); 2 and 3 are their SMT siblings.
        let input = find(&findings, "irq 38 (virtio2-input.0)");
        assert_eq!(input.status, Status::Hurts);
        assert_eq!(input.recommended, "2-3");
        assert_eq!(input.fix.as_deref(), Some("echo 2-3 > /proc/irq/38/smp_affinity_list"));
        assert!(input.apply.is_empty(), "IRQ affinity is never applied");
        assert_eq!(find(&findings, "irq 39 (virtio2-output.0)").status, Status::Ok);
        assert!(!findings.iter().any(|f| f.name.contains("ttyS0")));
        assert_eq!(find(&findings, "RLIMIT_MEMLOCK").status, Status::Ok);
        assert_eq!(find(&findings, "RLIMIT_NOFILE").status, Status::Ok);
        let text = render(&findings);
        assert!(
            text.contains(
                "HURTS  vm.swappiness: current 60, recommended <= 1\n       fix: sysctl -w vm.swappiness=1\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("something hurts (exit 1)\n"));
    }

    /// Snapshot of every file below `root`: path -> contents.
    fn snapshot(root: &Path) -> std::collections::BTreeMap<PathBuf, String> {
        let mut files = std::collections::BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.insert(path.strip_prefix(root).unwrap().to_path_buf(), fs::read_to_string(&path).unwrap());
                }
            }
        }
        files
    }

    #[test]
    fn apply_changes_exactly_the_safe_files() {
        let root = tempfile::tempdir().unwrap();
        badly_tuned(root.path());
        let before = snapshot(root.path());
        let findings = check(root.path()).unwrap();
        let changes = apply(root.path(), &findings);
        assert!(changes.iter().all(|c| c.error.is_none()), "{changes:#?}");
        let after = snapshot(root.path());
        let changed: Vec<&PathBuf> = after.keys().filter(|path| before.get(*path) != after.get(*path)).collect();
        let expected: Vec<PathBuf> = [
            "proc/sys/fs/aio-max-nr",
            "proc/sys/vm/swappiness",
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
            "sys/kernel/mm/transparent_hugepage/enabled",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(changed, expected.iter().collect::<Vec<_>>());
        assert_eq!(before.len(), after.len(), "no file created or removed");
        assert_eq!(after[&PathBuf::from("proc/sys/vm/swappiness")], "1\n");
        let text = render_changes(&changes, &findings);
        assert!(text.contains("applied vm.swappiness (/proc/sys/vm/swappiness): 60 -> 1\n"), "{text}");
        assert!(text.contains(
            "applied transparent_hugepage (/sys/kernel/mm/transparent_hugepage/enabled): always -> madvise\n"
        ));
        assert!(text.contains("not applied irq 38 (virtio2-input.0): lands on shard CPU(s) 0-1"), "{text}");
        // Only the IRQ still hurts; applying again changes nothing.
        let again = check(root.path()).unwrap();
        let hurting: Vec<&str> = again.iter().filter(|f| f.status == Status::Hurts).map(|f| f.name.as_str()).collect();
        assert_eq!(hurting, ["irq 38 (virtio2-input.0)"]);
        assert!(apply(root.path(), &again).is_empty());
    }

    #[test]
    fn absent_knobs_are_not_problems() {
        let root = tempfile::tempdir().unwrap();
        fake_machine(root.path());
        let findings = check(root.path()).unwrap();
        let governor = find(&findings, "cpufreq.scaling_governor");
        assert_eq!((governor.status, governor.current.as_str()), (Status::Info, "not exposed (VM?)"));
        assert_eq!(find(&findings, "transparent_hugepage").status, Status::Info);
        assert_eq!(find(&findings, "vm.swappiness").status, Status::Info);
        let irq = find(&findings, "irq affinity");
        assert_eq!(irq.current, "not exposed (no /proc/interrupts)");
        assert!(!hurts(&findings), "{findings:#?}");
        assert!(render(&findings).ends_with("nothing hurts (exit 0)\n"));
    }

    #[test]
    fn limits_and_io_uring_policy_hurt_but_are_not_applied() {
        let root = tempfile::tempdir().unwrap();
        fake_machine(root.path());
        write_tree(
            root.path(),
            &[
                (
                    "proc/self/limits",
                    "Max open files            1024                 4096                 files     \n\
                     Max locked memory         65536                65536                bytes     \n",
                ),
                ("proc/interrupts", "           CPU0\n  5:   1   IO-APIC  ttyS0\n"),
            ],
        );
        let findings = check(root.path()).unwrap();
        let memlock = find(&findings, "RLIMIT_MEMLOCK");
        assert_eq!((memlock.status, memlock.current.as_str()), (Status::Hurts, "65536 bytes"));
        assert_eq!(memlock.recommended, ">= 5242880 bytes", "1 MiB + 2 shards x 2 MiB");
        let nofile = find(&findings, "RLIMIT_NOFILE");
        assert_eq!(nofile.fix.as_deref(), Some("ulimit -n 65536 (systemd: LimitNOFILE=65536)"));
        assert_eq!(find(&findings, "irq affinity").current, "no NIC IRQs found in /proc/interrupts");
        assert!(apply(root.path(), &findings).is_empty());
    }

    #[test]
    fn nic_irq_names() {
        for nic in [
            "virtio2-input.0",
            "virtio0-output.3",
            "eth0-TxRx-1",
            "mlx5_comp3@pci:0000:3b:00.0",
            "ens5-Tx-Rx-0",
            "i40e-eth1-TxRx-7",
        ] {
            assert!(is_nic_irq(nic), "{nic}");
        }
        for other in ["virtio1-req.0", "virtio4-input", "virtio0-config", "ttyS0", "nvme0q1", "ACPI:Ged", "virtio3-rx"]
        {
            assert!(!is_nic_irq(other), "{other}");
        }
        assert_eq!(selected("always [madvise] never\n"), "madvise");
        assert_eq!(selected("60\n"), "60");
    }
}
