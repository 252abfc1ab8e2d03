//! The comparison's pictures: learning curves with bands, a per-seed
//! paired scatter, and overlaid histograms.
//!
//! A reader judges a comparison faster from its plots than from its
//! tables: whether the bands separate, whether the seeds sit above the
//! diagonal, how rewiring reshaped the strengths. Each plot is written as
//! SVG, which any browser shows and which needs no font file, and as PNG
//! (for viewers that do not show SVG) when a TrueType font can be found
//! ([`font`]); otherwise [`Written::png_skipped`] says why there is none.
//!
//! The data comes from real runs, so it can be awkward: one seed, one
//! epoch, identical values, a diverged run's NaN, nothing at all. Every
//! plot draws something sensible for those (NaN values are left out, an
//! empty plot says "no data") rather than fail or panic.

mod draw;
mod font;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

/// Width and height of every plot, in pixels (the PNG's size; the SVG's viewport).
pub(crate) const SIZE: (u32, u32) = (960, 600);

/// One arm's curve: its mean per epoch and the band around it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Band {
    /// The arm, as the legend names it.
    pub label: String,
    /// The epochs (or steps) of the points.
    pub x: Vec<f64>,
    /// The mean over seeds at each `x`.
    pub mean: Vec<f64>,
    /// The band's lower edge at each `x` (e.g. the mean minus one std, or a CI bound).
    pub lo: Vec<f64>,
    /// The band's upper edge at each `x`.
    pub hi: Vec<f64>,
}

/// The files a plot was written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    /// The SVG, always written.
    pub svg: PathBuf,
    /// The PNG, when a font was found to draw its text.
    pub png: Option<PathBuf>,
    /// Why there is no PNG, when there is none.
    pub png_skipped: Option<String>,
}

/// A plot that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// The plotting library failed while drawing.
    #[error("cannot draw {path}: {detail}")]
    Draw {
        /// The file being drawn.
        path: PathBuf,
        /// The library's message.
        detail: String,
    },
    /// The PNG could not be encoded.
    #[error("cannot encode {path}: {source}")]
    Encode {
        /// The file being encoded.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] crate::Error),
}

impl PlotError {
    /// What the user can do about the error, where one thing helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            PlotError::Write(e) => e.hint(),
            _ => None,
        }
    }
}

/// The mean curve of each arm over the epochs, with its band shaded, and a legend.
pub(crate) fn curves(
    dir: &Path,
    stem: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    bands: &[Band],
) -> Result<Written, PlotError> {
    let figure = draw::Curves {
        labels: draw::Labels::new(title, x_label, y_label),
        bands,
    };
    render(dir, stem, &figure)
}

/// One point per seed, the original's value across and the arm's up, with
/// the diagonal `y = x` over the joint range: points above it are seeds
/// where the arm's value is higher.
pub(crate) fn paired_scatter(
    dir: &Path,
    stem: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
) -> Result<Written, PlotError> {
    let figure = draw::Scatter {
        labels: draw::Labels::new(title, x_label, y_label),
        points,
    };
    render(dir, stem, &figure)
}

/// Two histograms over the same bins, drawn semi-transparent over each
/// other: `before` and `after` (e.g. strengths before and after rewiring).
pub(crate) fn histograms(
    dir: &Path,
    stem: &str,
    title: &str,
    x_label: &str,
    before: &[f64],
    after: &[f64],
) -> Result<Written, PlotError> {
    let figure = draw::Histograms {
        labels: draw::Labels::new(title, x_label, "count"),
        before,
        after,
    };
    render(dir, stem, &figure)
}

/// Something that draws itself on any plotters backend.
trait Figure {
    /// Draws the whole figure on `root`, whose background is already white.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), draw::Failed>;
}

/// Writes `figure` as `dir/stem.svg`, and as `dir/stem.png` where a font allows.
fn render(dir: &Path, stem: &str, figure: &impl Figure) -> Result<Written, PlotError> {
    let svg = dir.join(format!("{stem}.svg"));
    let text = svg_text(figure).map_err(|f| PlotError::Draw {
        path: svg.clone(),
        detail: f.0,
    })?;
    crate::fs::write_atomically(&svg, text.as_bytes())?;
    let (png, png_skipped) = match font::bitmap_font() {
        Ok(_) => {
            let path = dir.join(format!("{stem}.png"));
            let bytes = png_bytes(figure, &path)?;
            crate::fs::write_atomically(&path, &bytes)?;
            (Some(path), None)
        }
        Err(why) => (None, Some(why.to_string())),
    };
    Ok(Written {
        svg,
        png,
        png_skipped,
    })
}

/// The figure as SVG text.
fn svg_text(figure: &impl Figure) -> Result<String, draw::Failed> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        figure.draw(&root)?;
        root.present()?;
    }
    Ok(text)
}

/// The figure drawn on a bitmap and encoded as PNG.
fn png_bytes(figure: &impl Figure, path: &Path) -> Result<Vec<u8>, PlotError> {
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    let drawn: Result<(), draw::Failed> = (|| {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        figure.draw(&root)?;
        root.present()?;
        Ok(())
    })();
    drawn.map_err(|f| PlotError::Draw {
        path: path.to_path_buf(),
        detail: f.0,
    })?;
    let mut bytes = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut bytes),
        &rgb,
        w,
        h,
        image::ColorType::Rgb8,
    )
    .map_err(|source| PlotError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(bytes)
}
