//! Slices of a comparison for job runners: `--shard I/N` makes the runs at
//! positions I, I+N, I+2N, ... of the (seed, arm) list, in seed order then
//! arm order. The slice depends only on the seeds and arms, so a failed
//! shard can be rerun alone and resumes like any comparison; `compare
//! merge` puts the shards' folders back together.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The environment variables `auto/N` reads the index from, in order:
/// Slurm job arrays, Kubernetes Indexed Jobs, and anything else.
pub const INDEX_VARIABLES: [&str; 3] = [
    "SLURM_ARRAY_TASK_ID",
    "JOB_COMPLETION_INDEX",
    "PA_ONNX_SHARD_INDEX",
];

/// One slice of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This slice, `0..count`.
    pub index: usize,
    /// The number of slices.
    pub count: usize,
}

impl Shard {
    /// Whether the run at `position` of the (seed, arm) list is this slice's.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What `--shard` says: a fixed slice, or `auto/N` with the index from the
/// job runner's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    /// `I/N`.
    Fixed(Shard),
    /// `auto/N`.
    Auto {
        /// The number of slices.
        count: usize,
    },
}

/// A `--shard` that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    /// Not `I/N` or `auto/N`.
    #[error("--shard {0}: expected I/N or auto/N, with 0 <= I < N")]
    Syntax(String),
    /// `auto/N` found none of the index variables.
    #[error("--shard auto/{0}: none of SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, PA_ONNX_SHARD_INDEX is set")]
    NoIndex(usize),
    /// The variable's value is not an index below N.
    #[error("--shard auto/{count}: {var}={value} is not an index in 0..{count}")]
    BadIndex {
        /// The number of slices.
        count: usize,
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
}

impl FromStr for ShardSpec {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        let bad = || ShardError::Syntax(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        if i.trim() == "auto" {
            return Ok(ShardSpec::Auto { count });
        }
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        if index >= count {
            return Err(bad());
        }
        Ok(ShardSpec::Fixed(Shard { index, count }))
    }
}

impl ShardSpec {
    /// The slice, and the variable its index came from (for `auto/N`),
    /// looking variables up with `env`.
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Shard, Option<&'static str>), ShardError> {
        match *self {
            ShardSpec::Fixed(s) => Ok((s, None)),
            ShardSpec::Auto { count } => {
                let (var, value) = INDEX_VARIABLES
                    .iter()
                    .find_map(|&v| env(v).map(|x| (v, x)))
                    .ok_or(ShardError::NoIndex(count))?;
                match value.trim().parse::<usize>() {
                    Ok(index) if index < count => Ok((Shard { index, count }, Some(var))),
                    _ => Err(ShardError::BadIndex { count, var, value }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition_the_runs() {
        let s: ShardSpec = "1/3".parse().unwrap();
        let ShardSpec::Fixed(shard) = s else { panic!() };
        let mine: Vec<usize> = (0..8).filter(|&p| shard.owns(p)).collect();
        assert_eq!(mine, [1, 4, 7]);
        for bad in ["3/3", "1/0", "x/2", "1", "auto/0", "-1/2"] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
        // Every run belongs to exactly one shard.
        for p in 0..20 {
            assert_eq!(
                (0..4)
                    .filter(|&i| Shard { index: i, count: 4 }.owns(p))
                    .count(),
                1
            );
        }
    }

    #[test]
    fn auto_takes_the_first_index_variable_set() {
        let auto: ShardSpec = "auto/4".parse().unwrap();
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            auto.resolve(env(&[
                ("JOB_COMPLETION_INDEX", "2"),
                ("PA_ONNX_SHARD_INDEX", "1")
            ])),
            Ok((Shard { index: 2, count: 4 }, Some("JOB_COMPLETION_INDEX")))
        );
        assert_eq!(
            auto.resolve(env(&[("SLURM_ARRAY_TASK_ID", "3")])),
            Ok((Shard { index: 3, count: 4 }, Some("SLURM_ARRAY_TASK_ID")))
        );
        assert_eq!(auto.resolve(env(&[])), Err(ShardError::NoIndex(4)));
        assert!(matches!(
            auto.resolve(env(&[("PA_ONNX_SHARD_INDEX", "4")])),
            Err(ShardError::BadIndex { .. })
        ));
    }
}
