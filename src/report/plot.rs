//! Scatter plots of candidates in objective space, as SVG and PNG, with a bundled font so that no
//! system font configuration is needed.

use crate::escape::plot_text;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// One set of points: a policy's candidates, with its non-dominated ones drawn as a line.
pub(crate) struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub front: Vec<(f64, f64)>,
}

pub(crate) struct Plot {
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

/// One network of a trade-off figure.
pub struct Network {
    pub label: String,
    /// Its position on each panel's x axis, in the order of [`Tradeoff::panels`].
    pub x: Vec<f64>,
    pub y: f64,
    /// Meets the limits (a filled marker); one that does not is drawn hollow.
    pub fits: bool,
    /// The network the flow chose (drawn in red, ringed).
    pub chosen: bool,
}

/// One panel of a trade-off figure: its x axis and the limits on it.
pub(crate) struct Panel {
    pub x_label: String,
    /// Vertical reference lines (a budget, a latency limit), with their labels.
    pub x_marks: Vec<(f64, String)>,
}

/// Networks in panels that share the y axis (accuracy): a labelled marker per network, hollow
/// when it does not fit, reference lines, and the measured Pareto front of the networks that
/// fit (least x, most y).
pub(crate) struct Tradeoff {
    pub title: String,
    pub y_label: String,
    pub panels: Vec<Panel>,
    /// Horizontal reference lines (the FP32 accuracy), with their labels.
    pub y_marks: Vec<(f64, String)>,
    pub networks: Vec<Network>,
}

const TRADEOFF_PANEL: (u32, u32) = (700, 620);
const MARKER: i32 = 6;
const LABEL_FONT: u32 = 13;
const FIT_COLOR: RGBColor = RGBColor(31, 119, 180);
const CHOSEN_COLOR: RGBColor = RGBColor(214, 39, 40);
const MISS_COLOR: RGBColor = RGBColor(90, 90, 90);
const FRONT_COLOR: RGBColor = RGBColor(44, 160, 44);
const REFERENCE_COLOR: RGBColor = RGBColor(120, 120, 120);
const LIMIT_COLOR: RGBColor = RGBColor(148, 20, 20);

/// Writes `<stem>.svg` and `<stem>.png`.
pub(crate) fn write_tradeoff(plot: &Tradeoff, stem: &Path) -> Result<(), String> {
    register_font();
    let size = (
        TRADEOFF_PANEL.0 * plot.panels.len().max(1) as u32,
        TRADEOFF_PANEL.1,
    );
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    draw_tradeoff(plot, SVGBackend::new(&svg, size).into_drawing_area())
        .map_err(|e| format!("{}: {e}", svg.display()))?;
    draw_tradeoff(plot, BitMapBackend::new(&png, size).into_drawing_area())
        .map_err(|e| format!("{}: {e}", png.display()))
}

/// Networks at the same point of every panel, as one marker with all their names.
struct Group {
    labels: Vec<String>,
    x: Vec<f64>,
    y: f64,
    fits: bool,
    chosen: bool,
}

fn groups(networks: &[Network]) -> Vec<Group> {
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12);
    let mut out: Vec<Group> = Vec::new();
    for n in networks {
        let label = plot_text(&n.label);
        match out.iter_mut().find(|g| {
            same(g.y, n.y)
                && g.x.len() == n.x.len()
                && g.x.iter().zip(&n.x).all(|(a, b)| same(*a, *b))
        }) {
            Some(g) => {
                g.labels.push(label);
                g.chosen |= n.chosen;
            }
            None => out.push(Group {
                labels: vec![label],
                x: n.x.clone(),
                y: n.y,
                fits: n.fits,
                chosen: n.chosen,
            }),
        }
    }
    out
}

/// The measured Pareto front of the points that fit: least x, most y, ordered by x.
fn front(points: &[(f64, f64, bool)]) -> Vec<(f64, f64)> {
    let mut fitting: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.2 && p.0.is_finite() && p.1.is_finite())
        .map(|p| (p.0, p.1))
        .collect();
    fitting.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in fitting {
        if out.last().is_none_or(|l| p.1 > l.1) {
            out.push(p);
        }
    }
    out
}

