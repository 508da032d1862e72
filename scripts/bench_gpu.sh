#!/usr/bin/env bash
# Ours against PyTorch on the same GPU, in one job: builds apps/bench, runs it, runs scripts/bench_torch.py
# (PyTorch, torchvision and timm as installed) with the same nets, sizes, batches and protocol, and prints
# ONE table: our images/s, PyTorch's eager f32, eager bf16 channels-last and torch.compile figures, the
# ratios, peak memory ours / PyTorch's, and the issue's targets met or missed (docs/benchmarks.md).
#
#   scripts/bench_gpu.sh [--quick | --smoke] [--out FILE.md] [--skip-build] [--skip-torch]
#
# Profiles:
#   (default)  the issue's: densenet201@224, inception_resnet_v2@299 and @224; batch 32, 128 and max;
#              f32 and bf16; training and inference; 5 warm-up and 20 timed iterations; PyTorch eager f32,
#              eager bf16 channels-last, torch.compile f32 and bf16
#   --quick    the same nets at batch 32 and 128, 3 warm-up and 10 timed, torch.compile bf16 at batch 128
#              only (each net, mode and batch compiles for a minute or two; what scripts/gpu_check.sh runs)
#   --smoke    both sides on the CPU at tiny sizes (densenet121@32, inception_resnet_v2@75, batch 2, one
#              warm-up, two timed): proves the harness and the table, says nothing about speed
# Environment (overrides the profile): BENCH_CASES (arch@size,...), BENCH_BATCHES, BENCH_PRECISIONS,
#   BENCH_MODE (train|infer|both), BENCH_WARMUP, BENCH_ITERS, BENCH_TORCH_VARIANTS,
#   BENCH_TORCH_COMPILE_BATCHES (the batches torch.compile runs at; empty: all), BENCH_DEVICE,
#   BENCH_THREADS, BENCH_OURS_ARGS (more flags for our bench, e.g. --memory-efficient: DenseNet's
#   recomputing mode, which the memory target needs), BENCH_TIMEOUT_S (per side, default 1800: a side cut short keeps the rows it finished),
#   BUILD_DIR (default build; configured here when it has no CMakeCache.txt, with CUDNN_ROOT if set),
#   PYTHON (default: the first of python3, .venv/bin/python, /usr/bin/python3 that imports torch and
#   torchvision, preferring one with a CUDA device and timm).
# Output: the table on stdout and in --out FILE.md (else $OUT: a .md file, or a folder that receives
# bench_vs_torch.md; default $BUILD_DIR/bench_gpu/bench_vs_torch.md); beside it .ours.json, .torch.json and
# the logs. Exit status: 0 when both sides ran every row (a missed target is not a failure); 3 when only
# PyTorch's side had errors or ran out of time (e.g. torch.compile failing on the machine); 1 otherwise
# (our side failed, or no table).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

PROFILE=full
OUT_MD=""
SKIP_BUILD=0
SKIP_TORCH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) PROFILE=quick ;;
    --smoke) PROFILE=smoke ;;
    --out) OUT_MD="${2:?--out needs a file}"; shift ;;
    --out=*) OUT_MD="${1#--out=}" ;;
    --skip-build) SKIP_BUILD=1 ;;
    --skip-torch) SKIP_TORCH=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "bench_gpu.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

case "$PROFILE" in
  full)  cases="densenet201@224,inception_resnet_v2@299,inception_resnet_v2@224"; batches="32,128,max"
         warmup=5; iters=20; variants="eager-f32,eager-bf16-cl,compile-f32,compile-bf16"; compile_batches=""
         device=cuda; threads="" ;;
  quick) cases="densenet201@224,inception_resnet_v2@299,inception_resnet_v2@224"; batches="32,128"
         warmup=3; iters=10; variants="eager-f32,eager-bf16-cl,compile-bf16"; compile_batches="128"
         device=cuda; threads="" ;;
  smoke) cases="densenet121@32,inception_resnet_v2@75"; batches="2"
         warmup=1; iters=2; variants="eager-f32,eager-bf16-cl,compile-bf16"; compile_batches=""
         device=cpu; threads="$(nproc)" ;;
esac
CASES="${BENCH_CASES:-$cases}"
BATCHES="${BENCH_BATCHES:-$batches}"
PRECISIONS="${BENCH_PRECISIONS:-f32,bf16}"
MODE="${BENCH_MODE:-both}"
WARMUP="${BENCH_WARMUP:-$warmup}"
ITERS="${BENCH_ITERS:-$iters}"
VARIANTS="${BENCH_TORCH_VARIANTS:-$variants}"
COMPILE_BATCHES="${BENCH_TORCH_COMPILE_BATCHES-$compile_batches}"
DEVICE="${BENCH_DEVICE:-$device}"
THREADS="${BENCH_THREADS:-$threads}"
TIMEOUT_S="${BENCH_TIMEOUT_S:-1800}"
BUILD_DIR="${BUILD_DIR:-build}"

# Where the table goes: --out, else $OUT (a .md file or a folder).
if [ -z "$OUT_MD" ]; then
  if [ -n "${OUT:-}" ] && [[ "$OUT" == *.md ]]; then OUT_MD="$OUT"
  else OUT_MD="${OUT:-$BUILD_DIR/bench_gpu}/bench_vs_torch.md"; fi
