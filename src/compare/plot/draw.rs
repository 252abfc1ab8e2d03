//! Drawing the three figures on any plotters backend (SVG or bitmap).
//!
//! Every figure shares one frame: a title on top, a legend in its own
//! column on the right, so it never covers the data, and the chart in the
//! rest. Title and legend are drawn here rather than by plotters, whose
//! versions need a font file even for SVG (see [`super::font`]).
//! Non-finite values are dropped before anything is measured, and ranges
//! are widened when all values are equal, so no input can make a chart
//! with an empty axis.

use std::ops::Range;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::font::{text_size, FAMILY};
use super::{Band, Figure};

/// A drawing failure, with plotters' message.
#[derive(Debug)]
pub(super) struct Failed(pub(super) String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for Failed {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        Failed(e.to_string())
    }
}

/// A chart's coordinates: plain numbers on both axes.
type Xy = Cartesian2d<RangedCoordf64, RangedCoordf64>;

/// The texts around a chart, and the font family they ask for.
pub(super) struct Labels<'a> {
    title: &'a str,
    x: &'a str,
    y: &'a str,
    family: &'a str,
}

impl<'a> Labels<'a> {
    pub(super) fn new(title: &'a str, x: &'a str, y: &'a str) -> Self {
        Labels {
            title,
            x,
            y,
            family: FAMILY,
        }
    }

    /// The same texts in another family: tests use one that is never
    /// registered, to draw as a machine without fonts does.
    #[cfg(test)]
    pub(super) fn in_family(self, family: &'a str) -> Self {
        Labels { family, ..self }
    }
}

/// Colours for the arms, in order: the original first (blue), then the
/// variants; distinct for the colour-blind in the first few (the tab10 set).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const GRID_BOLD: RGBColor = RGBColor(215, 215, 215);
const GRID_LIGHT: RGBColor = RGBColor(240, 240, 240);
const MUTED: RGBColor = RGBColor(110, 110, 110);

const TITLE_SIZE: f64 = 24.0;
const TITLE_BAND: u32 = 46;
const LEGEND_SIZE: f64 = 15.0;
const LEGEND_ROW: i32 = 26;
const LEGEND_SWATCH: i32 = 26;
const LABEL_SIZE: f64 = 14.0;
const DESC_SIZE: f64 = 16.0;

/// How a legend entry shows its series.
#[derive(Clone, Copy)]
enum Mark {
    /// A line with a dot: a mean curve.
    Line,
    /// A dashed line: a reference line.
    Dashed,
    /// A dot: a scatter.
    Dot,
    /// A filled square: histogram bars.
    Square,
}

/// One legend entry.
struct Entry {
    text: String,
    color: RGBColor,
    mark: Mark,
}

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Draws the title and the legend, and returns the area left for the chart.
fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    labels: &Labels<'_>,
    legend: &[Entry],
) -> Result<DrawingArea<DB, Shift>, Failed> {
    let (w, _) = root.dim_in_pixel();
    let style = TextStyle::from((labels.family, TITLE_SIZE).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text(labels.title, &style, (w as i32 / 2, TITLE_BAND as i32 / 2))?;
    let (_, body) = root.split_vertically(TITLE_BAND);
    if legend.is_empty() {
        return Ok(body);
    }
    let text_style = TextStyle::from((labels.family, LEGEND_SIZE).into_font()).color(&BLACK);
    let widest = legend
        .iter()
        .map(|e| text_size(&body, &e.text, &text_style).0)
        .max()
        .unwrap_or(0) as i32;
    let (bw, _) = body.dim_in_pixel();
    let column = (LEGEND_SWATCH + 30 + widest).min(bw as i32 / 3);
    let (chart, side) = body.split_horizontally(bw as i32 - column);
    let text_style = text_style.pos(Pos::new(HPos::Left, VPos::Center));
    for (i, e) in legend.iter().enumerate() {
        let y = 30 + i as i32 * LEGEND_ROW;
        let (x0, x1) = (6, 6 + LEGEND_SWATCH);
        match e.mark {
            Mark::Line => {
                side.draw(&PathElement::new(
                    vec![(x0, y), (x1, y)],
                    e.color.stroke_width(2),
                ))?;
                side.draw(&Circle::new(((x0 + x1) / 2, y), 3, e.color.filled()))?;
            }
            Mark::Dashed => {
                for s in (x0..x1).step_by(8) {
                    side.draw(&PathElement::new(
                        vec![(s, y), ((s + 5).min(x1), y)],
                        e.color.stroke_width(2),
                    ))?;
                }
            }
            Mark::Dot => side.draw(&Circle::new(((x0 + x1) / 2, y), 5, e.color.filled()))?,
            Mark::Square => side.draw(&Rectangle::new(
                [(x0 + 4, y - 8), (x1 - 4, y + 8)],
                e.color.mix(0.5).filled(),
            ))?,
        }
        side.draw_text(&e.text, &text_style, (x1 + 10, y))?;
    }
    Ok(chart)
}

/// Writes "no data" in the middle of `area`.
fn no_data<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    labels: &Labels<'_>,
) -> Result<(), Failed> {
    let area = frame(root, labels, &[])?;
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((labels.family, 20.0).into_font())
        .color(&MUTED)
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text("no data", &style, (w as i32 / 2, h as i32 / 2))?;
    Ok(())
}

