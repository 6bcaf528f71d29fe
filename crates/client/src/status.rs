//! `ringstream status --metrics ADDR`: a live per-shard table from the
//! broker's `/metrics` endpoint, refreshed every interval. Rates and the
//! p99 latencies are over the interval: differences of two scrapes
//! (histogram bucket deltas for the quantiles). Blocking, std only; runs
//! outside the broker.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::metrics_text::{self as text, Exposition};
use ringstream_core::limits::scrape_response_bytes_max;

const timeout: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The broker's metrics address (its `--metrics-listen`), host:port.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: String,
    /// Seconds between tables.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Tables to print before exiting (default: until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
}

/// GETs `path` from `address`; returns (status, body).
pub fn http_get(address: &str, path: &str) -> Result<(u16, String), String> {
    http_request(address, "GET", path)
}

/// Sends a bodiless `method` request for `path` to `address` (the metrics
/// and admin listener); returns (status, body).
pub fn http_request(address: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    let fail = |e: std::io::Error| format!("cannot reach the metrics endpoint {address}: {e}");
    let resolved = address
        .to_socket_addrs()
        .map_err(fail)?
        .next()
        .ok_or_else(|| format!("cannot reach the metrics endpoint {address}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&resolved, timeout).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.set_write_timeout(Some(timeout)).map_err(fail)?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .map_err(fail)?;
    let mut response = Vec::new();
    Read::by_ref(&mut stream).take(scrape_response_bytes_max as u64 + 1).read_to_end(&mut response).map_err(fail)?;
    if response.len() > scrape_response_bytes_max {
        return Err(format!("{address}{path}: response larger than {scrape_response_bytes_max} bytes"));
    }
    let text = String::from_utf8(response).map_err(|_| format!("{address}{path}: response is not UTF-8"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{address}{path}: no HTTP response head"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| head.starts_with("HTTP/1."))
        .ok_or_else(|| format!("{address}{path}: bad status line {:?}", head.lines().next().unwrap_or("")))?;
    Ok((status, body.to_owned()))
}

/// Scrapes and parses `/metrics`.
pub fn scrape(address: &str) -> Result<Exposition, String> {
    let (status, body) = http_get(address, "/metrics")?;
    if status != 200 {
        return Err(format!("{address}/metrics answered {status}: {}", body.trim()));
    }
    text::parse(&body).map_err(|e| format!("{address}/metrics: {e}"))
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub shard: String,
    /// Reactor busy fraction over the interval, in percent.
    pub load_percent: f64,
    pub partitions: f64,
    pub connections: f64,
    pub bytes_in_per_second: f64,
    pub bytes_out_per_second: f64,
    pub records_in_per_second: f64,
    /// p99 request latency over the interval, ms (None: no requests).
    pub p99_ms: Option<f64>,
    pub p99_produce_ms: Option<f64>,
    /// Cache hits over lookups in the interval, percent (None: no lookups).
    pub cache_hit_percent: Option<f64>,
    /// Times the shard parked and was woken, per second: with the load,
    /// how much work one wake-up carries.
    pub wakeups_per_second: f64,
    /// Router messages delivered to the shard per second.
    pub cross_shard_per_second: f64,
}

/// The shards in `exposition`, by the `shard` label of `ringstream_partitions`.
fn shards(exposition: &Exposition) -> Vec<String> {
    let mut shards: Vec<String> =
        exposition.samples("ringstream_partitions").filter_map(|s| s.label("shard").map(str::to_owned)).collect();
    shards.sort_by_key(|s| s.parse::<u64>().unwrap_or(u64::MAX));
    shards
}

fn counter(exposition: &Exposition, name: &str, shard: &str) -> f64 {
    exposition.value(name, &[("shard", shard)]).unwrap_or(0.0)
}

/// Bucket deltas of every `ringstream_request_latency_seconds` series of
/// `shard` (only `api` if given), summed: (upper bound, cumulative count).
fn latency_deltas(before: &Exposition, after: &Exposition, shard: &str, api: Option<&str>) -> Vec<(f64, f64)> {
    let mut summed: Vec<(f64, f64)> = Vec::new();
    let Some(family) = after.family("ringstream_request_latency_seconds") else { return summed };
    let apis: Vec<&str> = family
        .samples
        .iter()
        .filter(|s| s.label("shard") == Some(shard) && s.name.ends_with("_count"))
        .filter_map(|s| s.label("api"))
        .filter(|a| api.map_or(true, |want| want == *a))
        .collect();
    for name in apis {
        let labels = [("shard", shard), ("api", name)];
        let Some(now) = after.histogram("ringstream_request_latency_seconds", &labels) else { continue };
        let then = before.histogram("ringstream_request_latency_seconds", &labels);
        for (i, &(le, count)) in now.buckets.iter().enumerate() {
            let earlier = then.as_ref().and_then(|h| h.buckets.iter().find(|b| b.0 == le)).map_or(0.0, |b| b.1);
            let delta = (count - earlier).max(0.0);
            match summed.get_mut(i) {
                Some(slot) if slot.0 == le => slot.1 += delta,
                _ => summed.push((le, delta)),
            }
        }
    }
    summed
}

/// The `q` quantile of cumulative buckets, interpolated within the bucket
/// as Prometheus's `histogram_quantile` does; None when empty. A quantile
/// in the `+Inf` bucket is reported as the largest finite bound.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(previous.0);
            }
            let inside = count - previous.1;
            let fraction = if inside > 0.0 { (rank - previous.1) / inside } else { 1.0 };
            return Some(previous.0 + (le - previous.0) * fraction);
        }
        previous = (le, count);
    }
    Some(previous.0)
}

