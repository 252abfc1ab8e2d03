//! Locating weights and their orientation (docs/algorithm.md section 1), on
//! hand-built graphs for each layout and on the committed exports.

use pa_onnx::onnx::Model;
use pa_onnx::plan::{locate, locate_with, CopyLayout, Plan, SkipKind, TieKind, Tied};

use crate::fixtures::*;

fn plan_of(bytes: Vec<u8>) -> Plan {
    let m = Model::from_bytes(bytes, std::path::Path::new(".")).unwrap();
    locate(&m).unwrap()
}

fn weight<'a>(p: &'a Plan, name: &str) -> &'a pa_onnx::plan::Weight {
    p.weights
        .iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("{name} not located; skipped: {:?}", p.skipped))
}

fn skipped(p: &Plan, name: &str) -> (SkipKind, String) {
    let s = p
        .skipped
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} not skipped; weights: {:?}", p.weights));
    (s.kind, s.reason.clone())
}

#[test]
fn gemm_and_matmul_orientations() {
    let w =
        |n: &str, d: &[u64]| tensor_f32(n, d, &kaiming(d.iter().product::<u64>() as usize, 4, 1));
    let p = plan_of(graph_model(
        vec![
            node(
                "Gemm",
                "g1",
                &["x", "b1"],
                &["y1"],
                vec![attr_int("transB", 1)],
            ),
            node("Gemm", "g0", &["x", "b0"], &["y0"], vec![]),
            node("MatMul", "mr", &["x", "wr"], &["y2"], vec![]),
            node("MatMul", "ml", &["wl", "x"], &["y3"], vec![]),
            node(
                "Transpose",
                "t",
                &["wt"],
                &["wt_t"],
                vec![attr_ints("perm", &[1, 0])],
            ),
            node(
                "Gemm",
                "gt",
                &["x", "wt_t"],
                &["y4"],
                vec![attr_int("transB", 1)],
            ),
        ],
        vec![
            w("b1", &[5, 4]),
            w("b0", &[4, 5]),
            w("wr", &[4, 6]),
            w("wl", &[7, 4]),
            w("wt", &[4, 5]),
        ],
        vec![value_info("x", FLOAT, &[4, 4])],
        vec![],
    ));
    let check = |name: &str, rows: u64, cols: u64, transposed: bool| {
        let w = weight(&p, name);
        assert_eq!(
            (w.rows, w.cols, w.transposed),
            (rows, cols, transposed),
            "{name}"
        );
    };
    check("b1", 5, 4, false);
    check("b0", 5, 4, true);
    check("wr", 6, 4, true);
    check("wl", 7, 4, false);
    // Transpose then transB=1: the Gemm sees [5, 4], stored as [4, 5].
    check("wt", 5, 4, true);
    assert_eq!(
        weight(&p, "wt").consumers[0].through,
        vec!["Transpose".to_string()]
    );
}

#[test]
fn conv_and_conv_transpose_views() {
    let p = plan_of(graph_model(
        vec![
            node(
                "Conv",
                "c",
                &["x", "wc", "bc"],
                &["y"],
                vec![attr_int("group", 2)],
            ),
            node("ConvTranspose", "ct", &["y", "wct"], &["z"], vec![]),
        ],
        vec![
            tensor_f32("wc", &[8, 2, 3, 3], &kaiming(144, 18, 1)),
            tensor_f32("bc", &[8], &[0.0; 8]),
            tensor_f32("wct", &[8, 3, 2, 2], &kaiming(96, 12, 2)),
        ],
        vec![value_info("x", FLOAT, &[1, 4, 5, 5])],
        vec![],
    ));
    let wc = weight(&p, "wc");
    assert_eq!((wc.rows, wc.cols, wc.transposed), (8, 18, false));
    let wct = weight(&p, "wct");
    assert_eq!(
        (wct.rows, wct.cols, wct.op.as_str()),
        (8, 12, "ConvTranspose")
    );
    let (kind, reason) = skipped(&p, "bc");
    assert_eq!(kind, SkipKind::NotAWeight);
    assert!(reason.contains("bias of Conv"), "{reason}");
}