/// A box in pixels: left, top, right, bottom.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rect {
    pub x0: i32,
    pub y0: i32,
    pub x1: i32,
    pub y1: i32,
}

impl Rect {
    /// The box of `w` x `h` pixels with its top left corner at (`x0`, `y0`).
    fn sized(x0: i32, y0: i32, w: i32, h: i32) -> Rect {
        Rect {
            x0,
            y0,
            x1: x0 + w,
            y1: y0 + h,
        }
    }

    fn overlap(&self, o: &Rect) -> i64 {
        let w = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0);
        let h = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0);
        i64::from(w) * i64::from(h)
    }

    fn inside(&self, area: &Rect) -> bool {
        self.x0 >= area.x0 && self.y0 >= area.y0 && self.x1 <= area.x1 && self.y1 <= area.y1
    }

    fn contains(&self, (x, y): (f64, f64)) -> bool {
        x >= f64::from(self.x0)
            && x <= f64::from(self.x1)
            && y >= f64::from(self.y0)
            && y <= f64::from(self.y1)
    }
}

/// A drawn line in pixels, from one end to the other.
pub(crate) type Segment = ((i32, i32), (i32, i32));

trait Crosses {
    fn crosses(&self, r: &Rect) -> bool;
}

impl Crosses for Segment {
    /// Whether the segment passes through `r` (checked every pixel along it).
    fn crosses(&self, r: &Rect) -> bool {
        let ((ax, ay), (bx, by)) = *self;
        let steps = (bx - ax).abs().max((by - ay).abs()).max(1);
        (0..=steps).any(|i| {
            let t = f64::from(i) / f64::from(steps);
            r.contains((
                f64::from(ax) + t * f64::from(bx - ax),
                f64::from(ay) + t * f64::from(by - ay),
            ))
        })
    }
}

/// Places labels of `sizes` (width, height) next to their `anchors` inside `area`: the nearest
/// spot of eight directions, at growing distances, that covers no `obstacle` (markers, other
/// labels) and crosses as few `lines` (segments) as it can; failing that, the least covered one.
/// Returns each label's box.
pub(crate) fn place_labels(
    anchors: &[(i32, i32)],
    sizes: &[(i32, i32)],
    obstacles: &[Rect],
    lines: &[Segment],
    area: Rect,
) -> Vec<Rect> {
    let mut placed: Vec<Rect> = Vec::new();
    for (&(ax, ay), &(w, h)) in anchors.iter().zip(sizes) {
        let mut best: Option<(i64, Rect)> = None;
        'search: for step in 0..12 {
            let d = MARKER + 6 + 10 * step;
            let e = (f64::from(d) * 0.7) as i32;
            for (x0, y0) in [
                (ax + d, ay - h / 2),
                (ax - d - w, ay - h / 2),
                (ax + e, ay - e - h),
                (ax + e, ay + e),
                (ax - e - w, ay - e - h),
                (ax - e - w, ay + e),
                (ax - w / 2, ay - d - h),
                (ax - w / 2, ay + d),
            ] {
                let r = Rect::sized(x0, y0, w, h);
                if !r.inside(&area) {
                    continue;
                }
                let covered: i64 = placed.iter().chain(obstacles).map(|o| r.overlap(o)).sum();
                let crossings = lines.iter().filter(|l| l.crosses(&r)).count() as i64;
                let score = 1000 * covered + 10 * crossings + i64::from(step);
                if best.is_none_or(|(c, _)| score < c) {
                    best = Some((score, r));
                }
                if covered == 0 && crossings == 0 {
                    break 'search;
                }
            }
        }
        let r = best.map(|b| b.1).unwrap_or(Rect {
            x0: ax + MARKER + 6,
            y0: ay - h / 2,
            x1: ax + MARKER + 6 + w,
            y1: ay + h - h / 2,
        });
        placed.push(r);
    }
    placed
}

