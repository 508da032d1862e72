# A second Python environment with PyTorch 2.x from PyPI, for the CPU comparison only
# (scripts/bench_cpu.sh): the PyTorch a user installs today runs convolutions through oneDNN with
# AVX-512 kernels and wants channels-last tensors, and it is the one to beat, beside Debian's torch 1.13
# (scripts/lib/python_env.sh) that the parity tests use. Not part of scripts/test.sh: the wheels and
# their CUDA libraries (PyPI's Linux torch needs them to import even on the CPU) take about 5.5 GB.
#
# Sourced; call `engine_torch2_env`, then run "$ENGINE_TORCH2_PYTHON". Idempotent: a stamp file in the
# venv records the pins, and a second call that finds them prints nothing.
# Environment: ENGINE_TORCH2_VENV (default .venv-torch2, relative to the current directory, which the
# scripts set to the repository root).

# Pinned together: torch 2.15.0 (PyPI, cp311 manylinux_2_28), its torchvision, and a timm of the same time
# (timm 1.x; 0.9.x is the series for torch 1.13 in the other venv).
ENGINE_TORCH2_PIP_PACKAGES=(
  torch==2.15.0
  torchvision==0.29.2
  timm==1.0.31
)

source "$(dirname "${BASH_SOURCE[0]}")/pinned_venv.sh"

engine_torch2_env_check() {
  "$1/bin/python" - <<'EOF' || { echo "error: the venv $1 does not import torch 2" >&2; return 1; }
import torch, torchvision, timm
assert torch.__version__.startswith("2."), torch.__version__
print("torch2 env:", "torch", torch.__version__, "torchvision", torchvision.__version__, "timm", timm.__version__)
EOF
}

engine_torch2_env() {
  local venv="${ENGINE_TORCH2_VENV:-.venv-torch2}"
  engine_pinned_venv "$venv" .engine-torch2-env-stamp "PyTorch 2.x" "5.5 GB" engine_torch2_env_check \
      "scripts/bench_cpu.sh --no-torch2 compares with Debian's torch alone" -- "${ENGINE_TORCH2_PIP_PACKAGES[@]}" ||
    return 1
  ENGINE_TORCH2_PYTHON="$(cd "$venv" && pwd)/bin/python"; export ENGINE_TORCH2_PYTHON
}
