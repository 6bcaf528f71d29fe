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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Lines of one /proc/net/tcp* file looked at (a host with more sockets is
/// only partly searched, and the broker may then not be found).
const proc_net_tcp_lines_max: usize = 1_000_000;
/// Processes, and fds per process, looked at when searching for a socket.
const proc_pids_scanned_max: usize = 100_000;
const proc_fds_per_pid_scanned_max: usize = 1_000_000;
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
    let wanted: Vec<SocketAddr> = host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host_port}: {e}"))?
        .collect();
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            sockets.extend(parse_net_tcp(&text));
        }
    }
    let inodes = listening_inodes(&sockets, &wanted);
    if inodes.is_empty() {
        return Err(format!("no listening socket for {host_port} in /proc/net/tcp or tcp6 (another network namespace?)"));
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

/// A process's CPU time over a window of the run's clock, read by the main
/// thread as it passes the window's start and end (`--broker-pid`). The
/// reading itself is passed in (`procstat::cpu_seconds`, or a stand-in in
/// tests), so this is only the bookkeeping.
#[derive(Debug)]
pub struct WindowCpu {
    pid: u32,
    start_ns: u64,
    end_ns: u64,
    /// (when, CPU-seconds) read at the window's start.
    start: Option<(u64, f64)>,
    /// The result once the end was read, or why there is none.
    result: Option<Result<CpuUse, String>>,
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
    pub fn poll(&mut self, now_ns: u64, read: impl Fn(u32) -> Result<f64, String>) {
        if self.result.is_some() || now_ns < self.start_ns {
            return;
        }
        if self.start.is_none() {
            match read(self.pid) {
                Ok(cpu) => self.start = Some((now_ns, cpu)),
                Err(e) => self.result = Some(Err(format!("at the start of the measured window: {e}"))),
            }
            return;
        }
        if now_ns >= self.end_ns {
            self.read_end(now_ns, &read);
        }
    }

    /// The run is over. If it ended before the window's end (`--messages`),
    /// the end reading is taken now.
    pub fn finish(mut self, now_ns: u64, read: impl Fn(u32) -> Result<f64, String>) -> Result<CpuUse, String> {
        if self.result.is_none() {
            if self.start.is_none() {
                return Err("the run ended before its measured window began".into());
            }
            self.read_end(now_ns, &read);
        }
        self.result.unwrap_or_else(|| Err("no reading".into()))
    }

    fn read_end(&mut self, now_ns: u64, read: &impl Fn(u32) -> Result<f64, String>) {
        let Some((started_ns, before)) = self.start else { return };
        self.result = Some(match read(self.pid) {
            // CPU time never goes backwards in one process; a drop means the PID was reused.
            Ok(after) if after < before => {
                Err(format!("its CPU time went back from {before:.2} s to {after:.2} s (a new process with the same PID?)"))
            }
            Ok(after) => Ok(CpuUse { cpu_sec: after - before, wall_sec: now_ns.saturating_sub(started_ns) as f64 / 1e9 }),
            Err(e) => Err(format!("at the end of the measured window: {e}")),
        });
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

    #[test]
    fn window_reads_at_its_start_and_end() {
        let cpu = std::cell::Cell::new(10.0);
        let read = |_: u32| -> Result<f64, String> { Ok(cpu.get()) };
        let mut window = WindowCpu::new(1, 2_000_000_000, 12_000_000_000);
        assert_eq!(window.next_reading_ns(), Some(2_000_000_000));
        window.poll(1_000_000_000, read);
        cpu.set(11.0);
        window.poll(2_000_000_000, read);
        assert_eq!(window.next_reading_ns(), Some(12_000_000_000), "the start is read once the window begins, not during warmup");
        cpu.set(12.0);
        window.poll(11_999_999_999, read);
        cpu.set(13.0);
        window.poll(12_000_000_000, read);
        assert_eq!(window.next_reading_ns(), None);
        cpu.set(99.0);
        window.poll(13_000_000_000, read);
        assert_eq!(window.finish(20_000_000_000, read), Ok(CpuUse { cpu_sec: 2.0, wall_sec: 10.0 }), "the drain is not counted");
    }

    #[test]
    fn window_cut_short_or_unreadable() {
        let read = |_: u32| -> Result<f64, String> { Ok(5.0) };
        let mut early = WindowCpu::new(1, 0, 10_000_000_000);
        early.poll(0, read);
        assert_eq!(early.finish(4_000_000_000, |_| Ok(6.0)), Ok(CpuUse { cpu_sec: 1.0, wall_sec: 4.0 }), "--messages ended it early");
        let before = WindowCpu::new(1, 2_000_000_000, 10_000_000_000);
        assert!(before.finish(1_000_000_000, read).unwrap_err().contains("before its measured window"));
        let mut gone = WindowCpu::new(1, 0, 10);
        gone.poll(0, read);
        gone.poll(10, |_| Err("cannot read /proc/1/stat".into()));
        assert!(gone.finish(20, read).unwrap_err().contains("end of the measured window"));
        let mut reused = WindowCpu::new(1, 0, 10);
        reused.poll(0, read);
        reused.poll(10, |_| Ok(1.0));
        assert!(reused.finish(20, read).unwrap_err().contains("same PID"));
        let mut never = WindowCpu::new(1, 0, 10);
        never.poll(0, |_| Err("no such process".into()));
        assert_eq!(never.next_reading_ns(), None);
        assert!(never.finish(20, read).unwrap_err().contains("start of the measured window"));
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
