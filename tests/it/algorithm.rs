//! The invariants of docs/algorithm.md sections 2-5, exact, and the statistical
//! effect against the paper's reference figures.

use pa_onnx::rewire::{self, pass, Method, Options, Workspace};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::fixtures::kaiming;

fn matrix(rows: usize, cols: usize, seed: u64) -> Vec<f64> {
    kaiming(rows * cols, cols, seed)
        .into_iter()
        .map(f64::from)
        .collect()
}

fn sorted_bits(v: &[f64]) -> Vec<u64> {
    let mut b: Vec<u64> = v.iter().map(|x| x.to_bits()).collect();
    b.sort_unstable();
    b
}

#[test]
fn pass_one_keeps_each_row_and_row_zero() {
    for method in [Method::Pa, Method::Deterministic] {
        let (rows, cols) = (37, 53);
        let mut v = matrix(rows, cols, 3);
        let orig = v.clone();
        let seed = rewire::tensor_seed(1, "t");
        pass(
            &mut v,
            rows,
            cols,
            method,
            &seed,
            1,
            &mut Workspace::default(),
        );
        assert_eq!(&v[..cols], &orig[..cols], "row 0 changed");
        for r in 0..rows {
            let range = r * cols..(r + 1) * cols;
            assert_eq!(
                sorted_bits(&v[range.clone()]),
                sorted_bits(&orig[range.clone()]),
                "row {r}"
            );
        }
        assert_ne!(v, orig, "{method}: nothing moved");
    }
}

#[test]
fn pass_two_keeps_the_column_sums_of_pass_one() {
    let (rows, cols) = (40, 30);
    let mut v = matrix(rows, cols, 4);
    let opts = Options {
        method: Method::Pa,
        stabilize: 0,
        seed: 9,
    };
    // Pass 1 alone, with the same stream as the full rewiring.
    let seed = rewire::tensor_seed(opts.seed, "m");
    let mut v1 = v.clone();
    pass(
        &mut v1,
        rows,
        cols,
        Method::Pa,
        &seed,
        1,
        &mut Workspace::default(),
    );
    let col_sums = |m: &[f64]| {
        (0..cols)
            .map(|j| (0..rows).map(|i| m[i * cols + j]).sum::<f64>())
            .collect::<Vec<_>>()
    };
    let after_one = col_sums(&v1);
    rewire::pa_rewire(&mut v, rows, cols, &opts, &seed, &mut Workspace::default());
    let after_two = col_sums(&v);
    for (a, b) in after_one.iter().zip(&after_two) {
        assert!((a - b).abs() < 1e-9, "column sum {a} became {b}");
    }
    // And every column holds the values pass 1 left in it.
    for j in 0..cols {
        let col = |m: &[f64]| sorted_bits(&(0..rows).map(|i| m[i * cols + j]).collect::<Vec<_>>());
        assert_eq!(col(&v1), col(&v));
    }
}

#[test]
fn one_row_or_one_column_matrices() {
    for (rows, cols) in [(1usize, 50usize), (50, 1), (1, 1)] {
        let mut v = matrix(rows, cols, 5);
        let orig = v.clone();
        let seed = rewire::tensor_seed(1, "x");
        rewire::pa_rewire(
            &mut v,
            rows,
            cols,
            &Options::default(),
            &seed,
            &mut Workspace::default(),
        );
        // Pass over the single-row axis changes nothing; the other pass may
        // not either (its rows have one element each).
        assert_eq!(v, orig, "{rows}x{cols}");
    }
}

#[test]
fn stabilization_keeps_the_best_of_its_shuffles() {
    let (rows, cols) = (16, 24);
    let vals = matrix(rows, cols, 6);
    let shuffled = |k: u32| {
        let mut v = vals.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        rewire::stabilize(&mut v, rows, cols, k, &mut rng);
        v
    };
    // No shuffle leaves the values in place; shuffles permute them.
    assert_eq!(shuffled(0), vals);
    let (one, many) = (shuffled(1), shuffled(20));
    assert_eq!(sorted_bits(&many), sorted_bits(&vals));
    assert_ne!(many, vals, "nothing moved");
    // The same stream makes the same first shuffle, which the twenty
    // compete with.
    let score = |v: &[f64]| rewire::strength(v, rows, cols).mean_variance();
    assert!(score(&many) <= score(&one));
}

#[test]
fn the_permutation_moves_values_exactly() {
    // Duplicates, signed zeros and extremes.
    let mut vals: Vec<f64> = vec![
        0.0,
        -0.0,
        1.0,
        1.0,
        -1.0,
        f32::MAX as f64,
        f32::MIN_POSITIVE as f64,
        -3.5,
    ];
    vals.extend(kaiming(64 - vals.len(), 8, 1).into_iter().map(f64::from));
    let out = rewire::rewire_values(&vals, &[8, 8], &[0, 1], "k", &Options::default());
    assert_eq!(sorted_bits(&out.values), sorted_bits(&vals));
    assert_ne!(out.values, vals, "nothing moved");
    // Values f32 cannot hold take the other representation (ranks).
    let wide: Vec<f64> = vals.iter().map(|v| v + 0.1).collect();
    let out = rewire::rewire_values(&wide, &[8, 8], &[0, 1], "k", &Options::default());
    assert_eq!(sorted_bits(&out.values), sorted_bits(&wide));
    assert_ne!(out.values, wide, "nothing moved");
}

