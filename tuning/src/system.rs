//! The CPU and system probe: topology (online CPUs, physical cores and their
//! SMT siblings, NUMA nodes), the CPUs this process may use, memory, the
//! locked-memory and open-file limits, and whether io_uring is usable.
//!
//! Everything that is a file is read below a root directory (`/` in real
//! use), so tests run the probe against a fake tree. The process's own
//! limits and affinity come from system calls when the root is `/` (they are
//! the truth for this process), and from `proc/self/*` under a fake root.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::parse_cpu_list;

/// One physical core: its logical CPUs (SMT siblings), ascending.
pub type Core = Vec<usize>;

/// What the system probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemProbe {
    /// Online CPUs (`/sys/devices/system/cpu/online`), ascending.
    pub online: Vec<usize>,
    /// Physical cores of the online CPUs, by lowest CPU; each lists its SMT
    /// siblings. A CPU without topology files is a core of its own.
    pub cores: Vec<Core>,
    /// NUMA nodes and their CPUs; empty when the kernel exposes none.
    pub numa_nodes: Vec<(usize, Vec<usize>)>,
    /// The CPUs this process may run on (affinity mask), ascending.
    pub allowed: Vec<usize>,
    /// `MemTotal` of `/proc/meminfo`.
    pub memory_bytes: u64,
    /// RLIMIT_MEMLOCK (soft): glommio registers its DMA memory with io_uring.
    pub memlock: Limit,
    /// RLIMIT_NOFILE (soft): segments, indexes and connections are fds.
    pub nofile: Limit,
    pub io_uring: IoUring,
}

/// A resource limit: a number, or unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Value(u64),
    Unlimited,
}