/// The first of `spots` (boxes of a reference line's label) that covers none of `obstacles`.
fn free_spot(spots: &[Rect], obstacles: &[Rect], area: &Rect) -> Rect {
    spots
        .iter()
        .filter(|r| r.inside(area))
        .min_by_key(|r| obstacles.iter().map(|o| r.overlap(o)).sum::<i64>())
        .copied()
        .unwrap_or(spots[0])
}

/// Tick labels without trailing zeros.
fn tick(v: &f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn draw_tradeoff<DB: DrawingBackend>(
    plot: &Tradeoff,
    root: DrawingArea<DB, Shift>,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(text)?;
    let body = root
        .titled(&plot_text(&plot.title), ("sans-serif", 20))
        .map_err(text)?;
    let (body, legend) = body.split_vertically(body.dim_in_pixel().1 as i32 - 34);
    let groups = groups(&plot.networks);
    let ys = plot
        .networks
        .iter()
        .map(|n| n.y)
        .chain(plot.y_marks.iter().map(|m| m.0))
        .collect::<Vec<_>>();
    let y_range = range(ys.into_iter());
    let areas = body.split_evenly((1, plot.panels.len().max(1)));
    for (k, (panel, area)) in plot.panels.iter().zip(&areas).enumerate() {
        let mut chart = panel_chart(plot, panel, k, area, y_range)?;
        let (px, py) = chart.plotting_area().get_pixel_range();
        let bounds = Rect {
            x0: px.start + 2,
            y0: py.start + 2,
            x1: px.end - 2,
            y1: py.end - 2,
        };
        let mut lines = draw_reference_lines(&mut chart, plot, panel, bounds)?;
        lines.extend(draw_front(&mut chart, &groups, k)?);
        let mut markers = draw_markers(&root, &mut chart, &groups, k)?;
        draw_reference_labels(&root, &chart, plot, panel, bounds, &mut markers.obstacles)?;
        draw_network_labels(&root, &groups, &markers, &lines, bounds)?;
    }
    draw_legend(plot, &legend).map_err(text)?;
    root.present().map_err(text)
}

/// A drawing error as the plot's error text.
fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A trade-off panel's chart: accuracy against the panel's x axis.
type PanelChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The `k`-th panel's axes and mesh, over its networks and limits, sharing `y_range`.
fn panel_chart<'a, DB: DrawingBackend>(
    plot: &Tradeoff,
    panel: &Panel,
    k: usize,
    area: &'a DrawingArea<DB, Shift>,
    (y0, y1): (f64, f64),
) -> Result<PanelChart<'a, DB>, String>
where
    DB::ErrorType: 'static,
{
    let xs = plot
        .networks
        .iter()
        .filter_map(|n| n.x.get(k).copied())
        .chain(panel.x_marks.iter().map(|m| m.0))
        .collect::<Vec<_>>();
    let (x0, x1) = range(xs.into_iter());
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc(plot_text(&panel.x_label))
        .y_desc(plot_text(&plot.y_label))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style(("sans-serif", 13))
        .bold_line_style(BLACK.mix(0.08))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(text)?;
    Ok(chart)
}

/// Reference lines: the FP32 accuracy across (dashed), the limits upright. Returns them in
/// pixels, for the labels to avoid.
fn draw_reference_lines<DB: DrawingBackend>(
    chart: &mut PanelChart<DB>,
    plot: &Tradeoff,
    panel: &Panel,
    bounds: Rect,
) -> Result<Vec<Segment>, String>
where
    DB::ErrorType: 'static,
{
    let x_range = chart.x_range();
    let (y0, y1) = (chart.y_range().start, chart.y_range().end);
    let mut lines: Vec<Segment> = Vec::new();
    for (y, _) in &plot.y_marks {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_range.start, *y), (x_range.end, *y)],
                6,
                4,
                REFERENCE_COLOR.stroke_width(1),
            ))
            .map_err(text)?;
        let (_, ly) = chart.backend_coord(&(x_range.start, *y));
        lines.push(((bounds.x0, ly), (bounds.x1, ly)));
    }
    for (x, _) in &panel.x_marks {
        chart
            .draw_series(LineSeries::new(
                vec![(*x, y0), (*x, y1)],
                LIMIT_COLOR.stroke_width(2),
            ))
            .map_err(text)?;
        let (lx, _) = chart.backend_coord(&(*x, y1));
        lines.push(((lx, bounds.y0), (lx, bounds.y1)));
    }
    Ok(lines)
}

