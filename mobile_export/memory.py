"""Per-task memory files: the five tensors a backbone program needs for one task, self-described in the header.

    P [L,E,H]  K [L,E*C,H]  Vt [L,H,E*C]  head_weight [max_labels,H]  head_bias [max_labels]

The head is zero-padded to the bundle's `max_labels` rows so one program (fixed input shapes) serves tasks with any
number of outputs up to that; the device reads the first `num_outputs` logits. The file format itself (header key,
metadata, checks) is defined once in spartan_formats.memory (docs/formats.md); this module only turns a task
artifact's torch tensors into it and back.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import UserError
from spartan_formats import FormatError
from spartan_formats import memory as memory_format
from spartan_formats.memory import MEMORY_DTYPES as DTYPES  # noqa: F401  (the CLI's --memory-dtype choices)

from .model import MEMORY_INPUTS, MemoryShape


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
    """The memory file's metadata for a task artifact's metadata (pipeline.read_metadata)."""
    task = meta["task"]
    return memory_format.memory_metadata(
        task=task["name"], label_names=task["label_names"], is_regression=task["is_regression"],
        max_labels=max_labels, metric=meta["metric"], backbone_fingerprint=meta["backbone"]["fingerprint"],
        memory_shape=shape.to_dict(), dtype=dtype)


def write_memory(path: Path, tensors: dict[str, torch.Tensor], header: dict) -> Path:
    """Write through spartan_formats (which checks the file it writes: e.g. fp16 overflow to inf is refused)."""
    try:
        return memory_format.write_memory(path, {k: tensors[k].detach().float().cpu().numpy() for k in MEMORY_INPUTS},
                                          header)
    except FormatError as e:
        raise UserError(f"cannot write the memory file {path}: {e}") from None


def read_memory(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(fp32 tensors in program input order, header), fully validated. For tests and the parity check."""
    try:
        mem = memory_format.read_memory_file(path)
    except FormatError as e:
        raise UserError(f"{path} is not a valid memory file: {e}") from None
    return {k: torch.from_numpy(a) for k, a in zip(MEMORY_INPUTS, mem.inputs_fp32(), strict=True)}, mem.meta
