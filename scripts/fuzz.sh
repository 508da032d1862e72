#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/: the image decoder, the CSV/MURA-path/split-list parsers, the
# split-list reader with the path rule, the engine's safetensors reader, the renderer) with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer in a build of their own, and runs each for SECONDS
# (default 60), or for RUNS inputs when FUZZ_RUNS=RUNS is set (SECONDS is then ignored). Corpora grow in
# $BUILD_DIR/corpus/<target> (seeded from fuzz/corpus/), crashes land in $BUILD_DIR/artifacts/. Exits
# non-zero when a target finds a crash.
#   scripts/fuzz.sh [SECONDS] [TARGET...]       e.g. scripts/fuzz.sh 120 fuzz_decode_image
#   FUZZ_RUNS=1000000 scripts/fuzz.sh 0 fuzz_splits fuzz_safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(fuzz_decode_image fuzz_csv fuzz_render fuzz_splits fuzz_safetensors fuzz_checkpoint_metadata)
BUILD_DIR="${BUILD_DIR:-build-fuzz}"

# clang with its runtime (libFuzzer, sanitizers) and OpenMP, on top of the usual build packages.
engine_install_packages "${ENGINE_DEBIAN_PACKAGES[@]}" clang libclang-rt-dev libomp-dev
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DENGINE_FUZZ=ON -DENGINE_CUDA=OFF \
  -DCMAKE_CXX_COMPILER=clang++ -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${TARGETS[@]}"

corpus_of() {  # the seed corpus in the repository for a target
  case "$1" in
    fuzz_decode_image) echo fuzz/corpus/decode ;;
    fuzz_csv) echo fuzz/corpus/csv ;;
    fuzz_splits) echo fuzz/corpus/splits ;;
    fuzz_safetensors) echo fuzz/corpus/safetensors ;;
    fuzz_checkpoint_metadata) echo fuzz/corpus/checkpoint_metadata ;;
    *) echo "" ;;
  esac
}

status=0
mkdir -p "$BUILD_DIR/artifacts"
for target in "${TARGETS[@]}"; do
  corpus="$BUILD_DIR/corpus/$target"
  mkdir -p "$corpus"
  seeds="$(corpus_of "$target")"
  [ -n "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
  limit=(-max_total_time="$SECONDS_PER_TARGET")
  label="${SECONDS_PER_TARGET} s"
  if [ -n "${FUZZ_RUNS:-}" ]; then
    limit=(-runs="$FUZZ_RUNS")
    label="$FUZZ_RUNS runs"
  fi
  echo "== $target: $label"
  [ -x "$BUILD_DIR/$target" ] || { echo "error: $BUILD_DIR/$target was not built" >&2; exit 2; }
  if ! "$BUILD_DIR/$target" "$corpus" "${limit[@]}" -rss_limit_mb=2048 -timeout=10 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$BUILD_DIR/artifacts/$target-" 2>"$BUILD_DIR/$target.log"; then
    echo "   CRASH: see $BUILD_DIR/$target.log and $BUILD_DIR/artifacts/"
    tail -n 40 "$BUILD_DIR/$target.log"
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$BUILD_DIR/$target.log" | sed 's/^/   /' || true
  grep -E "^#[0-9]+ +DONE" "$BUILD_DIR/$target.log" | tail -n 1 | sed 's/^/   /' || true
done
exit $status
