//! A strict parser for the Prometheus text exposition format and its
//! OpenMetrics variant (what `GET /metrics` serves). Used by
//! `ringstream status` and by the tests that validate the endpoint.
//!
//! It rejects, with the line number and the reason: lines that are neither a
//! comment nor a sample; bad metric or label names; bad label escapes;
//! duplicate labels or samples; values that are not numbers; metadata
//! (`HELP`/`TYPE`/`UNIT`) after a family's samples or given twice; a family
//! split in two; samples whose suffix does not fit the family's type;
//! anything after `# EOF`; negative or NaN counters; and histograms whose
//! buckets are not cumulative, lack `le="+Inf"`, or whose `+Inf` bucket
//! differs from `_count` (or has no `_sum`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `untyped` (Prometheus) or `unknown` (OpenMetrics), or no TYPE line.
    Unknown,
}

impl Kind {
    fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "gaugehistogram" => Kind::GaugeHistogram,
            "summary" => Kind::Summary,
            "info" => Kind::Info,
            "stateset" => Kind::StateSet,
            "untyped" | "unknown" => Kind::Unknown,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::GaugeHistogram => "gaugehistogram",
            Kind::Summary => "summary",
            Kind::Info => "info",
            Kind::StateSet => "stateset",
            Kind::Unknown => "unknown",
        }
    }

    /// Sample-name suffixes a family of this type may use ("" is the bare name).
    fn suffixes(&self) -> &'static [&'static str] {
        match self {
            Kind::Counter => &["", "_total", "_created"],
            Kind::Histogram => &["_bucket", "_sum", "_count", "_created"],
            Kind::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            Kind::Summary => &["", "_sum", "_count", "_created"],
            Kind::Info => &["_info"],
            Kind::Gauge | Kind::StateSet | Kind::Unknown => &[""],
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// True when the sample's labels are exactly `labels` (any order).
    fn has_labels(&self, labels: &[(&str, &str)]) -> bool {
        self.labels.len() == labels.len() && labels.iter().all(|(k, v)| self.label(k) == Some(v))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

/// One histogram series: cumulative buckets by upper bound (the last is
/// `+Inf`), sum and count.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramData {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    pub families: Vec<Family>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (0: the text as a whole).
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metrics text line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) => {
            text.parse().ok()
        }
        _ => None,
    }
}

