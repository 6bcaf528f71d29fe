//! `--plot FILE.svg`: one SVG with three charts, top to bottom.
//!
//! 1. Latency over time: per second, ack p50, p99 and max, and end-to-end
//!    p99 when consumers ran (log scale, ms). A second holds the latencies
//!    *recorded* in it (acks: every record, warmup included; end-to-end:
//!    records sent in the measured window), exactly what the progress line
//!    printed.
//! 2. Throughput over time: records acknowledged, and consumed, per second.
//! 3. The percentile spectrum of the measured window, HdrHistogram style:
//!    latency (log scale) against `1 / (1 - q)` (log scale), labelled as
//!    percentiles (50%, 90%, 99%, 99.9%, ...), so the tail gets as much room
//!    as the median.
//!
//! The SVG backend writes text as `<text>` elements (no font files are
//! needed), so the file also says, in words, which series it holds.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::limits::spectrum_decades_max;
use crate::stats::{Percentiles, Timeline};

/// Size of the SVG, in pixels.
const width_px: u32 = 1000;
const height_px: u32 = 1200;
/// Points per decade of `1 / (1 - q)` in the spectrum.
const spectrum_points_per_decade: u32 = 20;
/// The spectrum goes as far as `1 / (1 - q)` = 10^decades, where decades
/// covers the sample count, within these bounds (10^7 is p99.99999).
const spectrum_decades_min: u32 = 2;

/// What the charts show.
pub struct PlotInput<'a> {
    /// First line of the caption, e.g. the target.
    pub title: &'a str,
    pub timeline: &'a Timeline,
    /// Seconds of warmup, marked on the time axis (0 for none).
    pub warmup_sec: f64,
    /// The measured window's histograms.
    pub ack: &'a Histogram<u64>,
    pub e2e: &'a Histogram<u64>,
}

