#!/usr/bin/env bash
# Verifies every committed model by inference on a CUDA machine.
#
# Why: CI has no GPU, so the claim "a rewired model runs the same on ONNX
# Runtime CUDA" is only checked here. Each model is rewired, then the original
# and the rewired model run through tract, ONNX Runtime CPU and ONNX Runtime
# CUDA; ort-cuda is required, so a silent CPU fallback or a missing provider
# fails the run instead of passing it.
#
# Usage: scripts/gpu_verify.sh [MODEL.onnx ...]   (default: models/torch/*.onnx)
# Env:   VENV (default target/gpu-venv), ORT_VERSION (default 1.31.1), SEED (default 1)
#        ORT_DYLIB_PATH: an onnxruntime-gpu library already on disk (inside a
#          site-packages/onnxruntime/capi/ folder whose site-packages also holds
#          the nvidia-* CUDA wheels); then nothing is installed, for machines
#          that cannot reach PyPI.
#        PA_ONNX_BIN, IT_BIN: prebuilt `pa-onnx` and integration-test binaries
#          (built with --features cuda), for machines without cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-target/gpu-venv}
ORT_VERSION=${ORT_VERSION:-1.31.1}
SEED=${SEED:-1}
WORK=target/gpu-verify
mkdir -p "$WORK"

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
else
    echo "warning: nvidia-smi not found; ort-cuda will most likely be unavailable" >&2
fi

# onnxruntime-gpu and its CUDA/cuDNN wheels, in a venv of their own (it
# cannot share one with the CPU-only onnxruntime package).
has_cuda_ep() {
    "$VENV/bin/python" -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null
}
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    if ! has_cuda_ep; then
        echo "installing onnxruntime-gpu==$ORT_VERSION into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --upgrade pip
        "$VENV/bin/pip" install --quiet "onnxruntime-gpu[cuda,cudnn]==$ORT_VERSION"
        has_cuda_ep || { echo "error: onnxruntime-gpu in $VENV has no CUDA execution provider" >&2; exit 2; }
    fi
    ORT_DYLIB_PATH=$(ls "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
fi
export ORT_DYLIB_PATH
echo "ONNX Runtime: $ORT_DYLIB_PATH"

if [ -n "${PA_ONNX_BIN:-}" ]; then
    BIN=$PA_ONNX_BIN
else
    cargo build --features cuda --bin pa-onnx
    BIN=target/debug/pa-onnx
fi
"$BIN" doctor

if [ "$#" -gt 0 ]; then models=("$@"); else models=(models/torch/*.onnx); fi
passed=() failed=()
for model in "${models[@]}"; do
    name=$(basename "$model" .onnx)
    rewired="$WORK/$name.rewired.onnx"
    log="$WORK/$name.log"
    echo "== $name"
    # A model with nothing to rewire (its weights all skipped, with reasons)
    # still has to run on CUDA; only the change check is waived.
    unchanged=()
    if "$BIN" rewire "$model" "$rewired" --seed "$SEED" >"$log" 2>&1 &&
        { ! grep -q "^rewired 0 tensors" "$log" || unchanged=(--allow-unchanged); } &&
        "$BIN" verify "$model" "$rewired" --backends tract,ort-cpu,ort-cuda --require ort-cuda \
            "${unchanged[@]}" >>"$log" 2>&1; then
        passed+=("$name")
    else
        failed+=("$name")
    fi
    cat "$log"
done

# The CUDA cases of the integration tests (gradients against PyTorch, the
# training loops, the device trainer, backend agreement): a SKIPPED line
# about CUDA fails the run here, since the GPU is the point.
it() {
    if [ -n "${IT_BIN:-}" ]; then "$IT_BIN" "$@"; else cargo test --features cuda --test it -- "$@"; fi
}
for filter in ort_cuda_grads device_trainer decreases_the_loss dropout_trains \
    committed_models_agree cuda_is_never; do
    echo "== tests: $filter"
    log="$WORK/test_$filter.log"
    if it "$filter" --nocapture >"$log" 2>&1 && grep -qE "test result: ok\. [1-9]" "$log" &&
        ! grep -qiE "SKIPPED.*cuda|^ort-cuda +skipped" "$log"; then
        passed+=("tests:$filter")
    else
        failed+=("tests:$filter")
    fi
    cat "$log"
done

echo
echo "summary: ${#passed[@]} passed, ${#failed[@]} failed (logs in $WORK/)"
for name in "${failed[@]}"; do echo "  FAILED $name"; done
[ "${#failed[@]}" -eq 0 ]
