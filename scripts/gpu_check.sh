#!/usr/bin/env bash
# The GPU check: run from the repository root on a machine with an NVIDIA H100/H200 (no network needed).
#   1. reports what the machine offers (GPU and driver, CUDA toolkit, cuDNN, compilers, CMake, Ninja,
#      GoogleTest, OpenBLAS, compute-sanitizer, Python packages);
#   2. configures a CUDA build (building GoogleTest from a source tree first if it is not installed);
#   3. stops here, with exit status 2, when the machine has no GPU;
#   4. builds the GPU tests, the kernel benchmark, bench and the CUPTI kernel profile library, and runs, in
#      the order of what they prove: `ctest -L gpu`, bench_gpu_kernels, scripts/bench_gpu.sh --quick (ours
#      vs PyTorch on this GPU, with its JSON rows), a kernel profile of each net's training step (the top
#      kernels by GPU time: profile_*.md), which fused and bf16 convolutions cuDNN ran natively
#      (conv_paths.txt), compute-sanitizer memcheck over every GPU test binary, and
#      `ctest -L gpu` again with ENGINE_CUDA_SYNC=1;
#   5. prints a summary table and writes it, with every log, under $OUT (default gpu_check_out/): after
#      every row (a check killed from outside keeps its rows) and at the end.
# Exit status: 0 when everything passed, 1 when anything failed, 2 when there is no GPU.
#
# What the caller may have to bring (the machine has no network), through environment variables:
#   GTEST_SRC     a GoogleTest source tree, built first when given or when GoogleTest is not installed
#                 (default third_party_cache/googletest, then /usr/src/googletest); or GTEST_ROOT, an
#                 install prefix of it
#   OPENBLAS_ROOT a prefix with include/cblas.h and lib/libopenblas.so* (and its libgfortran.so.5 and
#                 libquadmath.so.0 beside it, if the machine lacks them) when OpenBLAS is not installed
#                 (default third_party_cache/openblas when it exists; else the built-in GEMM serves the
#                 CPU reference, slower)
#   STB_ROOT      a prefix with include/stb/stb_image.h when libstb-dev is not installed (default
#                 third_party_cache/stb)
#   CHART_FONT    the TrueType font compiled into the raster charts when fonts-dejavu-core is not installed
#                 (default third_party_cache/fonts/DejaVuSans.ttf; copy /usr/share/fonts/truetype/dejavu/ of
#                 a build machine); STB_ROOT's include/stb/ then also needs stb_truetype.h
#   NLOHMANN_JSON_ROOT  a prefix with include/nlohmann/json.hpp when nlohmann-json3-dev is not installed
#                 (default third_party_cache/nlohmann_json)
#   CLI11_ROOT    a prefix with include/CLI/CLI.hpp when libcli11-dev is not installed
#                 (default third_party_cache/cli11)
#   NCCL_ROOT     a prefix with include/nccl.h and lib/libnccl.so* when NCCL is neither beside the CUDA
#                 toolkit nor in the system nor in a pip wheel (python -c 'import nvidia.nccl')
#   CUDNN_ROOT    a prefix with include/cudnn.h and lib/libcudnn.so* when cuDNN is neither in the CUDA
#                 toolkit nor in the system nor in a pip wheel (python -c 'import nvidia.cudnn')
#   CUDA_ARCHS    CMAKE_CUDA_ARCHITECTURES (default "90a-real;90-virtual"; "native" works on the GPU box)
#   BUILD_DIR     the build folder (default build_gpu_check)
#   JOBS          build parallelism (default: the number of cores); CTEST_JOBS tests at a time (4)
#   GPU_CHECK_SKIP_TORCH_BENCH=1  leaves out the comparison with PyTorch (scripts/bench_gpu.sh);
#                 BENCH_GPU_ARGS replaces its --quick ("" = the full profile), BENCH_TIMEOUT_S bounds each
#                 side (default here 240 s)
#   GPU_CHECK_DEADLINE_S  a wall-clock budget for the whole check: steps are ordered by what they prove
#                 (tests, kernel benchmark, ours vs PyTorch, kernel profile, memcheck, the ENGINE_CUDA_SYNC
#                 rerun) and each is cut to the time left, or skipped (reported as such) when too little is
#                 left; the tests get at most 60% of what is left, each test 300 s, each memcheck binary
#                 300 s, and the PyTorch comparison runs --quick's cases (batch 32, eager) and leaves 100 s
#                 for the kernel profile
#   GPU_CHECK_PROFILE_CASES  the kernel profiles, arch@size:precision separated by spaces (default
#                 "densenet201@224:f32 inception_resnet_v2@299:f32 densenet201@224:bf16"), batch 32
# Options: --skip-sanitizer, --skip-bench (for a quick rerun; also leaves out the PyTorch comparison and
#   the kernel profile);
#   --quick: memcheck over the kernel-level binaries only (gpu_test_kernels_*), no ENGINE_CUDA_SYNC rerun,
#   and the PyTorch comparison at batch 32 without torch.compile (BENCH_GPU_ARGS and the BENCH_*
#   variables of scripts/bench_gpu.sh still override it).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

OUT="${OUT:-gpu_check_out}"
BUILD_DIR="${BUILD_DIR:-build_gpu_check}"
CUDA_ARCHS="${CUDA_ARCHS:-90a-real;90-virtual}"
JOBS="${JOBS:-$(nproc)}"
SKIP_SANITIZER=0
SKIP_BENCH=0
QUICK=0
for arg in "$@"; do
  case "$arg" in
    --skip-sanitizer) SKIP_SANITIZER=1 ;;
    --skip-bench) SKIP_BENCH=1 ;;
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,/^set -uo pipefail/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$arg' (see --help)" >&2; exit 1 ;;
  esac
done
mkdir -p "$OUT" "$BUILD_DIR"
OUT="$(cd "$OUT" && pwd)"
BUILD_DIR="$(cd "$BUILD_DIR" && pwd)"
ENV_LOG="$OUT/environment.txt"
: > "$ENV_LOG"
# No stale results from an earlier check in this folder (a step skipped for time must not show old ones).
rm -f "$OUT"/profile*.md "$OUT"/bench.md "$OUT"/bench_vs_torch.md "$OUT"/bench_vs_torch.*.json "$OUT"/conv_paths.txt \
      "$OUT"/summary.md
