#!/usr/bin/env bash
# The CPU comparison of issue 4, in one run on one machine: our DenseNet-201 and Inception-ResNet-v2
# (bench_nets_cpu) next to PyTorch's (Debian's python3-torch/torchvision, timm from the project's venv),
# same threads and batch, seconds per image forward and forward+backward, the ratio, and the fraction of
# the CPU's peak our runs reach.
#   scripts/bench_cpu.sh [--threads N] [--batch N] [--reps N] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
source scripts/lib/python_env.sh

args=("$@")
BUILD_DIR="${BUILD_DIR:-build}"
engine_ensure_build_deps
engine_build "$BUILD_DIR" >/dev/null
engine_python_env >/dev/null
PYTHON="${ENGINE_VENV:-.venv}/bin/python"

ours=$(mktemp) theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
"$BUILD_DIR/bench_nets_cpu" "${args[@]}" | tee "$ours"
echo
"$PYTHON" scripts/bench_torch_cpu.py "${args[@]}" | tee "$theirs"
echo
# Ours: "<net> <input> <GMAC> | <fwd> <GFLOP/s> <peak%> | <fwd+bwd> <GFLOP/s> <peak%>"; theirs:
# "torch <net> <input> <fwd> <fwd+bwd>".
awk '
  FNR == NR && $4 == "|" && $8 == "|" { key = $1 " " $2; fwd[key] = $5; fb[key] = $9; pf[key] = $7; pfb[key] = $11; next }
  FNR != NR && $1 == "torch" { key = $2 " " $3; tfwd[key] = $4; tfb[key] = $5; order[++n] = key }
  END {
    printf "%-26s | %10s %10s %7s %6s | %10s %10s %7s %6s\n", "net @ input (s/image)", "ours fwd", "torch fwd",
           "ratio", "peak", "ours f+b", "torch f+b", "ratio", "peak"
    for (i = 1; i <= n; ++i) {
      k = order[i]
      if (!(k in fwd)) continue
      printf "%-26s | %10.3f %10.3f %6.2fx %6s | %10.3f %10.3f %6.2fx %6s\n", k, fwd[k], tfwd[k], tfwd[k] / fwd[k],
             pf[k], fb[k], tfb[k], tfb[k] / fb[k], pfb[k]
    }
    print "ratio = PyTorch time / our time (above 1: we are faster)"
  }' "$ours" "$theirs"