fi
OUT_DIR="$(dirname "$OUT_MD")"
mkdir -p "$OUT_DIR" || exit 1
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
OUT_MD="$OUT_DIR/$(basename "$OUT_MD")"
stem="${OUT_MD%.md}"
OURS_JSON="$stem.ours.json" TORCH_JSON="$stem.torch.json"
OURS_LOG="$stem.ours.log" TORCH_LOG="$stem.torch.log" BUILD_LOG="$stem.build.log"
rm -f "$OURS_JSON" "$TORCH_JSON"  # no stale figures from an earlier run

# --- Python: the one with torch + torchvision, preferring a CUDA device and timm ------------------------
if [ -z "${PYTHON:-}" ]; then
  best_score=-1
  for candidate in python3 .venv/bin/python /usr/bin/python3; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    score="$("$candidate" - 2>/dev/null <<'EOF'
import importlib.util, torch, torchvision
score = 1 + (importlib.util.find_spec("timm") is not None) + 2 * torch.cuda.is_available()
print(score)
EOF
)" || continue
    if [ -n "$score" ] && [ "$score" -gt "$best_score" ]; then best_score="$score"; PYTHON="$candidate"; fi
  done
  if [ -z "${PYTHON:-}" ]; then
    echo "bench_gpu.sh: no Python with torch and torchvision found (set PYTHON)" >&2
    [ "$SKIP_TORCH" -eq 1 ] || exit 1
    PYTHON=python3
  fi
fi

# --- Build ------------------------------------------------------------------------------------------------
if [ "$SKIP_BUILD" -eq 0 ]; then
  : > "$BUILD_LOG"
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CUDNN_ROOT:+"-DCUDNN_ROOT=$CUDNN_ROOT"} \
        >> "$BUILD_LOG" 2>&1 || { echo "bench_gpu.sh: configure failed (see $BUILD_LOG)" >&2; exit 1; }
  fi
  if ! cmake --build "$BUILD_DIR" -j"${JOBS:-$(nproc)}" --target bench >> "$BUILD_LOG" 2>&1; then
    echo "bench_gpu.sh: building bench failed (see $BUILD_LOG):" >&2
    grep -m3 -E 'error' "$BUILD_LOG" >&2
    exit 1
  fi
fi
[ -x "$BUILD_DIR/bench" ] || { echo "bench_gpu.sh: $BUILD_DIR/bench does not exist (build it, or drop --skip-build)" >&2; exit 1; }

# --- Both sides on the same device, one after the other ------------------------------------------------------
echo "== ours: $BUILD_DIR/bench ($PROFILE profile, device $DEVICE)"
timeout "$TIMEOUT_S" "$BUILD_DIR/bench" --cases "$CASES" --batch-sizes "$BATCHES" --precision "$PRECISIONS" \
    --mode "$MODE" --warmup "$WARMUP" --iters "$ITERS" --device "$DEVICE" ${THREADS:+--threads "$THREADS"} \
    ${BENCH_OURS_ARGS:-} --json "$OURS_JSON" 2>&1 | tee "$OURS_LOG"
ours_status=${PIPESTATUS[0]}

torch_status=0
if [ "$SKIP_TORCH" -eq 0 ]; then
  echo
  echo "== PyTorch: $PYTHON scripts/bench_torch.py"
  timeout "$TIMEOUT_S" "$PYTHON" scripts/bench_torch.py --cases "$CASES" --batch-sizes "$BATCHES" \
      --variants "$VARIANTS" --compile-batches "$COMPILE_BATCHES" --mode "$MODE" --warmup "$WARMUP" --iters "$ITERS" --device "$DEVICE" \
      ${THREADS:+--threads "$THREADS"} --json "$TORCH_JSON" 2>&1 | tee "$TORCH_LOG"
  torch_status=${PIPESTATUS[0]}
fi

# --- One table ------------------------------------------------------------------------------------------------
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD 2>/dev/null || commit="$commit (with local changes)"
tmp="$OUT_MD.tmp.$$"
{
  echo "## Ours vs PyTorch ($PROFILE profile)"
  echo
  echo "Commit $commit. Cases $CASES; batches $BATCHES; precisions $PRECISIONS; mode $MODE; $WARMUP warm-up and" \
       "$ITERS timed iterations; PyTorch variants $VARIANTS. Flatten head (the study's) on both sides;" \
       "synthetic data on the device."
  [ "$ours_status" -eq 124 ] && echo "Ours was stopped by the time limit ($TIMEOUT_S s): rows after the last one shown are missing."
  [ "$torch_status" -eq 124 ] && echo "PyTorch was stopped by the time limit ($TIMEOUT_S s): its later rows are missing."
  echo
  "$PYTHON" scripts/bench_torch.py --combine "$OURS_JSON" "$TORCH_JSON"
} > "$tmp"
combine_status=$?
mv "$tmp" "$OUT_MD"
echo
cat "$OUT_MD"
echo
echo "table: $OUT_MD (rows: $OURS_JSON, $TORCH_JSON; logs: $OURS_LOG, $TORCH_LOG)"

if [ "$ours_status" -ne 0 ] || [ "$combine_status" -ne 0 ]; then
  echo "bench_gpu.sh: our side did not finish cleanly (exit $ours_status; 124 = time limit) or the table" \
       "failed (exit $combine_status)" >&2
  exit 1
fi
if [ "$torch_status" -ne 0 ]; then
  echo "bench_gpu.sh: PyTorch's side did not finish cleanly (exit $torch_status; 124 = time limit)" >&2
  exit 3
fi
exit 0
