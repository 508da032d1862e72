# oneMKL from PyPI in its own Python environment, for a build whose CPU GEMM is oneMKL's
# (-DENGINE_BLAS=MKL -DMKL_ROOT=<this venv>): scripts/bench_cpu.sh --mkl. The wheels put
# include/mkl_cblas.h and lib/libmkl_rt.so.3 under the venv's prefix; the build links libmkl_rt with an
# rpath to it and runs it sequential (kernels/cpu/gemm.cpp). Not part of scripts/test.sh: the default
# build and CI use Debian's OpenBLAS. About 1 GB.
#
# Sourced; call `engine_mkl_env`, then pass -DMKL_ROOT="$ENGINE_MKL_ROOT". Idempotent: a stamp file in the
# venv records the pins, and a second call that finds them prints nothing.
# Environment: ENGINE_MKL_VENV (default .venv-mkl, relative to the current directory, which the scripts
# set to the repository root).

ENGINE_MKL_PIP_PACKAGES=(
  mkl==2026.2.1
  mkl-include==2026.2.1
)

source "$(dirname "${BASH_SOURCE[0]}")/pinned_venv.sh"

engine_mkl_env_check() {
  if [ ! -f "$1/include/mkl_cblas.h" ] || ! ls "$1"/lib/libmkl_rt.so* >/dev/null 2>&1; then
    echo "error: $1 has no include/mkl_cblas.h or lib/libmkl_rt.so*: the mkl wheels' layout changed" >&2
    return 1
  fi
}

engine_mkl_env() {
  local venv="${ENGINE_MKL_VENV:-.venv-mkl}"
  engine_pinned_venv "$venv" .engine-mkl-env-stamp oneMKL "1 GB" engine_mkl_env_check "" -- \
      "${ENGINE_MKL_PIP_PACKAGES[@]}" || return 1
  ENGINE_MKL_ROOT="$(cd "$venv" && pwd)"; export ENGINE_MKL_ROOT
}