/// The table for the interval between two scrapes `seconds` apart.
pub fn rows(before: &Exposition, after: &Exposition, seconds: f64) -> Vec<Row> {
    let seconds = seconds.max(1e-6);
    shards(after)
        .into_iter()
        .map(|shard| {
            let delta = |name: &str| (counter(after, name, &shard) - counter(before, name, &shard)).max(0.0);
            let hits = delta("ringstream_batch_cache_hits_total");
            let misses = delta("ringstream_batch_cache_misses_total");
            let p99 = |api| quantile(0.99, &latency_deltas(before, after, &shard, api)).map(|s| s * 1e3);
            Row {
                load_percent: (delta("ringstream_reactor_busy_seconds_total") / seconds * 100.0).min(100.0),
                partitions: counter(after, "ringstream_partitions", &shard),
                connections: counter(after, "ringstream_connections", &shard),
                bytes_in_per_second: delta("ringstream_bytes_in_total") / seconds,
                bytes_out_per_second: delta("ringstream_bytes_out_total") / seconds,
                records_in_per_second: delta("ringstream_records_in_total") / seconds,
                p99_ms: p99(None),
                p99_produce_ms: p99(Some("Produce")),
                cache_hit_percent: (hits + misses > 0.0).then(|| hits / (hits + misses) * 100.0),
                wakeups_per_second: delta("ringstream_shard_wakeups_total") / seconds,
                cross_shard_per_second: delta("ringstream_cross_shard_messages_received_total") / seconds,
                shard,
            }
        })
        .collect()
}

pub const header: &str =
    "shard  load%  partitions  connections      in_B/s     out_B/s   in_rec/s  p99_ms  p99_produce_ms  cache_hit%  wakeups/s  xshard/s";

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

pub fn format_row(row: &Row) -> String {
    format!(
        "{:>5}  {:>5.1}  {:>10}  {:>11}  {:>10.0}  {:>10.0}  {:>9.0}  {:>6}  {:>14}  {:>10}  {:>9.0}  {:>8.0}",
        row.shard,
        row.load_percent,
        row.partitions,
        row.connections,
        row.bytes_in_per_second,
        row.bytes_out_per_second,
        row.records_in_per_second,
        optional(row.p99_ms, 2),
        optional(row.p99_produce_ms, 2),
        optional(row.cache_hit_percent, 1),
        row.wakeups_per_second,
        row.cross_shard_per_second,
    )
}

