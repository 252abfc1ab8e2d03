"""Times pa-onnx and a numpy statement of the reference rewiring on the same
weights, interleaved in one run on one machine, and prints the ratios.

A speed-up is only meaningful when both sides run in the same run on the
same machine: numpy's speed moves with its version and the CPU, so a ratio
against timings taken elsewhere says little. This script is the source of
the README's ratios.

- Reference: scripts/reference_pa.py's `pa` (numpy's weighted `choice`
  without replacement, as the authors draw), on each weight's matrix view
  (rows = output neurons), in float32. Its time covers the rewiring alone,
  weights already in memory.
- pa-onnx: the whole `pa-onnx rewire IN OUT` process (start, read, plan,
  rewire, write), wall time.
- Cases: the four matrices of the criterion benchmark, each as a one-Gemm
  model, and ResNet-18 (torchvision, untrained, 21 weights) when a file is
  given with --resnet18 (make it with `models/export_torch.py --resnet18`).

Each round runs the reference, then pa-onnx, on every case; the ratio of a
round is its reference time over its pa-onnx time (pa-onnx: the median of
--pa-runs runs in that round). The script prints every round and the range.

    python scripts/same_run_ratio.py --bin target/release/pa-onnx \
        [--resnet18 models/large/resnet18.onnx] [--rounds 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_pa import pa  # noqa: E402

MATRICES = [(64, 784), (512, 512), (512, 4608), (1000, 2048)]


def gemm_model(path, rows, cols, rng):
    w = rng.normal(0.0, np.sqrt(2.0 / cols), size=(rows, cols)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cols])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, rows])
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)
    graph = helper.make_graph([node], "m", [x], [y], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return [w]


def weight_views(path):
    """The matrix view of every Conv and Gemm weight (rows = axis 0)."""
    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    views = []
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 and n.input[1] in inits:
            a = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            views.append(a.reshape(a.shape[0], -1))
    return views


def time_reference(views, seed):
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for w in views:
        pa(w, rng)
    return time.perf_counter() - t


def time_pa(binary, path, out, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([binary, "rewire", path, out, "--quiet"], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/pa-onnx")
    ap.add_argument("--resnet18")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pa-runs", type=int, default=5)
    a = ap.parse_args()
    work = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    cases = []
    for rows, cols in MATRICES:
        path = os.path.join(work, f"m{rows}x{cols}.onnx")
        cases.append((f"{rows} x {cols}", path, gemm_model(path, rows, cols, rng)))
    if a.resnet18:
        views = weight_views(a.resnet18)
        cases.append((f"ResNet-18 ({len(views)} weights)", a.resnet18, views))
    print(f"numpy {np.__version__}; pa-onnx: {subprocess.run([a.bin, '--version'], capture_output=True, text=True).stdout.strip()}")
    results = {name: [] for name, _, _ in cases}
    for r in range(a.rounds):
        for name, path, views in cases:
            ref = time_reference(views, 1000 + r)
            mine = time_pa(a.bin, path, os.path.join(work, "out.onnx"), a.pa_runs)
            results[name].append((ref, mine))
            print(f"round {r + 1} {name}: reference {ref:.3f} s, pa-onnx {mine * 1e3:.1f} ms, ratio {ref / mine:.0f}x", flush=True)
    print()
    print("| case | numpy reference | pa-onnx (whole process) | ratio |")
    print("|---|---|---|---|")
    for name, rs in results.items():
        refs = [x for x, _ in rs]
        mines = [y for _, y in rs]
        ratios = [x / y for x, y in rs]
        print(f"| {name} | {min(refs):.3g}-{max(refs):.3g} s | {min(mines) * 1e3:.3g}-{max(mines) * 1e3:.3g} ms | {min(ratios):.0f}-{max(ratios):.0f}x |")


if __name__ == "__main__":
    main()
