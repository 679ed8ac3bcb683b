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


def memory_shape(meta: dict) -> MemoryShape:
    """The memory shape of a SPARTAN task artifact, from its metadata (pipeline.read_metadata)."""
    return MemoryShape.from_options(meta["options"], meta["backbone"]["num_layers"], meta["backbone"]["hidden_size"])


def memory_tensors(artifact: dict[str, torch.Tensor], meta: dict, max_labels: int) -> dict[str, torch.Tensor]:
    """A SPARTAN artifact's tensors (pipeline.artifact.read_tensors: `delta.<layer>.P|K|Vt`, `head.weight|bias`) as
    the memory file's five tensors: the layers stacked, the head zero-padded to `max_labels` rows, fp32.

    The values are the artifact's, unchanged: no model is built."""
    task = meta["task"]["name"]
    n = meta["backbone"]["num_layers"]
    w, b = artifact["head.weight"], artifact["head.bias"]
    if w.shape[0] > max_labels:
        raise UserError(f"task {task} has {w.shape[0]} outputs; this export allows at most {max_labels} "
                        "(raise --max-labels)")
    try:
        P, K, Vt = (torch.stack([artifact[f"delta.{i}.{name}"] for i in range(n)]) for name in ("P", "K", "Vt"))
    except KeyError as e:
        raise UserError(f"task {task}: the artifact lacks the memory tensor {e.args[0]}") from None
    pad = max_labels - w.shape[0]
    return {
        "P": P.float().contiguous(), "K": K.float().contiguous(), "Vt": Vt.float().contiguous(),
        "head_weight": torch.cat([w.float(), w.new_zeros(pad, w.shape[1]).float()]).contiguous(),
        "head_bias": torch.cat([b.float(), b.new_zeros(pad).float()]).contiguous(),
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
