#!/usr/bin/env bash
# The README's demo, the project's main job at a size a 2-core CPU finishes in minutes: builds, then runs
# the study's comparison (DenseNet-201 against Inception-ResNet-v2) on the embedded synthetic MURA
# (generated once into ~/.cache/mura-engine/), prints the results table and where the report is. Runs on
# the GPU when one is present, else on the CPU (a one-line notice says so).
#
#   scripts/demo.sh [compare flags...]     e.g. --out DIR (default runs/demo-comparison), --sizes 100,0
# A finished demo folder is reused (its runs are only evaluated again); delete it to train afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

BUILD_DIR="${BUILD_DIR:-build}"
engine_ensure_build_deps
engine_build "$BUILD_DIR"
out="runs/demo-comparison"
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--out" ]; then j=$((i + 1)); out="${!j}"; fi
done
start=$(date +%s)
"$BUILD_DIR/compare" --quick --out "$out" "$@"
echo
echo "demo finished in $(( $(date +%s) - start )) s. The report: $out/results.md and $out/results.html"
echo "(each run's curves, checkpoints and test report: $out/runs/seed/<net>-n<images>/)"
