#!/usr/bin/env bash
# The GPU comparison of issue #15 in one command, for the GPU machine:
#
#   bash benchmarks/gpu_check.sh [extra gpu_peers options]
#
# Runs `python -m benchmarks.gpu_peers` (sizes large and xlarge on a GPU; its own time
# budget ends it within about 7.5 minutes, and `timeout` kills it at 8) and writes
#   $OUT/gpu_peers.md    the markdown table (stdout)
#   $OUT/gpu_peers.log   progress, skipped rows and errors (stderr)
#   $OUT/gpu_peers.json  every figure (rewritten after each cell: kept if killed)
# with OUT defaulting to benchmarks/results (git-ignored). PYTHON picks the interpreter.
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-benchmarks/results}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-$(command -v python || command -v python3)}"
{
  date -u
  nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
  "$PY" -c "import sys, jax; print(sys.version.split()[0], 'jax', jax.__version__, jax.devices())"
} >"$OUT_DIR/gpu_peers.log" 2>&1
timeout -k 10 480 "$PY" -m benchmarks.gpu_peers --json "$OUT_DIR/gpu_peers.json" "$@" \
  >"$OUT_DIR/gpu_peers.md" 2>>"$OUT_DIR/gpu_peers.log"
rc=$?
[ "$rc" = 124 ] && echo "gpu_check: killed after 480 s (see the partial json)" >>"$OUT_DIR/gpu_peers.log"
cat "$OUT_DIR/gpu_peers.md"
tail -n 30 "$OUT_DIR/gpu_peers.log" >&2
exit "$rc"
