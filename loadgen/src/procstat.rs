//! Broker CPU time, read from /proc (Linux only), for `--broker-pid` and the
//! suite: "broker cores" (CPU-seconds per wall second) and "broker CPU-s/GB"
//! (CPU-seconds per 10^9 value bytes produced), both over the measured window.
//!
//! Finding the broker: the listening socket of `HOST:PORT` in
//! /proc/net/tcp and /proc/net/tcp6 gives a socket inode; the process with
//! an fd linked to `socket:[inode]` is the broker. That needs permission to
//! read the broker's /proc/PID/fd (same user, or root); when it fails the
//! caller says so and reports CPU as n/a, or is given `--broker-pid`.
//!
//! CPU time is utime + stime of the whole process (every thread) from
//! /proc/PID/stat, in clock ticks (`sysconf(_SC_CLK_TCK)` per second).
//!
//! Process CPU misses kernel work done for the broker in threads that
//! belong to no process: workqueue kworkers (O_DSYNC direct-I/O completion,
//! unwritten-extent conversion, block-layer flushes) and softirqs charged
//! to whatever they interrupted. So at the same two instants the window
//! also reads the host's busy time (/proc/stat) and the load generator's
//! own CPU (/proc/self/stat): host busy less the load generator is the
//! broker with that kernel work, plus anything else running on the host.

use crate::limits::proc_fds_per_pid_scanned_max;
use crate::limits::proc_net_tcp_lines_max;
use crate::limits::proc_pids_scanned_max;
use crate::limits::proc_stat_head_bytes_max;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// TCP_LISTEN in the kernel's `st` column.
const tcp_state_listen: u8 = 0x0A;

/// One row of /proc/net/tcp or /proc/net/tcp6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

/// Parses /proc/net/tcp or /proc/net/tcp6 text. Rows that do not parse are
/// skipped (the header, or a format this code does not know).
///
/// Addresses are hex: IPv4 is one 32-bit word and IPv6 four, each printed
/// as the kernel holds it in memory (so the bytes of each word are in host
/// order); the port is a plain hex number.
pub fn parse_net_tcp(text: &str) -> Vec<TcpSocket> {
    text.lines().take(proc_net_tcp_lines_max).filter_map(parse_net_tcp_line).collect()
}

fn parse_net_tcp_line(line: &str) -> Option<TcpSocket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    if fields.len() < 10 || !fields[0].ends_with(':') {
        return None;
    }
    let (address, port) = fields[1].split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(u32::from_str_radix(address, 16).ok()?.to_ne_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                let word = u32::from_str_radix(address.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    let state = u8::from_str_radix(fields[3], 16).ok()?;
    let inode = fields[9].parse().ok()?;
    Some(TcpSocket { local: SocketAddr::new(ip, port), state, inode })
}

/// Whether a socket listening on `local` accepts connections to `wanted`:
/// same port, and the same address, or a wildcard one (IPv4-mapped IPv6
/// counts as IPv4).
fn listens_for(local: SocketAddr, wanted: SocketAddr) -> bool {
    if local.port() != wanted.port() {
        return false;
    }
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let (local_ip, wanted_ip) = (canonical(local.ip()), canonical(wanted.ip()));
    local_ip == wanted_ip || local_ip.is_unspecified()
}

/// Inodes of the sockets listening for `wanted` in the parsed tables.
pub fn listening_inodes(sockets: &[TcpSocket], wanted: &[SocketAddr]) -> Vec<u64> {
    let mut inodes: Vec<u64> = sockets
        .iter()
        .filter(|s| s.state == tcp_state_listen && s.inode != 0)
        .filter(|s| wanted.iter().any(|w| listens_for(s.local, *w)))
        .map(|s| s.inode)
        .collect();
    inodes.sort_unstable();
    inodes.dedup();
    inodes
}

/// The processes holding any of `inodes` as an fd, lowest PID first.
/// Processes whose fds cannot be read (another user's, or gone) are skipped.
pub fn pids_holding(inodes: &[u64]) -> Vec<u32> {
    let links: Vec<String> = inodes.iter().map(|inode| format!("socket:[{inode}]")).collect();
    let mut pids = Vec::new();
    let Ok(processes) = std::fs::read_dir("/proc") else { return pids };
    for entry in processes.take(proc_pids_scanned_max).flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        let holds = fds.take(proc_fds_per_pid_scanned_max).flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| links.iter().any(|l| target.as_os_str() == l.as_str()))
        });
        if holds {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// The PID of the process listening on `host_port` (e.g. `127.0.0.1:9092`).
/// An error says why none was found.
pub fn pid_of_listener(host_port: &str) -> Result<u32, String> {
    let wanted: Vec<SocketAddr> =
        host_port.to_socket_addrs().map_err(|e| format!("cannot resolve {host_port}: {e}"))?.collect();
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            sockets.extend(parse_net_tcp(&text));
        }
    }
    let inodes = listening_inodes(&sockets, &wanted);
    if inodes.is_empty() {
        return Err(format!(
            "no listening socket for {host_port} in /proc/net/tcp or tcp6 (another network namespace?)"
        ));
    }
    match pids_holding(&inodes)[..] {
        [] => Err(format!("no readable /proc/*/fd holds the socket of {host_port} (another user's process?)")),
        [pid] => Ok(pid),
        [first, ..] => {
            eprintln!("warning: several processes hold the listening socket of {host_port}; using PID {first}");
            Ok(first)
        }
    }
}

