#!/usr/bin/env bash
# The README's test command: installs what it needs (idempotently), configures, builds and runs every
# test with ctest. Without a GPU the gpu-labelled tests skip with a reason; extra arguments go to ctest
# (e.g. scripts/test.sh -L cpu, or -R Conv).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

BUILD_DIR="${BUILD_DIR:-build}"
engine_ensure_build_deps
engine_build "$BUILD_DIR"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" "$@"
