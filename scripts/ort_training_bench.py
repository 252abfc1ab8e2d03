"""Times one ORT-training 1.19.2 training step (batch 64) on the bench models
of tests/fixtures/grads, the baseline of benches/train_step.rs.

Why it exists: pa-onnx builds its own gradient graphs because ORT-training
was discontinued; this measures how far they are from it. Needs a Python 3.11
venv with onnxruntime-training-cpu==1.19.2, onnx==1.16.2, numpy and torch:
    python scripts/ort_training_bench.py [mlp cnn_bn resnet mobilenet transformer]
T1=1 in the environment pins ONNX Runtime to one intra-op thread, to compare
with `PA_BENCH_THREADS=1 cargo bench --bench train_step`; ITERS sets the
number of timed steps (60 by default).
"""
import os, sys, time, shutil
import numpy as np
import onnx
from onnxruntime.training import artifacts
from onnxruntime.training.api import CheckpointState, Module, Optimizer

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "grads")
import tempfile
work = tempfile.mkdtemp(prefix="ortt-")
for case in sys.argv[1:] or ["mlp", "cnn_bn", "resnet", "mobilenet", "transformer"]:
    m = onnx.load(os.path.join(root, case, "bench.onnx"))
    # ORT-training wants inference-form BatchNorm (one output) and makes it train itself.
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            del n.output[1:]
            keep = [a for a in n.attribute if a.name != "training_mode"]
            del n.attribute[:]
            n.attribute.extend(keep)
        if n.op_type == "LayerNormalization" and len(n.output) == 1:
            # Its gradient builder reads the saved mean and inverse std outputs.
            n.output.extend([n.name + "_mean", n.name + "_invstd"])
    params = [t.name for t in m.graph.initializer if not ("running" in t.name or "num_batches" in t.name) and t.data_type == 1 and len(t.dims) > 0]
    frozen = [t.name for t in m.graph.initializer if t.name not in params]
    out = os.path.join(work, case)
    shutil.rmtree(out, ignore_errors=True); os.makedirs(out)
    artifacts.generate_artifacts(m, requires_grad=params, frozen_params=frozen,
        loss=artifacts.LossType.CrossEntropyLoss, optimizer=artifacts.OptimType.SGD if hasattr(artifacts.OptimType, "SGD") else artifacts.OptimType.AdamW,
        artifact_directory=out)
    state = CheckpointState.load_checkpoint(f"{out}/checkpoint")
    import onnxruntime as ort
    so = ort.SessionOptions()
    if os.environ.get("T1"): so.intra_op_num_threads = 1
    module = Module(f"{out}/training_model.onnx", state, f"{out}/eval_model.onnx", session_options=so)
    opt = Optimizer(f"{out}/optimizer_model.onnx", module)
    module.train()
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(3)
    x = (rng.random(shape, dtype=np.float32) - 0.5)
    labels = (np.arange(64) % 5).astype(np.int64)
    def step():
        loss = module(x, labels)
        opt.step()
        module.lazy_reset_grad()
        return loss
    for _ in range(5):
        step()
    times = []
    for _ in range(int(os.environ.get("ITERS", "60"))):
        t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
    print(f"{case}: ORT-training 1.19.2 step median {np.median(times)*1e3:.3f} ms (min {min(times)*1e3:.3f})", flush=True)