/// The smallest and largest finite value, if any.
fn extent(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// `lo..hi` widened by 5% on each side, or, when `lo == hi`, by `flat`
/// (or 5% of the value, if larger), so that an axis always has a length.
fn padded((lo, hi): (f64, f64), flat: f64) -> Range<f64> {
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        flat.max(lo.abs() * 0.05)
    };
    (lo - pad)..(hi + pad)
}

/// Axis styling shared by the figures; tick labels get as many decimals
/// as the axis's span needs (so epochs read "1", "2", not "1.0"). With
/// `whole_x`, x ticks between whole numbers (epoch 1.5) go unlabelled.
fn mesh<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Xy>,
    labels: &Labels<'_>,
    x: &Range<f64>,
    y: &Range<f64>,
    whole_x: bool,
) -> Result<(), Failed> {
    let plain_x = tick_format(x);
    let fx = move |v: &f64| {
        if whole_x && v.fract().abs() > 1e-9 {
            String::new()
        } else {
            plain_x(v)
        }
    };
    let fy = tick_format(y);
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .label_style((labels.family, LABEL_SIZE))
        .axis_desc_style((labels.family, DESC_SIZE))
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .max_light_lines(1)
        .draw()?;
    Ok(())
}

/// A tick label formatter for an axis over `range`: three significant
/// digits of the span, trailing zeros dropped; powers of ten for huge values.
fn tick_format(range: &Range<f64>) -> impl Fn(&f64) -> String {
    let span = (range.end - range.start).abs();
    let huge = range.start.abs().max(range.end.abs()) >= 1e6;
    let digits = if span > 0.0 && span.is_finite() {
        (2 - span.log10().floor() as i32).clamp(0, 12) as usize
    } else {
        3
    };
    move |v: &f64| {
        if huge {
            return format!("{v:.2e}");
        }
        let s = format!("{v:.digits$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            &s
        };
        if s == "-0" {
            "0".to_string()
        } else {
            s.to_string()
        }
    }
}

/// Builds a chart on `area` with room for tick labels and axis descriptions.
fn chart_on<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<ChartContext<'a, DB, Xy>, Failed> {
    Ok(ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?)
}

/// Runs of consecutive indices `i` where `keep(i)` holds.
fn runs(len: usize, keep: impl Fn(usize) -> bool) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for i in 0..=len {
        match (start, i < len && keep(i)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Mean curves with shaded bands.
pub(super) struct Curves<'a> {
    pub(super) labels: Labels<'a>,
    pub(super) bands: &'a [Band],
}

impl Figure for Curves<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Failed> {
        let len = |b: &Band| b.x.len().min(b.mean.len());
        let line_ok = |b: &Band, i: usize| b.x[i].is_finite() && b.mean[i].is_finite();
        let band_ok = |b: &Band, i: usize| {
            line_ok(b, i)
                && b.lo.get(i).is_some_and(|v| v.is_finite())
                && b.hi.get(i).is_some_and(|v| v.is_finite())
        };
        let xs = extent(
            self.bands
                .iter()
                .flat_map(|b| (0..len(b)).filter(|&i| line_ok(b, i)).map(|i| b.x[i])),
        );
        let ys = extent(self.bands.iter().flat_map(|b| {
            (0..len(b)).filter(|&i| line_ok(b, i)).flat_map(move |i| {
                let edges = if band_ok(b, i) {
                    [b.lo[i], b.hi[i]]
                } else {
                    [b.mean[i]; 2]
                };
                [b.mean[i], edges[0], edges[1]]
            })
        }));
        let legend: Vec<Entry> = self
            .bands
            .iter()
            .enumerate()
            .map(|(i, b)| Entry {
                text: b.label.clone(),
                color: colour(i),
                mark: Mark::Line,
            })
            .collect();
        let (Some(xs), Some(ys)) = (xs, ys) else {
            return no_data(root, &self.labels);
        };
        let area = frame(root, &self.labels, &legend)?;
        let (x, y) = (padded(xs, 0.5), padded(ys, 0.01));
        let mut chart = chart_on(&area, x.clone(), y.clone())?;
        mesh(&mut chart, &self.labels, &x, &y, true)?;
        for (k, b) in self.bands.iter().enumerate() {
            let c = colour(k);
            for r in runs(len(b), |i| band_ok(b, i)) {
                if r.len() == 1 {
                    let i = r.start;
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(b.x[i], b.lo[i]), (b.x[i], b.hi[i])],
                        c.mix(0.4).stroke_width(4),
                    )))?;
                    continue;
                }
                let upper = r.clone().map(|i| (b.x[i], b.hi[i]));
                let lower = r.clone().rev().map(|i| (b.x[i], b.lo[i]));
                let outline: Vec<(f64, f64)> = upper.chain(lower).collect();
                chart.draw_series(std::iter::once(Polygon::new(outline, c.mix(0.18).filled())))?;
            }
        }
        // Lines over all bands, so that no band hides another arm's mean.
        for (k, b) in self.bands.iter().enumerate() {
            let c = colour(k);
            for r in runs(len(b), |i| line_ok(b, i)) {
                chart.draw_series(LineSeries::new(
                    r.clone().map(|i| (b.x[i], b.mean[i])),
                    c.stroke_width(2),
                ))?;
                chart.draw_series(r.map(|i| Circle::new((b.x[i], b.mean[i]), 3, c.filled())))?;
            }
        }
        Ok(())
    }
}