/// The measured Pareto front of the networks that fit, on panel `k`. Returns its segments in
/// pixels.
fn draw_front<DB: DrawingBackend>(
    chart: &mut PanelChart<DB>,
    groups: &[Group],
    k: usize,
) -> Result<Vec<Segment>, String>
where
    DB::ErrorType: 'static,
{
    let points: Vec<(f64, f64, bool)> = groups
        .iter()
        .filter_map(|g| Some((*g.x.get(k)?, g.y, g.fits)))
        .collect();
    let front = front(&points);
    let mut lines = Vec::new();
    if front.len() > 1 {
        for pair in front.windows(2) {
            lines.push((chart.backend_coord(&pair[0]), chart.backend_coord(&pair[1])));
        }
        chart
            .draw_series(LineSeries::new(front, FRONT_COLOR.stroke_width(2)))
            .map_err(text)?;
    }
    Ok(lines)
}

/// The markers of a panel, for placing their labels: the groups in drawing order (the chosen
/// one first), each marker's centre and box, and each label block's size.
struct Markers {
    order: Vec<usize>,
    anchors: Vec<(i32, i32)>,
    sizes: Vec<(i32, i32)>,
    /// Boxes labels must not cover: the markers, then the reference lines' labels.
    obstacles: Vec<Rect>,
}

fn label_font() -> TextStyle<'static> {
    ("sans-serif", LABEL_FONT).into_font().into()
}

/// The size in pixels of `text` in `font`.
fn text_size<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
    font: &TextStyle,
) -> Result<(i32, i32), String>
where
    DB::ErrorType: 'static,
{
    let (w, h) = root
        .estimate_text_size(text, font)
        .map_err(|e| e.to_string())?;
    Ok((w as i32, h as i32))
}

/// Markers on panel `k`: filled when the network fits, hollow when it does not; the chosen one
/// ringed.
fn draw_markers<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &mut PanelChart<DB>,
    groups: &[Group],
    k: usize,
) -> Result<Markers, String>
where
    DB::ErrorType: 'static,
{
    let mut order: Vec<usize> = (0..groups.len())
        .filter(|&i| groups[i].x.len() > k)
        .collect();
    order.sort_by_key(|&i| !groups[i].chosen);
    let mut markers = Markers {
        order,
        anchors: Vec::new(),
        sizes: Vec::new(),
        obstacles: Vec::new(),
    };
    for &i in &markers.order {
        let g = &groups[i];
        let p = (g.x[k], g.y);
        let color = if g.chosen {
            CHOSEN_COLOR
        } else if g.fits {
            FIT_COLOR
        } else {
            MISS_COLOR
        };
        let style = if g.fits {
            color.filled()
        } else {
            color.stroke_width(2)
        };
        chart
            .draw_series(std::iter::once(Circle::new(p, MARKER, style)))
            .map_err(text)?;
        if g.chosen {
            chart
                .draw_series(std::iter::once(Circle::new(
                    p,
                    MARKER + 4,
                    CHOSEN_COLOR.stroke_width(1),
                )))
                .map_err(text)?;
        }
        let (cx, cy) = chart.backend_coord(&p);
        markers.obstacles.push(Rect {
            x0: cx - MARKER - 4,
            y0: cy - MARKER - 4,
            x1: cx + MARKER + 4,
            y1: cy + MARKER + 4,
        });
        markers.anchors.push((cx, cy));
        let (mut w, mut h) = (0, 0);
        for line in &g.labels {
            let (lw, lh) = text_size(root, line, &label_font())?;
            w = w.max(lw);
            h += lh + 2;
        }
        markers.sizes.push((w, h));
    }
    Ok(markers)
}

