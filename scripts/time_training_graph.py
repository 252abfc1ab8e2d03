"""Times one run of a training graph (as written by `pa-onnx train-graph`)
on ONNX Runtime's CPU provider with fixed inputs: the figure the README
compares with `scripts/ort_training_bench.py`.

Why fixed inputs: `cargo bench --bench train_step` times whole Trainer
steps, whose parameters keep training while criterion samples, and on this
kind of shared VM its means moved by a third with the warm-up length.

    python scripts/time_training_graph.py GRAPH.onnx [--profile]

ITERS (default 300) sets the number of timed runs; one intra-op thread,
like `T1=1` for the ORT-training script. Prints the minimum, the 10th
percentile and the median; --profile also prints the slowest nodes
(median time per run) from ONNX Runtime's profiler.
"""
import collections
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

path = sys.argv[1]
profile = "--profile" in sys.argv
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
if profile:
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(os.environ.get("TMPDIR", "/tmp"), "pa_onnx_profile")
session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
feeds = {}
for i in session.get_inputs():
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    if "int64" in i.type:
        feeds[i.name] = (np.arange(int(np.prod(shape))) % 5).reshape(shape).astype(np.int64)
    else:
        feeds[i.name] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
for _ in range(20):
    session.run(None, feeds)
times = []
for _ in range(int(os.environ.get("ITERS", "300"))):
    t = time.perf_counter()
    session.run(None, feeds)
    times.append(time.perf_counter() - t)
times.sort()
print(
    f"{os.path.basename(path)}: min {times[0] * 1e3:.3f} ms, "
    f"p10 {times[len(times) // 10] * 1e3:.3f} ms, median {times[len(times) // 2] * 1e3:.3f} ms"
)
if profile:
    per_node = collections.defaultdict(list)
    ops = {}
    for e in json.load(open(session.end_profiling())):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"]].append(e["dur"])
            ops[e["name"]] = e["args"].get("op_name")
    median = {k: sorted(v)[len(v) // 2] for k, v in per_node.items()}
    for name, us in sorted(median.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {us:8.0f} us  {ops[name]:14s} {name[:-len('_kernel_time')]}")
