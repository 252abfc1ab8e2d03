//! File-system helpers that several stages need: where a file's folder is,
//! whether two paths are one file, and writing a small file so that a
//! reader never sees it half-written.
//!
//! They live here, below everything else, so that the reader, the writer,
//! the backends and the command line share one definition of "the same
//! file" (a wrong answer there would let a run overwrite its own input).

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::staging::StagedFile;

/// The folder a file lives in ("." for a bare file name).
pub fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Whether two paths name the same file: equal once resolved, or, where
/// either cannot be resolved (it does not exist yet), equal as written.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Writes a small file through a staging file beside it and a rename, so
/// that `path` holds either its old content or all of the new one (and an
/// interrupted run leaves neither a half file nor the staging file).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let f = StagedFile::create_in(dir).map_err(|e| Error::io("cannot create a file in", dir, e))?;
    f.as_file()
        .write_all(bytes)
        .map_err(|e| Error::io("cannot write", path, e))?;
    f.persist(path)
        .map_err(|e| Error::io("cannot write", path, e))?;
    Ok(())
}