/// The reference lines' labels, where no marker is: along the line, above or below (the
/// accuracy lines), at the top or the bottom (the limits). Each label becomes an obstacle.
fn draw_reference_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &PanelChart<DB>,
    plot: &Tradeoff,
    panel: &Panel,
    bounds: Rect,
    obstacles: &mut Vec<Rect>,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let reference_font: TextStyle = ("sans-serif", 12).into_font().color(&REFERENCE_COLOR);
    let limit_font: TextStyle = ("sans-serif", 12).into_font().color(&LIMIT_COLOR);
    let mut draw = |label: &str, font: &TextStyle, spots: &dyn Fn(i32, i32) -> Vec<Rect>| {
        let (w, h) = text_size(root, label, font)?;
        let r = free_spot(&spots(w, h), obstacles, &bounds);
        root.draw(&Text::new(label.to_string(), (r.x0, r.y0), font.clone()))
            .map_err(text)?;
        obstacles.push(r);
        Ok::<(), String>(())
    };
    for (y, label) in &plot.y_marks {
        let (_, ly) = chart.backend_coord(&(chart.x_range().start, *y));
        draw(&plot_text(label), &reference_font, &|w, h| {
            let mut spots = Vec::new();
            for x in [
                bounds.x1 - w - 4,
                bounds.x0 + 4,
                (bounds.x0 + bounds.x1 - w) / 2,
            ] {
                for y in [ly - h - 3, ly + 5] {
                    spots.push(Rect::sized(x, y, w, h));
                }
            }
            spots
        })?;
    }
    for (x, label) in &panel.x_marks {
        let (lx, _) = chart.backend_coord(&(*x, chart.y_range().end));
        draw(&plot_text(label), &limit_font, &|w, h| {
            let mut spots = Vec::new();
            for y in [bounds.y0 + 2, bounds.y1 - h - 2] {
                for x in [lx + 4, lx - 4 - w] {
                    spots.push(Rect::sized(x, y, w, h));
                }
            }
            spots
        })?;
    }
    Ok(())
}

/// Labels: one block per point (coinciding networks share it, a name a line), moved apart so
/// that none covers another or a marker; a leader line when moved away.
fn draw_network_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    groups: &[Group],
    markers: &Markers,
    lines: &[Segment],
    bounds: Rect,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let boxes = place_labels(
        &markers.anchors,
        &markers.sizes,
        &markers.obstacles,
        lines,
        bounds,
    );
    for ((&i, r), &(cx, cy)) in markers.order.iter().zip(&boxes).zip(&markers.anchors) {
        let g = &groups[i];
        let color = if g.chosen { CHOSEN_COLOR } else { BLACK };
        let near_x = cx.clamp(r.x0, r.x1);
        let near_y = cy.clamp(r.y0, r.y1);
        let distance = (near_x - cx).abs().max((near_y - cy).abs());
        if distance > MARKER + 10 {
            root.draw(&PathElement::new(
                vec![(cx, cy), (near_x, near_y)],
                REFERENCE_COLOR.stroke_width(1),
            ))
            .map_err(text)?;
        }
        let font = label_font().color(&color);
        let mut y = r.y0;
        for line in &g.labels {
            root.draw(&Text::new(line.clone(), (r.x0, y), font.clone()))
                .map_err(text)?;
            y += text_size(root, line, &font)?.1 + 2;
        }
    }
    Ok(())
}

/// What drawing on a backend `DB` returns.
type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A legend entry's symbol, drawn around a point.
type Symbol<'a, DB> = &'a dyn Fn(&DrawingArea<DB, Shift>, (i32, i32)) -> Drawn<DB>;

