//! Feeds arbitrary bytes to the reader and, when they parse, to the planner
//! and the rewiring of every located weight: none of it may panic, loop
//! forever or allocate without bound, whatever the file claims.
//!
//! External data resolves in a private folder holding one 4 KiB file,
//! `w.bin`, so the fuzzer can reach the external-data code with valid and
//! invalid ranges alike (seeds name it).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pa_onnx::onnx::{payload, Model};
use pa_onnx::rewire::Options;

/// Weights above this many elements are decoded but not rewired, to keep
/// each execution short.
const MAX_REWIRE: u64 = 1 << 16;

fn data_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pa-onnx-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let bytes: Vec<u8> = (0..1024u16)
            .flat_map(|i| (f32::from(i) * 0.01 - 5.0).to_le_bytes())
            .collect();
        std::fs::write(dir.join("w.bin"), bytes).expect("data file");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_bytes(data.to_vec(), data_dir()) else {
        return;
    };
    let Ok(plan) = pa_onnx::locate(&model) else {
        return;
    };
    for w in &plan.weights {
        let t = &model.tensors[w.tensor];
        assert_eq!(
            w.rows * w.cols,
            t.numel,
            "{}: the matrix view does not cover the tensor",
            t.name
        );
        let Ok(bytes) = model.payload(t) else {
            continue;
        };
        payload::decode_f64(t, &bytes).expect("a located weight decodes");
        if t.numel > MAX_REWIRE {
            continue;
        }
        let (out, _) = pa_onnx::rewire_tensor(&model, w, &Options::default())
            .expect("a located weight rewires");
        let enc = payload::encoding(t).expect("a located weight is addressable");
        assert!(
            payload::same_multiset(enc, &bytes, &out),
            "{}: not a permutation",
            t.name
        );
    }
});
