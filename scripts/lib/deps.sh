# Installs the Debian packages the build and the tests need, only those that are missing, so running it
# again costs nothing. Sourced by scripts/test.sh and scripts/demo.sh.

# Build: compiler, CMake, Ninja; OpenBLAS (CPU GEMM); GoogleTest; stb_image (image decoding).
ENGINE_DEBIAN_PACKAGES=(g++ cmake ninja-build libopenblas-dev libgtest-dev libstb-dev)

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

engine_ensure_build_deps() {
  engine_install_packages "${ENGINE_DEBIAN_PACKAGES[@]}"
}

# Configures and builds into $1 (default build/).
engine_build() {
  local build_dir="${1:-build}"
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build_dir" -j"$(nproc)"
}
