"""What an int8 memory file would cost in accuracy: a task's memory and head rounded to int8 with one fp32 scale per
row (symmetric, -127..127, rows along the last dim, as Int8Embedding stores the word embeddings), and to fp16, then
evaluated on the task's dev set in the eager task model (the program computes the same function; parity tests).

    python benchmarks/int8_memory_accuracy.py --artifact runs/sst2 [--data-dir ../shared/data/glue] [--out docs/results]

Writes OUT/int8_memory.{json,md}: dev metric per rounding, the delta to fp32, and the file size each would have.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import load_task  # noqa: E402
from pipeline.data import load_glue  # noqa: E402
from pipeline.metrics import compute_metrics, primary_metric  # noqa: E402
from pipeline.trainer import encode  # noqa: E402


def int8_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values, fp32 scale per row of the last dim)."""
    scale = t.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 127.0
    return torch.round(t / scale).clamp(-127, 127).to(torch.int8), scale.squeeze(-1)


def rounded(t: torch.Tensor, how: str) -> torch.Tensor:
    if how == "fp16":
        return t.half().float()
    if how == "int8":
        q, s = int8_rows(t)
        return q.float() * s.unsqueeze(-1)
    return t


def file_bytes(n_values: int, n_rows: int, how: str) -> int:
    """Payload of the memory file (header excluded): values plus, for int8, one fp32 scale per row."""
    return n_values * {"fp32": 4, "fp16": 2, "int8": 1}[how] + (4 * n_rows if how == "int8" else 0)


@torch.inference_mode()
def dev_metric(model, tokenizer, data, max_len: int = 128) -> float:
    preds = []
    for start in range(0, len(data.validation), 64):
        idx = list(range(start, min(start + 64, len(data.validation))))
        logits = model(**encode(tokenizer, data.validation, idx, max_len))
        preds.append(logits if model.task.is_regression else logits.argmax(-1))
    scores = compute_metrics(data.metric, torch.cat(preds).numpy(), np.asarray(data.validation.labels))
    return float(scores[primary_metric(data.metric)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--artifact", required=True)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(REPO / "docs" / "results"))
    args = p.parse_args()
    model, tokenizer, meta = load_task(args.artifact)
    data = load_glue(meta["task"]["name"], args.data_dir)
    params = dict(model.named_parameters())
    names = sorted(model.trainable_state_dict())
    original = {n: params[n].detach().clone() for n in names}
    n_values = sum(t.numel() for t in original.values())
    n_rows = sum(t.numel() // t.shape[-1] for t in original.values())
    rows = {}
    for how in ("fp32", "fp16", "int8"):
        with torch.no_grad():
            for n in names:
                params[n].copy_(rounded(original[n], how))
        rows[how] = {"dev_metric": dev_metric(model, tokenizer, data),
                     "payload_bytes": file_bytes(n_values, n_rows, how)}
        print(f"{how}: {rows[how]}", file=sys.stderr)
    for how in rows:
        rows[how]["delta_points"] = round(100 * (rows[how]["dev_metric"] - rows["fp32"]["dev_metric"]), 2)
    report = {"command": "python benchmarks/int8_memory_accuracy.py " + " ".join(sys.argv[1:]),
              "task": meta["task"]["name"], "metric": primary_metric(data.metric), "dev_examples": len(data.validation),
              "artifact_metrics": meta["metrics"], "tensors": names, "values": n_values, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Memory and head rounded to fp16 / int8 (per-row scales): dev metric", "",
             f"Command: `{report['command']}`", "",
             f"Task {report['task']}, {report['dev_examples']} dev examples, eager task model with the rounded "
             "tensors (the exported program computes the same function).", "",
             "| memory values | dev metric | delta (points) | payload bytes |", "|---|---|---|---|"]
    for how, r in rows.items():
        lines.append(f"| {how} | {100 * r['dev_metric']:.2f} | {r['delta_points']:+.2f} | {r['payload_bytes']:,} |")
    (out / "int8_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