export PIP_DISABLE_PIP_VERSION_CHECK=1  # pip list must not wait for a network the machine lacks

FAILED=0
declare -a SUMMARY_ROWS=()
# Seconds left of GPU_CHECK_DEADLINE_S (a large number when there is none).
CHECK_START=$SECONDS
time_left() {
  if [ -n "${GPU_CHECK_DEADLINE_S:-}" ]; then echo $(( GPU_CHECK_DEADLINE_S - (SECONDS - CHECK_START) ))
  else echo 1000000; fi
}
# A step's time limit: the smaller of its own cap and the time left minus a reserve for what follows,
# divided by the number of parts the step runs one after the other; at least 1 (timeout 0 never stops).
step_limit() {  # cap, reserve[, parts]
  local left=$(( ($(time_left) - $2) / ${3:-1} ))
  [ "$left" -gt "$1" ] && left="$1"
  [ "$left" -lt 1 ] && left=1
  echo "$left"
}
# Runs a command under `timeout -k 15 LIMIT` in the background and waits for it: a signal to the check
# then runs its trap at once (bash defers traps while a foreground command runs, and timeout puts its
# command in a process group of its own), and the trap stops the command. Returns the command's status.
CHILD=""
bounded() {  # limit, command...
  local limit="$1"
  shift
  timeout -k 15 "$limit" "$@" &
  CHILD=$!
  wait "$CHILD"
  local status=$?
  CHILD=""
  return "$status"
}
row() {  # step, result, details
  SUMMARY_ROWS+=("| $1 | $2 | $3 |")
  printf '%-28s %-8s %s\n' "$1" "$2" "$3"
  write_summary "GPU check IN PROGRESS (or cut off from outside) after $((SECONDS - CHECK_START)) s: the rows so far"
}
note() { echo "$*" | tee -a "$ENV_LOG"; }
any_exists() { local f; for f in "$@"; do [ -e "$f" ] && return 0; done; return 1; }
fail() { FAILED=1; row "$1" "FAIL" "$2"; }

# Writes summary.md atomically (temp file + rename): after every row, so that a check killed from outside
# (a machine's time limit) still leaves its rows, and at the end.
write_summary() {
  local headline="$1"
  local tmp="$OUT/.summary.md.tmp"
  {
    echo "# GPU check $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "$headline"
    echo
    echo '```'
    sed -n '1,60p' "$ENV_LOG"
    echo '```'
    echo
    echo "| step | result | details |"
    echo "|---|---|---|"
    printf '%s\n' "${SUMMARY_ROWS[@]}"
    if [ -s "$OUT/bench.md" ]; then
      echo
      echo "## Kernel benchmark"
      echo
      cat "$OUT/bench.md"
    fi
    if [ -s "$OUT/bench_vs_torch.md" ]; then
      echo
      cat "$OUT/bench_vs_torch.md"
    fi
    if [ -s "$OUT/profile.md" ]; then
      echo
      echo "## Kernel profile (top kernels by GPU time)"
      echo
      cat "$OUT/profile.md"
    fi
  } > "$tmp"
  mv "$tmp" "$OUT/summary.md"
}

# Writes the summary and exits with the given status.
finish() {
  local status="$1" headline="$2"
  write_summary "$headline"
  echo
  echo "$headline"
  echo "summary and logs: $OUT/summary.md"
  exit "$status"
}

exec 3>&1 4>&2  # the console, for the trap (a step's own redirections are in force when it runs)
on_signal() {
  exec 1>&3 2>&4
  [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null  # timeout passes it on to its command
  FAILED=1
  row "interrupted" "FAIL" "the check was stopped from outside (a signal) after $((SECONDS - CHECK_START)) s"
  finish 1 "GPU check INTERRUPTED"
}
trap on_signal TERM INT HUP

# --- 1. What the machine offers ---------------------------------------------------------------------
note "== machine"
note "host: $(uname -srm); $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"); $(nproc) cores"
HAVE_GPU=0
GPU_COUNT=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  HAVE_GPU=1
  GPU_COUNT="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')"
  note "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader | head -4 | tr '\n' ';')"
  timeout -k 5 30 nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
else
  note "GPU: none (nvidia-smi $(command -v nvidia-smi >/dev/null && echo 'finds no device' || echo 'not installed'))"
fi

NVCC="${CUDACXX:-}"
[ -z "$NVCC" ] && NVCC="$(command -v nvcc || true)"
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -n "$NVCC" ]; then
  CUDA_HOME="$(cd "$(dirname "$NVCC")/.." && pwd)"
  note "CUDA toolkit: $CUDA_HOME ($("$NVCC" --version | grep -o 'release [0-9.]*' | head -1))"
else
  CUDA_HOME=""
  note "CUDA toolkit: not found (no nvcc on PATH or in /usr/local/cuda/bin)"
fi
note "compilers: $(g++ --version 2>/dev/null | head -1 || echo 'g++ missing')"
note "cmake: $(cmake --version 2>/dev/null | head -1 || echo missing); ninja: $(ninja --version 2>/dev/null || echo missing)"

SANITIZER="$(command -v compute-sanitizer || true)"
[ -z "$SANITIZER" ] && [ -n "$CUDA_HOME" ] && [ -x "$CUDA_HOME/bin/compute-sanitizer" ] && SANITIZER="$CUDA_HOME/bin/compute-sanitizer"
[ -z "$SANITIZER" ] && [ -n "$CUDA_HOME" ] && [ -x "$CUDA_HOME/compute-sanitizer/compute-sanitizer" ] && SANITIZER="$CUDA_HOME/compute-sanitizer/compute-sanitizer"
note "compute-sanitizer: ${SANITIZER:-not found}"

