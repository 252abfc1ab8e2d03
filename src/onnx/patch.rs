//! Writing a model back with some tensor payloads replaced, and nothing
//! else touched.
//!
//! The output is assembled in temporary files next to their destinations:
//! every byte that is not a replaced payload is copied from the input, the
//! new payloads are written at their original offsets, and only when all of
//! it succeeded are the files renamed into place. A failed run therefore
//! leaves no output, and a reader of the destination never sees half a file.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::model::{Model, Storage};
use crate::error::{Error, Result};
use crate::fs::{parent_dir, same_file};
use crate::staging::StagedFile;

/// An output being written: the model file and its external data files.
pub struct Output {
    model: Staged,
    /// External files by the canonical path of their input.
    external: BTreeMap<PathBuf, Staged>,
    sync: bool,
}

struct Staged {
    temp: StagedFile,
    dest: PathBuf,
}

/// Options of [`Output::create`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Allow the destination to replace the input model or its data files.
    pub force: bool,
    /// Flush the files to stable storage before renaming them (survives a
    /// power loss, costs a disk flush).
    pub sync: bool,
}

fn stage(dest: &Path, like: Option<&Path>) -> Result<Staged> {
    let dir = parent_dir(dest);
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))?;
    let temp = StagedFile::create_in(dir)
        .map_err(|e| Error::io("cannot create a temporary file in", dir, e))?;
    // Temporary files are private by default; the output should get the
    // permissions its input had.
    if let Some(src) = like {
        if let Ok(meta) = std::fs::metadata(src) {
            let _ = temp.as_file().set_permissions(meta.permissions());
        }
    }
    Ok(Staged {
        temp,
        dest: dest.to_path_buf(),
    })
}

impl Output {
    /// Prepares `out` (and its external data files) as copies of `model`,
    /// except for the payloads of `replaced`, which the caller must then
    /// fill with [`Output::write`] before [`Output::commit`].
    pub fn create(
        model: &Model,
        out: &Path,
        replaced: &[usize],
        opts: WriteOptions,
    ) -> Result<Output> {
        if !opts.force {
            if let Some(input) = &model.path {
                if same_file(input, out) {
                    return Err(Error::WouldOverwrite {
                        path: out.to_path_buf(),
                    });
                }
            }
        }
        let out_dir = parent_dir(out);
        let model_staged = stage(out, model.path.as_deref())?;

        // Every byte of the model file except replaced payloads.
        let mut holes: Vec<Range<usize>> = replaced
            .iter()
            .filter_map(|&i| match &model.tensors[i].storage {
                Storage::Raw(r) | Storage::Packed { range: r, .. } => Some(r.clone()),
                _ => None,
            })
            .collect();
        holes.sort_by_key(|r| r.start);
        let bytes: &[u8] = &model.bytes;
        let file = model_staged.temp.as_file();
        file.set_len(bytes.len() as u64)
            .map_err(|e| Error::io("cannot write", &model_staged.dest, e))?;
        let mut pos = 0;
        for hole in holes
            .iter()
            .chain(std::iter::once(&(bytes.len()..bytes.len())))
        {
            if hole.start > pos {
                file.write_all_at(&bytes[pos..hole.start], pos as u64)
                    .map_err(|e| Error::io("cannot write", &model_staged.dest, e))?;
            }
            pos = pos.max(hole.end);
        }

        // External files: copied whole under the same relative location.
        let mut external = BTreeMap::new();
        let mut seen = HashSet::new();
        for t in &model.tensors {
            let Storage::External { location, file, .. } = &t.storage else {
                continue;
            };
            if !seen.insert(file.clone()) {
                continue;
            }
            let dest = out_dir.join(location);
            if !opts.force && same_file(file, &dest) {
                return Err(Error::WouldOverwrite { path: dest });
            }
            let staged = stage(&dest, Some(file))?;
            let mut src = File::open(file).map_err(|e| Error::io("cannot open", file, e))?;
            let mut dst = staged.temp.as_file();
            std::io::copy(&mut src, &mut dst).map_err(|e| Error::io("cannot copy", file, e))?;
            external.insert(file.clone(), staged);
        }
        Ok(Output {
            model: model_staged,
            external,
            sync: opts.sync,
        })
    }

    /// Leaves tensor `index`'s payload as the input has it: for a tensor
    /// that [`Output::create`] was told would be replaced and that was not
    /// after all (one found to hold a NaN as it was read).
    pub fn keep(&self, model: &Model, index: usize) -> Result<()> {
        match &model.tensors[index].storage {
            Storage::Raw(r) | Storage::Packed { range: r, .. } => {
                self.write(model, index, &model.bytes[r.clone()])
            }
            // External files are copied whole; nothing else has a payload.
            _ => Ok(()),
        }
    }

    /// Writes the new payload of tensor `index`; it must have exactly the
    /// length of the old one. Safe to call from several threads at once.
    pub fn write(&self, model: &Model, index: usize, payload: &[u8]) -> Result<()> {
        let t = &model.tensors[index];
        let (staged, offset, len) = match &t.storage {
            Storage::Raw(r) | Storage::Packed { range: r, .. } => {
                (&self.model, r.start as u64, r.len() as u64)
            }
            Storage::External {
                file,
                offset,
                length,
                ..
            } => (
                self.external
                    .get(file)
                    .expect("every external file is staged by create()"),
                *offset,
                *length,
            ),
            Storage::Empty | Storage::Unsupported(_) => {
                return Err(Error::tensor(&t.name, "has no payload to replace"))
            }
        };
        if payload.len() as u64 != len {
            return Err(Error::tensor(
                &t.name,
                format!("new payload has {} bytes, the old one {len}", payload.len()),
            ));
        }
        staged
            .temp
            .as_file()
            .write_all_at(payload, offset)
            .map_err(|e| Error::io("cannot write", &staged.dest, e))
    }

    /// SHA-256 (hex) of the staged model file as written so far: once every
    /// payload is in, the digest of the output. Read through a map of the
    /// file, whose pages are still in memory, rather than copied back.
    pub fn model_sha256(&self) -> Result<String> {
        let file = self.model.temp.as_file();
        let err = |e| Error::io("cannot read back", &self.model.dest, e);
        let len = file.metadata().map_err(err)?.len();
        if len == 0 {
            return Ok(crate::digest::sha256_hex(&[]));
        }
        // SAFETY: the temporary file is ours alone (created exclusively,
        // under a random name) and nothing writes to it while it is mapped.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(file) }.map_err(err)?;
        Ok(crate::digest::sha256_hex(&map))
    }

    /// Renames every staged file into place, data files first so that the
    /// model never names data that is not there yet.
    pub fn commit(self) -> Result<()> {
        for staged in self
            .external
            .into_values()
            .chain(std::iter::once(self.model))
        {
            let Staged { temp, dest } = staged;
            if self.sync {
                temp.as_file()
                    .sync_data()
                    .map_err(|e| Error::io("cannot flush", &dest, e))?;
            }
            temp.persist(&dest)
                .map_err(|e| Error::io("cannot rename into", &dest, e))?;
        }
        Ok(())
    }
}

/// Writes `model` to `out` with the given payloads replaced (a convenience
/// over [`Output`] for callers that already hold every new payload).
pub fn write_patched(
    model: &Model,
    out: &Path,
    patches: &[(usize, Vec<u8>)],
    opts: WriteOptions,
) -> Result<()> {
    let indices: Vec<usize> = patches.iter().map(|(i, _)| *i).collect();
    let output = Output::create(model, out, &indices, opts)?;
    for (i, bytes) in patches {
        output.write(model, *i, bytes)?;
    }
    output.commit()
}
