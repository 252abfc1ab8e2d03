//! Each plot writes a well-formed SVG (and a PNG where a font exists), and
//! awkward data (NaN, one point, equal values, nothing) draws, not panics.

use std::path::Path;

use super::*;

/// Checks the SVG's shape and that it shows the title and some drawing.
#[track_caller]
fn check_svg(path: &Path, title_as_written: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(80)]);
    assert!(text.trim_end().ends_with("</svg>"));
    assert!(
        text.contains(title_as_written),
        "title missing from {}",
        path.display()
    );
    assert!(
        text.contains("<polyline") || text.contains("<path") || text.contains("<polygon"),
        "no line in {}",
        path.display()
    );
    text
}

/// Whether the SVG has a `<text>` element saying exactly `s` (plotters
/// writes the text on its own line).
fn has_text(svg: &str, s: &str) -> bool {
    svg.contains(&format!(">\n{s}\n</text>"))
}

/// Checks the PNG where this machine has a font, and the reason where not.
#[track_caller]
fn check_png(w: &Written) {
    match font::bitmap_font() {
        Ok(_) => {
            let path = w.png.as_ref().expect("a font exists, so a PNG");
            assert_eq!(w.png_skipped, None);
            let img = image::open(path).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), SIZE);
            let first = *img.get_pixel(0, 0);
            assert!(img.pixels().any(|p| *p != first), "a single colour");
            // Text was drawn: some pixels are near black (the title), not only the series' colours.
            assert!(
                img.pixels().any(|p| p.0.iter().all(|&c| c < 60)),
                "no dark text"
            );
        }
        Err(why) => {
            assert_eq!(w.png, None);
            assert_eq!(w.png_skipped.as_deref(), Some(why));
        }
    }
}

fn band(label: &str, shift: f64) -> Band {
    let x: Vec<f64> = (1..=8).map(f64::from).collect();
    let mean: Vec<f64> = x.iter().map(|e| 0.9 - 0.6 / e + shift).collect();
    Band {
        label: label.into(),
        lo: mean.iter().map(|m| m - 0.03).collect(),
        hi: mean.iter().map(|m| m + 0.03).collect(),
        x,
        mean,
    }
}

#[test]
fn curves_draw_a_band_and_a_line_per_arm() {
    let dir = tempfile::tempdir().unwrap();
    let mut pa = band("pa", 0.02);
    pa.mean[3] = f64::NAN; // a gap in the line, not a failure
    let w = curves(
        dir.path(),
        "acc",
        "Test accuracy & spread",
        "epoch",
        "accuracy",
        &[band("original", 0.0), pa],
    )
    .unwrap();
    assert_eq!(w.svg, dir.path().join("acc.svg"));
    let svg = check_svg(&w.svg, "Test accuracy &amp; spread");
    assert!(has_text(&svg, "original") && has_text(&svg, "pa"), "legend");
    assert!(
        has_text(&svg, "epoch") && has_text(&svg, "accuracy"),
        "axis labels"
    );
    assert!(
        svg.matches("<polygon").count() >= 3,
        "bands: one for the original, two around pa's gap"
    );
    check_png(&w);
    // Written through a staging file: nothing else is left in the folder.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<&str> = if w.png.is_some() {
        vec!["acc.png", "acc.svg"]
    } else {
        vec!["acc.svg"]
    };
    assert_eq!(names, expected);
}

#[test]
fn scatter_draws_the_points_and_the_diagonal() {
    let dir = tempfile::tempdir().unwrap();
    let pts: Vec<(f64, f64)> = (0..10)
        .map(|i| (0.22 + 0.004 * f64::from(i), 0.225 + 0.0045 * f64::from(i)))
        .collect();
    let w = paired_scatter(
        dir.path(),
        "epoch1",
        "Epoch-1 accuracy per seed",
        "original",
        "pa",
        &pts,
    )
    .unwrap();
    let svg = check_svg(&w.svg, "Epoch-1 accuracy per seed");
    assert!(
        svg.matches("<circle").count() >= 20,
        "ten points, filled and outlined"
    );
    assert!(
        svg.contains("10 seeds") && svg.contains("(10 above)"),
        "legend counts the seeds above y = x"
    );
    check_png(&w);
}

#[test]
fn histograms_share_bins() {
    let dir = tempfile::tempdir().unwrap();
    let before: Vec<f64> = (0..400).map(|i| (f64::from(i) * 0.37).sin()).collect();
    let after: Vec<f64> = before.iter().map(|v| v * 0.6).collect();
    let w = histograms(
        dir.path(),
        "strength",
        "Row strengths",
        "strength",
        &before,
        &after,
    )
    .unwrap();
    let svg = check_svg(&w.svg, "Row strengths");
    assert!(has_text(&svg, "before") && has_text(&svg, "after"));
    assert!(svg.matches("<rect").count() > 20, "bars");
    check_png(&w);
    // Every finite value is counted once, the largest in the last bin.
    let c = draw::counts(&[-1.0, 0.0, 1.0, f64::NAN], -1.0, 0.1, 20);
    assert_eq!((c.iter().sum::<u64>(), c[0], c[10], c[19]), (3, 1, 1, 1));
}