/// utime + stime, in clock ticks, from the text of /proc/PID/stat. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_stat_ticks(text: &str) -> Result<u64, String> {
    let rest = text.rsplit_once(')').map(|(_, rest)| rest).ok_or("no ')' after the command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let field = |index: usize| -> Result<u64, String> {
        let text = fields.get(index).ok_or_else(|| format!("only {} fields after the command name", fields.len()))?;
        text.parse().map_err(|_| format!("field {} is {text:?}, not a number", index + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// CPU time used so far by process `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let ticks = parse_stat_ticks(&text).map_err(|e| format!("{path}: {e}"))?;
    Ok(ticks as f64 / clock_ticks_per_sec() as f64)
}

/// Value bytes in one GB, the unit of "broker CPU-s/GB" in the run's JSON
/// and the suite's report (10^9, as MB/s is 10^6 bytes/s).
pub const bytes_per_gb: f64 = 1e9;

/// A process's CPU time over a stretch of wall time (a run's measured window).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuUse {
    /// CPU-seconds used between the two readings (utime + stime, all threads).
    pub cpu_sec: f64,
    /// Wall seconds between the two readings.
    pub wall_sec: f64,
}

impl CpuUse {
    pub fn cores(&self) -> Option<f64> {
        cores_used(self.cpu_sec, self.wall_sec)
    }

    pub fn cpu_s_per_gb(&self, bytes: u64) -> Option<f64> {
        cpu_s_per_gb(self.cpu_sec, bytes)
    }
}

/// Cores used on average: CPU-seconds per wall second (1.0 = one core busy
/// the whole time). None for an empty window or a nonsensical reading.
pub fn cores_used(cpu_sec: f64, wall_sec: f64) -> Option<f64> {
    (cpu_sec.is_finite() && cpu_sec >= 0.0 && wall_sec.is_finite() && wall_sec > 0.0).then(|| cpu_sec / wall_sec)
}

/// CPU-seconds per GB (`bytes_per_gb` value bytes) produced; None when
/// nothing was produced, so that a run with no bytes is n/a, not infinite.
pub fn cpu_s_per_gb(cpu_sec: f64, bytes: u64) -> Option<f64> {
    (cpu_sec.is_finite() && cpu_sec >= 0.0 && bytes > 0).then(|| cpu_sec / (bytes as f64 / bytes_per_gb))
}

/// The host's busy time, in clock ticks, from the aggregate `cpu ` line of
/// /proc/stat (summed over all CPUs): user, nice, system, irq, softirq and
/// steal added up, fields 1, 2, 3, 6, 7 and 8 of
/// `cpu user nice system idle iowait irq softirq steal guest guest_nice`.
///
/// - idle and iowait are left out: both are time a CPU had nothing to run
///   (iowait is idle time while some task waits for I/O).
/// - guest and guest_nice are left out because the kernel already counts
///   them inside user and nice: adding them would count guest time twice.
/// - steal is counted: time the hypervisor ran something else while this
///   VM's CPU had work, so it was not idle capacity. It is 0 on bare metal;
///   on a VM with steal it inflates the figure (loadgen/README.md says so).
///
/// Kernels before 2.6.11 print no steal field; it counts as 0 there.
pub fn parse_proc_stat_busy(text: &str) -> Result<u64, String> {
    let line =
        text.lines().find(|line| line.split_whitespace().next() == Some("cpu")).ok_or("no aggregate \"cpu \" line")?;
    let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
    let field = |index: usize| -> Result<u64, String> {
        match fields.get(index) {
            Some(text) => text.parse().map_err(|_| format!("cpu field {} is {text:?}, not a number", index + 1)),
            // Only steal (field 8) may be missing: checked below.
            None => Ok(0),
        }
    };
    if fields.len() < 7 {
        return Err(format!("the cpu line has {} fields, not at least 7 (user ... softirq)", fields.len()));
    }
    // user, nice, system, irq, softirq, steal (0-based indices).
    [0, 1, 2, 5, 6, 7]
        .into_iter()
        .try_fold(0u64, |sum, index| sum.checked_add(field(index)?).ok_or_else(|| "the cpu fields overflow".to_owned()))
}

/// Reads at most `bytes_max` bytes of `path` (a /proc file whose useful
/// part is at its start).
fn read_head(path: &str, bytes_max: u64) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut text = String::new();
    file.take(bytes_max).read_to_string(&mut text).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(text)
}