/// Per-seed pairs against the diagonal.
pub(super) struct Scatter<'a> {
    pub(super) labels: Labels<'a>,
    pub(super) points: &'a [(f64, f64)],
}

impl Figure for Scatter<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Failed> {
        let pts: Vec<(f64, f64)> = self
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let Some(joint) = extent(pts.iter().flat_map(|&(x, y)| [x, y])) else {
            return no_data(root, &self.labels);
        };
        let above = pts.iter().filter(|(x, y)| y > x).count();
        let legend = [
            Entry {
                text: format!(
                    "{} seed{}",
                    pts.len(),
                    if pts.len() == 1 { "" } else { "s" }
                ),
                color: colour(1),
                mark: Mark::Dot,
            },
            Entry {
                text: format!("y = x ({above} above)"),
                color: MUTED,
                mark: Mark::Dashed,
            },
        ];
        let area = frame(root, &self.labels, &legend)?;
        let range = padded(joint, 0.01);
        let mut chart = chart_on(&area, range.clone(), range.clone())?;
        mesh(&mut chart, &self.labels, &range, &range, false)?;
        let ends = [(range.start, range.start), (range.end, range.end)];
        chart.draw_series(DashedLineSeries::new(ends, 8, 5, MUTED.stroke_width(2)))?;
        let c = colour(1);
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 6, c.mix(0.75).filled())))?;
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 6, c.stroke_width(1))))?;
        Ok(())
    }
}

/// Two histograms over shared bins.
pub(super) struct Histograms<'a> {
    pub(super) labels: Labels<'a>,
    pub(super) before: &'a [f64],
    pub(super) after: &'a [f64],
}

/// Bin counts of `values` over `bins` equal bins from `lo` of width `width`.
pub(super) fn counts(values: &[f64], lo: f64, width: f64, bins: usize) -> Vec<u64> {
    let mut c = vec![0u64; bins];
    for v in values.iter().filter(|v| v.is_finite()) {
        let k = ((v - lo) / width).floor();
        // The largest value lands exactly on the last edge; it belongs to the last bin.
        let k = if k < 0.0 {
            0
        } else {
            (k as usize).min(bins - 1)
        };
        c[k] += 1;
    }
    c
}

impl Figure for Histograms<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Failed> {
        let Some(joint) = extent(self.before.iter().chain(self.after).copied()) else {
            return no_data(root, &self.labels);
        };
        let finite = |xs: &[f64]| xs.iter().filter(|v| v.is_finite()).count();
        let most = finite(self.before).max(finite(self.after));
        let bins = ((most as f64).sqrt().ceil() as usize).clamp(5, 50);
        let span = if joint.1 > joint.0 {
            joint.0..joint.1
        } else {
            padded(joint, 0.5)
        };
        let width = (span.end - span.start) / bins as f64;
        let series = [
            (
                "before",
                counts(self.before, span.start, width, bins),
                colour(0),
            ),
            (
                "after",
                counts(self.after, span.start, width, bins),
                colour(1),
            ),
        ];
        let top = series
            .iter()
            .flat_map(|s| s.1.iter())
            .copied()
            .max()
            .unwrap_or(0)
            .max(1);
        let legend: Vec<Entry> = series
            .iter()
            .map(|(name, _, c)| Entry {
                text: (*name).to_string(),
                color: *c,
                mark: Mark::Square,
            })
            .collect();
        let area = frame(root, &self.labels, &legend)?;
        let y = 0.0..top as f64 * 1.08;
        let mut chart = chart_on(&area, span.clone(), y.clone())?;
        mesh(&mut chart, &self.labels, &span, &y, false)?;
        for (_, c, colour) in &series {
            let bar = |k: usize| {
                let x0 = span.start + k as f64 * width;
                [(x0, 0.0), (x0 + width, c[k] as f64)]
            };
            let filled = (0..bins).filter(|&k| c[k] > 0);
            chart.draw_series(
                filled
                    .clone()
                    .map(|k| Rectangle::new(bar(k), colour.mix(0.4).filled())),
            )?;
            chart.draw_series(filled.map(|k| Rectangle::new(bar(k), colour.stroke_width(1))))?;
        }
        Ok(())
    }
}
