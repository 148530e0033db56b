#!/usr/bin/env bash
# Build policy.engine from a drive-drail export on the target GPU with trtexec (TensorRT 10 or 11).
#
# Usage: build_engine.sh [EXPORT_DIR]      (default: the folder holding this script)
# Env:   TRTEXEC=/path/to/trtexec          (default: trtexec on PATH)
#
# Reads EXPORT_DIR/build_engine.env (PRECISION, OBS_DIM, BATCH_MIN/OPT/MAX, ONNX_SHA256),
# refuses a policy.onnx whose sha256 differs, then writes policy.engine (via a temp file),
# policy.engine.sha256 and timing.cache into EXPORT_DIR.
set -euo pipefail

dir="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
trtexec="${TRTEXEC:-trtexec}"
env_file="$dir/build_engine.env"
[[ -f "$env_file" ]] || { echo "$env_file: missing (run drive-drail export first)" >&2; exit 1; }
# shellcheck source=/dev/null
source "$env_file"

actual="$(sha256sum "$dir/policy.onnx" | cut -d' ' -f1)"
if [[ "$actual" != "$ONNX_SHA256" ]]; then
    echo "$dir/policy.onnx: sha256 $actual does not match ONNX_SHA256 in $env_file (file changed after export)" >&2
    exit 1
fi

flags=(
    --onnx="$dir/policy.onnx"
    --saveEngine="$dir/policy.engine.tmp"
    --minShapes="obs:${BATCH_MIN}x${OBS_DIM}"
    --optShapes="obs:${BATCH_OPT}x${OBS_DIM}"
    --maxShapes="obs:${BATCH_MAX}x${OBS_DIM}"
    --stronglyTyped                      # precision comes from the ONNX graph (always on in TensorRT 11)
    --timingCacheFile="$dir/timing.cache"
    --skipInference
)
if [[ "$PRECISION" == "fp32" ]]; then
    flags+=(--noTF32)                    # real fp32 matmuls for 1e-5 parity
fi

trap 'rm -f "$dir/policy.engine.tmp"' EXIT
"$trtexec" "${flags[@]}"
mv "$dir/policy.engine.tmp" "$dir/policy.engine"
sha256sum "$dir/policy.engine" | cut -d' ' -f1 > "$dir/policy.engine.sha256"
echo "built $dir/policy.engine ($PRECISION, batch ${BATCH_MIN}:${BATCH_OPT}:${BATCH_MAX}); sha256 in policy.engine.sha256"