/// The host's busy CPU time and the load generator's own, so far, in
/// seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostSample {
    /// Busy time of every CPU together (`parse_proc_stat_busy`).
    pub busy_sec: f64,
    /// This process's utime + stime, all threads (exited ones too).
    pub loadgen_sec: f64,
}

/// Reads /proc/stat and /proc/self/stat now.
pub fn host_sample() -> Result<HostSample, String> {
    let busy = parse_proc_stat_busy(&read_head("/proc/stat", proc_stat_head_bytes_max)?)
        .map_err(|e| format!("/proc/stat: {e}"))?;
    let own = std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("cannot read /proc/self/stat: {e}"))?;
    let own = parse_stat_ticks(&own).map_err(|e| format!("/proc/self/stat: {e}"))?;
    let ticks_per_sec = clock_ticks_per_sec() as f64;
    Ok(HostSample { busy_sec: busy as f64 / ticks_per_sec, loadgen_sec: own as f64 / ticks_per_sec })
}

/// The host's CPU over a stretch of wall time (a run's measured window).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostUse {
    /// Busy CPU-seconds of the whole host between the two readings.
    pub busy_sec: f64,
    /// The load generator's own CPU-seconds between the same readings.
    pub loadgen_sec: f64,
    /// Wall seconds between the two readings.
    pub wall_sec: f64,
}

/// What the host did apart from the load generator: host busy less the
/// load generator's own CPU-seconds. The two counters are kept differently
/// (/proc/stat charges each whole tick to whatever was running; a
/// process's utime + stime is its exact run time split by such samples),
/// so on a nearly idle host the difference can come out a little below 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rest {
    /// The difference, clamped to 0.
    pub cpu_sec: f64,
    /// The difference before clamping, when it was below 0.
    pub clamped_from: Option<f64>,
}

/// `busy_sec - loadgen_sec`, clamped to 0 (see `Rest`).
pub fn host_minus_loadgen(busy_sec: f64, loadgen_sec: f64) -> Rest {
    let difference = busy_sec - loadgen_sec;
    if difference < 0.0 {
        Rest { cpu_sec: 0.0, clamped_from: Some(difference) }
    } else {
        Rest { cpu_sec: difference, clamped_from: None }
    }
}

impl HostUse {
    pub fn busy_cores(&self) -> Option<f64> {
        cores_used(self.busy_sec, self.wall_sec)
    }

    pub fn loadgen_cores(&self) -> Option<f64> {
        cores_used(self.loadgen_sec, self.wall_sec)
    }

    pub fn rest(&self) -> Rest {
        host_minus_loadgen(self.busy_sec, self.loadgen_sec)
    }

    pub fn rest_cores(&self) -> Option<f64> {
        cores_used(self.rest().cpu_sec, self.wall_sec)
    }

    /// The rest per GB, with the divisor of `CpuUse::cpu_s_per_gb`.
    pub fn rest_cpu_s_per_gb(&self, bytes: u64) -> Option<f64> {
        cpu_s_per_gb(self.rest().cpu_sec, bytes)
    }
}

