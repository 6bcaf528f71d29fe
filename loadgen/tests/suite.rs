#![allow(non_upper_case_globals)]

//! `ringstream-loadgen suite` and `--plot`, end to end: the suite runs S1,
//! S2 and S5 for 1 s each against the real broker (started on an ephemeral
//! port with a temporary data dir, killed by PID) and the raw-TCP sink, and
//! the report, SVGs and JSON files it writes are checked. Nothing asserts
//! on performance: only that every figure is there and well-formed.

use std::path::Path;
use std::time::Duration;

mod common;
use common::{loadgen, run_bounded, Broker};

/// A suite of 3 scenarios × 2 targets × (up to 3 s + prepare) takes about
/// 15 s; anything past this is a hang.
const suite_deadline: Duration = Duration::from_secs(240);
const run_deadline: Duration = Duration::from_secs(60);

/// Checks that `text` is well-formed XML as far as tags go: every element
/// opened is closed in order, and the document is one `<svg>` element.
fn assert_well_formed_svg(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text.as_str();
    let mut roots = 0;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').unwrap_or_else(|| panic!("{}: unterminated tag", path.display())) + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let expected = stack.pop().unwrap_or_else(|| panic!("{}: </{name}> closes nothing", path.display()));
            assert_eq!(expected, name.trim(), "{}: mismatched closing tag", path.display());
            continue;
        }
        let name = tag.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("").to_owned();
        assert!(!name.is_empty(), "{}: empty tag", path.display());
        if stack.is_empty() {
            roots += 1;
            assert_eq!(name, "svg", "{}: root element", path.display());
        }
        if !tag.ends_with('/') {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "{}: unclosed {stack:?}", path.display());
    assert_eq!(roots, 1, "{}: one root element", path.display());
    text
}

/// A minimal JSON validator (the test cannot use the binary's parser):
/// returns the rest of the input after one value, or None if malformed.
fn json_value(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let first = s.chars().next()?;
    match first {
        '{' | '[' => {
            let (close, mut rest) = (if first == '{' { '}' } else { ']' }, s[1..].trim_start());
            if let Some(after) = rest.strip_prefix(close) {
                return Some(after);
            }
            loop {
                if first == '{' {
                    rest = json_value(rest).filter(|_| rest.starts_with('"'))?.trim_start().strip_prefix(':')?;
                }
                rest = json_value(rest)?.trim_start();
                if let Some(after) = rest.strip_prefix(',') {
                    rest = after.trim_start();
                } else {
                    return rest.strip_prefix(close);
                }
            }
        }
        '"' => {
            let mut escaped = false;
            for (i, c) in s.char_indices().skip(1) {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => return Some(&s[i + 1..]),
                    _ => escaped = false,
                }
            }
            None
        }
        _ => {
            let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c))).unwrap_or(s.len());
            let word = &s[..end];
            (word == "null" || word == "true" || word == "false" || word.parse::<f64>().is_ok()).then(|| &s[end..])
        }
    }
}

fn assert_json(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rest = json_value(&text).unwrap_or_else(|| panic!("{} is not valid JSON:\n{text}", path.display()));
    assert!(rest.trim().is_empty(), "{}: trailing text {rest:?}", path.display());
    assert!(text.contains("\"throughput_records_per_sec\""), "{}", path.display());
    text
}

/// The report's section for one scenario: from its `## S1:` heading to the next heading.
fn section<'a>(report: &'a str, scenario: &str) -> &'a str {
    let start =
        report.find(&format!("\n## {scenario}: ")).unwrap_or_else(|| panic!("no section for {scenario}:\n{report}"));
    let body = &report[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |e| e + 3);
    &body[..end]
}

/// The cells of the table row that starts with `| first |`.
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{text}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

fn number(cell: &str) -> f64 {
    // A cell is a figure, or `median [min–max]`.
    let figure = cell.split_whitespace().next().unwrap_or("");
    figure.parse().unwrap_or_else(|_| panic!("{cell:?} is not a number"))
}

