//! Fonts for the plots: a TrueType file for PNGs, none needed for SVGs.
//!
//! A bitmap needs glyph outlines, and plotters (built with `ab_glyph`, so
//! no system font library is linked) draws only fonts registered with it
//! from bytes. So a PNG needs a `.ttf` found on this machine; without one
//! the plots are SVG only and the report says why the PNG was skipped.
//!
//! An SVG names its font and leaves the drawing to the viewer, so it needs
//! no font file, as long as nothing asks the font for a text's size:
//! plotters does for a chart's caption and its built-in legend, so the
//! plots draw their own title and legend, sized by [`text_size`], which
//! estimates where no font is registered.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// The environment variable naming a font file to use instead of searching.
pub(super) const FONT_ENV: &str = "PA_ONNX_FONT";

/// Folders searched for a TrueType font, in order.
const FONT_DIRS: [&str; 2] = ["/usr/share/fonts", "/usr/local/share/fonts"];

/// How deep the search descends below each folder (fonts sit at most a
/// few levels down, e.g. `truetype/dejavu/DejaVuSans.ttf`).
const MAX_DEPTH: usize = 4;

/// The family every plot's text asks for; a found font is registered under it.
pub(super) const FAMILY: &str = "sans-serif";

/// Registers a font for bitmap text once per process: `Ok` with the font's
/// path, or the reason no PNG can be drawn.
pub(super) fn bitmap_font() -> Result<&'static Path, &'static str> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = match std::env::var_os(FONT_ENV) {
            Some(p) => PathBuf::from(p),
            None => {
                let dirs: Vec<&Path> = FONT_DIRS.iter().map(Path::new).collect();
                find_font(&dirs).ok_or_else(|| {
                    format!(
                        "no TrueType font (.ttf) under {}; install one (e.g. fonts-dejavu-core) or set {FONT_ENV}",
                        FONT_DIRS.join(" or ")
                    )
                })?
            }
        };
        register(&path)?;
        Ok(path)
    })
    .as_ref()
    .map(PathBuf::as_path)
    .map_err(String::as_str)
}

/// Reads a font file and registers it under [`FAMILY`].
pub(super) fn register(path: &Path) -> Result<(), String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read the font {}: {e}", path.display()))?;
    // plotters keeps registered fonts for the life of the process and asks
    // for 'static bytes; this runs once per process (see `bitmap_font`).
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
}

/// The best TrueType font under `dirs`: DejaVu Sans if present, else a
/// regular sans face, else any `.ttf` (first in path order, so the choice
/// does not change between runs).
pub(super) fn find_font(dirs: &[&Path]) -> Option<PathBuf> {
    let mut found = Vec::new();
    for dir in dirs {
        collect_ttf(dir, MAX_DEPTH, &mut found);
    }
    found.sort();
    let name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let regular_sans = |n: &str| {
        n.contains("Sans")
            && !["Bold", "Italic", "Oblique", "Mono", "Light", "Condensed"]
                .iter()
                .any(|s| n.contains(s))
    };
    found
        .iter()
        .find(|p| name(p) == "DejaVuSans.ttf")
        .or_else(|| found.iter().find(|p| regular_sans(&name(p))))
        .or_else(|| found.first())
        .cloned()
}

/// Adds the `.ttf` files under `dir` (to `depth` levels) to `out`; unreadable folders are passed over.
fn collect_ttf(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && depth > 0 {
            collect_ttf(&path, depth - 1, out);
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ttf"))
        {
            out.push(path);
        }
    }
}

/// The size of `text` in pixels: measured with the font where one is
/// registered, else estimated at DejaVu Sans's average advance (0.6 em per
/// character, 1 em high), which is close enough to keep a legend clear of
/// its neighbours; an SVG viewer draws the text with its own font anyway.
pub(super) fn text_size<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
) -> (u32, u32) {
    area.estimate_text_size(text, style).unwrap_or_else(|_| {
        let em = style.font.get_size();
        let width = 0.6 * em * text.chars().count() as f64;
        (width.ceil() as u32, em.ceil() as u32)
    })
}