/// The host's CPU between two samples `wall_sec` apart. Neither counter
/// goes backwards on a running system; if one did, the figure is refused.
pub fn host_use(before: HostSample, after: HostSample, wall_sec: f64) -> Result<HostUse, String> {
    if after.busy_sec < before.busy_sec {
        return Err(format!("the host's busy time went back from {:.2} s to {:.2} s", before.busy_sec, after.busy_sec));
    }
    if after.loadgen_sec < before.loadgen_sec {
        return Err(format!(
            "the load generator's CPU time went back from {:.2} s to {:.2} s",
            before.loadgen_sec, after.loadgen_sec
        ));
    }
    Ok(HostUse {
        busy_sec: after.busy_sec - before.busy_sec,
        loadgen_sec: after.loadgen_sec - before.loadgen_sec,
        wall_sec,
    })
}

/// One reading, taken at one instant: the broker's CPU-seconds so far and
/// the host's sample. Each part may fail on its own (an exited broker
/// still leaves the host figures, and the other way round).
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub broker_sec: Result<f64, String>,
    pub host: Result<HostSample, String>,
}

/// Reads process `pid` and the host now, back to back (tens of µs apart).
pub fn reading(pid: u32) -> Reading {
    Reading { broker_sec: cpu_seconds(pid), host: host_sample() }
}

/// What a window measured: the broker's CPU and the host's, each over the
/// same two readings, or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowUse {
    pub broker: Result<CpuUse, String>,
    pub host: Result<HostUse, String>,
}

/// The broker's and the host's CPU time over a window of the run's clock,
/// read by the main thread as it passes the window's start and end
/// (`--broker-pid`). Both are read at the same two instants, so the broker
/// and host figures cover the same stretch of time. The reading itself is
/// passed in (`procstat::reading`, or a stand-in in tests), so this is only
/// the bookkeeping.
#[derive(Debug)]
pub struct WindowCpu {
    pid: u32,
    start_ns: u64,
    end_ns: u64,
    /// (when, what) read at the window's start.
    start: Option<(u64, Reading)>,
    /// The result once the end was read, or why there is none.
    result: Option<WindowUse>,
}

impl WindowCpu {
    pub fn new(pid: u32, start_ns: u64, end_ns: u64) -> WindowCpu {
        WindowCpu { pid, start_ns, end_ns, start: None, result: None }
    }

    /// When the next reading is due (None once both are taken), so the
    /// caller can wake up on time rather than at its next tick.
    pub fn next_reading_ns(&self) -> Option<u64> {
        match (&self.start, &self.result) {
            (_, Some(_)) => None,
            (None, None) => Some(self.start_ns),
            (Some(_), None) => Some(self.end_ns),
        }
    }

    /// Takes the start reading at the first call at or after the window's
    /// start, and the end reading at the first call at or after its end.
    pub fn poll(&mut self, now_ns: u64, read: impl Fn(u32) -> Reading) {
        if self.result.is_some() || now_ns < self.start_ns {
            return;
        }
        if self.start.is_none() {
            let reading = read(self.pid);
            if let (Err(broker), Err(host)) = (&reading.broker_sec, &reading.host) {
                // Nothing to pair an end reading with.
                let at_start = |e: &String| format!("at the start of the measured window: {e}");
                self.result = Some(WindowUse { broker: Err(at_start(broker)), host: Err(at_start(host)) });
            } else {
                self.start = Some((now_ns, reading));
            }
            return;
        }
        if now_ns >= self.end_ns {
            self.read_end(now_ns, &read);
        }
    }

    /// The run is over. If it ended before the window's end (`--messages`),
    /// the end reading is taken now.
    pub fn finish(mut self, now_ns: u64, read: impl Fn(u32) -> Reading) -> WindowUse {
        if self.result.is_none() {
            if self.start.is_none() {
                let early = "the run ended before its measured window began";
                return WindowUse { broker: Err(early.into()), host: Err(early.into()) };
            }
            self.read_end(now_ns, &read);
        }
        self.result.unwrap_or_else(|| WindowUse { broker: Err("no reading".into()), host: Err("no reading".into()) })
    }

