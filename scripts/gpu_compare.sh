#!/usr/bin/env bash
# The comparison's heavy cells on a GPU machine (issue 3): learning-rate sweeps, few-shot 200 x 3 seeds, and the
# full-data runs, many cells at once. Usage: bash scripts/gpu_compare.sh MODEL_DIR GLUE_DIR [JOBS]
# Results: runs/compare_gpu/ (cells, resumable) and docs/results/{lr_sweep_*,compare_*}.{json,md,png}.
set -u
model=$1 data=$2 jobs=${3:-14}
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
common=(--model "$model" --data-dir "$data" --device cuda --threads 1 --runs runs/compare_gpu --out docs/results)
fewshot=(--few-shot 200)                                   # 10 epochs, batch 8 (compare's few-shot defaults)
full=(--batch-size 32 --epochs 3 --save-steps 2000)        # every training example, 3 epochs
stamp() { echo "== $(date +%T) $*"; }

stamp "lr sweep, few-shot (SST-2, 200 examples, 500 held out of train)"
python3 -m pipeline.compare "${common[@]}" "${fewshot[@]}" --lr-sweep --jobs "$jobs"
stamp "lr sweep, full data (SST-2, first 4,000 examples after 500 held out)"
python3 -m pipeline.compare "${common[@]}" "${full[@]}" --lr-sweep --sweep-max-train-samples 4000 --jobs "$jobs"
stamp "full data, 1 seed  +  few-shot 200, 3 seeds (side by side)"
python3 -m pipeline.compare "${common[@]}" "${full[@]}" --jobs $((jobs - 4)) > /dev/null &
python3 -m pipeline.compare "${common[@]}" "${fewshot[@]}" --seeds 3 --jobs 6 > /dev/null
wait
stamp "done"
