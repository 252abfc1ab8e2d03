//! A folder of images, one subfolder per class.
//!
//! The layout torchvision's `ImageFolder` reads, and the one people build
//! from their own photos: `root/<class>/<image>.png|jpg`, or the same under
//! `root/train/` and `root/test/` (also `val/` or `validation/`). Class
//! names sorted give the labels. Every image is decoded once, at load time,
//! on all cores, converted to the model's channel count (grayscale or RGB)
//! and resized to its height and width, so that training never decodes.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::DynamicImage;
use rayon::prelude::*;

use super::arrays::file_name;
use super::{DataError, RawData, RawSplit};

/// File extensions read as images (compared in lower case).
const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];
/// Names of the test subfolder, in order of preference.
const TEST_FOLDERS: &[&str] = &["test", "val", "validation"];

/// Where the classes are: `root` itself, or its `train/` and `test/`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Layout {
    pub train: PathBuf,
    pub test: Option<PathBuf>,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The visible subfolders of `dir`, sorted by name.
fn subfolders(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        if path.is_dir() && !file_name(&path).starts_with('.') {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The image files directly in `dir`, sorted by name.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if is_image && path.is_file() && !file_name(&path).starts_with('.') {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// True when some subfolder of `dir` holds an image.
fn has_classes(dir: &Path) -> Result<bool, DataError> {
    for class in subfolders(dir)? {
        if !image_files(&class)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The image-folder layout at `dir`, if it is one.
pub(super) fn find(dir: &Path) -> Result<Option<Layout>, DataError> {
    let train = dir.join("train");
    if train.is_dir() && has_classes(&train)? {
        let test = TEST_FOLDERS
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_dir());
        return Ok(Some(Layout { train, test }));
    }
    Ok(has_classes(dir)?.then(|| Layout {
        train: dir.to_path_buf(),
        test: None,
    }))
}

/// The model's `[C, H, W]` (a `[H, W]` model takes one channel).
fn geometry(name: &str, model: &[usize]) -> Result<(usize, u32, u32), DataError> {
    let (c, h, w) = match *model {
        [c, h, w] if c == 1 || c == 3 => (c, h, w),
        [h, w] => (1, h, w),
        _ => {
            return Err(DataError::ModelInput {
                origin: name.to_string(),
                model: model.to_vec(),
                detail: "images need an input of [C, H, W] with C 1 or 3, or [H, W]".into(),
            })
        }
    };
    let side = |v: usize| {
        u32::try_from(v).map_err(|_| DataError::BadOption(format!("image side {v} is too large")))
    };
    Ok((c, side(h)?, side(w)?))
}

/// What decoding one image had to change.
#[derive(Default, Clone, Copy)]
struct Changes {
    resized: bool,
    recoloured: bool,
}

/// Decodes `path` into `out` as `[C, H, W]` values in `[0, 1]`.
fn decode(
    path: &Path,
    out: &mut [f32],
    (c, h, w): (usize, u32, u32),
) -> Result<Changes, DataError> {
    let image = image::io::Reader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(io_error(path))?
        .decode()
        .map_err(|source| DataError::Image {
            path: path.to_path_buf(),
            source,
        })?;
    let gray_source = matches!(
        image,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLumaA16(_)
    );
    let changes = Changes {
        resized: image.width() != w || image.height() != h,
        recoloured: gray_source != (c == 1),
    };
    let resize = |img: DynamicImage| {
        if changes.resized {
            img.resize_exact(w, h, FilterType::Triangle)
        } else {
            img
        }
    };
    let plane = (h * w) as usize;
    if c == 1 {
        let gray = resize(DynamicImage::ImageLuma8(image.to_luma8())).to_luma8();
        for (o, p) in out.iter_mut().zip(gray.as_raw()) {
            *o = f32::from(*p) / 255.0;
        }
    } else {
        let rgb = resize(DynamicImage::ImageRgb8(image.to_rgb8())).to_rgb8();
        for (i, pixel) in rgb.as_raw().chunks_exact(3).enumerate() {
            for (ch, &v) in pixel.iter().enumerate() {
                out[ch * plane + i] = f32::from(v) / 255.0;
            }
        }
    }
    Ok(changes)
}

/// Decodes every image of one split, with labels from `classes`.
fn split(
    root: &Path,
    classes: &[String],
    geometry: (usize, u32, u32),
    changes: &mut Vec<Changes>,
) -> Result<RawSplit, DataError> {
    let mut files = Vec::new();
    for folder in subfolders(root)? {
        let name = file_name(&folder);
        let Some(label) = classes.iter().position(|c| *c == name) else {
            return Err(DataError::BadLabels {
                origin: root.display().to_string(),
                detail: format!(
                    "class folder `{name}` has no counterpart among the training classes"
                ),
            });
        };
        files.extend(image_files(&folder)?.into_iter().map(|f| (f, label as i64)));
    }
    let (c, h, w) = geometry;
    let len = c * (h * w) as usize;
    let mut x = vec![0.0f32; files.len() * len];
    let results: Vec<Result<Changes, DataError>> = x
        .par_chunks_mut(len.max(1))
        .zip(files.par_iter())
        .map(|(out, (path, _))| decode(path, out, geometry))
        .collect();
    for result in results {
        changes.push(result?);
    }
    Ok(RawSplit {
        origin: root.display().to_string(),
        x,
        shape: vec![c, h as usize, w as usize],
        y: files.into_iter().map(|(_, label)| label).collect(),
    })
}

/// Reads the image folder at `dir`, fitted to the model's `[C, H, W]`.
pub(super) fn load(dir: &Path, model: &[usize]) -> Result<RawData, DataError> {
    let name = file_name(dir);
    let layout = find(dir)?.ok_or_else(|| DataError::UnknownFormat {
        path: dir.to_path_buf(),
        found: "no subfolder holds .png or .jpg images".into(),
    })?;
    let geometry = geometry(&name, model)?;
    let classes: Vec<String> = subfolders(&layout.train)?
        .iter()
        .map(|p| file_name(p))
        .collect();
    let mut changes = Vec::new();
    let train = split(&layout.train, &classes, geometry, &mut changes)?;
    let test = match &layout.test {
        Some(test) => Some(split(test, &classes, geometry, &mut changes)?),
        None => None,
    };
    let (c, h, w) = geometry;
    let mut notes = vec![format!("{} classes (sorted folder names)", classes.len())];
    let resized = changes.iter().filter(|c| c.resized).count();
    if resized > 0 {
        notes.push(format!(
            "{resized} of {} images resized to {h}x{w}",
            changes.len()
        ));
    }
    let recoloured = changes.iter().filter(|c| c.recoloured).count();
    if recoloured > 0 {
        let to = if c == 1 { "grayscale" } else { "RGB" };
        notes.push(format!(
            "{recoloured} of {} images converted to {to}",
            changes.len()
        ));
    }
    Ok(RawData {
        name,
        train,
        test,
        notes,
        class_names: Some(classes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_image(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    #[test]
    fn png_and_jpeg_folders_are_decoded_resized_and_labelled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pets");
        write_image(&root.join("train/dog/a.png"), 4, 4, [255, 0, 0]);
        write_image(&root.join("train/cat/b.jpg"), 8, 6, [0, 0, 255]);
        write_image(&root.join("train/cat/c.PNG"), 4, 4, [0, 255, 0]);
        std::fs::write(root.join("train/cat/notes.txt"), b"ignored").unwrap();
        write_image(&root.join("test/dog/d.png"), 4, 4, [255, 255, 255]);
        let raw = load(&root, &[3, 4, 4]).unwrap();
        assert_eq!(
            raw.class_names,
            Some(vec!["cat".to_string(), "dog".to_string()])
        );
        assert_eq!(raw.train.y, vec![0, 0, 1]);
        assert_eq!(raw.train.shape, vec![3, 4, 4]);
        // b.jpg: blue, resized; JPEG is lossy, so compare loosely.
        assert!(raw.train.x[2 * 16] > 0.9 && raw.train.x[0] < 0.1);
        // c.PNG: exactly green in channel 1.
        assert_eq!(raw.train.x[48 + 16..48 + 32], [1.0; 16]);
        assert_eq!(raw.train.x[48..48 + 16], [0.0; 16]);
        let test = raw.test.unwrap();
        assert_eq!((test.y, test.x.len()), (vec![1], 48));
        assert!(
            raw.notes
                .iter()
                .any(|n| n == "1 of 4 images resized to 4x4"),
            "{:?}",
            raw.notes
        );

        let gray = load(&root, &[1, 2, 2]).unwrap();
        assert_eq!(gray.train.shape, vec![1, 2, 2]);
        assert!(gray
            .notes
            .iter()
            .any(|n| n.contains("converted to grayscale")));
        assert!(load(&root, &[12]).is_err());
    }

    #[test]
    fn a_damaged_image_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_image(&root.join("a/ok.png"), 2, 2, [1, 2, 3]);
        let bad = root.join("b/broken.png");
        write_image(&bad, 16, 16, [9, 9, 9]);
        let bytes = std::fs::read(&bad).unwrap();
        std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
        let err = load(root, &[3, 2, 2]).unwrap_err();
        assert!(
            matches!(&err, DataError::Image { path, .. } if path == &bad),
            "{err:?}"
        );
    }
}
