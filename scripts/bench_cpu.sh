#!/usr/bin/env bash
# The CPU comparison of our nets against PyTorch, in one run on one machine: our DenseNet-201 and
# Inception-ResNet-v2 (bench_nets_cpu) next to PyTorch's on the same threads and batch: Debian's torch 1.13
# (torchvision, timm from the project's venv; contiguous NCHW, as the parity tests run it) and PyTorch 2.x
# from PyPI in its own venv (scripts/lib/torch2_env.sh; channels-last, the layout its oneDNN convolutions
# want). Seconds per image forward and forward + backward, the ratios, and the fraction of the CPU's peak
# our runs reach.
#   scripts/bench_cpu.sh [--threads N] [--batch N] [--reps N] [--quick] [--only NET] [--no-torch2]
#                        [--keep-openblas-coretype] [--torch-same-heap] [--mkl]
# --no-torch2 leaves out PyTorch 2.x (its venv takes about 5.5 GB and a download on first use).
# --torch-same-heap runs PyTorch with our heap policy (glibc keeps freed memory: engine/backend_cpu.cpp),
# set through GLIBC_TUNABLES. By default PyTorch runs as installed, with glibc's defaults, which at batch
# 16 and more give each step's memory back and page-fault it anew (docs/perf-notes.md, "The heap's top
# given back every step"); with --torch-same-heap the comparison is of the kernels alone.
# --mkl builds ours against oneMKL (PyPI's wheels in .venv-mkl, scripts/lib/mkl_env.sh; the build in
# build-mkl, CPU only) instead of Debian's OpenBLAS: on Intel Xeons its SGEMM is the faster
# (docs/benchmarks.md). PyTorch's side is unchanged.
# OpenBLAS runs the kernels it picks for the CPU: an OPENBLAS_CORETYPE from the environment is left out
# (some machines' environments pin the AVX2 "Haswell" kernels on AVX-512 CPUs, whose GEMMs then run at
# about 0.6x: docs/perf-notes.md, "OpenBLAS's kernels"), unless --keep-openblas-coretype.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
source scripts/lib/python_env.sh
source scripts/lib/torch2_env.sh
source scripts/lib/mkl_env.sh

args=()
with_torch2=1
keep_coretype=0
torch_heap=()
with_mkl=0
for arg in "$@"; do
  case "$arg" in
    --mkl) with_mkl=1 ;;
    --no-torch2) with_torch2=0 ;;
    --keep-openblas-coretype) keep_coretype=1 ;;
    --torch-same-heap)
      torch_heap=(env "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=18446744073709551615") ;;
    *) args+=("$arg") ;;
  esac
done
if [ "$keep_coretype" = 0 ] && [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  echo "note: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE from the environment left out (OpenBLAS picks the CPU's" \
       "kernels; --keep-openblas-coretype keeps it)"
  unset OPENBLAS_CORETYPE
fi
engine_ensure_build_deps
if [ "$with_mkl" = 1 ]; then
  engine_mkl_env
  BUILD_DIR="${BUILD_DIR:-build-mkl}"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DENGINE_CUDA=OFF -DENGINE_BLAS=MKL \
        -DMKL_ROOT="$ENGINE_MKL_ROOT" >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target bench_nets_cpu >/dev/null
else
  BUILD_DIR="${BUILD_DIR:-build}"
  engine_build "$BUILD_DIR" >/dev/null
fi
engine_python_env >/dev/null
PYTHON="${ENGINE_VENV:-.venv}/bin/python"
if [ "$with_torch2" = 1 ]; then engine_torch2_env; fi

ours=$(mktemp) theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
"$BUILD_DIR/bench_nets_cpu" "${args[@]}" | tee "$ours"
echo
if [ ${#torch_heap[@]} -gt 0 ]; then echo "PyTorch with our heap policy: ${torch_heap[1]}"; fi
"${torch_heap[@]}" "$PYTHON" scripts/bench_torch_cpu.py "${args[@]}" | tee "$theirs"
if [ "$with_torch2" = 1 ]; then
  echo
  "${torch_heap[@]}" "$ENGINE_TORCH2_PYTHON" scripts/bench_torch_cpu.py --tag torch2 --channels-last "${args[@]}" | tee -a "$theirs"
fi
echo
# Ours: "<net> <input> <GMAC> | <fwd> <GFLOP/s> <peak%> | <fwd+bwd> <GFLOP/s> <peak%>"; theirs:
# "torch <net> <input> <fwd> <fwd+bwd>" (Debian's 1.13) and "torch2 ..." (2.x, channels-last).
# One table per pass; a column of PyTorch 2.x only when it ran.
awk -v torch2="$with_torch2" '
  FNR == NR && $4 == "|" && $8 == "|" { key = $1 " " $2; fwd[key] = $5; fb[key] = $9; pf[key] = $7; pfb[key] = $11; next }
  FNR != NR && $1 == "torch" { key = $2 " " $3; t1[key, "fwd"] = $4; t1[key, "fb"] = $5; order[++n] = key }
  FNR != NR && $1 == "torch2" { key = $2 " " $3; t2[key, "fwd"] = $4; t2[key, "fb"] = $5 }
  function table(title, ours, pass,   i, k) {
    printf "%-26s | %8s %6s | %9s %6s", title, "ours", "peak", "torch1.13", "ratio"
    if (torch2 == 1) printf " | %9s %6s", "torch2 CL", "ratio"
    printf "\n"
    for (i = 1; i <= n; ++i) {
      k = order[i]
      if (!(k in fwd)) continue
      printf "%-26s | %8.3f %6s | %9.3f %5.2fx", k, ours[k], (pass == "fwd" ? pf[k] : pfb[k]), t1[k, pass],
             t1[k, pass] / ours[k]
      if (torch2 == 1 && ((k, pass) in t2)) printf " | %9.3f %5.2fx", t2[k, pass], t2[k, pass] / ours[k]
      printf "\n"
    }
  }
  END {
    table("forward (s/image)", fwd, "fwd")
    print ""
    table("forward+backward (s/image)", fb, "fb")
    print "ratio = PyTorch time / our time (above 1: we are faster); CL = channels-last"
  }' "$ours" "$theirs"
