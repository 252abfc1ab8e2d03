"""A numpy statement of the reference PA rewiring (docs/algorithm.md
sections 2-3).

Why it exists: the fidelity test in tests/it/algorithm.rs compares pa-onnx's
strength statistics with published figures that come from single runs. This
script states the reference algorithm independently (numpy's weighted
`choice` without replacement, as the authors draw) so that the expected
medians over many seeds can be measured again:

    .venv/bin/python scripts/reference_pa.py 64 784 30
"""

import sys

import numpy as np


def one_pass(w, rng):
    w = w.copy()
    rows, cols = w.shape
    acc = w[0].astype(np.float64).copy()
    for k in range(1, rows):
        p = acc + np.abs(acc.min()) + 1.0
        order = rng.choice(cols, cols, replace=False, p=p / p.sum())
        w[k][order] = np.sort(w[k])
        acc += w[k]
    return w


def pa(w, rng):
    return one_pass(one_pass(w, rng).T, rng).T


def main():
    rows, cols, seeds = (int(a) for a in sys.argv[1:4])
    stats = []
    for s in range(seeds):
        rng = np.random.default_rng(1000 + s)
        w = rng.normal(0.0, np.sqrt(2.0 / cols), size=(rows, cols)).astype(np.float32)
        r = pa(w, rng)
        stats.append((w.sum(1).std(), r.sum(1).std(), w.sum(0).std(), r.sum(0).std()))
    med = np.median(np.array(stats), axis=0)
    print(f"{rows}x{cols} over {seeds} seeds: row std {med[0]:.4f} -> {med[1]:.4f}, "
          f"column std {med[2]:.4f} -> {med[3]:.4f}")


if __name__ == "__main__":
    main()
