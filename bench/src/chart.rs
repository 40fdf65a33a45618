//! The run's timeline as one SVG chart (`chart.svg` beside the report): answered
//! calls per second, PlaceOrder p50 and p99 per second, and the queue depth and
//! outbox backlog, stacked on one time axis so a latency spike lines up with the
//! backlog behind it. SVG only: plotters without fonts estimates text sizes itself
//! and writes plain `<text>` elements, which the viewer renders.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::report::TimelineRow;

const WIDTH: u32 = 960;

/// One line of a panel: its legend, colour and (second, value) points.
type Series<'a> = (&'a str, &'a RGBColor, Vec<(f64, f64)>);
const PANEL_HEIGHT: u32 = 260;

/// Writes the chart of `timeline` to `path`.
///
/// # Errors
/// When plotting or writing the file fails.
pub fn write(path: &Path, timeline: &[TimelineRow]) -> anyhow::Result<()> {
    let svg = render(timeline).map_err(|e| anyhow::anyhow!("plotting the chart: {e}"))?;
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

/// The chart as SVG text.
fn render(timeline: &[TimelineRow]) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, PANEL_HEIGHT * 3)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((3, 1));
        // At least one second wide, so an empty run still draws its axes.
        let seconds = timeline.len().max(1) as f64;
        let per_second: Vec<(f64, f64)> = timeline
            .iter()
            .map(|r| (r.second as f64, r.completed as f64))
            .collect();
        panel(
            &panels[0],
            "answered per second",
            "calls/s",
            seconds,
            &[("answered/s", &BLUE, per_second)],
        )?;
        let p50 = timeline
            .iter()
            .map(|r| (r.second as f64, r.p50_ms))
            .collect();
        let p99 = timeline
            .iter()
            .map(|r| (r.second as f64, r.p99_ms))
            .collect();
        panel(
            &panels[1],
            "PlaceOrder latency per second",
            "ms",
            seconds,
            &[("p50", &GREEN, p50), ("p99", &RED, p99)],
        )?;
        let queue = timeline
            .iter()
            .map(|r| (r.second as f64, r.max_queue_depth as f64))
            .collect();
        let outbox = timeline
            .iter()
            .map(|r| (r.second as f64, r.max_outbox_backlog as f64))
            .collect();
        panel(
            &panels[2],
            "backlog (max per second)",
            "messages",
            seconds,
            &[("queue depth", &MAGENTA, queue), ("outbox", &CYAN, outbox)],
        )?;
        root.present()?;
    }
    Ok(svg)
}

/// One panel: `series` of (second, value) over `seconds`.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    seconds: f64,
    series: &[Series<'_>],
) -> Result<(), Box<dyn std::error::Error>> {
    let top = series
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|(_, y)| *y))
        .fold(0.0_f64, f64::max);
    // Headroom above the highest point, and a non-empty range when all are zero.
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..seconds, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("s")
        .y_desc(unit)
        .light_line_style(WHITE)
        .draw()?;
    for (name, color, points) in series {
        let color = **color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_an_svg_with_its_three_panels() {
        let timeline: Vec<TimelineRow> = (0..5)
            .map(|i| TimelineRow {
                second: i,
                completed: 100 + i as u64,
                errors: 0,
                p50_ms: 2.0,
                p99_ms: 9.5,
                max_queue_depth: 3,
                max_outbox_backlog: 1,
            })
            .collect();
        let svg = render(&timeline).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for title in ["answered per second", "PlaceOrder latency", "backlog"] {
            assert!(svg.contains(title), "no panel {title}");
        }
    }

    #[test]
    fn an_empty_timeline_still_draws() {
        assert!(render(&[]).unwrap().contains("</svg>"));
    }
}
