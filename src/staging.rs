//! Staging files that an interrupted run can take back, and that the next
//! run can recognise when a killed one could not.
//!
//! Outputs are written to a temporary file beside their destination and
//! renamed into place at the end, so a reader never sees half a file. A
//! run stopped from outside (Ctrl-C, a CI timeout's SIGTERM) never reaches
//! the rename, and its temporary files, as large as the model, would stay.
//! Every staging file is therefore created here and listed in a registry
//! until it is renamed into place or dropped; whoever handles the signal
//! calls [`interrupt`], which removes the listed files and closes the
//! registry, so that no rename can happen after it.
//!
//! A process killed with SIGKILL cleans nothing, so staging files are named
//! `.pa-onnx-<pid>-XXXXXX.tmp`: [`stale_in`] finds those whose process is
//! gone, for the next run to report and `pa-onnx clean` to remove.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// What every staging file name starts with.
const PREFIX: &str = ".pa-onnx-";
/// What every staging file name ends with.
const SUFFIX: &str = ".tmp";

/// The staging files of a process that are not yet renamed into place.
struct Registry {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    files: BTreeMap<u64, PathBuf>,
    /// Set by [`Registry::interrupt`]: nothing is staged or renamed after.
    closed: bool,
}

impl Registry {
    const fn new() -> Self {
        Registry {
            state: Mutex::new(State {
                next_id: 0,
                files: BTreeMap::new(),
                closed: false,
            }),
        }
    }

    /// The state, even if a thread panicked while holding it (the map
    /// stays consistent: every change is one insert or remove).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn create_in(&'static self, dir: &Path) -> io::Result<StagedFile> {
        let mut state = self.lock();
        if state.closed {
            return Err(interrupted());
        }
        let temp = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .suffix(SUFFIX)
            .tempfile_in(dir)?;
        let id = state.next_id;
        state.next_id += 1;
        state.files.insert(id, temp.path().to_path_buf());
        Ok(StagedFile {
            temp: Some(temp),
            id,
            registry: self,
        })
    }

    fn interrupt(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        let files = std::mem::take(&mut state.files);
        files
            .values()
            .filter(|p| std::fs::remove_file(p).is_ok())
            .count()
    }
}

fn interrupted() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "the run was interrupted")
}

/// The registry of this process.
static REGISTRY: Registry = Registry::new();

/// A staging file: removed when dropped, listed in the registry until it
/// is renamed into place or dropped.
pub struct StagedFile {
    temp: Option<tempfile::NamedTempFile>,
    id: u64,
    registry: &'static Registry,
}

impl StagedFile {
    /// Creates a staging file in `dir`, named `.pa-onnx-<pid>-XXXXXX.tmp`.
    /// Fails with [`io::ErrorKind::Interrupted`] once [`interrupt`] ran.
    pub fn create_in(dir: &Path) -> io::Result<StagedFile> {
        REGISTRY.create_in(dir)
    }

    fn temp(&self) -> &tempfile::NamedTempFile {
        self.temp.as_ref().expect("present until persisted")
    }

    /// The open file.
    pub fn as_file(&self) -> &File {
        self.temp().as_file()
    }

    /// Where the staging file is.
    pub fn path(&self) -> &Path {
        self.temp().path()
    }

    /// Renames the file to `dest`. Under the registry's lock, so that a
    /// cleanup sees it either staged (and removes it) or in place (and
    /// leaves it); after [`interrupt`], fails without renaming.
    pub fn persist(mut self, dest: &Path) -> io::Result<()> {
        let mut state = self.registry.lock();
        if state.closed {
            return Err(interrupted());
        }
        let temp = self.temp.take().expect("present until persisted");
        match temp.persist(dest) {
            Ok(_) => {
                state.files.remove(&self.id);
                Ok(())
            }
            Err(e) => {
                // Still staged: dropped (and unlisted) by `self`'s drop.
                self.temp = Some(e.file);
                Err(e.error)
            }
        }
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let mut state = self.registry.lock();
            drop(temp);
            state.files.remove(&self.id);
        }
    }
}

