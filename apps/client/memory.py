"""Reading and checking a task memory file on the device (numpy + safetensors; no torch, no pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file

from .errors import IntegrityError

MEMORY_KEY = "spartan_edge_memory"
NAMES = ("P", "K", "Vt", "head_weight", "head_bias")


def memory_header(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(MEMORY_KEY)
    except (SafetensorError, OSError) as e:
        raise IntegrityError(f"{path.name}: not a readable memory file: {e}") from None
    if raw is None:
        raise IntegrityError(f"{path.name}: no '{MEMORY_KEY}' header; not a SPARTAN Edge memory")
    meta = json.loads(raw)
    if meta.get("format_version") != 1:
        raise IntegrityError(f"{path.name}: memory format_version {meta.get('format_version')}; this client reads 1")
    return meta


def check_memory(path: Path, task: str, backbone: dict) -> dict:
    """The memory must be for this task and for exactly the cached backbone, with the program's input shapes."""
    meta = memory_header(path)
    have_fp, want_fp = meta.get("backbone_fingerprint"), backbone["fingerprint"]
    if have_fp != want_fp:
        raise IntegrityError(f"memory for {task!r} was made for backbone {str(have_fp)[:16]}…, but the cached "
                             f"backbone is {want_fp[:16]}…; refused")
    if meta.get("task") != task:
        raise IntegrityError(f"memory file is for task {meta.get('task')!r}, not {task!r}; refused")
    return meta


def memory_inputs(path: Path, backbone: dict) -> list[np.ndarray]:
    """The five tensors in program input order, as float32 (the program's input dtype), checked for shape."""
    tensors = load_file(str(path))
    shapes = {i["name"]: i.get("shape") for i in backbone.get("inputs", []) if isinstance(i, dict)}
    out = []
    for name in NAMES:
        if name not in tensors:
            raise IntegrityError(f"{path.name}: tensor {name} missing; refused")
        t = tensors[name].astype(np.float32)
        want = shapes.get(name)
        if want and list(t.shape) != list(want):
            raise IntegrityError(f"{path.name}: {name} has shape {list(t.shape)}, the program takes {want}; refused")
        if not np.isfinite(t).all():
            raise IntegrityError(f"{path.name}: {name} has NaN/inf values; refused")
        out.append(np.ascontiguousarray(t))
    return out
