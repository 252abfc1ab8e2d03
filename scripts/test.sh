#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what the tests need (a
# project-local Python environment with pinned onnx and onnxruntime wheels:
# the ONNX Runtime backend loads its shared library from there, and the
# exporter tests run onnx.checker through it), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if ! "$venv/bin/python" -c 'import onnx, onnxruntime, numpy' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        onnx==1.23.2 onnxruntime==1.31.1 numpy==2.4.6
fi
"$venv/bin/python" -c 'import onnxruntime; print("onnxruntime", onnxruntime.__version__)'
# GNU parallel, for the test that runs docs/recipes/parallel.sh (the test
# says SKIPPED where it cannot be installed).
if ! command -v parallel >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq parallel) >/dev/null 2>&1 \
        || echo "could not install GNU parallel; its recipe test will be skipped"
fi

cargo fmt --check
# Module dependencies point one way (DESIGN.md, "Module map").
python3 scripts/module_deps.py | tail -n 1
cargo test
# The CUDA execution provider cannot run here (no GPU), but it must build.
cargo build --features cuda --bin pa-onnx
cargo clippy --all-targets -- -D warnings
