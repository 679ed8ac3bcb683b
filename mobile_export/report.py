"""Measure a bundle and write docs/results/export.json: sizes, runtime parity, fp16 memories, int8 drop, latency.

    python -m mobile_export.report --memories RUN [RUN ...] --data-dir ../shared/data/glue \
        --out docs/results/export.json [--latency]

Exports into a temporary folder (fp32 android+ios, int8 android), then runs every task's full dev set through the
ExecuTorch programs one sentence at a time, like a phone. Latency numbers depend on the machine: the JSON records
the thread count and load average next to them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import load_task
from pipeline.artifact import read_metadata, read_tensors
from pipeline.backbone import mean_pool
from pipeline.data import load_glue
from pipeline.metrics import compute_metrics, primary_metric

from . import android
from .bundle import check_artifacts, export_bundle, load_checked_backbone
from .memory import memory_header, memory_shape, memory_tensors, read_memory, write_memory
from .parity import android_parity, bundle_defaults, encode_one, load_android, run_android


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


class Bare(torch.nn.Module):
    """The backbone alone with mean pooling: the floor the memory-as-inputs program is compared against."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids, attention_mask):
        return mean_pool(self.backbone(input_ids=input_ids, attention_mask=attention_mask)[0], attention_mask)


def latency(runs: list[str], max_len: int, work: Path, repeats: int = 30) -> dict:
    """Median ms at S=32 and S=128 for: bare backbone, memory delegated (the bundle's setting), memory not delegated."""
    from torch.export import Dim, export

    from .model import EdgeModel

    path, meta = check_artifacts(runs[:1])[0]
    backbone, tokenizer = load_checked_backbone(meta)
    memory = memory_tensors(read_tensors(path), meta, 8)
    model = EdgeModel(backbone, memory_shape(meta), tokenizer.sep_token_id)
    bare_backbone = copy.deepcopy(backbone)  # with EdgeModel's LayerNorms, as the memory program has them
    ep = android.export_program(model, 8, max_len)
    programs, delegation = {}, {}
    for name, flag in (("memory_inputs_delegated", True), ("memory_inputs_not_delegated", False)):
        edge = android.lower_edge(ep, flag)
        delegation[name] = android.delegation_summary(edge)
        programs[name] = (work / f"{name}.pte", True)
        programs[name][0].write_bytes(edge.to_executorch().buffer)
    seq = Dim("seq", min=2, max=max_len)
    ids = torch.full((1, 8), 1000)
    bare_ep = export(Bare(bare_backbone), (ids, torch.ones_like(ids)), dynamic_shapes=({1: seq}, {1: seq}),
                     strict=False)
    edge = android.lower_edge(bare_ep)
    delegation["bare_backbone"] = android.delegation_summary(edge)
    programs["bare_backbone"] = (work / "bare.pte", False)
    programs["bare_backbone"][0].write_bytes(edge.to_executorch().buffer)
    # Round-robin over the programs so load swings on a shared machine hit all of them alike
    methods = {n: android.load_forward(p) for n, (p, _) in programs.items()}
    times: dict[str, list[float]] = {}
    for s in (32, 128):
        x = torch.randint(1000, 5000, (1, s))
        args = {n: [x, torch.ones_like(x)] + (list(memory.values()) if mem else []) for n, (_, mem) in programs.items()}
        for n in programs:
            methods[n].execute(args[n])  # warm-up
        for _ in range(repeats):
            for n in programs:
                t0 = time.perf_counter()
                methods[n].execute(args[n])
                times.setdefault(f"{n}_S{s}_ms", []).append((time.perf_counter() - t0) * 1e3)
    out = {k: round(statistics.median(v), 2) for k, v in times.items()}
    return {"median_ms": out, "runs_per_program": repeats, "delegation": delegation,
            "loadavg_at_end": os.getloadavg(), "note": "measured on a shared, busy 2-core x86 machine; noisy"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mobile_export.report", description=__doc__.split("\n")[0])
    p.add_argument("--memories", nargs="+", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="docs/results/export.json")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--parity-n", type=int, default=200)
    p.add_argument("--latency", action="store_true", help="also lower bare/non-delegated programs and time them")
    p.add_argument("--latency-only", action="store_true", help="only (re)measure latency into the existing --out")
    args = p.parse_args(argv)
    from transformers import AutoTokenizer

    if args.latency_only:
        report = json.loads(Path(args.out).read_text())
        with tempfile.TemporaryDirectory() as d:
            report["latency"] = latency(args.memories, args.max_seq_length, Path(d))
        report["latency"]["command"] = "python -m mobile_export.report " + " ".join(argv or sys.argv[1:])
        Path(args.out).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return 0
    report: dict = {"command": "python -m mobile_export.report " + " ".join(argv or sys.argv[1:]),
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
            tensors = memory_tensors(read_tensors(run), read_metadata(run), max_labels,
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
        if args.latency:
            report["latency"] = latency(args.memories, args.max_seq_length, work)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
