#!/usr/bin/env bash
# The README's test command: installs what it needs (idempotently), configures, builds, exports the
# golden data of the parity tests from torchvision, timm and Keras (scripts/golden.sh: a Python venv in
# .venv; skipped when up to date), and runs every test with ctest. Without a GPU the gpu-labelled tests
# skip with a reason; extra arguments go to ctest (e.g. scripts/test.sh -L cpu, or -R Conv).
# ENGINE_SKIP_GOLDEN=1 skips the export (the parity tests then skip, saying why).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

BUILD_DIR="${BUILD_DIR:-build}"
engine_ensure_build_deps
engine_build "$BUILD_DIR"
if [ "${ENGINE_SKIP_GOLDEN:-0}" != "1" ]; then
  scripts/golden.sh "$BUILD_DIR/golden"
  export ENGINE_GOLDEN_DIR="$(cd "$BUILD_DIR/golden" && pwd)"
  # The venv's python (it has tensorboard): the TensorBoard event files are read back by TensorBoard itself.
  source scripts/lib/python_env.sh
  engine_python_env
  export ENGINE_PYTHON
fi
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" "$@"
