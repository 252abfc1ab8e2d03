//! External data files: resolving `location` safely and mapping the files.
//!
//! A model may name any path in `external_data`; pa-onnx only follows names
//! that stay inside the model's folder (no absolute paths, no `..`, no
//! symlink that leads out), because a model downloaded from elsewhere must
//! not make the tool read or overwrite arbitrary files.
//!
//! Payloads are read with positioned reads, one tensor at a time, rather
//! than mapped: a model of many gigabytes then costs memory in proportion to
//! its largest tensor, not to its size.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The external files of one model, opened once each.
pub struct ExternalStore {
    dir: PathBuf,
    canonical_dir: Option<PathBuf>,
    files: HashMap<PathBuf, (std::fs::File, u64)>,
}

impl ExternalStore {
    /// A store resolving locations against `dir`, the model's folder.
    pub fn new(dir: &Path) -> Self {
        ExternalStore {
            dir: dir.to_path_buf(),
            canonical_dir: None,
            files: HashMap::new(),
        }
    }

    /// The folder external locations are relative to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The resolved files, for callers that must copy them.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.keys().map(|p| p.as_path())
    }

    /// Checks `location` and the byte range, maps the file, and returns its
    /// canonical path.
    pub fn resolve(
        &mut self,
        tensor: &str,
        location: &str,
        offset: u64,
        length: u64,
    ) -> Result<PathBuf> {
        let fail = |detail: String| Error::ExternalData {
            tensor: tensor.into(),
            location: location.into(),
            detail,
        };
        check_relative(location).map_err(fail)?;
        if self.canonical_dir.is_none() {
            let c = self.dir.canonicalize().map_err(|e| {
                fail(format!(
                    "cannot resolve the model folder {}: {e}",
                    self.dir.display()
                ))
            })?;
            self.canonical_dir = Some(c);
        }
        let base = self.canonical_dir.as_ref().unwrap();
        let joined = self.dir.join(location);
        let file = joined.canonicalize().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                fail(format!("file not found: {}", joined.display()))
            } else {
                fail(format!("cannot resolve {}: {e}", joined.display()))
            }
        })?;
        if !file.starts_with(base) {
            return Err(fail(format!(
                "resolves to {}, outside the model's folder {}",
                file.display(),
                base.display()
            )));
        }
        if !self.files.contains_key(&file) {
            let f = std::fs::File::open(&file).map_err(|e| fail(format!("cannot open: {e}")))?;
            let meta = f
                .metadata()
                .map_err(|e| fail(format!("cannot stat: {e}")))?;
            if !meta.is_file() {
                return Err(fail("is not a regular file".into()));
            }
            self.files.insert(file.clone(), (f, meta.len()));
        }
        let size = self.files[&file].1;
        match offset.checked_add(length) {
            Some(end) if end <= size => Ok(file),
            _ => Err(fail(format!(
                "bytes {offset}..{} lie beyond the end of the file ({size} bytes)",
                offset.saturating_add(length)
            ))),
        }
    }

    /// Reads a range resolved earlier.
    pub fn read(
        &self,
        tensor: &str,
        location: &str,
        file: &Path,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let fail = |detail: String| Error::ExternalData {
            tensor: tensor.into(),
            location: location.into(),
            detail,
        };
        let (f, _) = self
            .files
            .get(file)
            .ok_or_else(|| fail("was not resolved when the model was read".into()))?;
        let len = usize::try_from(length).map_err(|_| fail("too large for this machine".into()))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| fail(format!("cannot read {length} bytes at {offset}: {e}")))?;
        Ok(buf)
    }
}

/// Rejects locations that are absolute or climb out of the folder.
fn check_relative(location: &str) -> std::result::Result<(), String> {
    if location.is_empty() {
        return Err("the location is empty".into());
    }
    if location.starts_with('/') || location.starts_with('\\') || location.contains(':') {
        return Err("absolute paths are not allowed".into());
    }
    if location.contains('\0') {
        return Err("the location contains a NUL byte".into());
    }
    for c in Path::new(location).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("`..` would leave the model's folder".into()),
            _ => return Err("absolute paths are not allowed".into()),
        }
    }
    if location.split(['/', '\\']).any(|p| p == "..") {
        return Err("`..` would leave the model's folder".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_relative;

    #[test]
    fn locations_that_leave_the_folder_are_rejected() {
        for bad in [
            "/etc/passwd",
            "../x.bin",
            "a/../../x",
            "a\\..\\x",
            "C:\\x",
            "",
        ] {
            assert!(check_relative(bad).is_err(), "{bad}");
        }
        for good in ["w.bin", "./w.bin", "data/w.bin"] {
            assert!(check_relative(good).is_ok(), "{good}");
        }
    }
}