    fn read_end(&mut self, now_ns: u64, read: &impl Fn(u32) -> Reading) {
        let Some((started_ns, before)) = self.start.take() else { return };
        let after = read(self.pid);
        let wall_sec = now_ns.saturating_sub(started_ns) as f64 / 1e9;
        let broker = match (before.broker_sec, after.broker_sec) {
            (Err(e), _) => Err(format!("at the start of the measured window: {e}")),
            (_, Err(e)) => Err(format!("at the end of the measured window: {e}")),
            // CPU time never goes backwards in one process; a drop means the PID was reused.
            (Ok(before), Ok(after)) if after < before => Err(format!(
                "its CPU time went back from {before:.2} s to {after:.2} s (a new process with the same PID?)"
            )),
            (Ok(before), Ok(after)) => Ok(CpuUse { cpu_sec: after - before, wall_sec }),
        };
        let host = match (before.host, after.host) {
            (Err(e), _) => Err(format!("at the start of the measured window: {e}")),
            (_, Err(e)) => Err(format!("at the end of the measured window: {e}")),
            (Ok(before), Ok(after)) => host_use(before, after, wall_sec),
        };
        self.result = Some(WindowUse { broker, host });
    }
}

/// `sysconf(_SC_CLK_TCK)`, the unit of /proc/PID/stat's times (100 when
/// sysconf cannot say, the value on every mainstream Linux).
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const net_tcp: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 48213 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   2: 0100007F:2384 0100007F:C35A 01 00000000:00000000 00:00000000 00000000     0        0 48999 1 0000000000000000 20 4 30 10 -1
   3: garbage
";
    const net_tcp6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1A0B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1A0C 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9002 1 0000000000000000 100 0 0 10 0
