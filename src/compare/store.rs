//! The output folder as the comparison's memory.
//!
//! `config.json` holds the settings that determine a run's numbers; every
//! finished run is a file of its own in `runs/`, written atomically as the
//! run ends and stamped with the hash of those settings. A rerun of the
//! same command finds its finished runs and skips them; a rerun with other
//! settings is refused rather than mixed in. Seeds and arms are not part
//! of the settings: a comparison can grow by more seeds or another arm and
//! keep what it has.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::record::RunRecord;
use super::CompareError;

/// The output folder of one comparison.
pub(crate) struct Store {
    dir: PathBuf,
    hash: String,
}

impl Store {
    /// Opens (or starts) `dir` for the configuration `identity`, refusing
    /// a folder whose stored configuration differs.
    pub(crate) fn open(dir: &Path, identity: &Value) -> Result<Store, CompareError> {
        let runs = dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(|e| CompareError::io(&runs, e))?;
        let text = serde_json::to_string_pretty(identity).expect("a JSON value serializes");
        let hash = crate::digest::sha256_hex(text.as_bytes())[..16].to_string();
        let path = dir.join("config.json");
        match std::fs::read(&path) {
            Ok(old) => {
                let old: Value = parse(&path, &old)?;
                if let Some(what) = first_difference(&old, identity, "") {
                    return Err(CompareError::ConfigChanged {
                        dir: dir.to_path_buf(),
                        what,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::fs::write_atomically(&path, text.as_bytes())?;
            }
            Err(e) => return Err(CompareError::io(&path, e)),
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            hash,
        })
    }

    /// The configuration's hash, stamped on every run.
    pub(crate) fn hash(&self) -> &str {
        &self.hash
    }

    /// The output folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn run_path(&self, arm: &str, seed: u64) -> PathBuf {
        self.dir.join("runs").join(RunRecord::file_name(arm, seed))
    }

    /// The finished run of `arm` with `seed`, if there is one.
    pub(crate) fn load(&self, arm: &str, seed: u64) -> Result<Option<RunRecord>, CompareError> {
        let path = self.run_path(arm, seed);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CompareError::io(&path, e)),
        };
        let rec: RunRecord = parse(&path, &bytes)?;
        if rec.arm != arm || rec.seed != seed {
            return Err(self.foreign(&path));
        }
        self.stamped(rec, &path).map(Some)
    }

    /// `rec`, when it carries this configuration's stamp.
    fn stamped(&self, rec: RunRecord, path: &Path) -> Result<RunRecord, CompareError> {
        if rec.config != self.hash {
            return Err(self.foreign(path));
        }
        Ok(rec)
    }

    /// The refusal of a record made under another configuration.
    fn foreign(&self, path: &Path) -> CompareError {
        CompareError::ConfigChanged {
            dir: self.dir.clone(),
            what: format!("the configuration stamped on {}", path.display()),
        }
    }

    /// Writes a finished run.
    pub(crate) fn save(&self, rec: &RunRecord) -> Result<(), CompareError> {
        let text = serde_json::to_vec_pretty(rec).expect("a run record serializes");
        crate::fs::write_atomically(&self.run_path(&rec.arm, rec.seed), &text)?;
        Ok(())
    }

    /// Writes a file of the report (atomically).
    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, CompareError> {
        let path = self.dir.join(name);
        crate::fs::write_atomically(&path, bytes)?;
        Ok(path)
    }
}

/// The stored configuration of an existing output folder.
pub(crate) fn read_json(dir: &Path, name: &str) -> Result<Value, CompareError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| CompareError::io(&path, e))?;
    parse(&path, &bytes)
}

/// The JSON in `bytes`, read from `path`.
fn parse<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, CompareError> {
    serde_json::from_slice(bytes).map_err(|e| CompareError::Record {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

impl Store {
    /// Every run record in the folder, in file-name order.
    pub(crate) fn runs(&self) -> Result<Vec<RunRecord>, CompareError> {
        let dir = self.dir.join("runs");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| CompareError::io(&dir, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .collect();
        names.sort();
        let mut out = vec![];
        for n in names {
            let path = dir.join(&n);
            let bytes = std::fs::read(&path).map_err(|e| CompareError::io(&path, e))?;
            out.push(self.stamped(parse(&path, &bytes)?, &path)?);
        }
        Ok(out)
    }
}

/// The dotted path of the first setting that differs between two
/// configurations, or None when they are equal.
pub(crate) fn first_difference(old: &Value, new: &Value, at: &str) -> Option<String> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => first_difference(x, y, &path),
                    _ => Some(path),
                }
            })
        }
        _ if old == new => None,
        _ => Some(if at.is_empty() {
            "the configuration".into()
        } else {
            at.to_string()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_difference_is_named_by_its_path() {
        let a = json!({"recipe": {"lr": 0.1, "batch": 64}, "model": "x"});
        let b = json!({"recipe": {"lr": 0.2, "batch": 64}, "model": "x"});
        assert_eq!(first_difference(&a, &a, ""), None);
        assert_eq!(first_difference(&a, &b, "").as_deref(), Some("recipe.lr"));
        let c = json!({"recipe": {"lr": 0.1, "batch": 64}});
        assert_eq!(first_difference(&a, &c, "").as_deref(), Some("model"));
    }
}