/// One table read by Gather and, through a Transpose, by the output
/// MatMul: a tied weight with the MatMul's view; `--tied skip` keeps the
/// old verdict.
#[test]
fn a_table_read_by_gather_and_matmul_is_a_tied_weight_unless_ties_are_skipped() {
    let bytes = graph_model(
        vec![
            node("Gather", "embed", &["emb", "ids"], &["h"], vec![]),
            node("MatMul", "lm_head", &["h", "emb_t"], &["logits"], vec![]),
            node(
                "Transpose",
                "tr",
                &["emb"],
                &["emb_t"],
                vec![attr_ints("perm", &[1, 0])],
            ),
        ],
        vec![tensor_f32("emb", &[10, 4], &kaiming(40, 4, 1))],
        vec![value_info("ids", INT64, &[1, 3])],
        vec![],
    );
    let p = plan_of(bytes.clone());
    let w = weight(&p, "emb");
    assert_eq!((w.rows, w.cols, w.transposed), (10, 4, false));
    assert_eq!(p.ties.len(), 1);
    let g = &p.ties[0];
    assert_eq!((g.kind, g.rewired.as_str()), (TieKind::Shared, "emb"));
    let readers: Vec<&str> = g.members[0].read_by.iter().map(|c| c.op.as_str()).collect();
    assert_eq!(readers, ["MatMul", "Gather"]);

    let m = Model::from_bytes(bytes, std::path::Path::new(".")).unwrap();
    let p = locate_with(&m, Tied::Skip).unwrap();
    let (kind, reason) = skipped(&p, "emb");
    assert_eq!(kind, SkipKind::Shared);
    assert!(reason.contains("Gather"), "{reason}");
    assert!(p.ties.is_empty());
}

/// GPT-2's folded copy: the dense copy is rewired and the Gather table is
/// its transposed copy in the group, no longer skipped.
#[test]
fn a_folded_transposed_copy_of_an_embedding_joins_the_dense_weights_group() {
    let p = plan_of(gpt2_folded());
    let w = weight(&p, "lm_head");
    assert_eq!((w.rows, w.cols, w.transposed), (24, 8, true));
    assert!(p.weights.iter().all(|w| w.name != "wte"));
    assert!(p.skipped.iter().all(|s| s.name != "wte"), "{:?}", p.skipped);
    assert_eq!(p.ties.len(), 1);
    let g = &p.ties[0];
    assert_eq!((g.kind, g.rewired.as_str()), (TieKind::Folded, "lm_head"));
    let copies: Vec<_> = g.copies().map(|c| (c.name.as_str(), c.layout)).collect();
    assert_eq!(copies, [("wte", CopyLayout::Transposed)]);
    assert_eq!(g.copies().next().unwrap().read_by[0].op, "Gather");

    let m = Model::from_bytes(gpt2_folded(), std::path::Path::new(".")).unwrap();
    let p = locate_with(&m, Tied::Skip).unwrap();
    assert!(p.ties.is_empty());
    assert_eq!(skipped(&p, "wte").0, SkipKind::NotAWeight);
    weight(&p, "lm_head");
}

/// Equal values alone make no tie: a table too small to be told from an
/// accidental match (all-zero, say) stays apart, and so does an equal
/// dense weight with no Gather reading a copy.
#[test]
fn small_or_ungathered_equal_tensors_are_not_tied() {
    let p = plan_of(graph_model(
        vec![
            node("Gather", "g", &["small_t", "ids"], &["h"], vec![]),
            node("MatMul", "m1", &["x", "small_w"], &["a"], vec![]),
            node("MatMul", "m2", &["x4", "w_a"], &["b"], vec![]),
            node("MatMul", "m3", &["x4", "w_b"], &["c"], vec![]),
        ],
        vec![
            tensor_f32("small_t", &[2, 4], &[0.0; 8]),
            tensor_f32("small_w", &[2, 4], &[0.0; 8]),
            tensor_f32("w_a", &[4, 8], &kaiming(32, 4, 3)),
            tensor_f32("w_b", &[4, 8], &kaiming(32, 4, 3)),
        ],
        vec![value_info("ids", INT64, &[1, 3])],
        vec![],
    ));
    assert!(p.ties.is_empty(), "{:?}", p.ties);
    assert_eq!(skipped(&p, "small_t").0, SkipKind::NotAWeight);
    weight(&p, "w_a");
    weight(&p, "w_b");
}

