//! The report as a picture: an SVG with throughput and latency (p50, p99, max) per second of the
//! run, and the distribution of command latency, for a person to open in a browser.

use crate::report::SwarmReport;
use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;
use std::path::Path;
use thiserror::Error;

/// Size of the picture in pixels.
const SIZE: (u32, u32) = (1200, 1000);
/// Growth factor between neighbouring latency buckets of the distribution.
const BUCKET_GROWTH: f64 = 1.15;

#[derive(Debug, Error)]
#[error("cannot draw {path}: {reason}")]
pub struct PlotError {
    pub path: String,
    pub reason: String,
}

/// Draws `report` to `path` as SVG.
pub fn write_svg(report: &SwarmReport, path: &Path) -> Result<(), PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mode = match report.rate {
        Some(r) => format!("open-loop {r}/s"),
        None => "closed-loop".into(),
    };
    let title = format!(
        "Warden client-sim: {} bots, {} spectators, {mode}: {:.0} commands/s, p50 {:.2} ms, p99 {:.2} ms, {} violations",
        report.bots,
        report.spectators,
        report.commands_per_s,
        report.latency_us.p50 as f64 / 1000.0,
        report.latency_us.p99 as f64 / 1000.0,
        report.invariant_violations
    );
    let root = root
        .titled(&title, ("sans-serif", 20))
        .map_err(|e| fail(&e))?;
    let panels = root.split_evenly((3, 1));
    draw_throughput(report, &panels[0]).map_err(|e| fail(&e))?;
    draw_latency_over_time(report, &panels[1]).map_err(|e| fail(&e))?;
    draw_distribution(report, &panels[2]).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error + 'static>>;

fn draw_throughput(report: &SwarmReport, area: &Area<'_>) -> DrawResult {
    let secs = report.timeline.len().max(1) as u64;
    let top = report
        .timeline
        .iter()
        .map(|s| s.commands)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("commands answered per second", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..secs, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("commands/s")
        .draw()?;
    chart.draw_series(LineSeries::new(
        report.timeline.iter().map(|s| (s.t, s.commands as f64)),
        BLUE.stroke_width(2),
    ))?;
    Ok(())
}

fn draw_latency_over_time(report: &SwarmReport, area: &Area<'_>) -> DrawResult {
    let secs = report.timeline.len().max(1) as u64;
    let ms = |us: u64| (us.max(1) as f64) / 1000.0;
    let top = report
        .timeline
        .iter()
        .map(|s| ms(s.max_us))
        .fold(1.0, f64::max)
        * 1.5;
    let bottom = report
        .timeline
        .iter()
        .filter(|s| s.commands > 0)
        .map(|s| ms(s.p50_us))
        .fold(top, f64::min)
        / 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption("command latency per second (log scale)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..secs, (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("ms")
        .draw()?;
    let busy: Vec<_> = report.timeline.iter().filter(|s| s.commands > 0).collect();
    for (label, color, pick) in [
        (
            "p50",
            GREEN,
            (|s| s.p50_us) as fn(&crate::metrics::SecondStats) -> u64,
        ),
        ("p99", BLUE, |s| s.p99_us),
        ("max", RED, |s| s.max_us),
    ] {
        chart
            .draw_series(LineSeries::new(
                busy.iter().map(|s| (s.t, ms(pick(s)))),
                color.stroke_width(2),
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

fn draw_distribution(report: &SwarmReport, area: &Area<'_>) -> DrawResult {
    // (upper bound of the bucket in ms, share of commands in %)
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    if let Some(h) = report.latency_histogram.as_ref().filter(|h| !h.is_empty()) {
        let total = h.len() as f64;
        for v in h.iter_log(10, BUCKET_GROWTH) {
            buckets.push((
                v.value_iterated_to() as f64 / 1000.0,
                v.count_since_last_iteration() as f64 * 100.0 / total,
            ));
        }
    }
    // Start just below the first bucket that holds anything.
    let lo = buckets
        .iter()
        .find(|b| b.1 > 0.0)
        .map_or(0.01, |b| b.0 / BUCKET_GROWTH)
        .max(0.001);
    let hi = buckets.last().map_or(10.0, |b| b.0).max(lo * 10.0);
    let top = buckets.iter().map(|b| b.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "command latency distribution ({} commands; buckets grow by {:.0} %)",
                report.commands,
                (BUCKET_GROWTH - 1.0) * 100.0
            ),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("latency, ms (log scale)")
        .y_desc("% of commands")
        .draw()?;
    chart.draw_series(
        AreaSeries::new(
            buckets.iter().copied().filter(|b| b.0 >= lo),
            0.0,
            BLUE.mix(0.3),
        )
        .border_style(BLUE),
    )?;
    for (label, us, color) in [
        ("p50", report.latency_us.p50, GREEN),
        ("p99", report.latency_us.p99, RED),
    ] {
        let x = (us.max(1) as f64 / 1000.0).clamp(lo, hi);
        chart
            .draw_series(LineSeries::new(
                vec![(x, 0.0), (x, top)],
                color.stroke_width(1),
            ))?
            .label(format!("{label} {:.2} ms", us as f64 / 1000.0))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}