/// Writes the SVG to `path`. An error says what failed; nothing panics on
/// odd data (empty histograms, a run shorter than a second).
pub fn write_svg(path: &Path, input: &PlotInput) -> Result<(), String> {
    let root = SVGBackend::new(path, (width_px, height_px)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let root = root.titled(input.title, ("sans-serif", 20)).map_err(|e| fail(&e))?;
    let (over_time, rest) = root.split_vertically(height_px * 38 / 100);
    let (throughput, spectrum) = rest.split_vertically(height_px * 24 / 100);
    latency_over_time(&over_time, input).map_err(|e| fail(&e))?;
    throughput_over_time(&throughput, input).map_err(|e| fail(&e))?;
    percentile_spectrum(&spectrum, input).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A time axis from 0 to the last second (at least 1 s).
fn time_range(timeline: &Timeline) -> std::ops::Range<f64> {
    let last = timeline.seconds.last().map_or(1, |s| s.index).max(1);
    0.0..last as f64
}

/// A log axis covering `values` (ms), padded; a default when there are none.
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) =
        values.filter(|v| *v > 0.0 && v.is_finite()).fold((f64::MAX, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    if high <= 0.0 {
        return 0.001..1.0;
    }
    let low = low * 0.8;
    let high = if high > low * 2.0 { high * 1.25 } else { low * 2.5 };
    low..high
}

/// `0.00123` → `0.00123`, `12.5` → `12.5`, `1500` → `1500`: three
/// significant digits, no trailing zeros.
fn short_number(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let digits = value.abs().log10().floor() as i32;
    let decimals = (2 - digits).clamp(0, 9) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// `1 / (1 - q)` as the percentile it stands for: 2 → 50%, 10 → 90%,
/// 1000 → 99.9%.
fn percentile_label(x: f64) -> String {
    if x <= 1.0 {
        return "0%".to_owned();
    }
    let percent = 100.0 * (1.0 - 1.0 / x);
    let decimals = (x.log10().round() as i32 - 2).max(0) as usize;
    format!("{percent:.decimals$}%")
}

/// Contiguous runs of `Some` points, so a second with no samples breaks the
/// line instead of drawing a slope across it.
fn segments(points: &[Option<(f64, f64)>]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for point in points {
        match point {
            Some(p) => current.push(*p),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Draws one named series (possibly in pieces) with a legend entry; a series
/// with no points is left out of the legend too.
fn draw_series<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    points: &[Option<(f64, f64)>],
    name: &str,
    color: RGBColor,
) -> DrawResult<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, piece) in segments(points).into_iter().enumerate() {
        let style = ShapeStyle::from(&color).stroke_width(2);
        let drawn = chart.draw_series(LineSeries::new(piece, style))?;
        if i == 0 {
            drawn.label(name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    Ok(())
}

fn legend<'a, X, Y>(chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>) -> DrawResult<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn latency_over_time(area: &Area, input: &PlotInput) -> DrawResult<()> {
    let seconds = &input.timeline.seconds;
    let pick = |f: &dyn Fn(&crate::stats::Second) -> Option<u64>| -> Vec<Option<(f64, f64)>> {
        seconds.iter().map(|s| f(s).map(|us| (s.index as f64, ms(us)))).collect()
    };
    let ack_p50 = pick(&|s| s.ack.map(|p| p.p50));
    let ack_p99 = pick(&|s| s.ack.map(|p| p.p99));
    let ack_max = pick(&|s| s.ack.map(|p| p.max));
    let e2e_p99 = pick(&|s| s.e2e.map(|p| p.p99));
    let all = [&ack_p50, &ack_p99, &ack_max, &e2e_p99];
    let y_range = log_range(all.iter().flat_map(|series| series.iter().flatten().map(|p| p.1)));
    let mut chart = ChartBuilder::on(area)
        .caption("latency over time (per second)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(time_range(input.timeline), y_range.clone().log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load began")
        .y_desc("latency, ms (log)")
        .y_label_formatter(&|v| short_number(*v))
        .draw()?;
    // The measured window: from the end of the warmup to the first second
    // of the drain (the wait for the last acks and reads).
    let window_end = seconds.iter().find(|s| s.phase == "drain").map(|s| s.index as f64 - 1.0);
    let markers = [
        (input.warmup_sec > 0.0).then_some((input.warmup_sec, "end of warmup")),
        window_end.map(|x| (x, "end of window")),
    ];
    for (x, name) in markers.into_iter().flatten() {
        let marker = vec![(x, y_range.start), (x, y_range.end)];
        chart
            .draw_series(DashedLineSeries::new(marker, 4, 4, ShapeStyle::from(&BLACK.mix(0.5))))?
            .label(name)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    }
    draw_series(&mut chart, &ack_p50, "ack p50", GREEN)?;
    draw_series(&mut chart, &ack_p99, "ack p99", BLUE)?;
    draw_series(&mut chart, &ack_max, "ack max", RED)?;
    draw_series(&mut chart, &e2e_p99, "e2e p99", MAGENTA)?;
    legend(&mut chart)
}

fn throughput_over_time(area: &Area, input: &PlotInput) -> DrawResult<()> {
    let seconds = &input.timeline.seconds;
    let acked: Vec<Option<(f64, f64)>> =
        seconds.iter().map(|s| Some((s.index as f64, s.acked_records as f64))).collect();
    let consumed: Vec<Option<(f64, f64)>> = if seconds.iter().any(|s| s.consumed_records > 0) {
        seconds.iter().map(|s| Some((s.index as f64, s.consumed_records as f64))).collect()
    } else {
        Vec::new()
    };
    let high = acked.iter().chain(&consumed).flatten().map(|p| p.1).fold(0.0f64, f64::max).max(1.0) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("throughput over time (per second)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(time_range(input.timeline), 0.0..high)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load began")
        .y_desc("records/s")
        .y_label_formatter(&|v| short_number(*v))
        .draw()?;
    draw_series(&mut chart, &acked, "acknowledged records/s", BLUE)?;
    draw_series(&mut chart, &consumed, "consumed records/s", MAGENTA)?;
    legend(&mut chart)
}

/// The spectrum of one histogram: (1 / (1 - q), ms) at
/// `spectrum_points_per_decade` points a decade, up to 10^decades.
pub fn spectrum(histogram: &Histogram<u64>, decades: u32) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let steps = decades * spectrum_points_per_decade;
    (0..=steps)
        .map(|i| {
            let x = 10f64.powf(f64::from(i) / f64::from(spectrum_points_per_decade));
            let q = 1.0 - 1.0 / x;
            (x, ms(histogram.value_at_quantile(q)))
        })
        .collect()
}

/// Decades of the spectrum's x axis: enough to reach the sample count
/// (beyond it every percentile is the max), within bounds.
fn spectrum_decades(count: u64) -> u32 {
    let decades = (count.max(1) as f64).log10().ceil() as u32;
    decades.clamp(spectrum_decades_min, spectrum_decades_max)
}

fn percentile_spectrum(area: &Area, input: &PlotInput) -> DrawResult<()> {
    let decades = spectrum_decades(input.ack.len().max(input.e2e.len()));
    let ack = spectrum(input.ack, decades);
    let e2e = spectrum(input.e2e, decades);
    let y_range = log_range(ack.iter().chain(&e2e).map(|p| p.1));
    let x_end = 10f64.powi(decades as i32);
    let mut key_points = vec![1.0, 2.0];
    key_points.extend((1..=decades).map(|d| 10f64.powi(d as i32)));
    let caption = match (percentiles(input.ack), percentiles(input.e2e)) {
        (None, None) => "percentile spectrum of the measured window (no latencies measured)".to_owned(),
        _ => "percentile spectrum of the measured window".to_owned(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d((1.0..x_end).log_scale().with_key_points(key_points), y_range.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale of 1 / (1 - q))")
        .y_desc("latency, ms (log)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|v| short_number(*v))
        .draw()?;
    let as_points = |series: &[(f64, f64)]| series.iter().map(|p| Some(*p)).collect::<Vec<_>>();
    draw_series(&mut chart, &as_points(&ack), "ack latency", BLUE)?;
    draw_series(&mut chart, &as_points(&e2e), "e2e latency", MAGENTA)?;
    legend(&mut chart)
}

fn percentiles(histogram: &Histogram<u64>) -> Option<Percentiles> {
    crate::stats::percentiles(histogram)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{latency_histogram, Second};

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(10_000.0), "99.99%");
        assert_eq!(percentile_label(1e6), "99.9999%");
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short_number(12.5), "12.5");
        assert_eq!(short_number(1500.0), "1500");
        assert_eq!(short_number(0.00123), "0.00123");
        assert_eq!(short_number(2.0), "2");
    }

    #[test]
    fn spectrum_is_monotonic_and_ends_at_the_max() {
        let mut h = latency_histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let points = spectrum(&h, spectrum_decades(h.len()));
        assert_eq!(points.len(), 4 * spectrum_points_per_decade as usize + 1);
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(points[0].1, ms(h.value_at_quantile(0.0)));
        assert!((points.last().unwrap().1 - ms(h.max())).abs() < 0.02);
        assert!(spectrum(&latency_histogram(), 3).is_empty());
    }

    #[test]
    fn gaps_split_lines() {
        let pieces = segments(&[Some((1.0, 1.0)), None, Some((3.0, 1.0)), Some((4.0, 2.0)), None]);
        assert_eq!(pieces, vec![vec![(1.0, 1.0)], vec![(3.0, 1.0), (4.0, 2.0)]]);
    }

    #[test]
    fn writes_svg_with_every_series_and_copes_with_no_data() {
        let dir = std::env::temp_dir().join(format!("loadgen-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ack = latency_histogram();
        let mut e2e = latency_histogram();
        for v in [900u64, 1000, 1100, 5000] {
            ack.record(v).unwrap();
            e2e.record(v + 300).unwrap();
        }
        let mut timeline = Timeline::default();
        for index in 1..=3 {
            timeline.push(Second {
                index,
                phase: ["warmup", "run", "drain"][index as usize - 1],
                acked_records: 100 * index,
                consumed_records: 90 * index,
                ack: crate::stats::percentiles(&ack),
                e2e: if index == 2 { None } else { crate::stats::percentiles(&e2e) },
            });
        }
        let path = dir.join("full.svg");
        write_svg(&path, &PlotInput { title: "test run", timeline: &timeline, warmup_sec: 1.0, ack: &ack, e2e: &e2e })
            .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        for text in [
            "ack p50",
            "ack p99",
            "ack max",
            "e2e p99",
            "ack latency",
            "e2e latency",
            "50%",
            "99%",
            "consumed records/s",
            "end of window",
        ] {
            assert!(svg.contains(text), "{text} missing from the SVG");
        }
        assert!(svg.matches("<polyline").count() >= 8);

        let empty = dir.join("empty.svg");
        let none = latency_histogram();
        write_svg(
            &empty,
            &PlotInput { title: "empty", timeline: &Timeline::default(), warmup_sec: 0.0, ack: &none, e2e: &none },
        )
        .unwrap();
        let svg = std::fs::read_to_string(&empty).unwrap();
        assert!(svg.contains("no latencies measured") && svg.trim_end().ends_with("</svg>"));
        assert!(write_svg(
            &dir.join("missing-dir/x.svg"),
            &PlotInput { title: "x", timeline: &timeline, warmup_sec: 0.0, ack: &ack, e2e: &e2e }
        )
        .is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
