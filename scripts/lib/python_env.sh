# The Python environment of the weight converters and golden-data exporters (weights_tools/), set up
# idempotently. Sourced by scripts/golden.sh (and scripts/test.sh); call `engine_python_env`, then run
# "$ENGINE_PYTHON" -m weights_tools.<tool>.
#
# What it installs, and why so:
#   - Debian packages for /usr/bin/python3 (NOT the pyenv python3 that may come first on PATH):
#     python3-numpy, python3-h5py, python3-torch (CPU torch 1.13), python3-torchvision (0.14), python3-venv.
#     Debian's torch is the reference PyTorch of our parity tests and installs in seconds, without a
#     700 MB wheel download.
#   - A venv at ${ENGINE_VENV:-.venv} made with `/usr/bin/python3 -m venv --system-site-packages`, so that
#     it sees Debian's torch/numpy, with pip packages pinned below: timm (Inception-ResNet-v2 in PyTorch;
#     0.9.x is the last series that supports torch 1.13), keras 3 with the JAX CPU backend (Keras's own
#     DenseNet201 / InceptionResNetV2), safetensors; tensorboard (reads back the apps' event files in
#     tests/cpu/test_experiment_charts.cpp); onnx and onnxruntime (the export to ONNX, weights_tools.export,
#     checked by running the exported graph). A constraints file pins numpy to Debian's version so
#     pip never replaces the numpy that Debian's torch was built against.
#   - A stamp file in the venv records the pins it was built with: a second call checks the Debian
#     packages (dpkg-query, no network) and the stamp, prints nothing and takes well under a second.
#
# Environment: ENGINE_VENV (venv folder, default .venv relative to the current directory, which the
# scripts set to the repository root). Exports ENGINE_PYTHON (the venv's python) and KERAS_BACKEND=jax.

ENGINE_PYTHON_DEBIAN_PACKAGES=(python3-venv python3-numpy python3-h5py python3-torch python3-torchvision)

# Pinned pip packages. Verified together on Debian 12 (Python 3.11.2, numpy 1.24.2, torch 1.13.1):
# jax 0.4.38 is the last jax that accepts numpy 1.24 (0.5 needs numpy >= 1.25); keras 3.8.0 is of the
# same time and runs on it; timm 0.9.16 is the last 0.9.x. onnx 1.17.0 and onnxruntime 1.19.2 (2024) have
# cp311 wheels, run on numpy 1.24 and read the opset 17 graphs that torch 1.13's exporter writes;
# coloredlogs, humanfriendly and flatbuffers are onnxruntime's dependencies (sympy is Debian's).
ENGINE_PYTHON_PIP_PACKAGES=(
  timm==0.9.16
  keras==3.8.0
  "jax[cpu]==0.4.38"
  jaxlib==0.4.38
  safetensors==0.4.5
  huggingface_hub==0.26.5
  ml_dtypes==0.5.4
  h5py==3.12.1
  scipy==1.15.3
  tensorboard==2.19.0
  protobuf==5.29.5
  onnx==1.17.0
  onnxruntime==1.19.2
  coloredlogs==15.0.1
  humanfriendly==10.0
  flatbuffers==24.3.25
)
# Debian's versions, which pip must keep (the egg-info of Debian's packages makes them visible to pip).
ENGINE_PYTHON_PIP_CONSTRAINTS=(numpy==1.24.2)

# engine_install_packages: the idempotent apt-get installer of the build's own dependencies.
source "$(dirname "${BASH_SOURCE[0]}")/deps.sh"

engine_python_env() {
  local venv="${ENGINE_VENV:-.venv}"
  engine_install_packages "${ENGINE_PYTHON_DEBIAN_PACKAGES[@]}" || {
    echo "error: could not install ${ENGINE_PYTHON_DEBIAN_PACKAGES[*]} with apt-get" >&2
    return 1
  }
  local want
  want="$(printf '%s\n' "${ENGINE_PYTHON_PIP_PACKAGES[@]}" "${ENGINE_PYTHON_PIP_CONSTRAINTS[@]}" \
          "$(dpkg-query -W -f='${Version}' python3-torch python3-numpy 2>/dev/null)")"
  local stamp="$venv/.engine-python-env-stamp"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    ENGINE_PYTHON="$(cd "$venv" && pwd)/bin/python"; export ENGINE_PYTHON KERAS_BACKEND=jax
    return 0
  fi

  echo "setting up the Python environment in $venv (Debian torch + pip: ${ENGINE_PYTHON_PIP_PACKAGES[*]})"
  if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv" || {
      echo "error: /usr/bin/python3 -m venv $venv failed (is python3-venv installed?)" >&2
      return 1
    }
  fi
  local constraints="$venv/.engine-constraints.txt"
  printf '%s\n' "${ENGINE_PYTHON_PIP_CONSTRAINTS[@]}" > "$constraints"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -c "$constraints" \
      "${ENGINE_PYTHON_PIP_PACKAGES[@]}" || {
    echo "error: pip install into $venv failed; delete $venv and retry, or check access to PyPI" >&2
    return 1
  }
  # Prove the environment works before stamping it: every package imports and the versions are ours.
  KERAS_BACKEND=jax "$venv/bin/python" - <<'EOF' || { echo "error: the venv $venv does not import" >&2; return 1; }
import numpy, h5py, torch, torchvision, timm, safetensors, jax, keras, tensorboard, onnx, onnxruntime
assert keras.backend.backend() == "jax", keras.backend.backend()
assert numpy.__version__.startswith("1.24"), numpy.__version__
assert torch.__version__.startswith("1.13"), torch.__version__
print("python env:", "torch", torch.__version__, "torchvision", torchvision.__version__, "timm", timm.__version__,
      "keras", keras.__version__, "jax", jax.__version__, "numpy", numpy.__version__, "h5py", h5py.__version__,
      "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)
EOF
  printf '%s' "$want" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
  ENGINE_PYTHON="$(cd "$venv" && pwd)/bin/python"; export ENGINE_PYTHON KERAS_BACKEND=jax
}
