#!/usr/bin/env bash
# Exports the golden data of the parity tests (tests/cpu/test_parity_*.cpp) into ${1:-build/golden}:
# torchvision DenseNet-121/169/201, timm Inception-ResNet-v2 and Keras DenseNet201 / InceptionResNetV2,
# computed by those frameworks themselves (weights_tools/export_golden.py; docs/weights.md).
#
# Skips in well under a second when the folder holds data made by the same code: a stamp records the
# hash of weights_tools/*.py and of the pinned environment (scripts/lib/python_env.sh). Otherwise it sets
# up the Python environment (Debian's torch, pip's timm/keras/jax in .venv; idempotent), runs the
# converter tests (weights_tools/tests) and exports every case (about 2 minutes on 2 cores, 2 GB).
# GOLDEN_FORCE=1 exports even when the stamp is current.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-build/golden}"
STAMP="$OUT/.golden-stamp"
want="$(cat weights_tools/*.py scripts/lib/python_env.sh | sha256sum | cut -d' ' -f1)"

if [ "${GOLDEN_FORCE:-0}" != "1" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "golden data up to date in $OUT"
  exit 0
fi

source scripts/lib/python_env.sh
engine_python_env

echo "testing the converters (weights_tools/tests)"
log="$(mktemp)"
if ! "$ENGINE_PYTHON" -m unittest discover -s weights_tools/tests -t . > "$log" 2>&1; then
  cat "$log"
  rm -f "$log"
  echo "error: the converter tests failed" >&2
  exit 1
fi
tail -n 3 "$log"
rm -f "$log"

echo "exporting golden data into $OUT"
rm -f "$STAMP"
start=$SECONDS
"$ENGINE_PYTHON" -m weights_tools.export_golden --out "$OUT"
echo "golden data exported in $((SECONDS - start)) s ($(du -sh "$OUT" | cut -f1))"
printf '%s\n' "$want" > "$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
