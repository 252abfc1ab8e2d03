//! The statistics against scipy's answers on committed fixtures, and the
//! edges where a statistic is undefined.

use super::*;
use serde_json::Value;

/// One fixture case: the paired values and scipy's figures for them.
struct Case {
    name: String,
    original: Vec<f64>,
    arm: Vec<f64>,
    higher_is_better: bool,
    v: Value,
}

fn cases() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/compare_stats.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(
        doc["scipy"].as_str().is_some(),
        "the fixture names its scipy"
    );
    let cases: Vec<Case> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            // Values are integers over a scale so that both sides divide the same bits.
            let scale = c["scale"].as_f64().unwrap();
            let values = |key: &str| -> Vec<f64> {
                c[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_i64().unwrap() as f64 / scale)
                    .collect()
            };
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                original: values("original_units"),
                arm: values("arm_units"),
                higher_is_better: c["higher_is_better"].as_bool().unwrap(),
                v: c.clone(),
            }
        })
        .collect();
    assert!(cases.len() >= 12);
    cases
}

/// Equal to 1e-6 relative or 1e-9 absolute, or both undefined.
#[track_caller]
fn close(case: &str, what: &str, ours: Option<f64>, scipy: &Value) {
    match (ours, scipy.as_f64()) {
        (None, None) => {}
        (Some(a), Some(e)) => assert!(
            (a - e).abs() <= 1e-9 || (a - e).abs() <= 1e-6 * e.abs(),
            "{case}: {what} = {a}, scipy {e}"
        ),
        (a, _) => panic!("{case}: {what} = {a:?}, scipy {scipy}"),
    }
}

#[test]
fn describe_matches_numpy_and_scipy_trim_mean() {
    for c in cases() {
        for (side, xs) in [("original", &c.original), ("arm", &c.arm)] {
            let d = describe(xs);
            let e = &c.v[side];
            let what = |f: &str| format!("{side}.{f}");
            assert_eq!(d.n as u64, e["n"].as_u64().unwrap(), "{}", c.name);
            close(&c.name, &what("mean"), d.mean, &e["mean"]);
            close(&c.name, &what("std"), d.std, &e["std"]);
            close(&c.name, &what("median"), d.median, &e["median"]);
            close(&c.name, &what("iqm"), d.iqm, &e["iqm"]);
            close(&c.name, &what("min"), d.min, &e["min"]);
            close(&c.name, &what("max"), d.max, &e["max"]);
        }
    }
}

#[test]
fn paired_tests_match_scipy() {
    let mut methods = std::collections::BTreeSet::new();
    for c in cases() {
        let t = paired(&c.original, &c.arm, c.higher_is_better, 1);
        let name = c.name.as_str();
        assert_eq!(t.n, c.original.len(), "{name}");
        close(name, "mean_diff", t.mean_diff, &c.v["mean_diff"]);
        close(name, "std_diff", t.std_diff, &c.v["std_diff"]);
        if c.v["t_statistic"].is_null() {
            // scipy says inf (p = 0) or NaN where the t statistic has no spread to divide by.
            assert_eq!((t.t_statistic, t.t_p), (None, None), "{name}");
        } else {
            close(name, "t_statistic", t.t_statistic, &c.v["t_statistic"]);
            close(name, "t_p", t.t_p, &c.v["t_p"]);
        }
        close(
            name,
            "wilcoxon_statistic",
            t.wilcoxon_statistic,
            &c.v["wilcoxon_statistic"],
        );
        close(name, "wilcoxon_p", t.wilcoxon_p, &c.v["wilcoxon_p"]);
        let method = t.wilcoxon_method.map(|m| serde_json::to_value(m).unwrap());
        assert_eq!(method.as_ref(), Some(&c.v["wilcoxon_method"]), "{name}");
        methods.insert(c.v["wilcoxon_method"].as_str().unwrap().to_string());
        for key in ["wins", "ties", "losses"] {
            let ours = match key {
                "wins" => t.wins,
                "ties" => t.ties,
                _ => t.losses,
            };
            assert_eq!(ours as u64, c.v[key].as_u64().unwrap(), "{name}: {key}");
        }
    }
    assert_eq!(
        methods.len(),
        3,
        "the fixture covers every method: {methods:?}"
    );
}

#[test]
fn bootstrap_is_seeded_and_covers_the_mean_difference() {
    for c in cases() {
        let a = paired(&c.original, &c.arm, c.higher_is_better, 42);
        let b = paired(&c.original, &c.arm, c.higher_is_better, 42);
        assert_eq!(a, b, "{}: same seed, same result", c.name);
        let [lo, hi] = a.ci95.unwrap();
        let m = a.mean_diff.unwrap();
        assert!(lo <= m && m <= hi, "{}: {m} outside [{lo}, {hi}]", c.name);
    }
    let c = cases()
        .into_iter()
        .find(|c| c.name == "n60_normal")
        .unwrap();
    let [lo1, hi1] = paired(&c.original, &c.arm, true, 1).ci95.unwrap();
    let [lo2, hi2] = paired(&c.original, &c.arm, true, 2).ci95.unwrap();
    assert_ne!((lo1, hi1), (lo2, hi2), "another seed resamples differently");
    // With 60 pairs the interval is close to the normal one, mean +- 1.96 sd / sqrt(n).
    let t = paired(&c.original, &c.arm, true, 1);
    let normal = 2.0 * 1.96 * t.std_diff.unwrap() / 60f64.sqrt();
    let width = hi1 - lo1;
    assert!(
        (width / normal - 1.0).abs() < 0.1,
        "width {width}, normal {normal}"
    );
}

