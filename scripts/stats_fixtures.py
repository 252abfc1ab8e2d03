#!/usr/bin/env python3
"""Writes tests/fixtures/compare_stats.json: scipy's answers for the paired
statistics that `pa-onnx compare` reports, so the Rust tests can check ours
against a reference without scipy in CI.

    python3 -m venv /tmp/scipyenv && /tmp/scipyenv/bin/pip install scipy numpy
    /tmp/scipyenv/bin/python scripts/stats_fixtures.py

Each case is a paired experiment (one value per seed for the original and
for one arm). Values are stored as integers with a scale (accuracy as
correct answers out of 10000, loss in millionths), and both sides compute
`units / scale` in IEEE doubles, so the differences, and therefore the
ties and zeros that decide which Wilcoxon method scipy picks, are the same
bits in Python and in Rust (a decimal float read back by a JSON parser need
not be).

The cases cover every branch of scipy.stats.wilcoxon's default method
("auto"): the exact null distribution (no ties, no zero differences, at most
50 pairs), the exact sign-flip permutation test (ties or zeros, at most 13
pairs), and the normal approximation with tie correction (more than 50
pairs, or ties or zeros with 14 to 50), plus the edges where a statistic is
undefined. The script checks that the method it records is the one scipy
used, by rerunning scipy with that method named explicitly.
"""
import json
import math
import os

import numpy as np
import scipy
from scipy import stats

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "compare_stats.json")

ACC = 10000  # accuracy: correct answers out of a 10000-image test set
LOSS = 1000000  # loss: millionths
FINE = 1000000  # accuracy averaged over several test sets: millionths


def finite(x):
    """JSON has no NaN or infinity; the Rust side reports those as None."""
    x = float(x)
    return x if math.isfinite(x) else None


def scipy_method(d):
    """The method scipy.stats.wilcoxon(d) picks by default (scipy >= 1.13)."""
    n = len(d)
    if n > 50:
        return "normal"
    nz = np.abs(d[d != 0])
    has_ties = len(np.unique(nz)) < len(nz)
    if not has_ties and not np.any(d == 0):
        return "exact"
    if n <= 13:
        return "permutation"
    return "normal"


def describe(x):
    x = np.asarray(x, dtype=float)
    n = len(x)
    return {
        "n": n,
        "mean": finite(np.mean(x)) if n else None,
        "std": finite(np.std(x, ddof=1)) if n > 1 else None,
        "median": finite(np.median(x)) if n else None,
        "iqm": finite(stats.trim_mean(x, 0.25)) if n else None,
        "min": finite(np.min(x)) if n else None,
        "max": finite(np.max(x)) if n else None,
    }


def case(name, why, scale, original_units, arm_units, higher_is_better=True):
    original = np.asarray(original_units, dtype=np.int64) / scale
    arm = np.asarray(arm_units, dtype=np.int64) / scale
    d = arm - original
    n = len(d)
    with np.errstate(all="ignore"):
        t = stats.ttest_rel(arm, original) if n else None
        w = stats.wilcoxon(d) if n else None
    method = scipy_method(d) if n else None
    if n:
        named = {"exact": "exact", "normal": "asymptotic", "permutation": stats.PermutationMethod()}[method]
        again = stats.wilcoxon(d, method=named)
        assert np.array_equal(again.pvalue, w.pvalue, equal_nan=True), (name, method)
    better = d > 0 if higher_is_better else d < 0
    worse = d < 0 if higher_is_better else d > 0
    return {
        "name": name,
        "why": why,
        "scale": scale,
        "original_units": list(map(int, original_units)),
        "arm_units": list(map(int, arm_units)),
        "higher_is_better": higher_is_better,
        "original": describe(original),
        "arm": describe(arm),
        "mean_diff": finite(np.mean(d)) if n else None,
        "std_diff": finite(np.std(d, ddof=1)) if n > 1 else None,
        "t_statistic": finite(t.statistic) if n else None,
        "t_p": finite(t.pvalue) if n else None,
        "t_raw": str(float(t.statistic)) if n else "nan",
        "wilcoxon_statistic": finite(w.statistic) if n else None,
        "wilcoxon_p": finite(w.pvalue) if n else None,
        "wilcoxon_method": method,
        "wins": int(np.sum(better)),
        "ties": int(np.sum(d == 0)),
        "losses": int(np.sum(worse)),
    }


def accuracies(rng, n, base, spread, shift, tie_step=1, scale=ACC):
    """Per-seed accuracies in units of 1/scale: the original, and an arm `shift` better on average."""
    original = np.round(rng.normal(base, spread, n) * scale / tie_step) * tie_step
    arm = original + np.round(rng.normal(shift, spread, n) * scale / tie_step) * tie_step
    return original.astype(int).tolist(), arm.astype(int).tolist()


def losses(rng, n, base, spread, shift):
    original = np.round(rng.normal(base, spread, n) * LOSS)
    arm = original + np.round(rng.normal(shift, spread, n) * LOSS)
    return original.astype(int).tolist(), arm.astype(int).tolist()