PYTHON="${PYTHON:-$(command -v python3 || command -v python || true)}"
if [ -n "$PYTHON" ]; then
  note "python: $("$PYTHON" --version 2>&1)"
  TORCH_INFO="$("$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())' 2>/dev/null || true)"
  [ -n "$TORCH_INFO" ] && note "python packages: $TORCH_INFO"
  timeout -k 5 60 "$PYTHON" -m pip list 2>/dev/null > "$OUT/pip_list.txt"
  note "python wheels: $(grep -i -E '^(nvidia-(cudnn|nccl|cublas)|torch|timm)' "$OUT/pip_list.txt" | awk '{print $1 " " $2}' | paste -sd, - | sed 's/,/, /g') (pip_list.txt)"
fi

# cuDNN: CUDNN_ROOT, the CUDA toolkit, the system, or the pip wheel of an installed PyTorch.
CUDNN_INCLUDE="" CUDNN_LIB=""
find_cudnn_in() {  # include dir, lib dirs...
  local inc="$1"; shift
  [ -f "$inc/cudnn.h" ] || return 1
  local dir lib
  for dir in "$@"; do
    lib="$(ls "$dir"/libcudnn.so "$dir"/libcudnn.so.[0-9]* 2>/dev/null | head -1)"
    if [ -n "$lib" ]; then CUDNN_INCLUDE="$inc"; CUDNN_LIB="$lib"; return 0; fi
  done
  return 1
}
if [ -n "${CUDNN_ROOT:-}" ]; then
  find_cudnn_in "$CUDNN_ROOT/include" "$CUDNN_ROOT/lib" "$CUDNN_ROOT/lib64" || true
fi
[ -z "$CUDNN_LIB" ] && [ -n "$CUDA_HOME" ] && { find_cudnn_in "$CUDA_HOME/include" "$CUDA_HOME/lib64" "$CUDA_HOME/lib" "$CUDA_HOME/targets/x86_64-linux/lib" || true; }
[ -z "$CUDNN_LIB" ] && { find_cudnn_in /usr/include /usr/lib/x86_64-linux-gnu /usr/lib64 || true; }
CUDNN_WHEEL=""
if [ -z "$CUDNN_LIB" ] && [ -n "$PYTHON" ]; then
  # nvidia.cudnn is a namespace package in some wheels (no __file__): its __path__ says where it is.
  CUDNN_WHEEL="$("$PYTHON" -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)"
  [ -n "$CUDNN_WHEEL" ] && { find_cudnn_in "$CUDNN_WHEEL/include" "$CUDNN_WHEEL/lib" || true; }
fi
if [ -n "$CUDNN_LIB" ]; then
  CUDNN_VERSION="$(grep -E '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$CUDNN_INCLUDE/cudnn_version.h" 2>/dev/null | awk '{print $3}' | paste -sd. -)"
  note "cuDNN: $CUDNN_VERSION, headers $CUDNN_INCLUDE, library $CUDNN_LIB${CUDNN_WHEEL:+ (pip wheel)}"
  if [ -n "$CUDNN_WHEEL" ] && grep -q 'nvidia-cudnn-cu12' "$OUT/pip_list.txt" 2>/dev/null &&
     "$NVCC" --version 2>/dev/null | grep -q 'release 13'; then
    note "warning: the cuDNN wheel is built for CUDA 12 and the toolkit is CUDA 13; it may not load"
  fi
else
  note "cuDNN: not found (set CUDNN_ROOT to a prefix with include/cudnn.h and lib/libcudnn.so*)"
fi

# NCCL (the GPU's all-reduce; its one-GPU tests need no MPI): NCCL_ROOT, the CUDA toolkit, the system, or
# the nvidia-nccl wheel of an installed PyTorch.
NCCL_ARGS=()
if [ -z "${NCCL_ROOT:-}" ] && ! any_exists "${CUDA_HOME:-/nonexistent}"/include/nccl.h /usr/include/nccl.h && [ -n "$PYTHON" ]; then
  NCCL_ROOT="$("$PYTHON" -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null || true)"
fi
if [ -n "${NCCL_ROOT:-}" ] && [ -f "$NCCL_ROOT/include/nccl.h" ]; then
  NCCL_ARGS=("-DNCCL_ROOT=$NCCL_ROOT")
  LD_LIBRARY_PATH="$NCCL_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
  note "NCCL: NCCL_ROOT=$NCCL_ROOT"
elif any_exists "${CUDA_HOME:-/nonexistent}"/include/nccl.h /usr/include/nccl.h; then
  note "NCCL: beside the CUDA toolkit or in the system"
else
  note "NCCL: not found (the NCCL tests skip; bring a prefix with include/nccl.h and lib/libnccl.so*: NCCL_ROOT=...)"
fi

# GoogleTest: installed (a CMake package), GTEST_ROOT, or built from a source tree.
GTEST_PREFIX=""
if [ -n "${GTEST_ROOT:-}" ]; then
  GTEST_PREFIX="$GTEST_ROOT"
  note "GoogleTest: GTEST_ROOT=$GTEST_ROOT"