#[test]
fn undefined_values_are_none_and_serialize_as_null() {
    let empty = paired(&[], &[], true, 0);
    assert_eq!(empty.n, 0);
    assert_eq!(empty.mean_diff, None);
    assert_eq!(empty.ci95, None);
    assert_eq!(empty.prob_improvement, None);
    assert_eq!(empty.wilcoxon_method, None);
    assert_eq!(empty.min_attainable_p, 1.0);
    let json = serde_json::to_string(&empty).unwrap();
    assert!(json.contains("\"mean_diff\":null"), "{json}");
    assert_eq!(describe(&[]).mean, None);

    let one = paired(&[0.5], &[0.6], true, 0);
    assert_eq!((one.std_diff, one.t_p), (None, None));
    assert_eq!(one.ci95.map(|c| c[0] == c[1]), Some(true));
    assert_eq!(one.prob_improvement, Some(1.0));

    // A diverged run's NaN drops its seed from both the pairing and the summary.
    let t = paired(&[0.5, f64::NAN, 0.4], &[0.6, 0.7, f64::INFINITY], true, 0);
    assert_eq!(t.n, 1);
    let d = describe(&[1.0, f64::NAN, 3.0]);
    assert_eq!((d.n, d.mean), (2, Some(2.0)));
    for c in cases() {
        let json = serde_json::to_string(&paired(&c.original, &c.arm, true, 0)).unwrap();
        assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");
    }
}

#[test]
fn wins_follow_the_direction_of_the_metric() {
    let loss = paired(&[0.5, 0.5, 0.5, 0.5], &[0.4, 0.6, 0.5, 0.3], false, 0);
    assert_eq!((loss.wins, loss.ties, loss.losses), (2, 1, 1));
    assert_eq!(loss.prob_improvement, Some(0.625));
    let acc = paired(&[0.5, 0.5, 0.5, 0.5], &[0.4, 0.6, 0.5, 0.3], true, 0);
    assert_eq!((acc.wins, acc.ties, acc.losses), (1, 1, 2));
    assert_eq!(min_attainable_p(5), 0.0625);
    assert_eq!(min_attainable_p(6), 0.03125);
}

fn sentence_of(name: &str, unit: Unit) -> String {
    let c = cases().into_iter().find(|c| c.name == name).unwrap();
    let t = paired(&c.original, &c.arm, c.higher_is_better, 7);
    sentence("pa", "epoch-1 test accuracy", unit, &t, c.higher_is_better)
}

#[test]
fn sentence_reports_effect_interval_and_both_tests() {
    let s = sentence_of("n20_exact", Unit::Points);
    assert!(s.starts_with("pa better on "), "{s}");
    assert!(s.contains(" of 20 seeds; epoch-1 test accuracy +"), "{s}");
    assert!(s.contains(" points, 95% CI [+"), "{s}");
    assert!(
        s.contains(", Wilcoxon p < 0.001, paired t p < 0.001."),
        "{s}"
    );
    assert!(!s.contains("With "), "20 seeds need no warning: {s}");

    let s = sentence_of("n10_zeros", Unit::Points);
    assert!(s.contains("of 10 seeds (2 ties);"), "{s}");
    assert!(s.contains("Wilcoxon p = 0.02,"), "{s}");

    let s = sentence_of("n30_loss_worse", Unit::Plain);
    assert!(s.contains("(lower is better)"), "{s}");
    assert!(!s.contains("points"), "{s}");
}

#[test]
fn sentence_warns_when_no_test_can_reach_five_percent() {
    let s = sentence_of("n5_exact", Unit::Points);
    assert!(
        s.contains(
            "With 5 seeds the signed-rank test cannot reach p < 0.05 (its smallest p is 0.0625)"
        ),
        "{s}"
    );
    assert!(s.ends_with("run at least 6 seeds."), "{s}");
    let s = sentence_of("n6_all_better", Unit::Points);
    assert!(s.contains("better on 6 of 6 seeds;"), "{s}");
    assert!(s.contains("Wilcoxon p = 0.03, paired t p < 0.001."), "{s}");
    assert!(!s.contains("With "), "{s}");
}

#[test]
fn sentence_handles_the_edges() {
    let s = sentence_of("n1", Unit::Points);
    assert_eq!(
        s,
        "pa better on 1 of 1 seed; epoch-1 test accuracy +0.37 points, Wilcoxon p = 1. \
         With 1 seed no test is possible; run at least 6 seeds."
    );

    let s = sentence_of("identical_n10", Unit::Points);
    assert_eq!(s, "pa and the original give exactly the same epoch-1 test accuracy on all 10 seeds; there is no difference to test.");

    let s = sentence_of("constant_n8", Unit::Points);
    assert!(
        s.contains(
            "better on 8 of 8 seeds; epoch-1 test accuracy +0.12 points, 95% CI [+0.12, +0.12]"
        ),
        "{s}"
    );
    assert!(s.contains("paired t undefined"), "{s}");

    let s = sentence(
        "pa",
        "final loss",
        Unit::Plain,
        &paired(&[], &[], false, 0),
        false,
    );
    assert!(s.contains("nothing to compare"), "{s}");

    for c in cases() {
        for unit in [Unit::Points, Unit::Plain] {
            let t = paired(&c.original, &c.arm, c.higher_is_better, 3);
            let s = sentence("pa", "m", unit, &t, c.higher_is_better);
            assert!(!s.contains("NaN") && !s.contains("inf"), "{}: {s}", c.name);
        }
    }
}
