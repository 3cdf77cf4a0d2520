//! Figures: log-scale fine-tuning curves with bands (min–max, or a central range), as SVG or PNG.

use std::{path::Path, sync::Once};

use plotters::{
    coord::Shift,
    element::DashedPathElement,
    prelude::*,
    style::{FontStyle, register_font},
};

use crate::{
    ExperimentError,
    linear::{CurveRow, Method, SweepResult},
};

/// DejaVu Sans (Bitstream Vera licence, see `assets/DejaVuSans-LICENSE.txt`), embedded so that PNG
/// figures render text identically on machines without system fonts.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn register_embedded_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure would only lose the labels.
        if register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::warn!("embedded font did not load; figure text will be missing");
        }
    });
}

/// Draws the fine-tuning curves of a sweep to `path` (`.svg` or `.png`), atomically.
pub fn draw_sweep_figure(path: &Path, result: &SweepResult) -> Result<(), ExperimentError> {
    render(path, &SweepFigure(result))
}

/// One labelled curve of a line figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(x, y)` points in order.
    pub points: Vec<(usize, f64)>,
    /// Drawn dashed (baselines), otherwise solid.
    pub dashed: bool,
}

/// Draws labelled line series (`dashed` for baselines) on linear axes to `path`, atomically.
pub fn draw_lines(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
) -> Result<(), ExperimentError> {
    render(
        path,
        &LinesFigure {
            title,
            labels: (x_label, y_label),
            series,
        },
    )
}

/// Something that can draw itself on any plotters backend.
trait Figure {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

struct SweepFigure<'a>(&'a SweepResult);

impl Figure for SweepFigure<'_> {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        draw(root, self.0)
    }
}

struct LinesFigure<'a> {
    title: &'a str,
    labels: (&'a str, &'a str),
    series: &'a [Series],
}

impl Figure for LinesFigure<'_> {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        draw_series(root, self.title, self.labels, self.series)
    }
}

/// Renders with the backend the extension names, through a temporary file renamed at the end.
fn render(path: &Path, figure: &impl Figure) -> Result<(), ExperimentError> {
    register_embedded_font();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    // The image encoder picks the format from the extension, so the temporary file keeps it.
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp.{ext}",
        path.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("figure"),
        std::process::id()
    ));
    let plot_err = |message: String| ExperimentError::Plot {
        path: path.to_path_buf(),
        message,
    };
    let size = (1000, 640);
    match ext {
        "svg" => {
            let root = SVGBackend::new(&tmp, size).into_drawing_area();
            figure.draw_on(&root).map_err(plot_err)?;
            root.present().map_err(|e| plot_err(e.to_string()))?;
        }
        "png" => {
            let root = BitMapBackend::new(&tmp, size).into_drawing_area();
            figure.draw_on(&root).map_err(plot_err)?;
            root.present().map_err(|e| plot_err(e.to_string()))?;
        }
        other => return Err(plot_err(format!("unsupported figure format `{other}`"))),
    }
    crate::io::commit_temp(&tmp, path)
}

/// One curve with a shaded band, for log-scale figures.
#[derive(Debug, Clone, PartialEq)]
pub struct BandCurve {
    /// Legend text.
    pub label: String,
    /// Index into the palette (one colour per swept value).
    pub colour: usize,
    /// Drawn dashed (baselines), otherwise solid.
    pub dashed: bool,
    /// `(x, centre, low, high)` in order of `x`.
    pub points: Vec<(usize, f64, f64, f64)>,
}

/// Draws curves with bands on a log-scale y axis to `path` (`.svg` or `.png`), atomically.
pub fn draw_band_figure(
    path: &Path,
    title: &str,
    labels: (&str, &str),
    curves: &[BandCurve],
) -> Result<(), ExperimentError> {
    render(
        path,
        &BandFigure {
            title,
            labels,
            curves,
        },
    )
}

struct BandFigure<'a> {
    title: &'a str,
    labels: (&'a str, &'a str),
    curves: &'a [BandCurve],
}

impl Figure for BandFigure<'_> {
    fn draw_on<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        draw_bands(root, self.title, self.labels, self.curves)
    }
}

