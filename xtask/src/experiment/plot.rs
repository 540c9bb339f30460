//! The figure of the report: each method's test score against its trainable parameters, every
//! seed as a dot and the mean with a one-standard-deviation bar; the fixed ranks joined by a
//! line (the curve a fixed rank buys).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::Arm;
use super::summary::Stats;

/// One method's (trainable parameters, score) points, one per seed.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Which method (picks the colour and marker).
    pub arm: Arm,
    /// (trainable parameters, test score) per seed.
    pub points: Vec<(f64, f64)>,
}

/// Draws the series into an SVG file.
pub fn draw(path: &Path, title: &str, y_label: &str, series: &[Series]) -> Result<()> {
    let err = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    let (x_max, y_min, y_max) = all.iter().fold(
        (0.0f64, f64::INFINITY, f64::NEG_INFINITY),
        |(x, lo, hi), &(px, py)| (x.max(px), lo.min(py), hi.max(py)),
    );
    let pad = ((y_max - y_min) * 0.1).max(0.005);
    let root = SVGBackend::new(path, (760, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max * 1.08, (y_min - pad)..(y_max + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("trainable parameters (LoRA and head)")
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
        .draw()
        .map_err(err)?;

    // The fixed ranks' means, joined in parameter order.
    let mut fixed: Vec<(f64, f64)> = series
        .iter()
        .filter(|s| matches!(s.arm, Arm::Fixed(_)))
        .map(mean_point)
        .collect();
    fixed.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(fixed, BLUE.mix(0.5).stroke_width(2)))
        .map_err(err)?
        .label("fixed-rank LoRA (labelled by r)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));

    for s in series {
        // AutoLoRA and the random allocation have the same parameter count: draw them a
        // little apart so that neither hides the other.
        let (colour, nudge) = match s.arm {
            Arm::AutoLora => (RED, 0.985),
            Arm::Random => (GREEN, 1.015),
            _ => (BLUE, 1.0),
        };
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|&(x, y)| Circle::new((x * nudge, y), 3, colour.mix(0.45).filled())),
            )
            .map_err(err)?;
        let ys = Stats::of(s.points.iter().map(|p| p.1));
        let x = Stats::of(s.points.iter().map(|p| p.0)).mean * nudge;
        let bar = chart
            .draw_series(std::iter::once(ErrorBar::new_vertical(
                x,
                ys.mean - ys.sd,
                ys.mean,
                ys.mean + ys.sd,
                colour.stroke_width(2),
                10,
            )))
            .map_err(err)?;
        if let Arm::Fixed(rank) = s.arm {
            // One legend entry for the curve; each point names its rank instead.
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((x, ys.mean))
                        + Text::new(
                            format!("r = {rank}"),
                            (9, -16),
                            ("sans-serif", 13).into_font().color(&BLUE),
                        ),
                ))
                .map_err(err)?;
        } else {
            bar.label(&s.name)
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn mean_point(s: &Series) -> (f64, f64) {
    (
        Stats::of(s.points.iter().map(|p| p.0)).mean,
        Stats::of(s.points.iter().map(|p| p.1)).mean,
    )
}