#[test]
fn awkward_data_draws_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let one = Band {
        label: "pa".into(),
        x: vec![1.0],
        mean: vec![0.5],
        lo: vec![0.4],
        hi: vec![0.6],
    };
    let flat = Band {
        label: "flat".into(),
        x: vec![1.0, 2.0, 3.0],
        mean: vec![0.5; 3],
        lo: vec![0.5; 3],
        hi: vec![0.5; 3],
    };
    let ragged = Band {
        label: "ragged".into(),
        x: vec![1.0, 2.0, 3.0],
        mean: vec![0.5, 0.6],
        lo: vec![],
        hi: vec![f64::NAN; 5],
    };
    let nans = Band {
        label: "nan".into(),
        x: vec![1.0, 2.0],
        mean: vec![f64::NAN; 2],
        lo: vec![f64::NAN; 2],
        hi: vec![f64::NAN; 2],
    };
    for (i, bands) in [
        vec![one.clone()],
        vec![flat],
        vec![ragged],
        vec![one, nans.clone()],
    ]
    .iter()
    .enumerate()
    {
        let w = curves(d, &format!("c{i}"), "curves", "epoch", "acc", bands).unwrap();
        check_svg(&w.svg, "curves");
    }
    for (i, pts) in [
        vec![(0.5, 0.5)],
        vec![(0.3, 0.3); 4],
        vec![(f64::NAN, 1.0), (2.0, f64::INFINITY), (1.0, 2.0)],
    ]
    .iter()
    .enumerate()
    {
        let w = paired_scatter(d, &format!("s{i}"), "scatter", "original", "pa", pts).unwrap();
        check_svg(&w.svg, "scatter");
    }
    for (i, (b, a)) in [
        (vec![1.0; 10], vec![1.0; 10]),
        (vec![0.0], vec![]),
        (vec![f64::NAN, 3.0], vec![-1e300, 1e300]),
    ]
    .iter()
    .enumerate()
    {
        let w = histograms(d, &format!("h{i}"), "hist", "strength", b, a).unwrap();
        check_svg(&w.svg, "hist");
        check_png(&w);
    }
}

#[test]
fn no_data_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nans = Band {
        label: "nan".into(),
        x: vec![1.0],
        mean: vec![f64::NAN],
        lo: vec![],
        hi: vec![],
    };
    let written = [
        curves(d, "c", "empty curves", "epoch", "acc", &[]).unwrap(),
        curves(d, "n", "nan curves", "epoch", "acc", &[nans]).unwrap(),
        paired_scatter(d, "s", "empty scatter", "original", "pa", &[]).unwrap(),
        histograms(d, "h", "empty hist", "strength", &[], &[f64::NAN]).unwrap(),
    ];
    for w in &written {
        let text = std::fs::read_to_string(&w.svg).unwrap();
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        assert!(has_text(&text, "no data"), "{}", w.svg.display());
        check_png(w);
    }
}

#[test]
fn svg_needs_no_font_file() {
    // A family nobody registers stands for a machine without fonts.
    let labels = || {
        draw::Labels::new("Fontless & fine", "epoch", "accuracy").in_family("pa-onnx-unregistered")
    };
    let bands = [band("original", 0.0), band("pa", 0.01)];
    let pts = [(0.2, 0.21), (0.22, 0.2)];
    let svgs = [
        svg_text(&draw::Curves {
            labels: labels(),
            bands: &bands,
        }),
        svg_text(&draw::Scatter {
            labels: labels(),
            points: &pts,
        }),
        svg_text(&draw::Histograms {
            labels: labels(),
            before: &[1.0, 2.0],
            after: &[2.0, 3.0],
        }),
        svg_text(&draw::Curves {
            labels: labels(),
            bands: &[],
        }),
    ];
    for svg in svgs {
        let svg = svg.unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("Fontless &amp; fine"));
    }
}

#[test]
fn font_search_prefers_dejavu_then_a_regular_sans() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let put = |rel: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"not really a font").unwrap();
    };
    assert_eq!(font::find_font(&[root]), None);
    put("a/Zed-Bold.ttf");
    assert_eq!(font::find_font(&[root]), Some(root.join("a/Zed-Bold.ttf")));
    put("b/FreeSans.ttf");
    put("b/FreeSansBold.ttf");
    assert_eq!(font::find_font(&[root]), Some(root.join("b/FreeSans.ttf")));
    put("c/d/DejaVuSans.ttf");
    assert_eq!(
        font::find_font(&[root, Path::new("/no/such/dir")]),
        Some(root.join("c/d/DejaVuSans.ttf"))
    );
    // A file that is not a font is refused with its name, before plotters sees it.
    let why = font::register(&root.join("c/d/DejaVuSans.ttf")).unwrap_err();
    assert!(
        why.contains("DejaVuSans.ttf") && why.contains("not a usable"),
        "{why}"
    );
    let why = font::register(&root.join("missing.ttf")).unwrap_err();
    assert!(why.contains("cannot read"), "{why}");
}
