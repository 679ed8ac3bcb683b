"""Reading and checking a task memory file on the device (numpy + safetensors; no torch, no pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file

from .errors import IntegrityError

MEMORY_KEY = "spartan_edge_memory"
NAMES = ("P", "K", "Vt", "head_weight", "head_bias")  # the inputs of a program from before manifest v2
READS = (1, 2)  # 2: a task with its own LayerNorms and/or an MLP head (extra tensors)
DEFAULTS_FILE = "defaults.safetensors"


def memory_header(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get(MEMORY_KEY)
    except (SafetensorError, OSError) as e:
        raise IntegrityError(f"{path.name}: not a readable memory file: {e}") from None
    if raw is None:
        raise IntegrityError(f"{path.name}: no '{MEMORY_KEY}' header; not a SPARTAN Edge memory")
    meta = json.loads(raw)
    if meta.get("format_version") not in READS:
        raise IntegrityError(f"{path.name}: memory format_version {meta.get('format_version')}; this client reads "
                             f"{', '.join(map(str, READS))}")
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


def task_input_names(backbone: dict) -> list[str]:
    """The program's inputs after input_ids and attention_mask, in order, from the manifest's `inputs` list."""
    names = [i["name"] if isinstance(i, dict) else i for i in backbone.get("inputs") or []]
    return names[2:] if names else list(NAMES)


def memory_inputs(path: Path, backbone: dict, defaults: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """The program's task inputs in order, as float32 (the program's input dtype), checked for shape: the memory
    file's tensor of that name, else the bundle's defaults file's (inputs the manifest marks "default")."""
    tensors = load_file(str(path))
    specs = {i["name"]: i for i in backbone.get("inputs", []) if isinstance(i, dict)}
    out = []
    for name in task_input_names(backbone):
        t = tensors.get(name)
        if t is None and specs.get(name, {}).get("default") and defaults is not None:
            t = defaults.get(name)
        if t is None:
            raise IntegrityError(f"{path.name}: tensor {name} missing (and not in the bundle's defaults); refused")
        t = t.astype(np.float32)
        want = specs.get(name, {}).get("shape")
        if want and list(t.shape) != list(want):
            raise IntegrityError(f"{path.name}: {name} has shape {list(t.shape)}, the program takes {want}; refused")
        if not np.isfinite(t).all():
            raise IntegrityError(f"{path.name}: {name} has NaN/inf values; refused")
        out.append(np.ascontiguousarray(t))
    unknown = sorted(set(tensors) - set(task_input_names(backbone)))
    if unknown:
        raise IntegrityError(f"{path.name}: tensors {unknown} are not inputs of the cached program; refused")
    return out


def load_defaults(path: Path | None) -> dict[str, np.ndarray] | None:
    return None if path is None else load_file(str(path))
