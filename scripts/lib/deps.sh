# Installs the Debian packages the build and the tests need, only those that are missing, so running it
# again costs nothing. Sourced by scripts/test.sh and scripts/demo.sh.

# Build: compiler, CMake, Ninja; OpenBLAS (CPU GEMM); GoogleTest; stb_image (image decoding); nlohmann-json
# (the training runs' args.json).
# python3-sklearn: the independent check of our kappa/AUROC (tests/cpu/test_experiment_train.cpp).
# chromium: the headless browser that renders the HTML reports in their tests (tests/support/browser.h).
ENGINE_DEBIAN_PACKAGES=(g++ cmake ninja-build libopenblas-dev libgtest-dev libstb-dev nlohmann-json3-dev python3-sklearn chromium)
# fonts-dejavu-core: DejaVuSans.ttf, the font compiled into the raster charts (CMakeLists.txt, ENGINE_CHART_FONT).
ENGINE_DEBIAN_PACKAGES+=(fonts-dejavu-core)

# libcli11-dev: CLI11 (header-only), the apps' command lines (experiment/flags.h, kernels/bench/bench_args.h).
ENGINE_DEBIAN_PACKAGES+=(libcli11-dev)

# openmpi-bin, libopenmpi-dev: Open MPI, data-parallel training over processes (engine/distributed.h, docs/distributed.md).
ENGINE_DEBIAN_PACKAGES+=(openmpi-bin libopenmpi-dev)

engine_install_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Idle OpenMP threads sleep rather than spin: on a 2-core machine spinning threads of one pool starve
# the other's work (measured: a DenseNet-201 summary 1.5-7x slower with spinning).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

engine_ensure_build_deps() {
  engine_install_packages "${ENGINE_DEBIAN_PACKAGES[@]}"
}

# Configures and builds into $1 (default build/).
engine_build() {
  local build_dir="${1:-build}"
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build_dir" -j"$(nproc)"
}
