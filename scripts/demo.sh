#!/usr/bin/env bash
# The README's demo: builds, then runs the study's comparison (DenseNet-201 against Inception-ResNet-v2) at
# the size the machine allows, and prints the results table and where the report is.
#
#   GPU (nvidia-smi lists a GPU and the build has the CUDA backend): the study's own protocol, 10 epochs at
#       224x224 on subsets of 100, 3,000 and 10,000 images, on a synthetic MURA of MURA-v1.1's size
#       (11,184 train and 783 valid patients: about 35,000 images, 3.5 GB; mura_synth writes it once into
#       ${XDG_CACHE_HOME:-~/.cache}/mura-engine/), into runs/demo-study-gpu.
#   CPU: `compare --quick` on the small embedded synthetic MURA (3 epochs at 96x96, 100 images and the
#       whole small set), within about five minutes on 2 cores, into runs/demo-comparison.
# Either way the report's section "What these numbers can show" says what they can and cannot show
# (synthetic images and a random initialisation: timings and the pipeline yes, the study's accuracies no).
#
#   scripts/demo.sh [--mode auto|gpu|cpu] [compare flags...]   e.g. --out DIR, --no-cam (build/compare --help)
#   scripts/demo.sh --print-plan [--mode auto|gpu|cpu] [...]   prints the shell lines it would run; builds
#                                                              and runs nothing (tests/cpu/test_experiment_demo_plan.cpp)
# A finished demo folder is reused (its runs are only evaluated again); delete it to train afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR="${BUILD_DIR:-build}"
mode=auto
print_plan=0
compare_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --print-plan) print_plan=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    --mode) mode="${2:-}"; shift ;;
    --mode=*) mode="${1#--mode=}" ;;
    *) compare_args+=("$1") ;;
  esac
  shift
done
case "$mode" in
  auto|gpu|cpu) ;;
  *) echo "demo.sh: --mode must be auto, gpu or cpu, not '$mode'" >&2; exit 2 ;;
esac

# gpu when nvidia-smi lists a GPU and the build has the CUDA backend (its compile flags define
# ENGINE_WITH_CUDA; before the first build: when the CUDA compiler that CMake would find is there).
detect_mode() {
  if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then echo cpu; return; fi
  if [ -f "$BUILD_DIR/build.ninja" ]; then
    if grep -q -- '-DENGINE_WITH_CUDA=1' "$BUILD_DIR/build.ninja"; then echo gpu; else echo cpu; fi
  elif [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null; then
    echo gpu
  else
    echo cpu
  fi
}

# The plan: shell lines, run in order with eval, and printed as they are by --print-plan. Words are
# quoted only where the shell needs it.
plan=()
quote() {
  local word q=""
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then q+=" $word"; else q+=" $(printf '%q' "$word")"; fi
  done
  echo "${q# }"
}
step() { plan+=("$(quote "$@")"); }
# Once: the command runs only while MARKER is absent, and creates it when the command succeeds.
once() { local marker; marker="$(quote "$1")"; shift; plan+=("[ -f $marker ] || { $(quote "$@") && touch $marker; }"); }

# The plan of a mode (gpu | cpu). Also sets demo_out, the comparison's folder.
make_plan() {
  demo_out=""
  for ((i = 0; i < ${#compare_args[@]}; i++)); do
    case "${compare_args[$i]}" in
      --out) demo_out="${compare_args[$((i + 1))]:-}" ;;
      --out=*) demo_out="${compare_args[$i]#--out=}" ;;
    esac
  done
  if [ "$1" = gpu ]; then
    # MURA-v1.1's counts: 11,184 train and 783 valid patients. Fractures twice the generator's subtle
    # default, with swelling: the apps' synthetic set (v2), at full size.
    local cache="${XDG_CACHE_HOME:-$HOME/.cache}/mura-engine/synthetic-v2-mura-size"
    once "$cache/COMPLETE" "$BUILD_DIR/mura_synth" --out "$cache" --train-patients 11184 --valid-patients 783 \
      --fracture-scale 2 --swelling 3 --threads "$(nproc)"
    [ -n "$demo_out" ] || { demo_out=runs/demo-study-gpu; compare_args=(--out "$demo_out" "${compare_args[@]}"); }
    step "$BUILD_DIR/compare" --data "$cache/MURA-v1.1" --sizes 100,3000,10000 --epochs 10 --input-size 224 \
      --device cuda "${compare_args[@]}"
  else
    [ -n "$demo_out" ] || { demo_out=runs/demo-comparison; compare_args=(--out "$demo_out" "${compare_args[@]}"); }
    step "$BUILD_DIR/compare" --quick "${compare_args[@]}"
  fi
}

if [ "$print_plan" = 1 ]; then
  [ "$mode" = auto ] && mode="$(detect_mode)"
  make_plan "$mode"
  echo "# scripts/demo.sh plan: $mode"
  printf '%s\n' "${plan[@]}"
  exit 0
fi

source scripts/lib/deps.sh
engine_ensure_build_deps
engine_build "$BUILD_DIR"
[ "$mode" = auto ] && mode="$(detect_mode)"
if [ "$mode" = gpu ]; then
  echo "demo: a GPU and a CUDA build: the study's protocol (10 epochs, 224x224, 100 / 3,000 / 10,000 images) on a"
  echo "      synthetic MURA of MURA's size (the first time, mura_synth writes it: about 35,000 images)"
else
  echo "demo: the CPU: the quick comparison (3 epochs, 96x96, about 200 images), a few minutes"
fi
make_plan "$mode"
start=$(date +%s)
for line in "${plan[@]}"; do
  echo "+ $line"
  if ! eval "$line"; then echo "demo: failed: $line" >&2; exit 1; fi
done
echo
echo "demo finished in $(( $(date +%s) - start )) s. The report: $demo_out/results.md and $demo_out/results.html"
echo "(each run's curves, checkpoints and test report: $demo_out/runs/seed/<net>-n<images>/)"