/// The linear suite's figure: one colour per swept value, the mean with a min–max band, SR dashed.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    result: &SweepResult,
) -> Result<(), String> {
    let rows = &result.curves;
    let mut values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let sweep = result.sweep;
    let mut curves = Vec::new();
    for (i, &value) in values.iter().enumerate() {
        for method in Method::ALL {
            let curve: Vec<&CurveRow> = rows
                .iter()
                .filter(|r| r.value == value && r.method == method)
                .collect();
            curves.push(BandCurve {
                label: format!("{}={}, {}", sweep.symbol(), value, method.label()),
                colour: i,
                dashed: method == Method::Standard,
                points: curve
                    .iter()
                    .map(|r| (r.iteration, r.mean, r.min, r.max))
                    .collect(),
            });
        }
    }
    draw_bands(
        root,
        &format!(
            "Fine-tuning on an unseen task, varying {}",
            sweep.description()
        ),
        ("Iteration", "Test Task Loss"),
        &curves,
    )
}

fn draw_bands<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    (x_label, y_label): (&str, &str),
    curves: &[BandCurve],
) -> Result<(), String> {
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
    root.fill(&WHITE).map_err(e)?;
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let points = curves.iter().flat_map(|c| c.points.iter());
    let max_x = points.clone().map(|p| p.0).max().unwrap_or(1).max(1);
    let lo = points
        .clone()
        .map(|p| p.2)
        .filter(|&v| positive(v))
        .fold(f64::INFINITY, f64::min);
    let hi = points
        .map(|p| p.3)
        .filter(|&v| positive(v))
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo / 2.0, hi * 2.0)
    } else {
        (1e-6, 1.0)
    };
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(0..max_x, (lo..hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(e)?;
    for curve in curves {
        let colour = PALETTE[curve.colour % PALETTE.len()];
        let band: Vec<(usize, f64)> = curve
            .points
            .iter()
            .map(|p| (p.0, p.3.max(lo)))
            .chain(curve.points.iter().rev().map(|p| (p.0, p.2.max(lo))))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(
                band,
                colour.mix(0.15).filled(),
            )))
            .map_err(e)?;
        let centre = curve.points.iter().map(|p| (p.0, p.1.max(lo)));
        let style = colour.stroke_width(2);
        if curve.dashed {
            chart
                .draw_series(DashedLineSeries::new(centre, 10, 6, style))
                .map_err(e)?
                .label(curve.label.clone())
                .legend(move |(x, y)| {
                    DashedPathElement::new(vec![(x, y), (x + 24, y)], 6, 4, colour.stroke_width(2))
                });
        } else {
            chart
                .draw_series(LineSeries::new(centre, style))
                .map_err(e)?
                .label(curve.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
                });
        }
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn draw_series<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
) -> Result<(), String> {
    register_embedded_font();
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| err.to_string();
    root.fill(&WHITE).map_err(e)?;
    let points = series.iter().flat_map(|s| s.points.iter());
    let max_x = points.clone().map(|p| p.0).max().unwrap_or(1).max(1);
    let (lo, hi) = points
        .map(|p| p.1)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    // A margin of 5 % of the range (at least 1 % of the top), never below 0 for non-negative data.
    let (lo, hi) = if lo.is_finite() {
        let pad = (0.05 * (hi - lo)).max(0.01 * hi.abs()).max(1e-6);
        let floor = if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
        ((lo - pad).max(floor), hi + pad)
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0..max_x, lo..hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(max_x + 1)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(e)?;
    for (
        i,
        Series {
            label,
            points,
            dashed,
        },
    ) in series.iter().enumerate()
    {
        let colour = PALETTE[i % PALETTE.len()];
        let style = colour.stroke_width(2);
        let pts = points.iter().copied();
        if *dashed {
            chart
                .draw_series(DashedLineSeries::new(pts, 10, 6, style))
                .map_err(e)?
                .label(label.clone())
                .legend(move |(x, y)| {
                    DashedPathElement::new(vec![(x, y), (x + 24, y)], 6, 4, colour.stroke_width(2))
                });
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(e)?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
                });
        }
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// The legend box shared by every figure.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|err| err.to_string())
}
