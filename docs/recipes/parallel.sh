#!/bin/bash
# GNU parallel: four shards at once on this machine (or, with
# `--sshloginfile hosts`, on other machines sharing the folder), then the
# merge.
set -euo pipefail
: "${PA_ONNX:=pa-onnx}"
: "${OUT:=runs/parallel}"
parallel --halt now,fail=1 "$PA_ONNX" compare models/compare/small_cnn.onnx --data synthetic \
    --seeds 8 --epochs 2 --threads 1 --quiet --shard {}/4 --out "$OUT/shard-{}" ::: 0 1 2 3
"$PA_ONNX" compare merge "$OUT"/shard-* --out "$OUT/merged"