#[test]
fn suite_against_the_broker_writes_one_report_with_plots_and_json() {
    let broker = Broker::start();
    let out = tempfile::tempdir().unwrap();
    let mut command = loadgen();
    command
        .args(["suite", "--brokers", &broker.address, "--duration", "1s", "--rounds", "1", "--scenarios", "S1,S2,S5"])
        .arg("--out")
        .arg(out.path());
    let (output, _) = run_bounded(command, suite_deadline);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("found from its listening socket"), "the broker's PID is discovered:\n{stderr}");
    assert!(stdout.contains("## Ratios and targets"), "summary on stdout:\n{stdout}");

    let report = std::fs::read_to_string(out.path().join("report.md")).expect("report.md");
    for header in ["| date |", "| command |", "| CPUs (nproc) |", "| CPU model |", "| kernel (uname) |", "| memory |"] {
        assert!(report.contains(header), "{header} missing from the report:\n{report}");
    }
    assert!(report.contains("--scenarios S1,S2,S5"), "the exact command line:\n{report}");
    assert!(!report.contains("## S3:") && !report.contains("## S4:"), "only the chosen scenarios");

    for scenario in ["S1", "S2", "S5"] {
        let text = section(&report, scenario);
        let ours = row(text, "ours");
        let raw = row(text, "raw-tcp");
        // target, runs ok, records/s, MB/s, ack p50/p99/p99.99/max, e2e p50/p99/p99.99, errors, CPU-s/GB,
        // broker cores, host−loadgen cores
        assert_eq!(ours.len(), 15, "{ours:?}");
        assert_eq!((ours[1], raw[1]), ("1/1", "1/1"), "{text}");
        assert!(number(ours[2]) > 0.0 && number(raw[2]) > 0.0, "records/s: {text}");
        assert!(number(ours[3]) > 0.0 && number(raw[3]) > 0.0, "MB/s: {text}");
        for cell in &ours[4..8] {
            assert!(number(cell) > 0.0, "ack latency: {text}");
        }
        assert_eq!((ours[11], raw[11]), ("0", "0"), "errors: {text}");
        assert!(number(ours[12]) > 0.0, "broker CPU-s/GB for our broker (PID auto-discovered): {text}");
        assert!(number(ours[13]) > 0.0, "broker cores over the measured window: {text}");
        assert!(number(ours[14]) >= 0.0, "host−loadgen cores over the same window: {text}");
        assert_eq!((raw[12], raw[13], raw[14]), ("n/a", "n/a", "n/a"), "no broker behind the raw-TCP sink");
        assert_eq!(raw[9], "n/a", "the sink has no consumers");
        if scenario == "S2" {
            assert!(number(ours[9]) > 0.0 && number(ours[10]) > 0.0, "e2e p99 and p99.99: {text}");
        } else {
            assert_eq!(ours[9], "n/a", "no consumers in {scenario}");
        }
        let ratio = row(&report, scenario);
        assert_eq!(ratio[1], "ours / raw-tcp");
        assert!(number(ratio[2]) > 0.0, "throughput ratio: {ratio:?}");
        assert!(number(ratio[3]) > 0.0, "ack p99 ratio: {ratio:?}");

        for target in ["ours", "raw-tcp"] {
            let base = out.path().join(format!("{scenario}-{target}-1"));
            let svg = assert_well_formed_svg(&base.with_extension("svg"));
            for series in ["ack p50", "ack p99", "ack max", "ack latency", "acknowledged records/s", "99%"] {
                assert!(svg.contains(series), "{series} missing from {scenario}-{target}-1.svg");
            }
            let e2e_expected = scenario == "S2" && target == "ours";
            assert_eq!(svg.contains("e2e latency"), e2e_expected, "e2e series in {scenario}-{target}-1.svg");
            assert!(report.contains(&format!("]({scenario}-{target}-1.svg)")), "the report links the plot");
            let json = assert_json(&base.with_extension("json"));
            assert!(json.contains("\"topic\": \"suite-"), "a fresh suite topic: {json}");
            // The child measured the broker's CPU itself, over its measured window.
            assert_eq!(json.contains("\"broker_pid\": null"), target == "raw-tcp", "{json}");
            assert_eq!(json.contains("\"broker_cores\": null"), target == "raw-tcp", "{json}");
            assert_eq!(json.contains("\"host_minus_loadgen_cores\": null"), target == "raw-tcp", "{json}");
        }
    }
    let targets = section(&report, "S2");
    assert!(targets.contains("rate "), "{targets}");
    for target in ["S1 throughput ≥ 0.8 × raw-TCP", "S2 e2e p99 ≤ 5 ms", "S2 e2e p99.99 ≤ 8 ms", "0.3 CPU-s/GB"]
    {
        let line = report
            .lines()
            .find(|l| l.contains(target))
            .unwrap_or_else(|| panic!("target {target:?} missing:\n{report}"));
        assert!(line.contains("**met**") || line.contains("**missed**"), "{line}");
    }
}

#[test]
fn plot_flag_writes_an_svg_for_a_normal_run() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("run.svg");
    let mut command = loadgen();
    command
        .args(["--baseline", "raw-tcp", "--partitions", "4", "--rate", "5000", "--duration", "2s", "--warmup", "1s"])
        .arg("--plot")
        .arg(&svg_path);
    let (output, _) = run_bounded(command, run_deadline);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let svg = assert_well_formed_svg(&svg_path);
    for text in [
        "raw-tcp sink",
        "latency over time",
        "ack p50",
        "ack p99",
        "ack max",
        "end of warmup",
        "acknowledged records/s",
    ] {
        assert!(svg.contains(text), "{text} missing from the SVG");
    }
    for text in ["percentile spectrum", "ack latency", "50%", "90%", "99%", "99.9%"] {
        assert!(svg.contains(text), "{text} missing from the spectrum");
    }
    assert!(!svg.contains("e2e p99"), "no consumers, so no e2e series");
    // One line per series at least: three per-second ack series, throughput, the spectrum.
    assert!(svg.matches("<polyline").count() >= 5, "series drawn");
}

#[test]
fn suite_stops_at_an_unreachable_broker_and_refuses_bad_flags() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = tempfile::tempdir().unwrap();
    let mut command = loadgen();
    command.args(["suite", "--brokers", &format!("127.0.0.1:{port}"), "--duration", "1s"]).arg("--out").arg(out.path());
    let (output, _) = run_bounded(command, run_deadline);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach broker"), "{stderr}");

    for (flags, expected) in [
        (&["suite", "--brokers", "127.0.0.1:1", "--scenarios", "S9"][..], "S9"),
        (&["suite", "--brokers", "127.0.0.1:1", "--rounds", "0"][..], "--rounds"),
        (&["suite", "--brokers", "127.0.0.1:1", "--peer-name", "ours"][..], "--peer-name"),
        (&["suite"][..], "--brokers"),
    ] {
        let mut command = loadgen();
        command.args(flags);
        let (output, _) = run_bounded(command, run_deadline);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: expected {expected:?} in {stderr}");
    }
}