elif [ -z "${GTEST_SRC:-}" ] &&
     { any_exists /usr/lib/*/cmake/GTest/GTestConfig.cmake /usr/lib/cmake/GTest/GTestConfig.cmake \
         /usr/local/lib/cmake/GTest/GTestConfig.cmake /usr/local/lib64/cmake/GTest/GTestConfig.cmake ||
       { [ -f /usr/include/gtest/gtest.h ] && any_exists /usr/lib/*/libgtest.a /usr/lib/*/libgtest.so; }; }; then
  note "GoogleTest: installed in the system"
else
  GTEST_SOURCE=""
  for candidate in "${GTEST_SRC:-third_party_cache/googletest}" /usr/src/googletest; do
    if [ -f "$candidate/CMakeLists.txt" ]; then GTEST_SOURCE="$candidate"; break; fi
  done
  if [ -z "$GTEST_SOURCE" ]; then
    note "GoogleTest: not installed and no source tree (bring one: GTEST_SRC=path/to/googletest)"
    fail "GoogleTest" "not installed; no source tree at \${GTEST_SRC:-third_party_cache/googletest} or /usr/src/googletest"
    finish 1 "GPU check FAILED: GoogleTest is missing"
  fi
  GTEST_PREFIX="$BUILD_DIR/_gtest_install"
  note "GoogleTest: building from $GTEST_SOURCE into $GTEST_PREFIX"
  if cmake -S "$GTEST_SOURCE" -B "$BUILD_DIR/_gtest_build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
       -DBUILD_GMOCK=OFF -DINSTALL_GTEST=ON -DCMAKE_INSTALL_PREFIX="$GTEST_PREFIX" > "$OUT/gtest_build.log" 2>&1 &&
     bounded "$(step_limit 300 120)" cmake --build "$BUILD_DIR/_gtest_build" -j"$JOBS" >> "$OUT/gtest_build.log" 2>&1 &&
     cmake --install "$BUILD_DIR/_gtest_build" >> "$OUT/gtest_build.log" 2>&1; then
    row "GoogleTest from source" "ok" "$GTEST_SOURCE"
  else
    fail "GoogleTest from source" "see gtest_build.log"
    finish 1 "GPU check FAILED: GoogleTest could not be built"
  fi
fi

# OpenBLAS (the CPU reference's GEMM): the system, or OPENBLAS_ROOT (default third_party_cache/openblas
# when the system has none).
OPENBLAS_ARGS=()
SYSTEM_OPENBLAS=0
any_exists /usr/include/x86_64-linux-gnu/openblas*/cblas.h /usr/include/openblas/cblas.h /usr/include/cblas.h &&
  SYSTEM_OPENBLAS=1
if [ -z "${OPENBLAS_ROOT:-}" ] && [ "$SYSTEM_OPENBLAS" -eq 0 ] && [ -f third_party_cache/openblas/include/cblas.h ]; then
  OPENBLAS_ROOT="$(pwd)/third_party_cache/openblas"
fi
if [ -n "${OPENBLAS_ROOT:-}" ]; then
  OPENBLAS_ARGS=(-DOPENBLAS_INCLUDE_DIR="$OPENBLAS_ROOT/include"
                 -DOPENBLAS_LIBRARY="$(ls "$OPENBLAS_ROOT"/lib*/libopenblas.so* 2>/dev/null | head -1)")
  note "OpenBLAS: OPENBLAS_ROOT=$OPENBLAS_ROOT"
  # Its own dependencies (libgfortran, libquadmath) may have come beside it.
  LD_LIBRARY_PATH="$OPENBLAS_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
elif [ "$SYSTEM_OPENBLAS" -eq 1 ]; then
  note "OpenBLAS: installed in the system"
else
  note "OpenBLAS: not found (install libopenblas-dev, or set OPENBLAS_ROOT to a prefix with include/cblas.h and lib/libopenblas.so); the CPU reference uses the built-in GEMM"
fi

# stb_image (header-only; the data library decodes with it): the system, or STB_ROOT.
STB_ARGS=()
if [ -f /usr/include/stb/stb_image.h ] && [ -z "${STB_ROOT:-}" ]; then
  note "stb_image: installed in the system"
else
  STB_ROOT="${STB_ROOT:-$(pwd)/third_party_cache/stb}"
  if [ -f "$STB_ROOT/include/stb/stb_image.h" ]; then
    STB_ARGS=("-DSTB_ROOT=$STB_ROOT")
    note "stb_image: STB_ROOT=$STB_ROOT"
  else
    note "stb_image: not found (install libstb-dev, or bring a prefix with include/stb/stb_image.h: STB_ROOT=...)"
  fi
fi

# The charts' font (compiled into the experiment library): the system's DejaVuSans.ttf, or CHART_FONT.
FONT_ARGS=()
if [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && [ -z "${CHART_FONT:-}" ]; then
  note "chart font: installed in the system"
else
  CHART_FONT="${CHART_FONT:-$(pwd)/third_party_cache/fonts/DejaVuSans.ttf}"
  if [ -f "$CHART_FONT" ]; then
    FONT_ARGS=("-DENGINE_CHART_FONT=$CHART_FONT")
    note "chart font: CHART_FONT=$CHART_FONT"
  else
    note "chart font: not found (install fonts-dejavu-core, or bring a .ttf file: CHART_FONT=...)"
  fi
fi

# nlohmann-json (header-only; args.json of the training runs): the system, or NLOHMANN_JSON_ROOT.
JSON_ARGS=()
if [ -f /usr/include/nlohmann/json.hpp ] && [ -z "${NLOHMANN_JSON_ROOT:-}" ]; then
  note "nlohmann-json: installed in the system"
else
  NLOHMANN_JSON_ROOT="${NLOHMANN_JSON_ROOT:-$(pwd)/third_party_cache/nlohmann_json}"
  if [ -f "$NLOHMANN_JSON_ROOT/include/nlohmann/json.hpp" ]; then
    JSON_ARGS=("-DNLOHMANN_JSON_ROOT=$NLOHMANN_JSON_ROOT")
    note "nlohmann-json: NLOHMANN_JSON_ROOT=$NLOHMANN_JSON_ROOT"
  else
    note "nlohmann-json: not found (install nlohmann-json3-dev, or bring a prefix with include/nlohmann/json.hpp: NLOHMANN_JSON_ROOT=...)"
  fi
fi

# CLI11 (header-only; the apps' command lines): the system, or CLI11_ROOT.
CLI11_ARGS=()
if [ -f /usr/include/CLI/CLI.hpp ] && [ -z "${CLI11_ROOT:-}" ]; then
  note "CLI11: installed in the system"
else
  CLI11_ROOT="${CLI11_ROOT:-$(pwd)/third_party_cache/cli11}"
  if [ -f "$CLI11_ROOT/include/CLI/CLI.hpp" ]; then
    CLI11_ARGS=("-DCLI11_ROOT=$CLI11_ROOT")
    note "CLI11: CLI11_ROOT=$CLI11_ROOT"
  else
    note "CLI11: not found (install libcli11-dev, or bring a prefix with include/CLI/CLI.hpp: CLI11_ROOT=...)"
  fi
fi

# --- 2. Configure ------------------------------------------------------------------------------------
# Warnings are errors on our build machines (one compiler); here another g++ may warn anew, and a new
# warning must not hide what the GPU can tell us: ENGINE_WERROR=OFF unless the caller says otherwise
# (build.log keeps the warnings).
CMAKE_ARGS=(-S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DENGINE_CUDA=ON
            "-DENGINE_WERROR=${ENGINE_WERROR:-OFF}"
            "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS" "${OPENBLAS_ARGS[@]}" "${STB_ARGS[@]}" "${JSON_ARGS[@]}")
CMAKE_ARGS+=("${FONT_ARGS[@]}")
[ -n "$NVCC" ] && CMAKE_ARGS+=("-DCMAKE_CUDA_COMPILER=$NVCC")
CMAKE_ARGS+=("${CLI11_ARGS[@]}" "${NCCL_ARGS[@]}")
if [ -n "$GTEST_PREFIX" ]; then
  CMAKE_ARGS+=("-DCMAKE_PREFIX_PATH=$GTEST_PREFIX" "-DGTEST_ROOT=$GTEST_PREFIX")
  GTEST_CONFIG="$(find "$GTEST_PREFIX" -name GTestConfig.cmake 2>/dev/null | head -1)"
  [ -n "$GTEST_CONFIG" ] && CMAKE_ARGS+=("-DGTest_DIR=$(dirname "$GTEST_CONFIG")")
fi
if [ -n "$CUDNN_LIB" ]; then
  # CUDNN_LIBRARY is honoured by the top-level CMakeLists (find_library); CUDNN_INCLUDE_DIR is passed for
  # when it supports one, and the headers are also put on the compilers' include path.
  CMAKE_ARGS+=("-DCUDNN_LIBRARY=$CUDNN_LIB" "-DCUDNN_INCLUDE_DIR=$CUDNN_INCLUDE")
  if [ "$CUDNN_INCLUDE" != "$CUDA_HOME/include" ] && [ "$CUDNN_INCLUDE" != /usr/include ]; then
    CMAKE_ARGS+=("-DCMAKE_CXX_FLAGS=-isystem $CUDNN_INCLUDE" "-DCMAKE_CUDA_FLAGS=-isystem $CUDNN_INCLUDE")
  fi
  LD_LIBRARY_PATH="$(dirname "$CUDNN_LIB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
fi
echo "cmake ${CMAKE_ARGS[*]}" > "$OUT/configure.log"
if bounded "$(step_limit 300 120)" cmake "${CMAKE_ARGS[@]}" >> "$OUT/configure.log" 2>&1; then
  if grep -q "CUDA backend: ON" "$OUT/configure.log"; then
    row "configure (CUDA on)" "ok" "$BUILD_DIR, CUDA architectures $CUDA_ARCHS; $(grep -o 'Data parallelism: MPI [A-Z]*, NCCL [A-Z]*' "$OUT/configure.log" | head -1)"
  else
    fail "configure (CUDA on)" "CMake did not enable the CUDA backend (see configure.log)"
    finish 1 "GPU check FAILED: configure"
  fi
else
  fail "configure (CUDA on)" "see configure.log"
  finish 1 "GPU check FAILED: configure"
fi

# --- 3. No GPU: stop here ------------------------------------------------------------------------------
# (GPU_CHECK_ASSUME_GPU=1 goes on regardless: only for testing this script on a machine without a GPU,
# where every GPU test then skips and is reported as a failure.)
if [ "$HAVE_GPU" -eq 0 ] && [ "${GPU_CHECK_ASSUME_GPU:-0}" != 1 ]; then
  row "GPU" "none" "nvidia-smi finds no device: nothing built or run"
  finish 2 "GPU check STOPPED: no GPU on this machine (the CUDA build configures; run this on a machine with an H100/H200)"
fi
if [ -z "$CUDNN_LIB" ]; then  # CMake may have found it where we did not look
  CUDNN_LIB="$(grep -E '^CUDNN_LIBRARY:' "$BUILD_DIR/CMakeCache.txt" | cut -d= -f2- | grep -v NOTFOUND)"
  if [ -n "$CUDNN_LIB" ]; then
    note "cuDNN: found by CMake: $CUDNN_LIB"
    LD_LIBRARY_PATH="$(dirname "$CUDNN_LIB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
  fi
fi
[ -z "$CUDNN_LIB" ] && { fail "cuDNN" "not found (set CUDNN_ROOT)"; finish 1 "GPU check FAILED: cuDNN is missing"; }

# --- 4. Build, test, sanitize, benchmark ------------------------------------------------------------------
GPU_TARGETS=()
for src in tests/gpu/test_*.cpp; do GPU_TARGETS+=("gpu_$(basename "$src" .cpp)"); done
BENCH_TARGETS=(bench_gpu_kernels)
[ "$SKIP_BENCH" -eq 0 ] && BENCH_TARGETS+=(bench)
# The CUPTI kernel profile (kernels/profile/), when CMake found CUPTI.
HAVE_PROFILE=0
grep -q "Kernel profile (CUPTI injection library): ON" "$OUT/configure.log" && HAVE_PROFILE=1

if bounded "$(step_limit 900 120)" cmake --build "$BUILD_DIR" -j"$JOBS" --target "${GPU_TARGETS[@]}" "${BENCH_TARGETS[@]}" \
     > "$OUT/build.log" 2>&1; then
  row "build" "ok" "${#GPU_TARGETS[@]} GPU test binaries + ${BENCH_TARGETS[*]}, $(grep -c 'warning:' "$OUT/build.log") warnings ($((SECONDS - CHECK_START)) s since the start)"
else
  fail "build" "see build.log ($(grep -m1 -E 'error' "$OUT/build.log" | cut -c1-120))"
  finish 1 "GPU check FAILED: build"
fi

# The kernel profile library on its own: a failure there costs the profile rows only.
PROFILE_BUILD_NOTE="CMake found no CUPTI (CUDA::cupti; it ships with the CUDA toolkit)"
if [ "$SKIP_BENCH" -eq 0 ] && [ "$HAVE_PROFILE" -eq 1 ]; then
  if ! bounded "$(step_limit 300 120)" cmake --build "$BUILD_DIR" -j"$JOBS" --target kernel_profile \
       > "$OUT/build_kernel_profile.log" 2>&1; then
    HAVE_PROFILE=0
    PROFILE_BUILD_NOTE="its build failed (build_kernel_profile.log)"
  fi
fi

# Every test case is its own process (one CUDA context each); a few at a time, each CPU reference
# with a share of the cores.
CTEST_JOBS="${CTEST_JOBS:-4}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( $(nproc) / CTEST_JOBS > 0 ? $(nproc) / CTEST_JOBS : 1 ))}"

# Marks a step skipped for want of time under GPU_CHECK_DEADLINE_S (a failure: the check is incomplete).
out_of_time() { FAILED=1; row "$1" "skipped" "out of time (GPU_CHECK_DEADLINE_S=${GPU_CHECK_DEADLINE_S:-unset})"; }

# Runs ctest -L gpu; a skipped GPU test counts as a failure here (the binary saw no device).
# CTEST_EXCLUDE: a regular expression of tests to leave out (ctest -E), empty for none.
run_ctest() {  # name, log, time limit (s), environment assignments (VAR=value ...)
  local name="$1" log="$2" limit="$3"
  shift 3
  local exclude=()
  [ -n "${CTEST_EXCLUDE:-}" ] && exclude=(-E "$CTEST_EXCLUDE")
  # ctest itself stops 20 s before the limit (--stop-time), so that it ends its tests and writes the JUnit
  # file; no single test may take more than 300 s (a hang in one must not eat the check).
  local per_test=300 stop_at
  [ "$limit" -lt "$per_test" ] && per_test="$limit"
  stop_at="$(date -d "+$(( limit > 40 ? limit - 20 : limit )) seconds" +%H:%M:%S)"
  bounded "$limit" env "$@" ctest --test-dir "$BUILD_DIR" -L gpu "${exclude[@]}" --output-on-failure -j"$CTEST_JOBS" \
      --timeout "$per_test" --stop-time "$stop_at" --output-junit "$OUT/${log%.log}.junit.xml" > "$OUT/$log" 2>&1
  local status=$?
  local total passed failed skipped
  total="$(grep -oE 'out of [0-9]+' "$OUT/$log" | tail -1 | grep -oE '[0-9]+')"
  failed="$(grep -oE '[0-9]+ tests failed' "$OUT/$log" | tail -1 | grep -oE '^[0-9]+')"
  skipped="$(grep -c '(Skipped)' "$OUT/$log")"
  total="${total:-0}"; failed="${failed:-0}"
  passed=$((total - failed - skipped))
  local details="$passed passed, $failed failed, $skipped skipped of $total"
  [ "$status" -eq 124 ] && details="cut off after $limit s; $details"
  grep -q "stop time has been passed" "$OUT/$log" && details="stopped at its time limit ($limit s), the rest not run; $details"
  if [ "$status" -eq 0 ] && [ "$skipped" -eq 0 ] && [ "$total" -gt 0 ]; then
    row "$name" "ok" "$details"
  else
    fail "$name" "$details (see $log)"
    grep -E '^\s*[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception)' "$OUT/$log" | head -20 |
      sed 's/^/    /'
  fi
}
# Golden data for the GPU parity tests (tests/gpu/test_parity_gpu.cpp), exported by this machine's own
# PyTorch, torchvision and timm (no network needed; the Keras cases are checked on the CPU by
# scripts/test.sh).
GOLDEN_DIR="$BUILD_DIR/golden"
GPU_GOLDEN_CASES="tv_densenet121,tv_densenet201,timm_irv2"
if bounded "$(step_limit 300 120)" "${PYTHON:-python3}" -m weights_tools.export_golden --out "$GOLDEN_DIR" \
    --cases "$GPU_GOLDEN_CASES" > "$OUT/golden.log" 2>&1; then
  row "golden data ($GPU_GOLDEN_CASES)" "ok" "exported by $("${PYTHON:-python3}" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null)"
  export ENGINE_GOLDEN_DIR="$(cd "$GOLDEN_DIR" && pwd)"
else
  fail "golden data ($GPU_GOLDEN_CASES)" "export failed (see golden.log); the GPU parity tests will skip"
fi

# 1. The tests (under a deadline at most 60% of the time left: the benchmarks and the profile are results
# too, and a hung test is cut at 300 s anyway).
ctest_limit="$(step_limit 1800 30)"
if [ -n "${GPU_CHECK_DEADLINE_S:-}" ] && [ "$ctest_limit" -gt $(( $(time_left) * 3 / 5 )) ]; then
  ctest_limit=$(( $(time_left) * 3 / 5 ))
  [ "$ctest_limit" -lt 1 ] && ctest_limit=1
fi
# Tests that need more GPUs than the machine has are left out (they would skip, which run_ctest counts as
# a failure): the data-parallel arena all-reduce runs one process per GPU and needs two.
MULTI_GPU_TESTS='^DistributedGpu\.ArenaAllReduceOnTheDeviceEqualsTheCpuSum$'
FEW_GPUS_EXCLUDE=""
if [ "$GPU_COUNT" -lt 2 ]; then
  FEW_GPUS_EXCLUDE="$MULTI_GPU_TESTS"
  note "left out of ctest: $MULTI_GPU_TESTS (needs two GPUs; $GPU_COUNT here)"
fi
CTEST_EXCLUDE="$FEW_GPUS_EXCLUDE" run_ctest "ctest -L gpu" "ctest_gpu.log" "$ctest_limit"

# 2. The kernel benchmark.
if [ "$SKIP_BENCH" -eq 1 ]; then
  row "bench_gpu_kernels" "skipped" "--skip-bench"
elif [ "$(step_limit 600 120)" -lt 60 ]; then  # less than a useful minute once the reserve is kept
  out_of_time "bench_gpu_kernels"
elif bounded "$(step_limit 600 120)" "$BUILD_DIR/bench_gpu_kernels" > "$OUT/bench.md" 2> "$OUT/bench.err"; then
  bench_rows=$(($(grep -c '^| ' "$OUT/bench.md") - 1))  # minus the header
  if [ "$bench_rows" -gt 0 ]; then
    row "bench_gpu_kernels" "ok" "$bench_rows rows (bench.md)"
  else
    fail "bench_gpu_kernels" "no rows: $(head -1 "$OUT/bench.md")"
  fi
  cat "$OUT/bench.md"
else
  fail "bench_gpu_kernels" "exit $? (see bench.err): $(head -c 200 "$OUT/bench.err")"
fi

# 3. Ours vs PyTorch on this GPU: training and inference throughput and peak memory of DenseNet-201 and
# Inception-ResNet-v2 beside PyTorch eager and torch.compile, with the issue's targets (docs/benchmarks.md).
# A missed target is a result, not a failure; PyTorch's side alone falling short (exit 3) is "partial".
if [ "$SKIP_BENCH" -eq 1 ] || [ "${GPU_CHECK_SKIP_TORCH_BENCH:-0}" = 1 ]; then
  row "bench vs PyTorch" "skipped" "$([ "$SKIP_BENCH" -eq 1 ] && echo "--skip-bench" || echo "GPU_CHECK_SKIP_TORCH_BENCH=1")"
elif [ "$(step_limit "${BENCH_TIMEOUT_S:-240}" 100 2)" -lt "$(( ${BENCH_TIMEOUT_S:-240} < 90 ? ${BENCH_TIMEOUT_S:-240} : 90 ))" ]; then
  # a side needs its net built and timed: 90 s (or the caller's smaller BENCH_TIMEOUT_S)
  out_of_time "bench vs PyTorch"
else
  # batch 32, eager only, unless the caller says otherwise: with --quick, and under a deadline (the full
  # profile, torch.compile at batch 128 included, takes longer than a lent machine's whole budget).
  if [ "$QUICK" -eq 1 ] || [ -n "${GPU_CHECK_DEADLINE_S:-}" ]; then
    export BENCH_CASES="${BENCH_CASES:-densenet201@224,inception_resnet_v2@299}" BENCH_BATCHES="${BENCH_BATCHES:-32}" \
           BENCH_TORCH_VARIANTS="${BENCH_TORCH_VARIANTS:-eager-f32,eager-bf16-cl}"
  fi
  # Two sides, one after the other, leaving 100 s for the first kernel profile and the conv paths.
  side_limit="$(step_limit "${BENCH_TIMEOUT_S:-240}" 100 2)"
  # shellcheck disable=SC2086  # BENCH_GPU_ARGS is a list of options
  bounded $(( 2 * side_limit + 60 )) env ${PYTHON:+PYTHON="$PYTHON"} BUILD_DIR="$BUILD_DIR" BENCH_TIMEOUT_S="$side_limit" \
      scripts/bench_gpu.sh ${BENCH_GPU_ARGS---quick} --out "$OUT/bench_vs_torch.md" > "$OUT/bench_vs_torch.log" 2>&1
  status=$?
  met="$(grep -c '| met |' "$OUT/bench_vs_torch.md" 2>/dev/null)"
  missed="$(grep -c '| missed |' "$OUT/bench_vs_torch.md" 2>/dev/null)"
  targets="targets: ${met:-0} met, ${missed:-0} missed (bench_vs_torch.md; each side cut at $side_limit s)"
  case "$status" in
    0) row "bench vs PyTorch" "ok" "$targets" ;;
    3) row "bench vs PyTorch" "partial" "PyTorch's side incomplete (see bench_vs_torch.log); $targets" ;;
    *) fail "bench vs PyTorch" "exit $status (see bench_vs_torch.log): $(grep -m1 -E 'error|failed' "$OUT/bench_vs_torch.log" | cut -c1-120)" ;;
  esac
  [ -s "$OUT/bench_vs_torch.md" ] && cat "$OUT/bench_vs_torch.md"