";

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_proc_net_tcp() {
        let sockets = parse_net_tcp(net_tcp);
        assert_eq!(sockets.len(), 3, "header and garbage skipped");
        assert_eq!(sockets[0], TcpSocket { local: "127.0.0.1:9092".parse().unwrap(), state: 0x0A, inode: 48213 });
        assert_eq!(sockets[1].local, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(sockets[2].state, 0x01, "an established connection");
        let sockets6 = parse_net_tcp(net_tcp6);
        assert_eq!(sockets6[0].local, "[::1]:6667".parse().unwrap());
        assert_eq!(sockets6[1].local, "[::ffff:127.0.0.1]:6668".parse().unwrap());
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn finds_the_listener_not_the_connections() {
        let mut sockets = parse_net_tcp(net_tcp);
        sockets.extend(parse_net_tcp(net_tcp6));
        let find = |a: &str| listening_inodes(&sockets, &[a.parse().unwrap()]);
        assert_eq!(find("127.0.0.1:9092"), vec![48213], "the listener, not the established socket on the same port");
        assert_eq!(find("127.0.0.1:8080"), vec![777], "a wildcard listener accepts 127.0.0.1");
        assert_eq!(find("[::1]:6667"), vec![9001]);
        assert_eq!(find("127.0.0.1:6668"), vec![9002], "IPv4-mapped IPv6 listener");
        assert_eq!(find("127.0.0.2:9092"), Vec::<u64>::new(), "another address");
        assert_eq!(find("127.0.0.1:9093"), Vec::<u64>::new(), "another port");
    }

    #[test]
    fn discovers_its_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        assert_eq!(pid_of_listener(&address).unwrap(), std::process::id());
        drop(listener);
        let error = pid_of_listener(&address).unwrap_err();
        assert!(error.contains("no listening socket"), "{error}");
        assert!(pid_of_listener("no-such-host.invalid:1").is_err());
    }

    #[test]
    fn cores_and_cpu_per_gb() {
        assert_eq!(cores_used(1.5, 10.0), Some(0.15));
        assert_eq!(cores_used(0.0, 2.0), Some(0.0));
        assert_eq!(cores_used(4.0, 2.0), Some(2.0), "two cores busy");
        assert_eq!(cores_used(1.0, 0.0), None, "an empty window");
        assert_eq!(cores_used(-1.0, 1.0), None);
        assert_eq!(cores_used(f64::NAN, 1.0), None);
        assert_eq!(cpu_s_per_gb(0.5, 2_000_000_000), Some(0.25), "GB is 10^9 bytes");
        assert_eq!(cpu_s_per_gb(0.5, 0), None, "nothing produced: n/a, not infinite");
        let window = CpuUse { cpu_sec: 3.0, wall_sec: 10.0 };
        assert_eq!((window.cores(), window.cpu_s_per_gb(3_000_000_000)), (Some(0.3), Some(1.0)));
    }

    /// A reading of `broker` CPU-seconds, and a host sample of `busy`
    /// CPU-seconds of which the load generator's own are `own`.
    fn at((broker, busy, own): (f64, f64, f64)) -> Reading {
        Reading { broker_sec: Ok(broker), host: Ok(HostSample { busy_sec: busy, loadgen_sec: own }) }
    }

    #[test]
    fn window_reads_at_its_start_and_end() {
        let now = std::cell::Cell::new((10.0, 100.0, 1.0));
        let read = |_: u32| at(now.get());
        let mut window = WindowCpu::new(1, 2_000_000_000, 12_000_000_000);
        assert_eq!(window.next_reading_ns(), Some(2_000_000_000));
        window.poll(1_000_000_000, read);
        now.set((11.0, 110.0, 2.0));
        window.poll(2_000_000_000, read);
        assert_eq!(
            window.next_reading_ns(),
            Some(12_000_000_000),
            "the start is read once the window begins, not during warmup"
        );
        now.set((12.0, 120.0, 3.0));
        window.poll(11_999_999_999, read);
        now.set((13.0, 126.0, 4.0));
        window.poll(12_000_000_000, read);
        assert_eq!(window.next_reading_ns(), None);
        now.set((99.0, 999.0, 99.0));
        window.poll(13_000_000_000, read);
        let result = window.finish(20_000_000_000, read);
        assert_eq!(result.broker, Ok(CpuUse { cpu_sec: 2.0, wall_sec: 10.0 }), "the drain is not counted");
        assert_eq!(
            result.host,
            Ok(HostUse { busy_sec: 16.0, loadgen_sec: 2.0, wall_sec: 10.0 }),
            "the same two instants"
        );
    }

    #[test]
    fn window_cut_short_or_unreadable() {
        let read = |_: u32| at((5.0, 50.0, 1.0));
        let mut early = WindowCpu::new(1, 0, 10_000_000_000);
        early.poll(0, read);
        let result = early.finish(4_000_000_000, |_| at((6.0, 54.0, 2.0)));
        assert_eq!(result.broker, Ok(CpuUse { cpu_sec: 1.0, wall_sec: 4.0 }), "--messages ended it early");
        assert_eq!(result.host, Ok(HostUse { busy_sec: 4.0, loadgen_sec: 1.0, wall_sec: 4.0 }));
        let before = WindowCpu::new(1, 2_000_000_000, 10_000_000_000).finish(1_000_000_000, read);
        assert!(before.broker.unwrap_err().contains("before its measured window"));
        assert!(before.host.unwrap_err().contains("before its measured window"));

        // The broker exits: its figure is gone, the host's is not.
        let mut gone = WindowCpu::new(1, 0, 10);
        gone.poll(0, read);
        gone.poll(10, |_| Reading { broker_sec: Err("cannot read /proc/1/stat".into()), ..at((0.0, 51.0, 1.5)) });
        let result = gone.finish(20, read);
        assert!(result.broker.unwrap_err().contains("end of the measured window"));
        assert_eq!(result.host.map(|h| h.busy_sec), Ok(1.0));

        let mut reused = WindowCpu::new(1, 0, 10);
        reused.poll(0, read);
        reused.poll(10, |_| at((1.0, 50.0, 1.0)));
        assert!(reused.finish(20, read).broker.unwrap_err().contains("same PID"));

        // /proc/stat unreadable at the start: no host figure, the broker's stands.
        let mut no_proc_stat = WindowCpu::new(1, 0, 10);
        no_proc_stat.poll(0, |_| Reading { host: Err("cannot read /proc/stat".into()), ..at((5.0, 0.0, 0.0)) });
        assert_eq!(no_proc_stat.next_reading_ns(), Some(10), "the broker's end reading is still due");
        no_proc_stat.poll(10, |_| at((5.5, 60.0, 2.0)));
        let result = no_proc_stat.finish(20, read);
        assert!(result.host.unwrap_err().contains("start of the measured window"));
        assert_eq!(result.broker.map(|b| b.cpu_sec), Ok(0.5));

        let mut never = WindowCpu::new(1, 0, 10);
        never.poll(0, |_| Reading { broker_sec: Err("no such process".into()), host: Err("no /proc".into()) });
        assert_eq!(never.next_reading_ns(), None, "nothing to pair an end reading with");
        let result = never.finish(20, read);
        assert!(result.broker.unwrap_err().contains("start of the measured window"));
        assert!(result.host.unwrap_err().contains("no /proc"));
    }

    #[test]
    fn parses_the_proc_stat_cpu_line() {
        let text = "cpu  802152 7 279608 549210 284449 11 31481 1057 500 3\ncpu0 397665 0 141655 289335 136312 0 8895 536 0 0\nintr 1 2 3\n";
        // user + nice + system + irq + softirq + steal; not idle, iowait, guest, guest_nice.
        assert_eq!(parse_proc_stat_busy(text), Ok(802152 + 7 + 279608 + 11 + 31481 + 1057));
        assert_eq!(
            parse_proc_stat_busy("cpu  1 2 3 4 5 6 7\n"),
            Ok(1 + 2 + 3 + 6 + 7),
            "no steal field (before 2.6.11)"
        );
        assert_eq!(
            parse_proc_stat_busy("cpu0 1 2 3 4 5 6 7 8\ncpu 1 1 1 9 9 1 1 1 0 0"),
            Ok(6),
            "the aggregate line, not cpu0"
        );
        assert!(parse_proc_stat_busy("cpu0 1 2 3 4 5 6 7 8\n").unwrap_err().contains("no aggregate"));
        assert!(parse_proc_stat_busy("cpu  1 2 3 4 5 6\n").unwrap_err().contains("6 fields"));
        assert!(parse_proc_stat_busy("cpu  1 2 x 4 5 6 7 8\n").unwrap_err().contains("field 3"));
        assert!(parse_proc_stat_busy("cpu  1 2 3 4 5 6 7 -8\n").is_err());
        assert!(parse_proc_stat_busy(&format!("cpu  {} 1 0 0 0 0 0 0\n", u64::MAX)).unwrap_err().contains("overflow"));
        assert!(parse_proc_stat_busy("").is_err());
        let sample = host_sample().unwrap();
        assert!(sample.busy_sec >= 0.0 && sample.loadgen_sec >= 0.0, "{sample:?}");
    }

    #[test]
    fn host_arithmetic() {
        let sample = |busy_sec, loadgen_sec| HostSample { busy_sec, loadgen_sec };
        let near = |value: Option<f64>, expected: f64| value.is_some_and(|v| (v - expected).abs() < 1e-9);
        let host = host_use(sample(100.0, 10.0), sample(116.4, 14.7), 10.0).unwrap();
        assert!(near(host.busy_cores(), 1.64), "{host:?}");
        assert!(near(host.loadgen_cores(), 0.47), "{host:?}");
        assert!(near(Some(host.rest().cpu_sec), 11.7) && host.rest().clamped_from.is_none(), "{host:?}");
        assert!(near(host.rest_cores(), 1.17), "busy less the load generator: {host:?}");
        assert!(near(host.rest_cpu_s_per_gb(2_000_000_000), 5.85), "GB is 10^9 bytes: {host:?}");
        assert_eq!(host.rest_cpu_s_per_gb(0), None, "nothing produced: n/a");
        // Tick sampling put the host a little below the load generator: 0, noted.
        let idle = host_use(sample(0.0, 0.0), sample(0.50, 0.53), 1.0).unwrap();
        assert_eq!(idle.rest().cpu_sec, 0.0);
        assert!(near(idle.rest().clamped_from, -0.03), "{:?}", idle.rest());
        assert_eq!(idle.rest_cores(), Some(0.0));
        assert_eq!(host_minus_loadgen(2.0, 2.0), Rest { cpu_sec: 0.0, clamped_from: None });
        assert!(host_use(sample(10.0, 1.0), sample(9.0, 2.0), 1.0).unwrap_err().contains("host's busy time went back"));
        assert!(host_use(sample(10.0, 2.0), sample(11.0, 1.0), 1.0)
            .unwrap_err()
            .contains("load generator's CPU time went back"));
        assert_eq!(host_use(sample(1.0, 1.0), sample(2.0, 1.0), 0.0).unwrap().busy_cores(), None, "an empty window");
    }

    #[test]
    fn reads_cpu_ticks() {
        let text = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_ticks(text).unwrap(), 300);
        assert!(parse_stat_ticks("4242 (x) S 1 2").is_err());
        assert!(parse_stat_ticks("no parenthesis").is_err());
        let mine = cpu_seconds(std::process::id()).unwrap();
        assert!(mine >= 0.0);
        assert!(clock_ticks_per_sec() > 0);
    }
}
