"""Times a training step inside `pa-onnx compare` against PyTorch eager on
the same model, batch and thread count, interleaved in one run.

pa-onnx side: `pa-onnx compare` on a synthetic task, one seed, one epoch;
each run records the median wall time of its training steps (`step_ms` in
report.json: the batch handed over, forward, loss, backward, the optimizer
update). PyTorch side: the same network with the same initial weights
(read from the ONNX file), `zero_grad`, forward, cross-entropy,
`backward`, `SGD(momentum=0.9, weight_decay=5e-4).step()`, timed per step.
Rounds alternate the two sides; the script prints each side's median step
per round and the ratio per round, then the range over rounds.

    python scripts/compare_step_bench.py --bin target/release/pa-onnx \
        [--model small_cnn|mlp] [--batch 64] [--threads 2] [--rounds 5]

Needs torch and onnx in the Python environment (not CI's).
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "models", "compare")


def torch_model(name, weights):
    nn = torch.nn
    if name == "small_cnn":
        net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 64), nn.ReLU(),
            nn.Dropout(0.1), nn.Linear(64, 10),
        )
        names = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "8": "fc1", "11": "fc2"}
        shape = (1, 8, 8)
    else:
        net = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
        )
        names = {"0": "fc1", "2": "fc2", "4": "fc3"}
        shape = (64,)
    state = {}
    for key in net.state_dict():
        idx, field = key.split(".", 1)
        onnx_name = f"{names[idx]}.{field}"
        if onnx_name in weights:
            state[key] = torch.from_numpy(weights[onnx_name].copy())
        else:
            state[key] = net.state_dict()[key]
    net.load_state_dict(state)
    return net, shape


def time_torch(name, batch, threads, steps):
    torch.set_num_threads(threads)
    path = os.path.join(MODELS, f"{name}.onnx")
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    net, shape = torch_model(name, weights)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch,) + shape).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch))
    times = []
    for i in range(steps + 10):
        t = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        if i >= 10:
            times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def time_pa(binary, name, batch, threads, steps):
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            binary, "compare", os.path.join(MODELS, f"{name}.onnx"), "--data", "synthetic",
            "--synthetic-size", f"{batch * steps},{batch}", "--seeds", "1", "--epochs", "1",
            "--batch", str(batch), "--threads", str(threads), "--jobs", "1",
            "--out", out, "--quiet",
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
    return float(np.median([r["step_ms"] for r in report["runs"]]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "pa-onnx"))
    ap.add_argument("--model", default="small_cnn", choices=["small_cnn", "mlp"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args()
    print(f"model {a.model}, batch {a.batch}, {a.threads} threads, {a.steps} steps a side per round")
    print(f"torch {torch.__version__}")
    ratios = []
    for r in range(a.rounds):
        pa = time_pa(a.bin, a.model, a.batch, a.threads, a.steps)
        pt = time_torch(a.model, a.batch, a.threads, a.steps)
        ratios.append(pa / pt)
        print(f"round {r + 1}: pa-onnx compare {pa:.3f} ms/step, PyTorch eager {pt:.3f} ms/step, ratio {pa / pt:.2f}")
    print(f"ratio pa-onnx / PyTorch over {a.rounds} rounds: {min(ratios):.2f}-{max(ratios):.2f} (median {np.median(ratios):.2f})")


if __name__ == "__main__":
    main()