fi

# 4. Where the GPU time goes: a kernel profile of each net's timed training iterations (our bench with
# build/libkernel_profile.so injected through CUPTI, no nsys or ncu needed; kernels/profile/), the top
# kernels by total GPU time, into profile_*.md and the summary. GPU_CHECK_PROFILE_CASES: arch@size:precision
# (default the two nets in f32 and DenseNet-201 in bf16), batch 32.
PROFILE_CASES="${GPU_CHECK_PROFILE_CASES:-densenet201@224:f32 inception_resnet_v2@299:f32 densenet201@224:bf16}"
if [ "$SKIP_BENCH" -eq 1 ]; then
  row "kernel profile" "skipped" "--skip-bench"
elif [ "$HAVE_PROFILE" -eq 0 ]; then
  fail "kernel profile" "no libkernel_profile.so: $PROFILE_BUILD_NOTE"
else
  for spec in $PROFILE_CASES; do
    if [[ "$spec" != *@*:* ]]; then fail "kernel profile $spec" "not arch@size:precision (GPU_CHECK_PROFILE_CASES)"; continue; fi
    case_name="${spec%:*}" precision="${spec##*:}"
    label="${case_name%@*}_${precision}"
    if [ "$(time_left)" -lt 60 ]; then out_of_time "kernel profile $spec"; continue; fi
    limit="$(step_limit 240 30)"
    bounded "$limit" env CUDA_INJECTION64_PATH="$BUILD_DIR/libkernel_profile.so" \
      ENGINE_KERNEL_PROFILE_OUT="$OUT/profile_$label.md" ENGINE_KERNEL_PROFILE_TOP=25 \
      ENGINE_KERNEL_PROFILE_TITLE="$case_name training, batch 32, $precision: 5 timed iterations (kernel profile)" \
      "$BUILD_DIR/bench" --device cuda --cases "$case_name" --batch-sizes 32 --mode train \
      --precision "$precision" \
      --warmup 3 --iters 5 > "$OUT/profile_$label.log" 2>&1
    status=$?
    # A table with kernel rows, counted inside the bench's profiler range(s) (written at the range's end,
    # so it may be there even when bench did not end well).
    if grep -q '^| 1 |' "$OUT/profile_$label.md" 2>/dev/null &&
       grep -q 'inside [0-9]* profiler range' "$OUT/profile_$label.md"; then
      if [ "$status" -eq 0 ]; then
        row "kernel profile $spec" "ok" "$(sed -n 3p "$OUT/profile_$label.md" | cut -c1-110) (profile_$label.md)"
      else
        row "kernel profile $spec" "partial" "table written, but bench ended with exit $status (profile_$label.log)"
      fi
    else
      why="exit $status"
      [ "$status" -eq 0 ] && why="no kernel rows inside a profiler range"
      fail "kernel profile $spec" "$why (see profile_$label.log, profile_$label.md): $(grep -m1 -iE 'error|fail' "$OUT/profile_$label.log" | cut -c1-120)"
    fi
    [ -s "$OUT/profile_$label.md" ] && { cat "$OUT/profile_$label.md"; echo; } >> "$OUT/profile.md"
  done