def distinct(rng, n, base, spread, shift):
    """Like `accuracies` in millionths (a mean over several test sets), redrawn until the
    differences have no ties and no zeros (the exact branch)."""
    while True:
        o, a = accuracies(rng, n, base, spread, shift, scale=FINE)
        d = np.abs(np.array(a) - np.array(o))
        if np.all(d != 0) and len(np.unique(d)) == n:
            return o, a


def main():
    rng = np.random.default_rng(18)
    cases = []
    o, a = distinct(rng, 3, 0.22, 0.01, 0.01)
    cases.append(case("n3_exact", "three seeds: the smallest p is 0.25, whatever the data", FINE, o, a))
    o, a = distinct(rng, 5, 0.22, 0.01, 0.005)
    cases.append(case("n5_exact", "five seeds: the smallest p is 0.0625, still above 0.05", FINE, o, a))
    o = [2201, 2240, 2187, 2263, 2215, 2230]
    a = [2291, 2301, 2265, 2302, 2257, 2310]
    cases.append(case("n6_all_better", "six seeds all better: p = 2/64, the first n that can reach 0.05", ACC, o, a))
    o, a = distinct(rng, 10, 0.9369, 0.002, 0.001)
    cases.append(case("n10_exact", "ten seeds without ties: exact null distribution", FINE, o, a))
    o = [9361, 9370, 9355, 9382, 9366, 9374, 9359, 9368, 9377, 9363]
    a = [9371, 9380, 9350, 9392, 9371, 9384, 9369, 9363, 9387, 9373]
    cases.append(case("n10_ties", "ten seeds whose differences tie (+-10, +-5): the exact sign-flip permutation test", ACC, o, a))
    o = [9361, 9370, 9355, 9382, 9366, 9374, 9359, 9368, 9377, 9363]
    a = [9368, 9370, 9359, 9391, 9364, 9380, 9372, 9368, 9379, 9375]
    cases.append(case("n10_zeros", "ten seeds, two differences zero: dropped from the ranks, permutation test", ACC, o, a))
    o = [2264, 2301, 2250, 2288, 2275, 2290, 2270, 2283, 2259, 2295, 2262, 2281, 2277]
    a = [2270, 2302, 2250, 2290, 2281, 2290, 2278, 2282, 2268, 2301, 2265, 2280, 2286]
    cases.append(case("n13_ties_zeros", "thirteen seeds with ties and zeros: the largest n of the permutation branch", ACC, o, a))
    o, a = distinct(rng, 20, 0.2264, 0.01, 0.015)
    cases.append(case("n20_exact", "twenty seeds without ties: exact", FINE, o, a))
    o, a = accuracies(rng, 20, 0.2264, 0.01, 0.01, tie_step=20)
    cases.append(case("n20_ties", "twenty seeds with coarse (tied) differences: normal approximation with tie correction", ACC, o, a))
    o, a = losses(rng, 30, 0.35, 0.02, 0.01)
    cases.append(case("n30_loss_worse", "a loss that got worse (higher): negative effect when lower is better", LOSS, o, a, higher_is_better=False))
    o, a = distinct(rng, 30, 0.9369, 0.002, -0.001)
    cases.append(case("n30_negative", "an arm worse on average: negative mean difference, exact", FINE, o, a))
    o, a = distinct(rng, 60, 0.9369, 0.002, 0.0008)
    cases.append(case("n60_normal", "sixty seeds: above 50 scipy uses the normal approximation even without ties", FINE, o, a))
    o, a = accuracies(rng, 60, 0.2264, 0.01, 0.003, tie_step=10)
    a[:4] = o[:4]
    cases.append(case("n60_ties_zeros", "sixty seeds with ties and zeros: tie-corrected variance over the nonzero differences", ACC, o, a))
    o, _ = accuracies(rng, 10, 0.93, 0.002, 0.0)
    cases.append(case("identical_n10", "identical arms: every difference zero, t undefined, permutation p = 1", ACC, o, o))
    o, _ = accuracies(rng, 20, 0.93, 0.002, 0.0)
    cases.append(case("identical_n20", "identical arms past 13 seeds: scipy's normal approximation gives no p", ACC, o, o))
    o, _ = accuracies(rng, 8, 0.93, 0.002, 0.0)
    cases.append(case("constant_n8", "every seed exactly 12 better: no spread, so t is undefined (scipy: inf, p = 0)", ACC, o, [x + 12 for x in o]))
    cases.append(case("n1", "one seed: no spread, no test can say anything", ACC, [2264], [2301]))
    cases.append(case("n2_loss", "two seeds, loss lower is better", LOSS, [350000, 352000], [341000, 349500], higher_is_better=False))

    doc = {
        "generator": "scripts/stats_fixtures.py",
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "note": "values are units / scale; null where scipy gives NaN or infinity (t_raw keeps scipy's t as text)",
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    for c in cases:
        print(f"{c['name']:16} n={len(c['arm_units']):3} {c['wilcoxon_method']!s:12} W={c['wilcoxon_statistic']} p={c['wilcoxon_p']} t_p={c['t_p']}")


if __name__ == "__main__":
    main()
