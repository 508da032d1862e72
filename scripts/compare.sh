#!/usr/bin/env bash
# The study's comparison: DenseNet-201 and Inception-ResNet-v2 at 100, 3,000 and 10,000 images and the
# whole set, with results.md and results.html in the output folder.
#
#   scripts/compare.sh [--quick] [compare flags...]       (see build/compare --help)
# Examples:
#   scripts/compare.sh --quick --out /tmp/cmp                                   # synthetic, a few minutes on CPU
#   scripts/compare.sh --data /data/MURA-v1.1 --weights-densenet weights/densenet201_keras_notop.safetensors \
#                      --weights-irv2 weights/inception_resnet_v2_keras_notop.safetensors --out results/
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
engine_ensure_build_deps
build_dir="${BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target compare
exec "$build_dir/compare" "$@"
