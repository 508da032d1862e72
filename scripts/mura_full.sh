#!/usr/bin/env bash
# The whole of MURA, end to end and timed: a full-size synthetic MURA (apps/mura_synth at MURA's image
# counts and sizes) generated once, then one training run of 10 epochs over its training split at 224 px
# with validation after each epoch and the test pass at the end, data loading included, as a user runs it.
# It shows (not projects) how long a net takes over the whole data set on this machine: the bf16 issue's
# target is under 10 minutes per net on one H100 (docs/benchmarks.md, "The whole of MURA").
#
#   scripts/mura_full.sh [--net densenet201|inception_resnet_v2] [--precision bf16|f32] [--batch N]
#                        [--epochs N] [--train-images N] [--out DIR] [--smoke]
#
# Defaults: densenet201, bf16, batch 128, 10 epochs, 36,808 training images (MURA's train split), out
# $BUILD_DIR/mura_full. The synthetic set is MURA-shaped (patients, studies, body parts, 2-4 images per
# study, longest sides 300-512 px, grayscale PNGs; MURA's valid split as the test set, the official
# protocol's validation 1/9 of the training patients): its training split is sized so that the epochs see
# --train-images images, and the folder is reused while its stamp matches. --smoke: a CPU check of the
# script (densenet_tiny at 64 px, a few hundred images, one epoch).
# Environment: BUILD_DIR (default build; configured and built here when the apps are missing), WORKERS
# (loader threads, default the number of cores), MURA_FULL_DATA (where the set is generated, default
# $OUT/data).
# Output: $OUT/run (the run folder: args.json, curves, checkpoints, the test report), $OUT/train.log and
# $OUT/summary.json (arch, device, precision, images per epoch, validation and test images, wall seconds
# and minutes of the whole run, training images per second over it, seconds of the generation). Exit
# status: that of the training run.
set -euo pipefail
cd "$(dirname "$0")/.."

NET=densenet201
PRECISION=bf16
BATCH=128
EPOCHS=10
TRAIN_IMAGES=36808
OUT=""
SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --net) NET="${2:?--net needs a value}"; shift ;;
    --precision) PRECISION="${2:?--precision needs a value}"; shift ;;
    --batch) BATCH="${2:?--batch needs a value}"; shift ;;
    --epochs) EPOCHS="${2:?--epochs needs a value}"; shift ;;
    --train-images) TRAIN_IMAGES="${2:?--train-images needs a value}"; shift ;;
    --out) OUT="${2:?--out needs a folder}"; shift ;;
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "mura_full.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$NET" in
  densenet201) APP=train_densenet; ARCH_FLAGS=(--arch densenet201) ;;
  inception_resnet_v2) APP=train_irv2; ARCH_FLAGS=() ;;
  *) echo "mura_full.sh: --net must be densenet201 or inception_resnet_v2, not '$NET'" >&2; exit 2 ;;
esac

BUILD_DIR="${BUILD_DIR:-build}"
OUT="${OUT:-$BUILD_DIR/mura_full}"
WORKERS="${WORKERS:-$(nproc)}"
SIZE=224
DEVICE=auto
MIN_SIDE=300
if [ "$SMOKE" = 1 ]; then
  TRAIN_IMAGES=300; EPOCHS=1; BATCH=8; SIZE=64; DEVICE=cpu; MIN_SIDE=64
  [ "$NET" = densenet201 ] && ARCH_FLAGS=(--arch densenet_tiny)
  [ "$NET" = inception_resnet_v2 ] && SIZE=75
fi
DATA="${MURA_FULL_DATA:-$OUT/data}"

if [ ! -x "$BUILD_DIR/$APP" ] || [ ! -x "$BUILD_DIR/mura_synth" ]; then
  source scripts/lib/deps.sh
  engine_ensure_build_deps
  engine_build "$BUILD_DIR" >/dev/null
fi
mkdir -p "$OUT"

# mura_synth writes about 2.94 images per training patient and 2.8 per valid one (deterministic per seed);
# the official protocol keeps 8/9 of the training patients for training. MURA's valid split: 3,197 images.
train_patients=$(( (TRAIN_IMAGES * 9 * 100 / 8 + 293) / 294 ))
valid_patients=$(( TRAIN_IMAGES == 36808 ? 1140 : (train_patients / 11 + 1) ))
stamp="synth train_patients=$train_patients valid_patients=$valid_patients min_side=$MIN_SIDE seed=0"
generate_start=$SECONDS
if [ ! -f "$DATA/.mura-full-stamp" ] || [ "$(cat "$DATA/.mura-full-stamp")" != "$stamp" ]; then
  echo "generating a synthetic MURA in $DATA ($train_patients train and $valid_patients valid patients)"
  rm -rf "$DATA"
  "$BUILD_DIR/mura_synth" --train-patients "$train_patients" --valid-patients "$valid_patients" \
      --min-side "$MIN_SIDE" --max-side 512 --threads "$WORKERS" --out "$DATA" | tail -n 1
  printf '%s\n' "$stamp" > "$DATA/.mura-full-stamp"
fi
generate_seconds=$((SECONDS - generate_start))

echo "training $NET ($PRECISION, batch $BATCH, $EPOCHS epochs at ${SIZE} px) on $DATA"
rm -rf "$OUT/run"
start=$(date +%s.%N)
status=0
"$BUILD_DIR/$APP" "${ARCH_FLAGS[@]}" --data "$DATA/MURA-v1.1" --protocol official --images 0 \
    --epochs "$EPOCHS" --batch-size "$BATCH" --precision "$PRECISION" --input-size "$SIZE" --device "$DEVICE" \
    --workers "$WORKERS" --out "$OUT/run" > "$OUT/train.log" 2>&1 || status=$?
end=$(date +%s.%N)
tail -n 15 "$OUT/train.log"

# What ran, from the trainer's first line: "<arch> (...) on <device>: N train, M validation, K test images".
counts=$(grep -m 1 -E '^[a-z0-9_]+ \(.*\) on .*: [0-9]+ train, [0-9]+ validation, [0-9]+ test images' "$OUT/train.log" || true)
python3 - "$OUT/summary.json" "$PRECISION" "$BATCH" "$EPOCHS" "$SIZE" "$start" "$end" "$generate_seconds" "$status" \
    "$counts" <<'EOF'
import json, os, re, sys
path, precision, batch, epochs, size, start, end, generated, status, counts = sys.argv[1:]
m = re.match(r"([a-z0-9_]+) \(.*\) on (\S+): (\d+) train, (\d+) validation, (\d+) test images", counts)
arch, device, train, valid, test = (m.group(1), m.group(2), *map(int, m.group(3, 4, 5))) if m else ("?", "?", 0, 0, 0)
wall = float(end) - float(start)
summary = {"arch": arch, "device": device, "precision": precision, "batch": int(batch), "epochs": int(epochs),
           "input_size": int(size), "train_images_per_epoch": train, "validation_images": valid, "test_images": test,
           "wall_seconds": round(wall, 1), "minutes": round(wall / 60, 2),
           "train_images_per_second_overall": round(train * int(epochs) / wall, 1) if wall > 0 else None,
           "generation_seconds": int(generated), "exit_status": int(status)}
with open(path + ".tmp", "w") as f:
    json.dump(summary, f, indent=2)
os.replace(path + ".tmp", path)
print(json.dumps(summary))
EOF
exit "$status"
