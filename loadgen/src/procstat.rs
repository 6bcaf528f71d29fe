//! Broker CPU time, read from /proc (Linux only), for the suite's
//! "broker CPU-s/GB".
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