fi

# Which fused and bf16 convolutions cuDNN ran natively (the tests pass either way: a fallback gives the
# same answers, slower): the `path:` lines of the conv test binary, into conv_paths.txt.
if [ "$(time_left)" -lt 45 ]; then
  out_of_time "conv fast paths"
else
  bounded "$(step_limit 120 30)" "$BUILD_DIR/tests/gpu_test_kernels_conv" \
      --gtest_filter='*BiasRelu*:*ScaledResidual*:*Bf16*' > "$OUT/conv_paths.log" 2>&1
  status=$?
  grep '^path:' "$OUT/conv_paths.log" > "$OUT/conv_paths.txt"
  fell_back="$(grep -c 'fell back' "$OUT/conv_paths.txt")"
  cases="$(wc -l < "$OUT/conv_paths.txt")"
  if [ "$status" -eq 0 ] && [ "$cases" -eq 0 ]; then
    fail "conv fast paths" "no case reported its path (did the tests skip? conv_paths.log)"
  elif [ "$status" -eq 0 ]; then
    row "conv fast paths" "ok" "$fell_back of $cases cases had calls that fell back to their parts or f32 (conv_paths.txt)"
  else
    fail "conv fast paths" "exit $status: the conv tests failed (conv_paths.log); $fell_back cases fell back"
  fi
