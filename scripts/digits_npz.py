"""Writes scikit-learn's bundled handwritten digits (1797 8x8 images, 10
classes; shipped inside the scikit-learn package, no download) as an .npz
file that `pa-onnx compare` reads: `x` float32 [N, 1, 8, 8] scaled to
[0, 1], `y` int64 [N]. The README's compare example uses it.

    pip install scikit-learn numpy
    python scripts/digits_npz.py digits.npz
"""

import sys

import numpy as np
from sklearn.datasets import load_digits

out = sys.argv[1] if len(sys.argv) > 1 else "digits.npz"
d = load_digits()
x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
y = d.target.astype(np.int64)
np.savez(out, x=x, y=y)
print(f"wrote {out}: x {x.shape} {x.dtype}, y {y.shape} {y.dtype}, {len(set(y.tolist()))} classes")
