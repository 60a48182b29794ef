//! Scatter plots of candidates in objective space, as SVG and PNG, with a bundled font so that no
//! system font configuration is needed.

use crate::escape::plot_text;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// One set of points: a policy's candidates, with its non-dominated ones drawn as a line.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub front: Vec<(f64, f64)>,
}

pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Vertical reference lines (e.g. a memory budget), with labels.
    pub x_marks: Vec<(f64, String)>,
}

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const SIZE: (u32, u32) = (900, 600);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is valid; a failure here only degrades labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Writes `<stem>.svg` and `<stem>.png`.
pub fn write(plot: &Plot, stem: &Path) -> Result<(), String> {
    register_font();
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    draw(plot, SVGBackend::new(&svg, SIZE).into_drawing_area())
        .map_err(|e| format!("{}: {e}", svg.display()))?;
    draw(plot, BitMapBackend::new(&png, SIZE).into_drawing_area())
        .map_err(|e| format!("{}: {e}", png.display()))
}

fn range(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.05 * lo.abs().max(1.0)
    };
    (lo - pad, hi + pad)
}

fn draw<DB: DrawingBackend>(plot: &Plot, root: DrawingArea<DB, Shift>) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let xs = plot
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(plot.x_marks.iter().map(|m| m.0));
    let ys = plot
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1));
    let (x0, x1) = range(xs.collect::<Vec<_>>().into_iter());
    let (y0, y1) = range(ys.collect::<Vec<_>>().into_iter());
    let mut chart = ChartBuilder::on(&root)
        .caption(plot_text(&plot.title), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(plot_text(&plot.x_label))
        .y_desc(plot_text(&plot.y_label))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;
    for (x, label) in &plot.x_marks {
        chart
            .draw_series(LineSeries::new(
                vec![(*x, y0), (*x, y1)],
                BLACK.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(plot_text(label))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
    }
    for (i, s) in plot.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|&p| Circle::new(p, 3, color.mix(0.35).filled())),
            )
            .map_err(|e| err(&e))?;
        let mut front = s.front.clone();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(front.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(plot_text(&s.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(front.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