impl Limit {
    /// True when the limit allows at least `amount`.
    pub fn allows(self, amount: u64) -> bool {
        match self {
            Limit::Value(value) => value >= amount,
            Limit::Unlimited => true,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Value(value) => write!(f, "{value}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// Whether this process can create an io_uring, and what the sysctl says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoUring {
    /// `io_uring_setup` with a 2-entry ring succeeded (the ring was closed).
    /// Err holds the errno text: ENOSYS (kernel without io_uring), EPERM
    /// (disabled by sysctl or a seccomp filter, as some container runtimes do).
    pub setup: Result<(), String>,
    /// `/proc/sys/kernel/io_uring_disabled` (Linux 6.6+): 0 allowed, 1 only
    /// for `kernel.io_uring_group`, 2 disabled. None when absent.
    pub disabled_sysctl: Option<u8>,
}

impl IoUring {
    pub fn available(&self) -> bool {
        self.setup.is_ok()
    }
}

impl SystemProbe {
    /// Probes the system below `root` (`/` in real use).
    pub fn run(root: &Path) -> io::Result<SystemProbe> {
        let online = read_cpu_list(&root.join("sys/devices/system/cpu/online"))?;
        let cores = cores_of(root, &online);
        let numa_nodes = numa_nodes(root)?;
        let allowed = allowed_cpus_in(root)?;
        let memory_bytes = memory_total_bytes(root)?;
        let (memlock, nofile) = if is_real_root(root) {
            (getrlimit(libc::RLIMIT_MEMLOCK)?, getrlimit(libc::RLIMIT_NOFILE)?)
        } else {
            let limits = read_to_string(&root.join("proc/self/limits"))?;
            (limit_from_proc(&limits, "Max locked memory")?, limit_from_proc(&limits, "Max open files")?)
        };
        let io_uring = IoUring { setup: io_uring_setup_probe(), disabled_sysctl: io_uring_disabled(root)? };
        let probe = SystemProbe { online, cores, numa_nodes, allowed, memory_bytes, memlock, nofile, io_uring };
        probe.check_invariants();
        Ok(probe)
    }

    fn check_invariants(&self) {
        assert!(self.online.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(self.allowed.windows(2).all(|pair| pair[0] < pair[1]));
        let mut covered: Vec<usize> = self.cores.iter().flatten().copied().collect();
        covered.sort_unstable();
        assert_eq!(covered, self.online, "every online CPU belongs to exactly one core");
    }

    /// The allowed CPUs grouped by physical core, cores with no allowed CPU
    /// left out. A CPU allowed but not online (never in practice) is its own core.
    pub fn allowed_cores(&self) -> Vec<Core> {
        let mut result: Vec<Core> = Vec::new();
        for core in &self.cores {
            let mine: Core = core.iter().copied().filter(|cpu| self.allowed.contains(cpu)).collect();
            if !mine.is_empty() {
                result.push(mine);
            }
        }
        for &cpu in &self.allowed {
            if !self.online.contains(&cpu) {
                result.push(vec![cpu]);
            }
        }
        result.sort();
        result
    }

    /// A readable summary, one fact a line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let smt = self.cores.iter().any(|core| core.len() > 1);
        out.push_str(&format!(
            "cpus: online {} ({} CPUs, {} physical cores, SMT {}), allowed {}\n",
            crate::format_cpu_list(&self.online),
            self.online.len(),
            self.cores.len(),
            if smt { "on" } else { "off" },
            crate::format_cpu_list(&self.allowed),
        ));
        if self.numa_nodes.is_empty() {
            out.push_str("numa: not exposed\n");
        }
        for (node, cpus) in &self.numa_nodes {
            out.push_str(&format!("numa: node {node} cpus {}\n", crate::format_cpu_list(cpus)));
        }
        out.push_str(&format!("memory: {} MiB\n", self.memory_bytes >> 20));
        out.push_str(&format!("limits: memlock {} bytes, nofile {}\n", self.memlock, self.nofile));
        let sysctl = self.io_uring.disabled_sysctl.map_or("absent".to_owned(), |v| v.to_string());
        match &self.io_uring.setup {
            Ok(()) => out.push_str(&format!("io_uring: available (kernel.io_uring_disabled {sysctl})\n")),
            Err(e) => out.push_str(&format!("io_uring: NOT available: {e} (kernel.io_uring_disabled {sysctl})\n")),
        }
        out
    }
}

/// True for the real root, where process facts come from system calls.
pub fn is_real_root(root: &Path) -> bool {
    root == Path::new("/")
}

fn read_to_string(path: &Path) -> io::Result<String> {
    fs::read_to_string(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn read_cpu_list(path: &Path) -> io::Result<Vec<usize>> {
    let text = read_to_string(path)?;
    parse_cpu_list(text.trim())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

/// Groups `online` into physical cores by `topology/thread_siblings_list`.
fn cores_of(root: &Path, online: &[usize]) -> Vec<Core> {
    let mut cores: Vec<Core> = Vec::new();
    for &cpu in online {
        if cores.iter().any(|core| core.contains(&cpu)) {
            continue;
        }
        let siblings_path = cpu_dir(root, cpu).join("topology/thread_siblings_list");
        let siblings = read_cpu_list(&siblings_path).unwrap_or_default();
        // Offline siblings are not ours to use; the CPU itself always is.
        let mut core: Core = siblings.into_iter().filter(|s| online.contains(s)).collect();
        if !core.contains(&cpu) {
            core.push(cpu);
            core.sort_unstable();
        }
        core.retain(|s| !cores.iter().any(|other| other.contains(s)));
        cores.push(core);
    }
    cores
}

fn cpu_dir(root: &Path, cpu: usize) -> PathBuf {
    root.join(format!("sys/devices/system/cpu/cpu{cpu}"))
}

fn numa_nodes(root: &Path) -> io::Result<Vec<(usize, Vec<usize>)>> {
    let dir = root.join("sys/devices/system/node");
    let Ok(entries) = fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut nodes = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(node) = name.strip_prefix("node").and_then(|n| n.parse::<usize>().ok()) else { continue };
        let cpus = read_cpu_list(&entry.path().join("cpulist")).unwrap_or_default();
        nodes.push((node, cpus));
    }
    nodes.sort();
    Ok(nodes)
}

/// The CPUs this process may run on: `sched_getaffinity` for the real root,
/// `Cpus_allowed_list` of `proc/self/status` below a fake one.
pub fn allowed_cpus_in(root: &Path) -> io::Result<Vec<usize>> {
    if is_real_root(root) {
        return crate::allowed_cpus();
    }
    let path = root.join("proc/self/status");
    let status = read_to_string(&path)?;
    let line = status.lines().find_map(|line| line.strip_prefix("Cpus_allowed_list:")).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{}: no Cpus_allowed_list", path.display()))
    })?;
    parse_cpu_list(line.trim())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

fn memory_total_bytes(root: &Path) -> io::Result<u64> {
    let path = root.join("proc/meminfo");
    let text = read_to_string(&path)?;
    let kib = text
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse::<u64>().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{}: no MemTotal", path.display())))?;
    Ok(kib * 1024)
}

/// A soft limit from `/proc/<pid>/limits`, e.g. the "Max open files" row.
pub fn limit_from_proc(text: &str, row: &str) -> io::Result<Limit> {
    let line = text
        .lines()
        .find(|line| line.starts_with(row))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("limits: no {row:?} row")))?;
    let soft = line[row.len()..].split_whitespace().next().unwrap_or("");
    match soft {
        "unlimited" => Ok(Limit::Unlimited),
        number => number
            .parse()
            .map(Limit::Value)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("limits: {row}: bad value {number:?}"))),
    }
}

/// The soft limit of `resource` for this process.
pub fn getrlimit(resource: libc::__rlimit_resource_t) -> io::Result<Limit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if limit.rlim_cur == libc::RLIM_INFINITY { Limit::Unlimited } else { Limit::Value(limit.rlim_cur) })
}

