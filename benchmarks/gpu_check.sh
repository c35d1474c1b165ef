#!/usr/bin/env bash
# CUDA / AMP correctness of the engine on a GPU machine (not part of CI).
# Trains BAFE-Net R18 briefly on synthetic data with AMP on CUDA, then evaluates the same
# weights on CUDA and on the CPU: the metrics must agree. Then the high-resolution BAFE-Net
# with the sky switches (sky_context, sky_scoring) trains and validates on CUDA, and the
# model tests run with the GPU visible. Writes logs + JSON into $OUT.
#   OUT=/tmp/out bash benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PWD/src:/tmp/site
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
python3 - <<'PY' 2>&1 | tee "$OUT/env.txt"
import torch, torchvision
print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
rm -rf /tmp/gsyn /tmp/gruns
python3 -m bafenet data synth /tmp/gsyn --n 64 --seed 0
COMMON="data.root=/tmp/gsyn model.weights_backbone=null data.workers=4 train.device=cuda"
python3 -m bafenet train bafenet_r18 $COMMON train.amp=true train.epochs=12 data.repeat=3 train.val_interval=4 \
  --project /tmp/gruns --name amp --no-progress 2>&1 | tee "$OUT/train_amp.log"
python3 -m bafenet val --weights /tmp/gruns/amp/best.pt --device cuda --out /tmp/gval_cuda 2>&1 | tee "$OUT/val_cuda.log"
python3 -m bafenet val --weights /tmp/gruns/amp/best.pt --device cpu --out /tmp/gval_cpu 2>&1 | tee "$OUT/val_cpu.log"
python3 - <<'PY' 2>&1 | tee "$OUT/compare.txt"
import json
a = json.load(open("/tmp/gval_cuda/metrics.json")); b = json.load(open("/tmp/gval_cpu/metrics.json"))
keys = ["mAP07", "mAP12", "recall", "strict_mAP07", "irstd_pd", "sky_iou"]
out = {k: {"cuda": a.get(k), "cpu": b.get(k)} for k in keys}
summary = json.load(open("/tmp/gruns/amp/summary.json"))
out["train_amp_summary"] = summary
print(json.dumps(out, indent=1))
json.dump(out, open("/tmp/gpu_compare.json", "w"), indent=1)
PY
cp /tmp/gpu_compare.json "$OUT/gpu_check.json"
cp /tmp/gruns/amp/epochs.csv "$OUT/epochs_amp.csv"

python3 -m pytest -q -p no:cacheprovider tests/models/test_cuda.py tests/models/test_sky_context.py 2>&1 | tee "$OUT/pytest_cuda.log"
python3 -m bafenet train bafenet_hr $COMMON data.train_split=train data.val_split=val eval.split=val \
  "model.kwargs={sky_context: true, sky_scoring: true}" data.input.crop_size=256 train.amp=true \
  train.epochs=4 train.val_interval=2 --project /tmp/gruns --name hr_sky --no-progress 2>&1 | tee "$OUT/train_hr_sky.log"
python3 -m bafenet val --weights /tmp/gruns/hr_sky/last.pt --device cuda --out /tmp/gval_hr 2>&1 | tee "$OUT/val_hr_sky.log"
