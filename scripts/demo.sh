#!/usr/bin/env bash
# The README's demo: builds the project and trains a small CNN, made of the engine's own ops, on a
# generated task, printing the loss as it falls and the held-out accuracy. Runs on the GPU when one is
# present, else on the CPU (a one-line notice says so). Extra arguments go to the demo (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

BUILD_DIR="${BUILD_DIR:-build}"
engine_ensure_build_deps
engine_build "$BUILD_DIR"
"$BUILD_DIR/demo_tiny_cnn" "$@"
