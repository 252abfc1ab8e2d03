//! From runs to conclusions: per arm, the distribution of each metric over
//! seeds; per arm against the original, the paired differences and their
//! tests, and one sentence a person can read.
//!
//! Pairs are matched by seed. A seed whose original or arm run diverged
//! (or is missing) leaves that pair out, and the summary counts it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::record::{RunRecord, RunStatus};
use super::stats::{describe, paired, sentence, Describe, PairedTest, Unit};

/// The metrics every comparison summarizes.
pub(crate) const METRICS: [Metric; 4] = [
    Metric {
        key: "epoch1_test_acc",
        label: "epoch-1 test accuracy",
        higher_is_better: true,
        value: RunRecord::epoch1_acc,
    },
    Metric {
        key: "best_test_acc",
        label: "best test accuracy",
        higher_is_better: true,
        value: RunRecord::best_acc,
    },
    Metric {
        key: "final_test_acc",
        label: "final test accuracy",
        higher_is_better: true,
        value: RunRecord::final_acc,
    },
    Metric {
        key: "final_test_loss",
        label: "final test loss",
        higher_is_better: false,
        value: RunRecord::final_loss,
    },
];

/// One summarized metric and how to read it off a run.
pub(crate) struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub higher_is_better: bool,
    pub value: fn(&RunRecord) -> Option<f64>,
}

impl Metric {
    fn unit(&self) -> Unit {
        if self.key.ends_with("_acc") {
            Unit::Points
        } else {
            Unit::Plain
        }
    }
}

/// One arm paired against the original on one metric.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The arm.
    pub arm: String,
    /// The seeds of the pairs (both runs finished).
    pub seeds: Vec<u64>,
    /// The tests on the differences (arm - original).
    pub test: PairedTest,
    /// The result in one sentence.
    pub sentence: String,
}

/// One metric over every arm.
#[derive(Clone, Debug, Serialize)]
pub struct MetricSummary {
    /// The metric's key (`epoch1_test_acc`, `best_test_acc`, `final_test_acc`, `final_test_loss`).
    pub metric: String,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
    /// Each arm's distribution over its finished runs.
    pub arms: BTreeMap<String, Describe>,
    /// Each other arm against the original.
    pub paired: Vec<Comparison>,
}

/// Everything the report concludes.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Per metric.
    pub metrics: Vec<MetricSummary>,
    /// Runs that diverged, per arm.
    pub diverged: BTreeMap<String, Vec<u64>>,
}

/// Summarizes `runs` for `arms` (the first is the reference).
pub(crate) fn summarize(runs: &[RunRecord], arms: &[String], bootstrap_seed: u64) -> Summary {
    let find = |arm: &str, seed: u64| runs.iter().find(|r| r.arm == arm && r.seed == seed);
    let mut diverged: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.status == RunStatus::Diverged) {
        diverged.entry(r.arm.clone()).or_default().push(r.seed);
    }
    let reference = arms.first().cloned().unwrap_or_default();
    let metrics = METRICS
        .iter()
        .map(|m| {
            let per_arm = arms
                .iter()
                .map(|a| {
                    let xs: Vec<f64> = runs
                        .iter()
                        .filter(|r| &r.arm == a)
                        .filter_map(|r| (m.value)(r))
                        .collect();
                    (a.clone(), describe(&xs))
                })
                .collect();
            let paired_list = arms
                .iter()
                .skip(1)
                .map(|a| {
                    let mut seeds = vec![];
                    let (mut base, mut other) = (vec![], vec![]);
                    for r in runs.iter().filter(|r| r.arm == reference) {
                        let pair = find(a, r.seed).and_then(|o| (m.value)(o));
                        if let (Some(x), Some(y)) = ((m.value)(r), pair) {
                            seeds.push(r.seed);
                            base.push(x);
                            other.push(y);
                        }
                    }
                    let test = paired(&base, &other, m.higher_is_better, bootstrap_seed);
                    let sentence = sentence(a, m.label, m.unit(), &test, m.higher_is_better);
                    Comparison {
                        arm: a.clone(),
                        seeds,
                        test,
                        sentence,
                    }
                })
                .collect();
            MetricSummary {
                metric: m.key.to_string(),
                higher_is_better: m.higher_is_better,
                arms: per_arm,
                paired: paired_list,
            }
        })
        .collect();
    Summary { metrics, diverged }
}