/// Runs the tool: one table per interval, `count` times (or forever).
pub fn run(args: &StatusArgs) -> Result<(), String> {
    if !(args.interval.is_finite() && args.interval > 0.0 && args.interval <= 3600.0) {
        return Err(format!("--interval {} must be between 0 and 3600 seconds", args.interval));
    }
    if args.count == Some(0) {
        return Err("--count must be at least 1".into());
    }
    let interval = Duration::from_secs_f64(args.interval);
    let mut before = scrape(&args.metrics)?;
    let mut taken = Instant::now();
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    while args.count.map_or(true, |count| printed < count) {
        std::thread::sleep(interval);
        let after = scrape(&args.metrics)?;
        let now = Instant::now();
        let seconds = now.duration_since(taken).as_secs_f64();
        let mut table = format!("{} every {:.1}s\n{header}\n", args.metrics, args.interval);
        for row in rows(&before, &after, seconds) {
            table.push_str(&format_row(&row));
            table.push('\n');
        }
        if printed > 0 {
            table.insert(0, '\n');
        }
        out.write_all(table.as_bytes()).and_then(|()| out.flush()).map_err(|e| format!("writing the table: {e}"))?;
        printed += 1;
        (before, taken) = (after, now);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        assert_eq!(quantile(0.99, &[]), None);
        assert_eq!(quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        // 100 observations, all in (0.001, 0.002]: p99 is 99% of the way.
        let buckets = [(0.001, 0.0), (0.002, 100.0), (f64::INFINITY, 100.0)];
        let p99 = quantile(0.99, &buckets).unwrap();
        assert!((p99 - 0.00199).abs() < 1e-9, "{p99}");
        // In the +Inf bucket: the largest finite bound.
        assert_eq!(quantile(0.99, &[(0.5, 1.0), (f64::INFINITY, 100.0)]), Some(0.5));
    }

    #[test]
    fn rows_are_interval_deltas() {
        let scrape = |bytes: u64, busy: f64, hits: u64, produce_fast: u64| {
            format!(
                "# TYPE ringstream_bytes_in counter\nringstream_bytes_in_total{{shard=\"0\"}} {bytes}\n\
                 # TYPE ringstream_batch_cache_hits counter\nringstream_batch_cache_hits_total{{shard=\"0\"}} {hits}\n\
                 # TYPE ringstream_batch_cache_misses counter\nringstream_batch_cache_misses_total{{shard=\"0\"}} 1\n\
                 # TYPE ringstream_reactor_busy_seconds counter\nringstream_reactor_busy_seconds_total{{shard=\"0\"}} {busy}\n\
                 # TYPE ringstream_partitions gauge\nringstream_partitions{{shard=\"0\"}} 4\n\
                 # TYPE ringstream_shard_wakeups counter\nringstream_shard_wakeups_total{{shard=\"0\"}} {hits}0\n\
                 # TYPE ringstream_request_latency_seconds histogram\n\
                 ringstream_request_latency_seconds_sum{{shard=\"0\",api=\"Produce\"}} 0\n\
                 ringstream_request_latency_seconds_count{{shard=\"0\",api=\"Produce\"}} {produce_fast}\n\
                 ringstream_request_latency_seconds_bucket{{shard=\"0\",api=\"Produce\",le=\"0.001\"}} {produce_fast}\n\
                 ringstream_request_latency_seconds_bucket{{shard=\"0\",api=\"Produce\",le=\"+Inf\"}} {produce_fast}\n# EOF\n"
            )
        };
        let before = text::parse(&scrape(1000, 1.0, 10, 0)).unwrap();
        let after = text::parse(&scrape(3000, 1.5, 13, 50)).unwrap();
        let rows = rows(&before, &after, 2.0);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.shard, "0");
        assert_eq!(row.bytes_in_per_second, 1000.0);
        assert_eq!(row.load_percent, 25.0);
        assert_eq!(row.partitions, 4.0);
        assert_eq!(row.cache_hit_percent, Some(100.0)); // 3 hits, no new misses
        assert_eq!(row.wakeups_per_second, 15.0); // 100 to 130 in 2 s
        assert_eq!(row.cross_shard_per_second, 0.0); // not in the scrape: no change
        assert!(row.p99_produce_ms.unwrap() <= 1.0);
        assert_eq!(row.p99_ms, row.p99_produce_ms);
        assert!(format_row(row).starts_with("    0"));
    }
}