#[test]
fn non_float_rank_one_nonfinite_and_unused_are_skipped() {
    let mut bad = kaiming(16, 4, 1);
    bad[3] = f32::NAN;
    let p = plan_of(graph_model(
        vec![
            node("MatMul", "mi", &["x", "wi"], &["a"], vec![]),
            node("MatMul", "mn", &["x", "wn"], &["b"], vec![]),
            node("MatMul", "m1", &["x", "w1"], &["c"], vec![]),
        ],
        vec![
            tensor_raw("wi", 3, &[4, 4], &[1u8; 16]),
            tensor_f32("wn", &[4, 4], &bad),
            tensor_f32("w1", &[4], &[1.0; 4]),
            tensor_f32("unused", &[4, 4], &kaiming(16, 4, 2)),
        ],
        vec![value_info("x", FLOAT, &[4, 4])],
        vec![],
    ));
    assert_eq!(skipped(&p, "wi").0, SkipKind::Dtype);
    assert_eq!(skipped(&p, "wn").0, SkipKind::NonFinite);
    assert_eq!(skipped(&p, "w1").0, SkipKind::Shape);
    assert_eq!(skipped(&p, "unused").0, SkipKind::Unused);
    assert!(p.weights.is_empty());
}

#[test]
fn constant_nodes_subgraphs_and_functions() {
    let then_branch = graph(GraphSpec {
        name: "then".into(),
        nodes: vec![node(
            "MatMul",
            "inner",
            &["x", "outer_w"],
            &["t_out"],
            vec![],
        )],
        initializers: vec![],
        inputs: vec![],
        outputs: vec![value_info("t_out", FLOAT, &[4, 3])],
    });
    let else_branch = graph(GraphSpec {
        name: "else".into(),
        nodes: vec![node(
            "Gemm",
            "inner2",
            &["x", "local_w"],
            &["e_out"],
            vec![attr_int("transB", 1)],
        )],
        initializers: vec![tensor_f32("local_w", &[3, 4], &kaiming(12, 4, 3))],
        inputs: vec![],
        outputs: vec![value_info("e_out", FLOAT, &[4, 3])],
    });
    let func = Msg::new()
        .str(1, "Dense")
        .str(4, "fx")
        .str(4, "fw")
        .str(5, "fy")
        .msg(7, node("MatMul", "fm", &["fx", "fw"], &["fy"], vec![]))
        .msg(9, Msg::new().str(1, "").varint(2, 17))
        .str(10, "local");
    let g = graph(GraphSpec {
        name: "main".into(),
        nodes: vec![
            node(
                "Constant",
                "cst",
                &[],
                &["cw"],
                vec![attr_tensor(
                    "value",
                    tensor_f32("", &[4, 2], &kaiming(8, 4, 4)),
                )],
            ),
            node("MatMul", "mc", &["x", "cw"], &["c"], vec![]),
            node(
                "If",
                "branch",
                &["cond"],
                &["y"],
                vec![
                    attr_graph("then_branch", then_branch),
                    attr_graph("else_branch", else_branch),
                ],
            ),
            Msg::new()
                .str(1, "x")
                .str(1, "fn_w")
                .str(2, "fo")
                .str(3, "call")
                .str(4, "Dense")
                .str(7, "local"),
        ],
        initializers: vec![
            tensor_f32("outer_w", &[4, 3], &kaiming(12, 4, 5)),
            tensor_f32("fn_w", &[4, 6], &kaiming(24, 4, 6)),
        ],
        inputs: vec![value_info("x", FLOAT, &[4, 4]), value_info("cond", 9, &[])],
        outputs: vec![value_info("y", FLOAT, &[4, 3])],
    });
    let bytes = model(g, vec![(25, func)]);
    let p = plan_of(bytes);
    assert_eq!(weight(&p, "cw").rows, 2);
    assert_eq!(weight(&p, "outer_w").consumers[0].node, "inner");
    let local = weight(&p, "local_w");
    assert_eq!((local.rows, local.cols), (3, 4));
    assert!(local.key.contains("branch.else_branch"), "{}", local.key);
    let f = weight(&p, "fn_w");
    assert_eq!((f.rows, f.cols, f.transposed), (6, 4, true));
    assert_eq!(f.consumers[0].through, vec!["Dense".to_string()]);
}

