#!/usr/bin/env python3
"""Times two pa-onnx binaries on one model, interleaved, for A/B checks.

    .venv/bin/python scripts/ab_time.py OLD_BIN NEW_BIN MODEL [--runs 20] [--threads 2]

MODEL may be `resnet18`: a model with ResNet-18's 21 weight shapes
(Kaiming-normal f32, 46.8 MB) is then generated first (needs numpy and
onnx, as in the project's .venv).

Each round runs `rewire MODEL OUT` once with each binary, in alternating
order, so that both see the same minute of a noisy machine. Prints the
wall-clock and CPU (user + system) medians and the 10th-90th percentile
range of each, and the ratio of the medians. A ratio is only meaningful
between runs made this way: in the same run, on the same machine.
"""
import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time


def run_once(binary, model, out, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([binary, "--quiet", "rewire", model, out, "--force"], check=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def resnet18(path):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, TensorProto

    rng = np.random.default_rng(18)
    shapes = [(64, 3, 7, 7)] + [(64, 64, 3, 3)] * 4
    for cin, cout in ((64, 128), (128, 256), (256, 512)):
        shapes += [(cout, cin, 3, 3), (cout, cout, 3, 3), (cout, cin, 1, 1),
                   (cout, cout, 3, 3), (cout, cout, 3, 3)]
    inits, nodes = [], []
    for i, shape in enumerate(shapes):
        fan_in = int(np.prod(shape[1:]))
        w = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"conv{i}.weight"))
        nodes.append(helper.make_node("Conv", [f"x{i}", f"conv{i}.weight"], [f"y{i}"]))
    fc = (rng.standard_normal((1000, 512)) * np.sqrt(2.0 / 512)).astype(np.float32)
    inits.append(numpy_helper.from_array(fc, "fc.weight"))
    nodes.append(helper.make_node("Gemm", ["pooled", "fc.weight"], ["logits"], transB=1))
    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [1, s[1], 8, 8])
              for i, s in enumerate(shapes)]
    inputs.append(helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 512]))
    outputs = [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in nodes]
    graph = helper.make_graph(nodes, "resnet18_weights", inputs, outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def summary(xs):
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=10) if len(xs) >= 2 else [xs[0]] * 9
    return statistics.median(xs), q[0], q[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    times = {"old": ([], []), "new": ([], [])}
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "resnet18":
            args.model = os.path.join(tmp, "resnet18.onnx")
            resnet18(args.model)
        for name in ("old", "new"):  # warm the page cache and the binaries
            run_once(getattr(args, name), args.model, os.path.join(tmp, name + ".onnx"), env)
        for i in range(args.runs):
            order = ("old", "new") if i % 2 == 0 else ("new", "old")
            for name in order:
                wall, cpu = run_once(getattr(args, name), args.model,
                                     os.path.join(tmp, name + ".onnx"), env)
                times[name][0].append(wall)
                times[name][1].append(cpu)
    for name in ("old", "new"):
        w, c = summary(times[name][0]), summary(times[name][1])
        print(f"{name}: wall median {w[0]*1e3:.1f} ms (p10-p90 {w[1]*1e3:.1f}-{w[2]*1e3:.1f}), "
              f"cpu median {c[0]*1e3:.1f} ms (p10-p90 {c[1]*1e3:.1f}-{c[2]*1e3:.1f})")
    print(f"new/old wall {statistics.median(times['new'][0]) / statistics.median(times['old'][0]):.3f}, "
          f"cpu {statistics.median(times['new'][1]) / statistics.median(times['old'][1]):.3f}"
          f" over {args.runs} interleaved rounds")


if __name__ == "__main__":
    main()
