"""Measure a bundle and write docs/results/export.json: sizes, runtime parity, fp16 memories, int8 drop, latency.

    python -m benchmarks.export_report --memories RUN [RUN ...] --data-dir ../shared/data/glue \
        --out docs/results/export.json

Exports into a temporary folder (fp32 android+ios, int8 android), then runs every task's full dev set through the
ExecuTorch programs one sentence at a time, like a phone. Latency numbers depend on the machine: the JSON records
the thread count and load average next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mobile_export.bundle import export_bundle
from mobile_export.memory import memory_header, memory_shape, memory_tensors, read_memory, write_memory
from mobile_export.parity import android_parity, bundle_defaults, encode_one, load_android, run_android
from pipeline import load_task
from pipeline.artifact import read_arrays, read_metadata
from pipeline.data import load_glue
from pipeline.metrics import compute_metrics, primary_metric


def dev_metric(method, tokenizer, memory_file: Path, examples, metric: str, max_len: int,
               defaults: dict | None = None) -> float:
    memory, header = read_memory(memory_file)
    preds = []
    for i in range(len(examples)):
        enc = encode_one(tokenizer, examples.text_a[i], examples.text_b[i] if examples.text_b else None, max_len)
        logits = run_android(method, enc, memory, header["num_outputs"], defaults)[0]
        preds.append(logits[0] if header["is_regression"] else int(logits.argmax()))
    scores = compute_metrics(metric, np.asarray(preds), np.asarray(examples.labels))
    return float(scores[primary_metric(metric)])


def fp16_effect(method, task_model, tokenizer, memory_file: Path, examples, n: int, max_len: int,
                defaults: dict | None = None) -> dict:
    """Round the memory to fp16 (what an fp16 memory file holds), run it in the fp32 program, compare to fp32."""
    memory, header = read_memory(memory_file)
    half = {k: v.half().float() for k, v in memory.items()}
    diffs, agree = [], []
    for i in range(min(n, len(examples))):
        enc = encode_one(tokenizer, examples.text_a[i], examples.text_b[i] if examples.text_b else None, max_len)
        a = run_android(method, enc, memory, header["num_outputs"], defaults)[0]
        b = run_android(method, enc, half, header["num_outputs"], defaults)[0]
        diffs.append(float(np.abs(a - b).max()))
        agree.append(header["is_regression"] or a.argmax() == b.argmax())
    return {"n": len(diffs), "max_abs_logit_diff": max(diffs), "prediction_agreement": float(np.mean(agree))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.export_report", description=__doc__.split("\n")[0])
    p.add_argument("--memories", nargs="+", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="docs/results/export.json")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--parity-n", type=int, default=200)
    args = p.parse_args(argv)
    from transformers import AutoTokenizer

    report: dict = {"command": "python -m benchmarks.export_report " + " ".join(argv or sys.argv[1:]),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared, busy)", "tasks": {}}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        t0 = time.perf_counter()
        manifest = export_bundle(args.memories, work / "fp32", "all", max_seq_length=args.max_seq_length)
        report["export_seconds_all_targets"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        export_bundle(args.memories, work / "int8", "android", quantize="int8", max_seq_length=args.max_seq_length)
        report["export_seconds_android_int8"] = round(time.perf_counter() - t0, 1)
        report["sizes_bytes"] = {
            "android_backbone_pte_fp32": (work / "fp32/android/backbone.pte").stat().st_size,
            "android_backbone_pte_int8": (work / "int8/android/backbone.pte").stat().st_size,
            "ios_backbone_mlpackage_zip_fp16": (work / "fp32/ios/backbone.mlpackage.zip").stat().st_size,
            "tokenizer_files": sum(f["bytes"] for f in manifest["targets"]["android"]["files"]
                                   if f["path"] in manifest["targets"]["android"]["tokenizer"]),
        }
        tokenizer = AutoTokenizer.from_pretrained(str(work / "fp32" / "android"))
        fp32_prog, int8_prog = load_android(work / "fp32"), load_android(work / "int8")
        defaults = bundle_defaults(work / "fp32")  # None for a plain program
        for run in args.memories:
            model, _, meta = load_task(run)
            name = meta["task"]["name"]
            data = load_glue(name, args.data_dir)
            mem = work / "fp32" / "android" / "memories" / f"{name}.safetensors"
            par = android_parity(fp32_prog, model, tokenizer, mem, data.validation, args.parity_n,
                                 args.max_seq_length, defaults)
            fp32_metric = dev_metric(fp32_prog, tokenizer, mem, data.validation, data.metric, args.max_seq_length,
                                     defaults)
            int8_metric = dev_metric(int8_prog, tokenizer, mem, data.validation, data.metric, args.max_seq_length,
                                     defaults)
            max_labels = manifest["backbone"]["max_labels"]
            tensors = memory_tensors(read_arrays(run), read_metadata(run), max_labels,
                                     manifest["backbone"].get("layernorms"))
            half = write_memory(work / f"{name}.fp16.safetensors", tensors,
                                memory_header(meta, memory_shape(meta), max_labels, "fp16", tensors))
            report["tasks"][name] = {
                "artifact": str(run), "dev_examples": len(data.validation), "metric": primary_metric(data.metric),
                "artifact_metric_eager_batched": meta["metrics"],
                "memory_file_bytes": {"fp32": mem.stat().st_size, "fp16": half.stat().st_size},
                "parity_fp32": {"n": par.n, "max_abs_logit_diff": par.max_abs_diff,
                                "max_abs_logit_diff_without_near_ties": par.max_abs_diff_clear,
                                "near_ties": par.near_ties, "prediction_agreement": par.agreement},
                "fp16_memory_effect": fp16_effect(fp32_prog, model, tokenizer, mem, data.validation, args.parity_n,
                                                  args.max_seq_length, defaults),
                "dev_metric_fp32_program": fp32_metric, "dev_metric_int8_program": int8_metric,
                "int8_drop_points": round(100 * (fp32_metric - int8_metric), 2),
            }
            print(json.dumps({name: report["tasks"][name]}, indent=1), file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
