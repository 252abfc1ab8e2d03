"""Export two untrained models whose final outputs are blind to their weights.

`pa-onnx verify` must prove that a rewiring took effect. Comparing the
final outputs of the original and the rewired model is not enough: at
initialisation many networks give the same output whatever their hidden
weights are. These two fixtures exist to pin that case down; verify must
pass on their rewirings by looking at the outputs of the rewired layers
(its probes), and say that the final outputs are blind.

- vit_zero_head: torchvision's VisionTransformer, shrunk to two layers on
  32x32 images. Its classification head is zero-initialised (torchvision
  does this for every ViT), so the output is the head's bias, zero, for any
  weights before it.
- deep_cnn_vanishing: twenty-four narrow 3x3 convolutions without bias, with ReLU and
  PyTorch's default initialisation, whose gain is below one: the signal's
  standard deviation shrinks by about 2.5 per layer, so the classifier sees
  activations near 1e-10, and the rewiring's change to the output is far
  below any tolerance (efficientnet_b0 does the same at full size).

Both are exported with the TorchScript exporter (dynamo=False), opset 17,
batch size 1, fixed seeds, one input `input` and one output `output`.

Usage (from the repository root, with torch and torchvision installed):
    python models/export_blind.py
"""

import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torchvision

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "blind")


class DeepCnn(nn.Module):
    def __init__(self, depth=24, width=8, classes=10):
        super().__init__()
        layers = [nn.Conv2d(3, width, 3, padding=1, bias=False), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def vit():
    return torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=10,
    )


def export(name, make, seed):
    torch.manual_seed(seed)
    model = make().eval()
    x = torch.randn(1, 3, 32, 32)
    path = os.path.join(OUT, name + ".onnx")
    torch.onnx.export(
        model,
        (x,),
        path,
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
        do_constant_folding=True,
    )
    onnx.checker.check_model(onnx.load(path), full_check=True)
    with torch.no_grad():
        want = model(x).numpy()
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()}
    )[0]
    if not np.allclose(got, want, atol=1e-5, rtol=1e-4):
        sys.exit(f"{name}: onnxruntime and PyTorch disagree")
    print(f"{name}: {os.path.getsize(path)} bytes, output std {want.std():.3e}")


def main():
    os.makedirs(OUT, exist_ok=True)
    export("vit_zero_head", vit, 0)
    export("deep_cnn_vanishing", DeepCnn, 0)


if __name__ == "__main__":
    main()
