#!/usr/bin/env bash
# A fingerprint of the tool's observable behaviour on every committed model,
# for refactorings that must not change it: compare the output of two builds.
#
#   bash scripts/snapshot.sh target/release/pa-onnx > before.txt
#   (change the code, rebuild)
#   bash scripts/snapshot.sh target/release/pa-onnx > after.txt
#   diff before.txt after.txt
#
# For each model: the SHA-256 of `rewire`'s output (with its external data)
# at 1 and 2 threads and with PA_ONNX_PORTABLE=1, of `inspect --json`, of
# the `--report` less its timings, and of `train-graph`'s output with
# cross-entropy and MSE losses (or its error message).
set -euo pipefail
bin=$(realpath "${1:?usage: snapshot.sh PA_ONNX_BINARY}")
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

hash_dir() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }

for m in $(find models tests/fixtures -name '*.onnx' | sort); do
    for mode in t1 t2 portable; do
        rm -rf "$work/out" && mkdir "$work/out"
        case $mode in
            t1) env=(RAYON_NUM_THREADS=1) ;;
            t2) env=(RAYON_NUM_THREADS=2) ;;
            portable) env=(RAYON_NUM_THREADS=2 PA_ONNX_PORTABLE=1) ;;
        esac
        if env "${env[@]}" "$bin" --quiet rewire "$m" "$work/out/m.onnx" --report "$work/report.json" 2>"$work/err"; then
            echo "$m rewire $mode $(hash_dir "$work/out")"
        else
            echo "$m rewire $mode error: $(head -c 300 "$work/err" | tr '\n' ' ')"
        fi
    done
    python3 - "$work/report.json" <<'PY'
import json, sys, hashlib
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    print("  report: none"); sys.exit()
def scrub(x):
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if not any(w in k for w in ("time", "seconds", "elapsed", "_ms", "path", "version"))}
    if isinstance(x, list):
        return [scrub(v) for v in x]
    return x
print("  report", hashlib.sha256(json.dumps(scrub(r), sort_keys=True).encode()).hexdigest()[:16])
PY
    rm -f "$work/report.json"
    echo "  inspect $("$bin" inspect "$m" --json 2>&1 | sha256sum | cut -c1-16)"
    for loss in ce mse; do
        if "$bin" --quiet train-graph "$m" "$work/train.onnx" --loss $loss --batch-size 2 2>"$work/err"; then
            echo "  train-graph $loss $(sha256sum < "$work/train.onnx" | cut -c1-16)"
        else
            echo "  train-graph $loss error: $(head -c 300 "$work/err" | tr '\n' ' ')"
        fi
        rm -f "$work/train.onnx"
    done
done