/// Parses `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample has no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // label name, or the closing brace
            let start = chars.peek().map(|&(i, _)| i).ok_or("unterminated label set")?;
            if after[start..].starts_with('}') {
                rest = &after[start + 1..];
                break;
            }
            let eq = after[start..].find('=').ok_or("a label has no '='")? + start;
            let key = &after[start..eq];
            if !is_label_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            if labels.iter().any(|(k, _)| k == key) {
                return Err(format!("label {key:?} given twice"));
            }
            while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("the value of label {key:?} is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    None => return Err(format!("unterminated value of label {key:?}")),
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in label {key:?}")),
                    },
                    Some('\n') => return Err("newline inside a label value".into()),
                    Some(c) => value.push(c),
                }
            }
            labels.push((key.to_owned(), value));
            match chars.next().map(|(_, c)| c) {
                Some(',') => {}
                Some('}') => {
                    let at = chars.peek().map_or(after.len(), |&(i, _)| i);
                    rest = &after[at..];
                    break;
                }
                other => return Err(format!("expected ',' or '}}' after a label, found {other:?}")),
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = rest.split(' ');
    let value_text = fields.next().unwrap_or("");
    let value = parse_value(value_text).ok_or_else(|| format!("bad value {value_text:?}"))?;
    if let Some(timestamp) = fields.next() {
        parse_value(timestamp).filter(|t| t.is_finite()).ok_or_else(|| format!("bad timestamp {timestamp:?}"))?;
    }
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// Parses and validates an exposition.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let mut families: Vec<Family> = Vec::new();
    let mut seen_families: HashSet<String> = HashSet::new();
    let mut typed: HashSet<String> = HashSet::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut seen_samples: HashSet<String> = HashSet::new();
    let mut eof = false;
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        let error = |reason: String| ParseError { line: number, reason };
        if eof {
            if line.is_empty() && index + 1 == text.split('\n').count() {
                continue; // the newline that ends "# EOF"
            }
            return Err(error("text after # EOF".into()));
        }
        if line.is_empty() {
            continue;
        }
        if line.ends_with('\r') {
            return Err(error("carriage return in a line".into()));
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.strip_prefix(' ').unwrap_or(comment).splitn(3, ' ');
            let keyword = words.next().unwrap_or("");
            match keyword {
                "EOF" if comment == " EOF" => eof = true,
                "HELP" | "TYPE" | "UNIT" => {
                    let name = words.next().ok_or_else(|| error(format!("# {keyword} without a metric name")))?;
                    if !is_metric_name(name) {
                        return Err(error(format!("bad metric name {name:?} in # {keyword}")));
                    }
                    let argument = words.next();
                    let current = families.last().filter(|f| f.name == name);
                    if current.is_none() {
                        if !seen_families.insert(name.to_owned()) {
                            return Err(error(format!("family {name} is split: # {keyword} far from its other lines")));
                        }
                        families.push(Family {
                            name: name.to_owned(),
                            kind: Kind::Unknown,
                            help: None,
                            samples: Vec::new(),
                        });
                    }
                    let family = families.last_mut().expect("pushed or current");
                    if !family.samples.is_empty() {
                        return Err(error(format!("# {keyword} for {name} after its samples")));
                    }
                    match keyword {
                        "HELP" => {
                            if !helped.insert(name.to_owned()) {
                                return Err(error(format!("second # HELP for {name}")));
                            }
                            family.help = Some(argument.unwrap_or("").to_owned());
                        }
                        "TYPE" => {
                            let kind = argument
                                .and_then(Kind::parse)
                                .ok_or_else(|| error(format!("bad type {argument:?} for {name}")))?;
                            if !typed.insert(name.to_owned()) {
                                return Err(error(format!("second # TYPE for {name}")));
                            }
                            family.kind = kind;
                        }
                        _ => {
                            let unit = argument.unwrap_or("");
                            if unit.is_empty() || !name.ends_with(&format!("_{unit}")) {
                                return Err(error(format!("# UNIT {unit:?} is not the suffix of {name}")));
                            }
                        }
                    }
                }
                _ => {} // a plain comment (Prometheus text format)
            }
            continue;
        }
        let sample = parse_sample(line).map_err(error)?;
        let key = format!("{}{:?}", sample.name, {
            let mut labels = sample.labels.clone();
            labels.sort();
            labels
        });
        if !seen_samples.insert(key) {
            return Err(error(format!("duplicate sample {}", line.split(' ').next().unwrap_or(""))));
        }
        let fits = |family: &Family| {
            family.kind.suffixes().iter().any(|suffix| sample.name.strip_suffix(suffix) == Some(family.name.as_str()))
        };
        match families.last_mut() {
            Some(family) if fits(family) => {
                check_sample(family, &sample).map_err(error)?;
                family.samples.push(sample);
            }
            Some(family)
                if family.kind != Kind::Unknown
                    && sample.name.strip_prefix(family.name.as_str()).is_some_and(|suffix| {
                        ["_total", "_created", "_bucket", "_sum", "_count", "_gsum", "_gcount", "_info"]
                            .contains(&suffix)
                    }) =>
            {
                return Err(error(format!(
                    "sample {} does not fit its family's type {}",
                    sample.name,
                    family.kind.as_str()
                )));
            }
            _ => {
                // A sample with no metadata starts an untyped family of its own name.
                if !seen_families.insert(sample.name.clone()) {
                    return Err(error(format!(
                        "sample {} does not fit its family's type, or the family is split",
                        sample.name
                    )));
                }
                families.push(Family {
                    name: sample.name.clone(),
                    kind: Kind::Unknown,
                    help: None,
                    samples: vec![sample],
                });
            }
        }
    }
    let exposition = Exposition { families };
    for family in &exposition.families {
        if family.kind == Kind::Histogram {
            check_histogram(family).map_err(|reason| ParseError { line: 0, reason })?;
        }
    }
    Ok(exposition)
}

fn check_sample(family: &Family, sample: &Sample) -> Result<(), String> {
    match family.kind {
        // NaN fails too.
        Kind::Counter if sample.value.is_nan() || sample.value < 0.0 => {
            Err(format!("counter {} is {}", sample.name, sample.value))
        }
        Kind::Histogram if sample.name.ends_with("_bucket") => match sample.label("le") {
            None => Err(format!("{} has no le label", sample.name)),
            Some(le) => parse_value(le).filter(|v| !v.is_nan()).map(|_| ()).ok_or_else(|| format!("bad le {le:?}")),
        },
        Kind::Histogram if sample.label("le").is_some() => Err(format!("{} has an le label", sample.name)),
        _ => Ok(()),
    }
}

/// The labels of a sample without `le`, as a sortable key.
fn series_key(sample: &Sample) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = sample.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
    labels.sort();
    labels
}

fn check_histogram(family: &Family) -> Result<(), String> {
    type Series = (Vec<(f64, f64)>, Option<f64>, Option<f64>);
    let mut series: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
    for sample in &family.samples {
        let entry = series.entry(series_key(sample)).or_default();
        let suffix = &sample.name[family.name.len()..];
        match suffix {
            "_bucket" => {
                entry.0.push((parse_value(sample.label("le").expect("checked")).expect("checked"), sample.value))
            }
            "_sum" => entry.1 = Some(sample.value),
            "_count" => entry.2 = Some(sample.value),
            _ => {}
        }
    }
    for (labels, (mut buckets, sum, count)) in series {
        let name = &family.name;
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(format!("{name}{labels:?}: two buckets with the same le"));
        }
        if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(format!("{name}{labels:?}: buckets are not cumulative"));
        }
        let Some(&(f64::INFINITY, infinite)) = buckets.last() else {
            return Err(format!("{name}{labels:?}: no le=\"+Inf\" bucket"));
        };
        let count = count.ok_or_else(|| format!("{name}{labels:?}: no _count"))?;
        sum.ok_or_else(|| format!("{name}{labels:?}: no _sum"))?;
        if count != infinite {
            return Err(format!("{name}{labels:?}: _count {count} differs from the +Inf bucket {infinite}"));
        }
    }
    Ok(())
}

