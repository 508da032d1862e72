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

engine_mkl_env() {
  local venv="${ENGINE_MKL_VENV:-.venv-mkl}"
  local want
  want="$(printf '%s\n' "${ENGINE_MKL_PIP_PACKAGES[@]}")"
  local stamp="$venv/.engine-mkl-env-stamp"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setting up oneMKL from PyPI in $venv (${ENGINE_MKL_PIP_PACKAGES[*]}; about 1 GB)"
    if [ ! -x "$venv/bin/python" ]; then
      /usr/bin/python3 -m venv "$venv" || {
        echo "error: /usr/bin/python3 -m venv $venv failed (is python3-venv installed?)" >&2
        return 1
      }
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input "${ENGINE_MKL_PIP_PACKAGES[@]}" || {
      echo "error: pip install into $venv failed; check access to PyPI and the free disk (1 GB), or delete $venv" \
           "and retry" >&2
      return 1
    }
    if [ ! -f "$venv/include/mkl_cblas.h" ] || ! ls "$venv"/lib/libmkl_rt.so* >/dev/null 2>&1; then
      echo "error: $venv has no include/mkl_cblas.h or lib/libmkl_rt.so*: the mkl wheels' layout changed" >&2
      return 1
    fi
    printf '%s' "$want" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
  fi
  ENGINE_MKL_ROOT="$(cd "$venv" && pwd)"; export ENGINE_MKL_ROOT
}