#[test]
fn transposed_views_address_storage_correctly() {
    // dims [K=3, N=4] viewed as [N, K]: view (i, j) is storage (j, i).
    let idx = rewire::view_index(&[3, 4], &[1, 0]);
    assert_eq!(idx, vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    // A conv [O=2, I=2, k=2] seen through Transpose perm [1,0,2].
    let idx = rewire::view_index(&[2, 2, 2], &[1, 0, 2]);
    assert_eq!(idx, vec![0, 1, 4, 5, 2, 3, 6, 7]);
}

#[test]
fn same_seed_same_result_other_seed_other_result() {
    let vals: Vec<f64> = kaiming(64 * 32, 32, 2).into_iter().map(f64::from).collect();
    let run = |seed: u64, key: &str| {
        let opts = Options {
            seed,
            ..Default::default()
        };
        rewire::rewire_values(&vals, &[64, 32], &[0, 1], key, &opts)
    };
    let (a, b, c, d) = (run(1, "w"), run(1, "w"), run(2, "w"), run(1, "other"));
    assert_eq!(a.values, b.values);
    assert_ne!(a.values, c.values);
    assert_ne!(a.values, d.values);
}

#[test]
fn deterministic_method_ignores_the_seed_and_balances() {
    let vals: Vec<f64> = kaiming(128 * 256, 256, 6)
        .into_iter()
        .map(f64::from)
        .collect();
    let a = rewire::rewire_values(
        &vals,
        &[128, 256],
        &[0, 1],
        "w",
        &Options {
            seed: 1,
            method: Method::Deterministic,
            stabilize: 0,
        },
    );
    let b = rewire::rewire_values(
        &vals,
        &[128, 256],
        &[0, 1],
        "w",
        &Options {
            seed: 2,
            method: Method::Deterministic,
            stabilize: 0,
        },
    );
    assert_eq!(a.values, b.values);
    assert!(a.after.row_std < a.before.row_std / 3.0, "{:?}", a);
    assert!(a.after.col_std < a.before.col_std / 3.0, "{:?}", a);
}

#[test]
fn stabilization_keeps_the_multiset_and_does_not_hurt() {
    let vals: Vec<f64> = kaiming(32 * 48, 48, 7).into_iter().map(f64::from).collect();
    let plain = rewire::rewire_values(&vals, &[32, 48], &[0, 1], "w", &Options::default());
    let stab = rewire::rewire_values(
        &vals,
        &[32, 48],
        &[0, 1],
        "w",
        &Options {
            stabilize: 20,
            ..Default::default()
        },
    );
    let moved = stab.values.clone();
    assert_eq!(sorted_bits(&moved), sorted_bits(&vals));
    assert_ne!(plain.values, stab.values);
    assert!(stab.after.row_std < stab.before.row_std);
}

/// Median over seeds of (row std before, row after, col before, col after).
fn medians(rows: usize, cols: usize, seeds: u64) -> [f64; 4] {
    let mut acc: [Vec<f64>; 4] = Default::default();
    for s in 0..seeds {
        let vals: Vec<f64> = kaiming(rows * cols, cols, 100 + s)
            .into_iter()
            .map(f64::from)
            .collect();
        let o = rewire::rewire_values(
            &vals,
            &[rows as u64, cols as u64],
            &[0, 1],
            "w",
            &Options {
                seed: s,
                ..Default::default()
            },
        );
        for (a, v) in acc.iter_mut().zip([
            o.before.row_std,
            o.after.row_std,
            o.before.col_std,
            o.after.col_std,
        ]) {
            a.push(v);
        }
    }
    acc.map(|mut v| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    })
}

fn assert_close(what: &str, got: f64, want: f64) {
    if std::env::var("PA_FIDELITY_PRINT").is_ok() {
        return;
    }
    assert!(
        (got - want).abs() <= 0.10 * want,
        "{what}: got {got:.4}, reference {want}"
    );
}

#[test]
fn fidelity_to_the_reference_figures() {
    // (rows, cols, row before, row after, col before, col after), measured
    // with the authors' reference code (docs/algorithm.md section 3, issue 3).
    // A 64-row matrix gives noisy strength statistics (the per-seed spread
    // of the row std after rewiring is about 10%), so that case takes more
    // seeds; scripts/reference_pa.py, a numpy statement of the reference
    // algorithm, gives medians of 0.203 and 0.210 for it over 30 seeds.
    let cases = [
        (64, 784, 1.44, 0.22, 0.41, 0.21, 31),
        (512, 512, 1.37, 0.23, 1.42, 0.23, 10),
        (512, 4608, 1.40, 0.12, 0.47, 0.13, 10),
    ];
    for (r, c, rb, ra, cb, ca, seeds) in cases {
        let [mrb, mra, mcb, mca] = medians(r, c, seeds);
        eprintln!("{r}x{c}: row {mrb:.4} -> {mra:.4}, col {mcb:.4} -> {mca:.4}");
        let name = format!("{r}x{c}");
        assert_close(&format!("{name} row before"), mrb, rb);
        assert_close(&format!("{name} row after"), mra, ra);
        assert_close(&format!("{name} col before"), mcb, cb);
        assert_close(&format!("{name} col after"), mca, ca);
    }
}
