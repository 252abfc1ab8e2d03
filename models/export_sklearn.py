"""Export small scikit-learn MLPs to ONNX with skl2onnx, as fixtures for
pa-onnx (see models/README.md, section scikit-learn).

The networks are fitted for one iteration (max_iter=1) on a tiny random data
set with fixed seeds, so they have weights that are nearly their random
initialisation. skl2onnx writes each layer as MatMul(X, coef) with coef
stored [K, N] (scikit-learn's coefs_ layout): M = coef transposed.

Usage (from the repository root, with the venv of models/README.md):
    /work/venvs/sklearn/bin/python models/export_sklearn.py
"""

import os
import sys
import warnings

import numpy as np

import importlib.util  # noqa: E402

# Python puts the script's folder, models/, first on sys.path; its folders
# models/jax, models/keras, models/paddle, models/sklearn would then be
# importable as namespace packages and stand in for a framework that is not
# installed in this venv (keras probes `import jax`). Drop it, and load the
# helper by path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
_spec = importlib.util.spec_from_file_location(
    "manifest_util", os.path.join(os.path.dirname(os.path.abspath(__file__)), "manifest_util.py")
)
mu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mu)

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402

OPSET = 17
FAMILY = "sklearn"


def data(n_out, classify):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    if classify:
        y = rng.integers(0, n_out, 40)
    else:
        y = rng.standard_normal((40, n_out)).astype(np.float32)
    return x, y


def models():
    x, y = data(3, True)
    clf = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=1, random_state=0)
    clf.fit(x, y)
    # zipmap=False: probabilities as a plain tensor (output 1).
    yield "mlp_classifier", clf, x, {"zipmap": False}, 1, clf.predict_proba(x)

    # One target: skl2onnx 1.20 reshapes a multi-target regressor's output
    # to [-1, 1]. The last layer is then a [8, 1] coef, M = [1, 8], which
    # has a single row and so is left unchanged by the rewiring.
    x, y = data(1, False)
    reg = MLPRegressor(hidden_layer_sizes=(12, 8), activation="tanh", max_iter=1, random_state=0)
    reg.fit(x, y.ravel())
    yield "mlp_regressor", reg, x, None, 0, reg.predict(x)


def main():
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    out_dir = os.path.join(mu.HERE, FAMILY)
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    for name, est, x, options, out_idx, want in models():
        path = os.path.join(out_dir, f"{name}.onnx")
        onx = to_onnx(
            est,
            initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
            options=options,
            target_opset={"": OPSET, "ai.onnx.ml": 3},
        )
        with open(path, "wb") as f:
            f.write(onx.SerializeToString())
        want = np.asarray(want, dtype=np.float32).reshape(len(x), -1)
        proto = mu.check_onnx(path, {"input": x}, want, output=out_idx)
        weights, not_weights = mu.classify(proto)
        # scikit-learn's coefs_[i] is [K, N]; M (rows = outputs) is its transpose.
        refs = {f"coefs_[{i}]": c.T.astype(np.float32) for i, c in enumerate(est.coefs_)}
        mu.check_values(name, proto, weights, refs)
        entries.append(mu.manifest_entry(f"{FAMILY}/{name}.onnx", weights, not_weights))
        mu.report_model(path, proto, weights)
    mu.write_manifest(os.path.join(mu.HERE, f"manifest_{FAMILY}.json"), entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
