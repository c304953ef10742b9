#!/usr/bin/env bash
# GPU check for a machine with a CUDA GPU and no network; installs nothing. From the repository root:
#
#   bash scripts/gpu_check.sh [OUT_DIR]        (or: nox -s gpu)
#
# 1. the gpu-marked tests (features on CUDA vs CPU, an MPFT step on CUDA, NCCL collectives with 2+ GPUs);
# 2. bf16 scoring throughput of ViT-B-16 (with the plain fp32 reference loop beside it) and ViT-L-14, and one
#    MPFT training step on ViT-L-14. Without network no CLIP weights can be fetched, so the ViTs have RANDOM
#    weights: the numbers are throughput only.
# Rows are appended to OUT_DIR/pipeline.csv (default results/bench/gpu) beside machine.json.
set -euo pipefail

PY=${PYTHON:-python}
OUT=${1:-results/bench/gpu}
export HF_HUB_OFFLINE=1
export DETBENCH_HOME=${DETBENCH_HOME:-$(mktemp -d -t detbench-gpu-XXXXXX)}

"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to torch")'
"$PY" -c 'import torch; print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'

echo "== pytest -m gpu"
"$PY" -m pytest -q -m gpu tests

echo "== throughput (random weights, bf16 autocast)"
"$PY" -m detbench bench --device cuda --backbone "open_clip:ViT-B-16@random" --crop 224 --size 256 \
    --images 2048 --batch-size 256 --only forward,score,reference --out "$OUT"
"$PY" -m detbench bench --device cuda --backbone "open_clip:ViT-L-14@random" --crop 224 --size 256 \
    --images 1024 --batch-size 128 --only forward,score,mpft_step --out "$OUT"

"$PY" - "$OUT/pipeline.csv" <<'PYEOF'
import sys

import pandas as pd

rows = pd.read_csv(sys.argv[1]).groupby(["what", "backbone"], sort=False).tail(1)
rows = rows[rows["device"].str.startswith("cuda") & rows["backbone"].str.contains("ViT", na=False)]
print("\nsummary (random weights; bf16 autocast):")
print(rows[["what", "backbone", "batch", "images_per_s", "ratio", "note"]].to_string(index=False))
PYEOF
