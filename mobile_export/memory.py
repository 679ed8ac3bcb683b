"""Per-task memory files: the five tensors a backbone program needs for one task, self-described in the header.

    P [L,E,H]  K [L,E*C,H]  Vt [L,H,E*C]  head_weight [max_labels,H]  head_bias [max_labels]

The head is zero-padded to the bundle's `max_labels` rows so one program (fixed input shapes) serves tasks with any
number of outputs up to that; the device reads the first `num_outputs` logits. The header key
"spartan_edge_memory" holds JSON (documented in docs/formats.md) that a server can check with numpy alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pipeline.errors import UserError

from .model import MEMORY_INPUTS, MemoryShape

MEMORY_FORMAT_VERSION = 1
MEMORY_METADATA_KEY = "spartan_edge_memory"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def memory_shape(task_model, meta: dict) -> MemoryShape:
    """The memory shape of a loaded SPARTAN TaskModel."""
    cfg = task_model.delta[0].config
    return MemoryShape(num_layers=len(task_model.delta), num_parents=cfg.num_parents, num_children=cfg.num_children,
                       top_k=cfg.top_k, temperature=float(cfg.temperature), hidden_size=meta["backbone"]["hidden_size"])


def task_tensors(task_model, max_labels: int) -> dict[str, torch.Tensor]:
    """Stack the per-layer memories and pad the head to `max_labels` rows (fp32)."""
    mems = list(task_model.delta)
    w, b = task_model.head.weight.detach(), task_model.head.bias.detach()
    if w.shape[0] > max_labels:
        raise UserError(f"task {task_model.task.name} has {w.shape[0]} outputs; this export allows at most "
                        f"{max_labels} (raise --max-labels)")
    pad = max_labels - w.shape[0]
    return {
        "P": torch.stack([m.P.detach() for m in mems]).float().contiguous(),
        "K": torch.stack([m.K.detach() for m in mems]).float().contiguous(),
        "Vt": torch.stack([m.Vt.detach() for m in mems]).float().contiguous(),
        "head_weight": torch.cat([w.float(), w.new_zeros(pad, w.shape[1])]).contiguous(),
        "head_bias": torch.cat([b.float(), b.new_zeros(pad)]).contiguous(),
    }


def memory_header(meta: dict, shape: MemoryShape, max_labels: int, dtype: str) -> dict:
    task = meta["task"]
    return {
        "format_version": MEMORY_FORMAT_VERSION,
        "task": task["name"],
        "label_names": task["label_names"],
        "is_regression": task["is_regression"],
        "num_outputs": 1 if task["is_regression"] else len(task["label_names"]),
        "max_labels": max_labels,
        "metric": meta["metric"],
        "backbone_fingerprint": meta["backbone"]["fingerprint"],
        "memory_shape": shape.to_dict(),
        "dtype": dtype,
    }


def write_memory(path: Path, tensors: dict[str, torch.Tensor], header: dict) -> Path:
    dtype = DTYPES[header["dtype"]]
    save_file({k: tensors[k].to(dtype).contiguous() for k in MEMORY_INPUTS}, str(path),
              metadata={MEMORY_METADATA_KEY: json.dumps(header, sort_keys=True)})
    return path


def read_memory(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(fp32 tensors in program input order, header). For tests and the parity check; devices read it natively."""
    with safe_open(str(path), framework="pt") as f:
        header = json.loads((f.metadata() or {})[MEMORY_METADATA_KEY])
        tensors = {k: f.get_tensor(k).float() for k in MEMORY_INPUTS}
    return tensors, header
