#!/usr/bin/env bash
# CUDA correctness of the engine on a GPU machine (not part of CI). Writes into $OUT:
#   gpu_check.log    every step's output, in order
#   gpu_check.json   the CUDA-vs-CPU comparisons and the image-budget run's summary
#   pytest_full.log  the whole test suite with the GPU visible (xdist)
#   epochs_amp.csv   the AMP run's curve
# Steps: BAFE-Net R18 trains briefly with AMP on CUDA and the same weights are evaluated on CUDA
# and on the CPU (the metrics must agree); the high-resolution BAFE-Net with the sky switches
# trains and validates on CUDA; fcos_hr trains on CUDA under an image budget (train.max_images);
# the released weights predict through the Python API on CUDA and on the CPU (same detections);
# then the whole test suite runs with the GPU visible.
#   OUT=/tmp/out bash benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PWD/src:/tmp/site
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
step() { echo "=== $*" | tee -a "$LOG"; }

step env
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
  'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1 | tee -a "$LOG"
rm -rf /tmp/gsyn /tmp/gruns
python3 -m bafenet data synth /tmp/gsyn --n 64 --seed 0 >>"$LOG" 2>&1
COMMON="data.root=/tmp/gsyn model.weights_backbone=null data.workers=4 train.device=cuda"
HR="data.train_split=train data.val_split=val eval.split=val data.input.crop_size=256"

step "AMP training on CUDA, evaluation on CUDA and on the CPU"
python3 -m bafenet train bafenet_r18 $COMMON train.amp=true train.epochs=12 data.repeat=3 train.val_interval=4 \
  --project /tmp/gruns --name amp --no-progress >>"$LOG" 2>&1
python3 -m bafenet val --weights /tmp/gruns/amp/best.pt --device cuda --out /tmp/gval_cuda >>"$LOG" 2>&1
python3 -m bafenet val --weights /tmp/gruns/amp/best.pt --device cpu --out /tmp/gval_cpu >>"$LOG" 2>&1
cp /tmp/gruns/amp/epochs.csv "$OUT/epochs_amp.csv"

step "high-resolution BAFE-Net with sky context and sky scoring on CUDA"
python3 -m bafenet train bafenet_hr $COMMON $HR "model.kwargs={sky_context: true, sky_scoring: true}" train.amp=true \
  train.epochs=4 train.val_interval=2 --project /tmp/gruns --name hr_sky --no-progress >>"$LOG" 2>&1
python3 -m bafenet val --weights /tmp/gruns/hr_sky/last.pt --device cuda --out /tmp/gval_hr >>"$LOG" 2>&1

step "fcos_hr on CUDA under an image budget of 96 images"
python3 -m bafenet train bafenet_hr $COMMON $HR model.name=fcos_hr train.epochs=100 train.max_images=96 \
  "train.time_milestones=[0.8]" --project /tmp/gruns --name image_budget --no-progress >>"$LOG" 2>&1

step "released weights through the Python API: CUDA against the CPU"
python3 - <<'PY' 2>&1 | tee -a "$LOG"
import json
from pathlib import Path
import numpy as np
from bafenet.api import Detector
frame = sorted(Path("/tmp/gsyn/PNGImages").glob("*.png"))[0]
out = {}
for name in ("fcos_hr_densesirst", "bafenet_hr_densesirst"):
    results = {d: Detector.load(f"weights/{name}.pt", device=d, score_thr=0.05)(frame) for d in ("cuda", "cpu")}
    a, b = results["cuda"], results["cpu"]
    n = min(len(a.scores), len(b.scores))
    out[name] = {
        "detections": {"cuda": len(a.scores), "cpu": len(b.scores)},
        "max_box_diff_px": float(np.abs(a.boxes[:n] - b.boxes[:n]).max()) if n else 0.0,
        "max_score_diff": float(np.abs(a.scores[:n] - b.scores[:n]).max()) if n else 0.0,
        "sky_max_diff": None if a.sky is None else float(np.abs(a.sky - b.sky).max()),
    }
print(json.dumps(out, indent=1))
json.dump(out, open("/tmp/gpu_api.json", "w"))
PY

step "comparisons"
python3 - <<'PY' 2>&1 | tee -a "$LOG"
import json
a = json.load(open("/tmp/gval_cuda/metrics.json")); b = json.load(open("/tmp/gval_cpu/metrics.json"))
keys = ["mAP07", "mAP12", "recall", "strict_mAP07", "irstd_pd", "sky_iou"]
out = {"val_amp_weights": {k: {"cuda": a.get(k), "cpu": b.get(k)} for k in keys}}
out["train_amp_summary"] = json.load(open("/tmp/gruns/amp/summary.json"))
out["hr_sky_val"] = {k: json.load(open("/tmp/gval_hr/metrics.json")).get(k) for k in keys}
s = json.load(open("/tmp/gruns/image_budget/summary.json"))
out["image_budget_summary"] = {k: s[k] for k in ("images_seen", "stopped_by_budget", "epochs_done")}
out["api_cuda_vs_cpu"] = json.load(open("/tmp/gpu_api.json"))
print(json.dumps(out, indent=1))
json.dump(out, open("/tmp/gpu_compare.json", "w"), indent=1)
PY
cp /tmp/gpu_compare.json "$OUT/gpu_check.json"

step "the test suite with the GPU visible"
python3 -m pytest -q -p no:cacheprovider -n 12 tests >"$OUT/pytest_full.log" 2>&1
tail -n 40 "$OUT/pytest_full.log" | tee -a "$LOG"