fn io_uring_disabled(root: &Path) -> io::Result<Option<u8>> {
    let path = root.join("proc/sys/kernel/io_uring_disabled");
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {text:?}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates a 2-entry io_uring and closes it at once: the only reliable test,
/// since seccomp filters and the sysctl both act on `io_uring_setup` itself.
pub fn io_uring_setup_probe() -> Result<(), String> {
    // `struct io_uring_params` is 120 bytes; the kernel reads the flags (all
    // zero: a plain ring) and writes the rest. u64s keep it 8-byte aligned.
    let mut params = [0u64; 15];
    const _: () = assert!(std::mem::size_of::<[u64; 15]>() == 120);
    // SAFETY: io_uring_setup(entries, params) writes at most 120 bytes into
    // `params`; on success it returns a new fd that we own and close.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    // SAFETY: `fd` was just returned to us and is closed exactly once.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes `files` (path relative to `root`, contents) under `root`.
    pub(crate) fn write_tree(root: &Path, files: &[(&str, &str)]) {
        for (path, contents) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, contents).unwrap();
        }
    }

    /// A 4-CPU, 2-core machine with SMT: cores {0,2} and {1,3}, one NUMA node.
    pub(crate) fn fake_machine(root: &Path) {
        write_tree(
            root,
            &[
                ("sys/devices/system/cpu/online", "0-3\n"),
                ("sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "0,2\n"),
                ("sys/devices/system/cpu/cpu1/topology/thread_siblings_list", "1,3\n"),
                ("sys/devices/system/cpu/cpu2/topology/thread_siblings_list", "0,2\n"),
                ("sys/devices/system/cpu/cpu3/topology/thread_siblings_list", "1,3\n"),
                ("sys/devices/system/node/node0/cpulist", "0-3\n"),
                ("proc/self/status", "Name:\tringstream\nCpus_allowed_list:\t0-3\n"),
                ("proc/meminfo", "MemTotal:        8000000 kB\nMemFree:  1 kB\n"),
                (
                    "proc/self/limits",
                    "Limit                     Soft Limit           Hard Limit           Units     \n\
                     Max open files            1048576              1048576              files     \n\
                     Max locked memory         unlimited            unlimited            bytes     \n",
                ),
                ("proc/sys/kernel/io_uring_disabled", "0\n"),
            ],
        );
    }

    #[test]
    fn fake_tree_topology() {
        let root = tempfile::tempdir().unwrap();
        fake_machine(root.path());
        let probe = SystemProbe::run(root.path()).unwrap();
        assert_eq!(probe.online, [0, 1, 2, 3]);
        assert_eq!(probe.cores, [vec![0, 2], vec![1, 3]]);
        assert_eq!(probe.numa_nodes, [(0, vec![0, 1, 2, 3])]);
        assert_eq!(probe.allowed, [0, 1, 2, 3]);
        assert_eq!(probe.memory_bytes, 8_000_000 * 1024);
        assert_eq!(probe.memlock, Limit::Unlimited);
        assert_eq!(probe.nofile, Limit::Value(1_048_576));
        assert_eq!(probe.io_uring.disabled_sysctl, Some(0));
        assert_eq!(probe.allowed_cores(), [vec![0, 2], vec![1, 3]]);
        assert!(probe.render().contains("2 physical cores, SMT on"));
    }

    #[test]
    fn missing_topology_makes_each_cpu_its_own_core() {
        let root = tempfile::tempdir().unwrap();
        fake_machine(root.path());
        fs::remove_dir_all(root.path().join("sys/devices/system/cpu/cpu1")).unwrap();
        fs::remove_dir_all(root.path().join("sys/devices/system/cpu/cpu3")).unwrap();
        fs::remove_dir_all(root.path().join("sys/devices/system/node")).unwrap();
        fs::remove_file(root.path().join("proc/sys/kernel/io_uring_disabled")).unwrap();
        let probe = SystemProbe::run(root.path()).unwrap();
        assert_eq!(probe.cores, [vec![0, 2], vec![1], vec![3]]);
        assert!(probe.numa_nodes.is_empty());
        assert_eq!(probe.io_uring.disabled_sysctl, None);
    }

    #[test]
    fn real_machine_probe_agrees_with_proc() {
        let probe = SystemProbe::run(Path::new("/")).unwrap();
        assert!(!probe.online.is_empty());
        assert!(probe.memory_bytes > 0);
        // getrlimit and /proc/self/limits describe the same process.
        let limits = fs::read_to_string("/proc/self/limits").unwrap();
        assert_eq!(probe.memlock, limit_from_proc(&limits, "Max locked memory").unwrap());
        assert_eq!(probe.nofile, limit_from_proc(&limits, "Max open files").unwrap());
        // So do sched_getaffinity and /proc/self/status.
        let status = allowed_cpus_from_status_of_real_proc();
        assert_eq!(probe.allowed, status);
    }

    fn allowed_cpus_from_status_of_real_proc() -> Vec<usize> {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap();
        parse_cpu_list(line.trim()).unwrap()
    }

    #[test]
    fn limits_rows_parse() {
        let text = "Max open files            1024                 4096                 files     \n\
                    Max locked memory         65536                65536                bytes     \n";
        assert_eq!(limit_from_proc(text, "Max open files").unwrap(), Limit::Value(1024));
        assert_eq!(limit_from_proc(text, "Max locked memory").unwrap(), Limit::Value(65536));
        assert!(limit_from_proc(text, "Max processes").is_err());
        assert!(Limit::Unlimited.allows(u64::MAX));
        assert!(!Limit::Value(10).allows(11));
    }
}