/// Removes every staging file of this process not yet renamed into place,
/// and makes later staging and renaming fail; for a signal handler, just
/// before the process exits. Returns how many files it removed. Files
/// already renamed into place are not touched.
pub fn interrupt() -> usize {
    REGISTRY.interrupt()
}

/// A staging file found in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The process that made it, where its name says (older versions did
    /// not write it).
    pub pid: Option<u32>,
}

/// The process id in a staging file name, `Some(None)` for a staging file
/// of an older version (no id), `None` for any other name.
fn parse_name(name: &str) -> Option<Option<u32>> {
    let middle = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    Some(
        middle
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok()),
    )
}

/// Whether process `pid` exists (or might: where it cannot be told, yes).
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 sends nothing; it only checks the process.
        if unsafe { libc::kill(pid, 0) } == 0 {
            return true;
        }
        io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// The staging files directly in `dir`: those whose process is gone, or,
/// with `all`, every one (including those of running processes and of
/// older versions, whose names carry no process id). Sorted by path.
pub fn stale_in(dir: &Path, all: bool) -> io::Result<Vec<Leftover>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(parse_name) else {
            continue;
        };
        let stale = match pid {
            Some(pid) => !alive(pid),
            None => false,
        };
        let Ok(meta) = entry.metadata() else { continue };
        if (stale || all) && meta.is_file() {
            found.push(Leftover {
                path: entry.path(),
                size: meta.len(),
                pid,
            });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> &'static Registry {
        Box::leak(Box::new(Registry::new()))
    }

    #[test]
    fn names_carry_the_process_id() {
        let dir = tempfile::tempdir().unwrap();
        let f = registry().create_in(dir.path()).unwrap();
        let name = f.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(parse_name(&name), Some(Some(std::process::id())));
        assert_eq!(parse_name(".pa-onnx-AbC123.tmp"), Some(None));
        assert_eq!(parse_name("model.onnx"), None);
    }

    #[test]
    fn interrupt_removes_staged_files_and_leaves_renamed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry();
        let done = reg.create_in(dir.path()).unwrap();
        let dest = dir.path().join("done.onnx");
        done.persist(&dest).unwrap();
        let a = reg.create_in(dir.path()).unwrap();
        let b = reg.create_in(dir.path()).unwrap();
        let dropped = reg.create_in(dir.path()).unwrap();
        drop(dropped);
        assert_eq!(reg.lock().files.len(), 2);
        assert_eq!(reg.interrupt(), 2);
        assert!(!a.path().exists() && !b.path().exists());
        assert!(dest.exists());
        // Nothing is renamed or staged after.
        assert_eq!(
            a.persist(&dir.path().join("late.onnx")).unwrap_err().kind(),
            io::ErrorKind::Interrupted
        );
        assert!(!dir.path().join("late.onnx").exists());
        assert!(reg.create_in(dir.path()).is_err());
        drop(b);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn stale_files_are_those_of_processes_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let ours = registry().create_in(dir.path()).unwrap();
        // A child that has exited and been reaped: its id names no process.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(format!(".pa-onnx-{dead}-AbC123.tmp"));
        std::fs::write(&stale, b"12345").unwrap();
        let old = dir.path().join(".pa-onnx-XyZ789.tmp");
        std::fs::write(&old, b"").unwrap();
        std::fs::write(dir.path().join("model.onnx"), b"").unwrap();

        let found = stale_in(dir.path(), false).unwrap();
        assert_eq!(
            found,
            vec![Leftover {
                path: stale.clone(),
                size: 5,
                pid: Some(dead)
            }]
        );
        let all: Vec<PathBuf> = stale_in(dir.path(), true)
            .unwrap()
            .into_iter()
            .map(|l| l.path)
            .collect();
        assert_eq!(all.len(), 3);
        assert!(all.contains(&ours.path().to_path_buf()) && all.contains(&old));
    }
}