/// The key below the panels.
fn draw_legend<DB: DrawingBackend>(plot: &Tradeoff, area: &DrawingArea<DB, Shift>) -> Drawn<DB> {
    let font: TextStyle = ("sans-serif", 13).into_font().into();
    let (mut x, y) = (70, 12);
    let mut entry = |symbol: Symbol<DB>, text: &str| -> Drawn<DB> {
        symbol(area, (x, y))?;
        area.draw(&Text::new(text.to_string(), (x + 14, y - 7), font.clone()))?;
        let (w, _) = area.estimate_text_size(text, &font)?;
        x += 14 + w as i32 + 28;
        Ok(())
    };
    entry(
        &|a, p| a.draw(&Circle::new(p, MARKER, FIT_COLOR.filled())),
        "fits the limits",
    )?;
    entry(
        &|a, p| a.draw(&Circle::new(p, MARKER, MISS_COLOR.stroke_width(2))),
        "does not fit",
    )?;
    entry(
        &|a, p| {
            a.draw(&Circle::new(p, MARKER, CHOSEN_COLOR.filled()))?;
            a.draw(&Circle::new(p, MARKER + 4, CHOSEN_COLOR.stroke_width(1)))
        },
        "chosen",
    )?;
    entry(
        &|a, (px, py)| {
            a.draw(&PathElement::new(
                vec![(px - 8, py), (px + 8, py)],
                FRONT_COLOR.stroke_width(2),
            ))
        },
        "measured Pareto front (networks that fit)",
    )?;
    if !plot.y_marks.is_empty() {
        entry(
            &|a, (px, py)| {
                a.draw(&PathElement::new(
                    vec![(px - 8, py), (px - 2, py)],
                    REFERENCE_COLOR.stroke_width(1),
                ))?;
                a.draw(&PathElement::new(
                    vec![(px + 2, py), (px + 8, py)],
                    REFERENCE_COLOR.stroke_width(1),
                ))
            },
            "reference line",
        )?;
    }
    if plot.panels.iter().any(|p| !p.x_marks.is_empty()) {
        entry(
            &|a, (px, py)| {
                a.draw(&PathElement::new(
                    vec![(px, py - 7), (px, py + 7)],
                    LIMIT_COLOR.stroke_width(2),
                ))
            },
            "limit",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The main job's rows as the README quotes them: four networks on one point.
    fn main_job() -> Tradeoff {
        let n = |label: &str, ms: f64, kb: f64, acc: f64, fits: bool| Network {
            label: label.into(),
            x: vec![ms, kb],
            y: acc,
            fits,
            chosen: false,
        };
        let mut networks = vec![
            n("candidate 1", 4.248, 193.824, 89.65, true),
            n("candidate 2", 4.488, 344.352, 91.45, true),
            n("candidate 3 (chosen)", 4.492, 344.352, 91.56, true),
            n("memory-driven winner", 4.488, 344.352, 91.45, true),
            n("evolution winner", 4.248, 193.824, 89.65, true),
            n("rl winner", 4.248, 193.824, 89.65, true),
            n("random winner", 4.248, 193.824, 89.65, true),
            n("uniform 8-bit", 7.955, 664.352, 91.58, false),
            n("uniform 4-bit", 8.187, 324.992, 91.05, true),
            n("uniform 8-bit, width 0.9", 3.635, 509.912, 91.27, true),
        ];
        networks[2].chosen = true;
        Tradeoff {
            title: "fashion-cnn on gap8: test accuracy against latency and memory".into(),
            y_label: "test accuracy (%)".into(),
            panels: vec![
                Panel {
                    x_label: "latency (ms)".into(),
                    x_marks: Vec::new(),
                },
                Panel {
                    x_label: "memory (kB, flash + peak RAM)".into(),
                    x_marks: vec![(512.0, "budget 512,000 B".into())],
                },
            ],
            y_marks: vec![(91.51, "FP32 91.51%".into())],
            networks,
        }
    }

    /// `<text x=".." y=".." ... font-size="..">content</text>` elements of an SVG.
    fn texts(svg: &str) -> Vec<(f64, f64, f64, String)> {
        let attr = |tag: &str, name: &str| -> f64 {
            tag.split(&format!(" {name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let (tag, rest) = t.split_once('>')?;
                let content = rest.split("</text>").next()?.trim().to_string();
                Some((
                    attr(tag, "x"),
                    attr(tag, "y"),
                    attr(tag, "font-size"),
                    content,
                ))
            })
            .collect()
    }

    #[test]
    fn tradeoff_has_hollow_markers_reference_lines_and_separate_labels() {
        let dir = std::env::temp_dir().join(format!("qsearch-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stem = dir.join("tradeoff");
        write_tradeoff(&main_job(), &stem).unwrap();
        assert!(stem.with_extension("png").exists());
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();

        // One network does not fit: a hollow marker in each panel (and one in the key).
        let hollow = svg
            .split("<circle")
            .filter_map(|c| c.split('>').next())
            .filter(|c| c.contains("fill=\"none\"") && c.contains(&format!(" r=\"{MARKER}\"")))
            .count();
        assert_eq!(hollow, 2 + 1, "{svg}");

        // Reference lines: the FP32 accuracy (dashed, across both panels) and the budget.
        let texts = texts(&svg);
        let has = |s: &str| texts.iter().filter(|t| t.3 == s).count();
        assert_eq!(has("FP32 91.51%"), 2);
        assert_eq!(has("budget 512,000 B"), 1);
        let limit = "stroke=\"#941414\"";
        assert!(svg.split("<polyline").any(|l| l.contains(limit)), "{svg}");

        // Coinciding networks share one label, a name a line; every name once per panel.
        for name in [
            "candidate 1",
            "evolution winner",
            "rl winner",
            "random winner",
            "candidate 3 (chosen)",
            "uniform 8-bit, width 0.9",
        ] {
            assert_eq!(has(name), 2, "{name}");
        }
        // No two labels on top of each other: their boxes (a conservative glyph width) are apart.
        let labels: Vec<&(f64, f64, f64, String)> = texts
            .iter()
            .filter(|t| main_job().networks.iter().any(|n| n.label == t.3))
            .collect();
        assert_eq!(labels.len(), 20);
        let boxes: Vec<(f64, f64, f64, f64)> = labels
            .iter()
            .map(|(x, y, size, s)| (*x, *y, x + 0.5 * size * s.chars().count() as f64, y + size))
            .collect();
        for (i, a) in boxes.iter().enumerate() {
            for (j, b) in boxes.iter().enumerate().skip(i + 1) {
                let apart = a.2 <= b.0 || b.2 <= a.0 || a.3 <= b.1 || b.3 <= a.1;
                assert!(apart, "'{}' and '{}' overlap", labels[i].3, labels[j].3);
            }
        }
    }

    #[test]
    fn the_front_keeps_fitting_networks_that_nothing_beats() {
        let points = [
            (1.0, 80.0, true),
            (2.0, 90.0, true),
            (2.5, 85.0, true),
            (3.0, 95.0, false),
            (4.0, 91.0, true),
        ];
        assert_eq!(front(&points), vec![(1.0, 80.0), (2.0, 90.0), (4.0, 91.0)]);
    }

    #[test]
    fn labels_are_placed_apart() {
        let anchors = vec![(100, 100); 4];
        let sizes = vec![(80, 14); 4];
        let area = Rect {
            x0: 0,
            y0: 0,
            x1: 400,
            y1: 300,
        };
        let boxes = place_labels(&anchors, &sizes, &[], &[], area);
        for (i, a) in boxes.iter().enumerate() {
            assert!(a.inside(&area));
            for b in &boxes[i + 1..] {
                assert_eq!(a.overlap(b), 0, "{a:?} {b:?}");
            }
        }
    }
}