/// The export script computes each committed model's weights from the
/// graph independently (and checks them against the PyTorch parameters);
/// the locator must agree exactly.
#[test]
fn committed_models_match_the_export_manifest() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    let entries = manifest.as_array().unwrap();
    assert!(entries.len() >= 10);
    for entry in entries {
        let file = root.join("torch").join(entry["model"].as_str().unwrap());
        let m = Model::open(&file).unwrap();
        let p = locate(&m).unwrap();
        let mut want: Vec<(String, String, u64, u64, bool)> = entry["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["name"].as_str().unwrap().to_string(),
                    w["op"].as_str().unwrap().to_string(),
                    w["rows"].as_u64().unwrap(),
                    w["cols"].as_u64().unwrap(),
                    w["transposed"].as_bool().unwrap(),
                )
            })
            .collect();
        let mut got: Vec<(String, String, u64, u64, bool)> = p
            .weights
            .iter()
            .map(|w| (w.name.clone(), w.op.clone(), w.rows, w.cols, w.transposed))
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{}", file.display());
        for nw in entry["not_weights"].as_array().unwrap() {
            let name = nw["name"].as_str().unwrap();
            assert!(
                p.skipped.iter().any(|s| s.name == name),
                "{}: {name} should be skipped",
                file.display()
            );
        }
    }
}

/// The torchvision ResNet-18 export is too large to commit; the export
/// script writes it to models/large/. Reported as skipped when absent.
#[test]
fn torchvision_resnet18_has_twenty_conv_and_one_gemm_weight() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/large/resnet18.onnx");
    if !path.exists() {
        eprintln!(
            "SKIPPED: {} not generated (run models/export_torch.py --resnet18 {})",
            path.display(),
            path.display()
        );
        return;
    }
    let p = locate(&Model::open(&path).unwrap()).unwrap();
    let conv = p.weights.iter().filter(|w| w.op == "Conv").count();
    let gemm: Vec<_> = p.weights.iter().filter(|w| w.op == "Gemm").collect();
    assert_eq!((p.weights.len(), conv, gemm.len()), (21, 20, 1));
    assert_eq!((gemm[0].rows, gemm[0].cols), (1000, 512));
    let first = p.weights.iter().find(|w| w.shape == [64, 3, 7, 7]).unwrap();
    assert_eq!((first.rows, first.cols), (64, 147));
}

/// The synthetic ResNet-18 reproduces the TorchScript export's layout (BN
/// folded into Conv), so the 21-weight check runs everywhere, not only
/// where the real export was generated.
#[test]
fn synthetic_resnet18_has_twenty_conv_and_one_gemm_weight() {
    let p = plan_of(pa_onnx::synth::resnet18());
    let conv = p.weights.iter().filter(|w| w.op == "Conv").count();
    assert_eq!((p.weights.len(), conv), (21, 20));
    let fc = p.weights.iter().find(|w| w.op == "Gemm").unwrap();
    assert_eq!((fc.rows, fc.cols, fc.transposed), (1000, 512, false));
    let total: u64 = p.weights.iter().map(|w| w.rows * w.cols).sum();
    assert_eq!(total, 11_678_912);
}
