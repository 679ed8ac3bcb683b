#!/usr/bin/env bash
# Issue 15 on a GPU machine: SPARTAN and Houlsby (Pfeiffer alongside) with each method's learning rate swept PER TASK
# on 500 examples held out of train, in both recipes (plain: mean pooling + linear head, frozen LayerNorms; authors:
# MLP head + trainable LayerNorms), few-shot 200 x 3 seeds and full data x 1 seed.
# Usage: bash scripts/gpu_recipe_compare.sh MODEL_DIR GLUE_DIR [JOBS]
# Results: runs/compare_recipe/ (cells, resumable) and docs/results/{lr_sweep_*,compare_*}{,_authors}.{json,md,png}.
set -u
model=$1 data=$2 jobs=${3:-14}
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
tasks=sst2,mrpc,rte,cola,stsb
methods=spartan,houlsby,pfeiffer
common=(--model "$model" --data-dir "$data" --device cuda --threads 1 --runs runs/compare_recipe --out docs/results
        --tasks "$tasks" --methods "$methods")
fewshot=(--few-shot 200)                                   # 10 epochs, batch 8 (compare's few-shot defaults)
full=(--batch-size 32 --epochs 3 --save-steps 2000)        # every training example, 3 epochs
stamp() { echo "== $(date +%T) $*"; }

for recipe in plain authors; do
  stamp "$recipe: lr sweeps per task (few-shot 200; full data on the first 4,000 after the hold-out)"
  python3 -m pipeline.compare "${common[@]}" "${fewshot[@]}" --recipe $recipe --lr-sweep --sweep-task each \
      --jobs "$jobs"
  python3 -m pipeline.compare "${common[@]}" "${full[@]}" --recipe $recipe --lr-sweep --sweep-task each \
      --sweep-max-train-samples 4000 --jobs "$jobs"
  stamp "$recipe: full data, 1 seed  +  few-shot 200, 3 seeds"
  python3 -m pipeline.compare "${common[@]}" "${full[@]}" --recipe $recipe --jobs $((jobs - 4)) > /dev/null &
  python3 -m pipeline.compare "${common[@]}" "${fewshot[@]}" --recipe $recipe --seeds 3 --jobs 6 > /dev/null
  wait
done
stamp "done"