impl Exposition {
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Every sample named `name` (a family name plus suffix), in any family.
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families.iter().flat_map(|f| f.samples.iter()).filter(move |s| s.name == name)
    }

    /// The value of the sample `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name).find(|s| s.has_labels(labels)).map(|s| s.value)
    }

    /// The histogram series of `family` with exactly `labels` (besides `le`).
    pub fn histogram(&self, family: &str, labels: &[(&str, &str)]) -> Option<HistogramData> {
        let family = self.family(family).filter(|f| f.kind == Kind::Histogram)?;
        let mut buckets = Vec::new();
        let (mut sum, mut count) = (None, None);
        for sample in &family.samples {
            let without_le: Vec<(&str, &str)> =
                sample.labels.iter().filter(|(k, _)| k != "le").map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if without_le.len() != labels.len() || !labels.iter().all(|l| without_le.contains(l)) {
                continue;
            }
            match &sample.name[family.name.len()..] {
                "_bucket" => buckets.push((parse_value(sample.label("le")?)?, sample.value)),
                "_sum" => sum = Some(sample.value),
                "_count" => count = Some(sample.value),
                _ => {}
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(HistogramData { buckets, sum: sum?, count: count? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP req Requests.\n# TYPE req counter\nreq_total{shard=\"0\"} 3\nreq_total{shard=\"1\"} 0\n\
# TYPE lat histogram\nlat_sum{api=\"Produce\"} 0.5\nlat_count{api=\"Produce\"} 3\n\
lat_bucket{api=\"Produce\",le=\"0.1\"} 1\nlat_bucket{api=\"Produce\",le=\"1.0\"} 3\nlat_bucket{api=\"Produce\",le=\"+Inf\"} 3\n\
# TYPE depth gauge\ndepth{shard=\"0\",note=\"a \\\"q\\\" \\\\ \\n\"} -2.5e1 1700000000\nplain 1\n# EOF\n";

    #[test]
    fn a_valid_exposition_parses() {
        let exposition = parse(GOOD).unwrap();
        assert_eq!(exposition.families.len(), 4);
        assert_eq!(exposition.family("req").unwrap().kind, Kind::Counter);
        assert_eq!(exposition.family("req").unwrap().help.as_deref(), Some("Requests."));
        assert_eq!(exposition.value("req_total", &[("shard", "0")]), Some(3.0));
        assert_eq!(exposition.value("depth", &[("note", "a \"q\" \\ \n"), ("shard", "0")]), Some(-25.0));
        assert_eq!(exposition.family("plain").unwrap().kind, Kind::Unknown);
        let lat = exposition.histogram("lat", &[("api", "Produce")]).unwrap();
        assert_eq!(lat.buckets, vec![(0.1, 1.0), (1.0, 3.0), (f64::INFINITY, 3.0)]);
        assert_eq!((lat.sum, lat.count), (0.5, 3.0));
    }

    #[test]
    fn malformed_lines_are_rejected() {
        let cases: &[(&str, &str)] = &[
            ("1bad 3\n", "bad metric name"),
            ("x{a=\"1\" 3\n", "expected ','"),
            ("x{a=1} 3\n", "not quoted"),
            ("x{a=\"1\",a=\"2\"} 3\n", "twice"),
            ("x{a=\"\\t\"} 3\n", "bad escape"),
            ("x{9a=\"1\"} 3\n", "bad label name"),
            ("x three\n", "bad value"),
            ("x\n", "no value"),
            ("x 1 2 3\n", "unexpected"),
            ("x 1\nx 2\n", "duplicate sample"),
            ("# TYPE x countr\n", "bad type"),
            ("# TYPE x counter\n# TYPE x counter\n", "second # TYPE"),
            ("# TYPE x counter\nx_total 1\n# HELP x late\n", "after its samples"),
            ("# TYPE x counter\nx_total -1\n", "counter"),
            ("# TYPE x gauge\nx_total 1\n", "does not fit"),
            ("a 1\nb 1\na{l=\"1\"} 2\n", "split"),
            ("x 1\n# EOF\ny 2\n", "after # EOF"),
            ("x 1\r\n", "carriage return"),
            ("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\n", "cumulative"),
            ("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\nh_sum 1\n", "+Inf"),
            ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\nh_sum 1\n", "differs"),
            ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", "no _sum"),
            ("# TYPE h histogram\nh_bucket 1\n", "no le"),
            ("# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", "bad le"),
            ("# UNIT x_bytes seconds\n", "suffix"),
        ];
        for (text, reason) in cases {
            let error = parse(text).expect_err(text);
            assert!(error.reason.contains(reason), "{text:?}: {error}");
        }
    }
}