fi

# 5. compute-sanitizer memcheck over the GPU test binaries (--quick: the kernel-level ones).
if [ "$SKIP_SANITIZER" -eq 1 ]; then
  row "compute-sanitizer memcheck" "skipped" "--skip-sanitizer"
elif [ -z "$SANITIZER" ]; then
  fail "compute-sanitizer memcheck" "compute-sanitizer not found (it ships with the CUDA toolkit)"
else
  # The kernel-level binaries first (memcheck's findings are mostly theirs), each cut at 300 s.
  MEMCHECK_TARGETS=()
  for target in "${GPU_TARGETS[@]}"; do [[ "$target" == gpu_test_kernels_* ]] && MEMCHECK_TARGETS+=("$target"); done
  if [ "$QUICK" -eq 0 ]; then
    for target in "${GPU_TARGETS[@]}"; do [[ "$target" != gpu_test_kernels_* ]] && MEMCHECK_TARGETS+=("$target"); done
  fi
  for target in "${MEMCHECK_TARGETS[@]}"; do
    if [ "$(time_left)" -lt 45 ]; then out_of_time "memcheck $target"; continue; fi
    binary="$BUILD_DIR/tests/$target"
    log="sanitizer_$target.log"
    # Left out: the death tests (they fault on purpose, in child processes), the out-of-memory tests
    # (they ask cudaMalloc for 1 PiB on purpose, which memcheck reports as an API error), the graph tests
    # that break a capture on purpose (a synchronisation or a host read inside it: API errors too) and the
    # trainer runs (whole training runs: too long under memcheck; their kernels are the other binaries').
    limit="$(step_limit 300 30)"
    bounded "$limit" "$SANITIZER" --tool memcheck --error-exitcode 99 --leak-check no \
        "$binary" --gtest_filter='-*DeathTest*:*OutOfMemory*:*GpuTrainer*:*FailedRecording*:*AbortedCapture*' > "$OUT/$log" 2>&1
    status=$?
    errors="$(grep -oE 'ERROR SUMMARY: [0-9]+ error' "$OUT/$log" | tail -1 | grep -oE '[0-9]+')"
    if [ "$status" -eq 0 ]; then
      row "memcheck $target" "ok" "${errors:-0} errors"
    elif [ "$status" -eq 124 ]; then
      fail "memcheck $target" "cut off after $limit s, ${errors:-no} errors so far (see $log)"
    else
      fail "memcheck $target" "exit $status, ${errors:-?} errors (see $log)"
    fi
  done
fi

# 6. The tests again with a synchronisation after every launch (an asynchronous fault is then named by
# its own launch).
if [ "$QUICK" -eq 1 ]; then
  row "ctest -L gpu, ENGINE_CUDA_SYNC=1" "skipped" "--quick"
elif [ "$(time_left)" -lt 60 ]; then
  out_of_time "ctest -L gpu, ENGINE_CUDA_SYNC=1"
else
  # Without the graph-step tests: a synchronisation after every launch turns CUDA graphs off.
  CTEST_EXCLUDE="^GpuGraphStep\\.${FEW_GPUS_EXCLUDE:+|$FEW_GPUS_EXCLUDE}" run_ctest "ctest -L gpu, ENGINE_CUDA_SYNC=1 (no graph steps)" "ctest_gpu_sync.log" \
      "$(step_limit 1800 10)" ENGINE_CUDA_SYNC=1
fi

if [ "$FAILED" -eq 0 ]; then
  finish 0 "GPU check PASSED ($((SECONDS - CHECK_START)) s)"
else
  finish 1 "GPU check FAILED (see the rows marked FAIL or skipped; $((SECONDS - CHECK_START)) s)"
fi
