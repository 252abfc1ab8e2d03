"""Reference gradients from PyTorch autograd for pa-onnx's training graphs.

Why this exists: pa-onnx derives every gradient itself, in ONNX operators,
so its results need an independent referee. For five small models that
cover the gradient rules (an MLP; a CNN with BatchNorm and MaxPool;
ResNet-style residual blocks; MobileNetV2-style depthwise blocks; a
transformer encoder layer) this script

  1. builds the model in PyTorch with a fixed seed,
  2. exports the forward model to ONNX with the TorchScript exporter in
     training mode without constant folding, so BatchNormalization stays a
     node and every parameter stays an initializer under its own name,
  3. computes the mean softmax cross-entropy of a fixed small batch and its
     gradients with autograd in float64 (so the reference carries no float32
     rounding of its own),
  4. writes tests/fixtures/grads/<case>/: model.onnx, one raw little-endian
     .bin per tensor (inputs, labels, gradients) and case.json indexing them.

BatchNorm layers train on batch statistics in both frameworks, so the
gradients are those of a training step. Inputs are standard normal; with
float32 data the chance of sitting on a ReLU kink or a MaxPool tie is nil.

Run from the repository root: .venv/bin/python scripts/ref_grads.py
"""

import copy
import json
import math
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "grads")


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.fc2 = nn.Linear(32, 24)
        self.fc3 = nn.Linear(24, 5)

    def forward(self, x):
        return self.fc3(torch.tanh(self.fc2(F.relu(self.fc1(x)))))


class CnnBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 3, stride=2, padding=1)
        return self.fc(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.expand = nn.Sequential(nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6())
        self.dw = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
        )
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.use_res else y


class MobileNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.block1 = InvertedResidual(8, 8, 1, 6)
        self.block2 = InvertedResidual(8, 16, 2, 6)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer, written out so the export has
    constant shapes (no Shape/Gather chains) and GELU becomes Erf."""

    def __init__(self, batch, seq, dim=16, heads=2, ff=32, classes=5):
        super().__init__()
        self.b, self.t, self.h, self.d = batch, seq, heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ln1 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, ff)
        self.ff2 = nn.Linear(ff, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        b, t, h, d = self.b, self.t, self.h, self.d
        q, k, v = self.qkv(x).reshape(b, t, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(d)), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, h * d)
        x = self.ln1(x + self.out(y))
        x = self.ln2(x + self.ff2(F.gelu(self.ff1(x))))
        return self.head(x.mean(dim=1))


class Ops(nn.Module):
    """The operators the four networks above leave out: dilated and grouped
    convolutions, ConvTranspose, AveragePool with and without padding,
    slicing and concatenation, LeakyRelu, Sigmoid, Gelu (tanh form) and
    LogSoftmax. Exported at opset 20, which also moves reduction axes into
    inputs and makes Gelu a single operator."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=2, dilation=2)
        self.up = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1)
        self.grouped = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2)
        self.fc1 = nn.Linear(4 * 2 * 2, 12)
        self.fc2 = nn.Linear(12, 6)

    def forward(self, x):
        x = torch.sigmoid(self.up(F.leaky_relu(self.conv(x), 0.1)))
        x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        x = torch.cat([x[:, :2] * 2.0, torch.tanh(x[:, 2:])], dim=1)
        x = F.avg_pool2d(self.grouped(x), 2)
        x = F.gelu(self.fc1(torch.flatten(x, 1)), approximate="tanh")
        return F.log_softmax(self.fc2(x), dim=1)


def cases():
    yield "mlp", Mlp, (8, 20), 5
    yield "cnn_bn", CnnBn, (4, 3, 16, 16), 10
    yield "resnet", ResNet, (4, 3, 16, 16), 10
    yield "mobilenet", MobileNet, (4, 3, 16, 16), 10
    yield "transformer", lambda: EncoderLayer(4, 6), (4, 6, 16), 5
    yield "ops", Ops, (4, 3, 8, 8), 6


def export(model, x, path, opset):
    torch.onnx.export(
        model,
        (x,),
        path,
        input_names=["input"],
        output_names=["logits"],
        opset_version=opset,
        training=torch.onnx.TrainingMode.TRAINING,
        do_constant_folding=False,
        dynamo=False,
    )


def write(dirname, name, array, dtype):
    fname = name.replace("/", "_") + ".bin"
    np.ascontiguousarray(array, dtype=dtype).tofile(os.path.join(dirname, fname))
    return {"name": name, "shape": list(array.shape), "dtype": np.dtype(dtype).name, "file": fname}


def main():
    # The exporter warns about BatchNorm's num_batches_tracked counter, which no gradient involves,
    # and that the TorchScript exporter is deprecated; neither matters here.
    warnings.filterwarnings("ignore")
    for idx, (case, make, shape, classes) in enumerate(cases()):
        opset = 20 if case == "ops" else 17
        torch.manual_seed(1000 + idx)
        model = make()
        for m in model.modules():
            # Non-trivial affine parameters so their gradients are exercised.
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.5, 0.5)
        model.train()
        x = torch.randn(*shape)
        labels = torch.randint(0, classes, (shape[0],))
        out_dir = os.path.join(ROOT, case)
        os.makedirs(out_dir, exist_ok=True)

        export(copy.deepcopy(model), x, os.path.join(out_dir, "model.onnx"), opset)
        # The same weights at batch 64, for benches/train_step.rs (no gradients).
        bench = EncoderLayer(64, 6) if case == "transformer" else copy.deepcopy(model)
        bench.load_state_dict(model.state_dict())
        export(bench, torch.randn(64, *shape[1:]), os.path.join(out_dir, "bench.onnx"), opset)

        ref = copy.deepcopy(model).double()
        logits = ref(x.double())
        loss = F.cross_entropy(logits, labels)
        loss.backward()

        import onnx

        onnx_model = onnx.load(os.path.join(out_dir, "model.onnx"))
        init_names = {t.name for t in onnx_model.graph.initializer}
        grads = []
        for name, p in ref.named_parameters():
            if name not in init_names:
                sys.exit(f"{case}: parameter {name} is not an initializer of the exported model")
            grads.append(write(out_dir, "grad_" + name, p.grad.numpy(), np.float32))
        index = {
            "why": __doc__.strip().splitlines()[0],
            "inputs": [write(out_dir, "input", x.numpy(), np.float32)],
            "labels": write(out_dir, "labels", labels.numpy(), np.int64),
            "loss": float(loss.item()),
            "grads": grads,
        }
        for g in grads:
            g["param"] = g["name"][len("grad_"):]
        with open(os.path.join(out_dir, "case.json"), "w") as f:
            json.dump(index, f, indent=1)
        print(f"{case}: loss {loss.item():.6f}, {len(grads)} gradients")


if __name__ == "__main__":
    main()
