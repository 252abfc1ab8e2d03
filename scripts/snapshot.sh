#!/usr/bin/env bash
# A fingerprint of the tool's observable behaviour on every committed model,
# for refactorings that must not change it: compare the output of two builds.
#
#   bash scripts/snapshot.sh target/release/pa-onnx > before.txt
#   (change the code, rebuild)
#   bash scripts/snapshot.sh target/release/pa-onnx > after.txt
#   diff before.txt after.txt
#
# For each model: the SHA-256 of `rewire`'s output (with its external data)
# at 1 and 2 threads and with PA_ONNX_PORTABLE=1, of `inspect --json`, of
# the `--report` less its timings, and of `train-graph`'s output with
# cross-entropy and MSE losses (or its error message).
set -euo pipefail
bin=$(realpath "${1:?usage: snapshot.sh PA_ONNX_BINARY}")
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Committed models are small; this one has tensors large enough for the
# two-threaded pass and the stored-layout paths, in f32, f16, bf16 and f64,
# with its weights in an external data file.
.venv/bin/python - "$work/big" <<'PY'
import os, sys
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
os.makedirs(sys.argv[1])
rng = np.random.default_rng(7)
def w(name, shape, dtype=np.float32):
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.05).astype(dtype), name)
inits = [w("gemm_w", (512, 4608)), w("mm_w", (2048, 1000)), w("conv_w", (256, 128, 3, 3)),
         w("h_w", (300, 700), np.float16), w("d_w", (200, 300), np.float64)]
bf = helper.make_tensor("bf_w", TensorProto.BFLOAT16, (400, 600),
                        (rng.standard_normal(400 * 600) * 0.05).astype(np.float32).view(np.uint32) >> 16, raw=False)
inits.append(bf)
nodes = [helper.make_node("Gemm", ["x", "gemm_w"], ["y1"], transB=1),
         helper.make_node("MatMul", ["y1b", "mm_w"], ["y2"]),
         helper.make_node("Conv", ["img", "conv_w"], ["y3"], pads=[1, 1, 1, 1]),
         helper.make_node("MatMul", ["h", "h_w"], ["y4"]),
         helper.make_node("MatMul", ["d", "d_w"], ["y5"]),
         helper.make_node("MatMul", ["b", "bf_w"], ["y6"])]
ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4608]),
       helper.make_tensor_value_info("y1b", TensorProto.FLOAT, [1, 2048]),
       helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 128, 8, 8]),
       helper.make_tensor_value_info("h", TensorProto.FLOAT16, [1, 300]),
       helper.make_tensor_value_info("d", TensorProto.DOUBLE, [1, 200]),
       helper.make_tensor_value_info("b", TensorProto.BFLOAT16, [1, 400])]
outs = [helper.make_tensor_value_info(n, t, None) for n, t in
        [("y1", 1), ("y2", 1), ("y3", 1), ("y4", 10), ("y5", 11), ("y6", 16)]]
m = helper.make_model(helper.make_graph(nodes, "big", ins, outs, inits),
                      opset_imports=[helper.make_opsetid("", 17)])
onnx.save(m, os.path.join(sys.argv[1], "big.onnx"), save_as_external_data=True,
          location="big.onnx.data", size_threshold=1024)
PY

hash_dir() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }

for m in $(find models tests/fixtures -name '*.onnx' | sort) "$work/big/big.onnx"; do
    name=${m#"$work/"}
    for mode in t1 t2 portable; do
        rm -rf "$work/out" && mkdir "$work/out"
        case $mode in
            t1) env=(RAYON_NUM_THREADS=1) ;;
            t2) env=(RAYON_NUM_THREADS=2) ;;
            portable) env=(RAYON_NUM_THREADS=2 PA_ONNX_PORTABLE=1) ;;
        esac
        if env "${env[@]}" "$bin" --quiet rewire "$m" "$work/out/m.onnx" --report "$work/report.json" 2>"$work/err"; then
            echo "$name rewire $mode $(hash_dir "$work/out")"
        else
            echo "$name rewire $mode $(head -n1 "$work/err")"
        fi
    done
    python3 - "$work/report.json" <<'PY'
import json, sys, hashlib
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    print("  report: none"); sys.exit()
def scrub(x):
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if not any(w in k for w in ("time", "seconds", "elapsed", "_ms", "path", "version"))}
    if isinstance(x, list):
        return [scrub(v) for v in x]
    return x
print("  report", hashlib.sha256(json.dumps(scrub(r), sort_keys=True).encode()).hexdigest()[:16])
PY
    rm -f "$work/report.json"
    echo "  inspect $("$bin" inspect "$m" --json 2>&1 | sed "s|$work|WORK|g" | sha256sum | cut -c1-16)"
    for loss in ce mse; do
        if "$bin" --quiet train-graph "$m" "$work/train.onnx" --loss $loss --batch-size 2 2>"$work/err"; then
            echo "  train-graph $loss $(sha256sum < "$work/train.onnx" | cut -c1-16)"
        else
            echo "  train-graph $loss $(head -n1 "$work/err")"
        fi
        rm -f "$work/train.onnx"
    done
done
