//! `compare merge`: the shards of a comparison, made on several machines
//! or job slots into folders of their own, gathered into one folder with
//! the report an unsharded run would have written.
//!
//! Shards must share their settings (`config.json`) and their plan (seeds
//! and arms); a run found in two folders must say the same thing in both;
//! and a run no folder holds is missing, which is an error unless the
//! caller accepts a partial report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::finish::{finish, RunPlan};
use super::options::Arm;
use super::output::CompareReport;
use super::record::RunRecord;
use super::store::{first_difference, read_json, Store};
use super::CompareError;

/// Gathers the runs of the output folders `dirs` into `out` (which may be
/// one of them) and writes the report there. With `allow_missing`, runs no
/// folder holds are listed in the report instead of refused.
pub fn merge(
    dirs: &[PathBuf],
    out: &Path,
    allow_missing: bool,
    command_line: &[String],
) -> Result<CompareReport, CompareError> {
    let Some(first) = dirs.first() else {
        return Err(CompareError::Options(
            "name at least one folder to merge".into(),
        ));
    };
    let config = read_json(first, "config.json")?;
    let plan_value = read_json(first, "plan.json")?;
    for d in &dirs[1..] {
        for (name, want) in [("config.json", &config), ("plan.json", &plan_value)] {
            let got = read_json(d, name)?;
            if let Some(what) = first_difference(want, &got, "") {
                return Err(CompareError::MergeMismatch {
                    first: first.clone(),
                    other: d.clone(),
                    what: format!("{name}: {what}"),
                });
            }
        }
    }
    let plan: RunPlan = serde_json::from_value(plan_value).map_err(|e| CompareError::Record {
        path: first.join("plan.json"),
        msg: e.to_string(),
    })?;
    let mut found: BTreeMap<(String, u64), (RunRecord, PathBuf)> = BTreeMap::new();
    for d in dirs {
        let store = Store::open(d, &config)?;
        for rec in store.runs()? {
            let key = (rec.arm.clone(), rec.seed);
            match found.get(&key) {
                Some((other, where_)) if !same_outcome(other, &rec) => {
                    return Err(CompareError::DuplicateRun {
                        arm: rec.arm,
                        seed: rec.seed,
                        first: where_.clone(),
                        other: d.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    found.insert(key, (rec, d.clone()));
                }
            }
        }
    }
    let names: Vec<String> = plan.arms.iter().map(Arm::name).collect();
    let missing: Vec<String> = plan
        .seeds
        .iter()
        .flat_map(|&s| names.iter().map(move |a| (a.clone(), s)))
        .filter(|k| !found.contains_key(k))
        .map(|(a, s)| format!("{a} seed {s}"))
        .collect();
    if !missing.is_empty() && !allow_missing {
        return Err(CompareError::MissingRuns {
            count: missing.len(),
            list: missing
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let store = Store::open(out, &config)?;
    for (rec, _) in found.values() {
        if store.load(&rec.arm, rec.seed)?.is_none() {
            store.save(rec)?;
        }
    }
    finish(&store, &plan, command_line, config, strengths(&plan), true)
}

/// Two records of one run agree when everything but the timings does.
fn same_outcome(a: &RunRecord, b: &RunRecord) -> bool {
    let strip = |r: &RunRecord| {
        let mut r = r.clone();
        r.wall_s = 0.0;
        r.step_ms = 0.0;
        for e in &mut r.epochs {
            e.wall_s = 0.0;
        }
        r
    };
    strip(a) == strip(b)
}

/// The strength histogram's values, when the model is where the plan says
/// (a merge on another machine may not have it; the histogram is then left
/// out).
fn strengths(plan: &RunPlan) -> Option<(String, Vec<f64>, Vec<f64>)> {
    let arm = plan
        .arms
        .iter()
        .find(|a| matches!(a, Arm::Rewired { .. }))?;
    let source = super::arms::Source::open(&plan.model).ok()?;
    let (before, after) = source.init(arm, plan.seeds[0]).ok()?.strengths?;
    Some((arm.name(), before, after))
}
