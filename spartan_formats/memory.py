"""The task memory file (`memories/<task>.safetensors`, format_version 1 or 2; docs/formats.md "Memory file").

    P [L,E,H]  K [L,E*C,H]  Vt [L,H,E*C]  head_weight [max_labels,H]  head_bias [max_labels]
    version 2 adds (the tensors its metadata lists under "tensors"): ln_weight, ln_bias [N_ln,H] (the task's own
    LayerNorms) and/or head_dense_weight [H,H], head_dense_bias [H], head_skip [1] (an MLP head); those files run on
    the recipe program, which takes them as inputs (a plain task's file leaves them to the bundle's defaults file).

all of the dtype the metadata names (fp32 or fp16), finite, head rows >= num_outputs zero. The safetensors
metadata key `spartan_edge_memory` holds a JSON object (MemoryMeta below). Readers: `read_memory(data, ...)`;
writer: `memory_bytes` / `write_memory` (which validate what they write with the same reader).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as st_save

from . import fields as F
from . import safetensors_file
from .atomic import atomic_write_bytes
from .backbone import MAX_LABELS_LIMIT, check_against, read_memory_shape
from .errors import FormatError
from .names import check_fingerprint, check_name, is_memory_dtype

MEMORY_FORMAT_VERSION = 1
RECIPE_FORMAT_VERSION = 2
MEMORY_METADATA_KEY = "spartan_edge_memory"
MEMORY_TENSORS = ("P", "K", "Vt", "head_weight", "head_bias")  # also the program's memory inputs, in order
RECIPE_TENSORS = ("ln_weight", "ln_bias", "head_dense_weight", "head_dense_bias", "head_skip")  # then these
MEMORY_DTYPES = {"fp32": "F32", "fp16": "F16"}  # metadata name -> safetensors dtype
NUMPY_DTYPES = {"fp32": np.float32, "fp16": np.float16}
MAX_MEMORY_BYTES = 256 * 1024 * 1024


@dataclass
class MemoryFile:
    meta: dict
    file: safetensors_file.SafetensorsFile

    def array(self, name: str) -> np.ndarray:
        return self.file.array(name)

    def inputs_fp32(self, names: tuple[str, ...] | list[str] = MEMORY_TENSORS,
                    defaults: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """The program's task inputs `names` (the manifest's input names after the token inputs; default: the plain
        program's five) as contiguous float32: this file's tensor, else the bundle defaults file's."""
        out = []
        for n in names:
            if n in self.file.tensors:
                out.append(np.array(self.array(n), dtype=np.float32, order="C", copy=True))
            elif defaults is not None and n in defaults:
                out.append(np.array(defaults[n], dtype=np.float32, order="C", copy=True))
            else:
                raise FormatError("tensor_set", f"program input {n} is in neither the memory file nor the defaults")
        return out


def read_metadata(meta_raw: Any) -> dict:
    """Validate the `spartan_edge_memory` JSON (a string); return the object with known fields checked."""
    m = F.metadata_object(meta_raw, MEMORY_METADATA_KEY, "not a SPARTAN Edge memory file")
    w = "memory metadata"
    version = F.format_version(m, (MEMORY_FORMAT_VERSION, RECIPE_FORMAT_VERSION), w)
    if version == RECIPE_FORMAT_VERSION:
        names = F.string_list(F.need(m, "tensors", w), "tensors", 16)
        extra = names[len(MEMORY_TENSORS):]
        if names[:len(MEMORY_TENSORS)] != list(MEMORY_TENSORS) or not extra or \
                extra != [n for n in RECIPE_TENSORS if n in extra]:
            raise FormatError("bad_field", f"a format_version 2 memory lists its tensors as {list(MEMORY_TENSORS)} "
                                           f"then some of {list(RECIPE_TENSORS)} in that order, not {names}")
    check_name(F.need(m, "task", w), "task")
    dtype = F.need(m, "dtype", w)
    if not is_memory_dtype(dtype):
        raise FormatError("bad_dtype", f"metadata dtype {F._show(dtype)} is not one of {sorted(MEMORY_DTYPES)}")
    check_fingerprint(F.need(m, "backbone_fingerprint", w))
    if "memory_shape" not in m:
        raise FormatError("missing_field", "memory metadata has no 'memory_shape'")
    m["memory_shape"] = read_memory_shape(m["memory_shape"], "memory_shape")
    labels = F.string_list(F.need(m, "label_names", w), "label_names", MAX_LABELS_LIMIT)
    is_reg = F.boolean(F.need(m, "is_regression", w), "is_regression")
    n_out = F.integer(F.need(m, "num_outputs", w), "num_outputs", 1, MAX_LABELS_LIMIT)
    if is_reg and n_out != 1:
        raise FormatError("bad_field", f"a regression task has num_outputs 1, not {n_out}")
    if not is_reg and (len(labels) < 2 or n_out != len(labels)):
        raise FormatError("bad_field", f"a classification task needs >= 2 label_names and num_outputs equal to "
                                       f"their count ({len(labels)} labels, num_outputs {n_out})")
    max_labels = F.integer(F.need(m, "max_labels", w), "max_labels", 1, MAX_LABELS_LIMIT)
    if n_out > max_labels:
        raise FormatError("too_many_outputs", f"{n_out} outputs is more than max_labels {max_labels}")
    F.string(F.need(m, "metric", w), "metric", 64)
    return m


def read_memory(data: bytes | memoryview, backbone: dict | None = None, task: str | None = None) -> MemoryFile:
    """Parse and fully validate a memory file. With `backbone` (a validated bundle description, see
    backbone.read_backbone) the file must fit it; with `task` it must be that task's."""
    if len(data) > MAX_MEMORY_BYTES:
        raise FormatError("too_large", f"{len(data)} bytes is over the {MAX_MEMORY_BYTES}-byte memory file limit")
    sf = safetensors_file.parse(data)
    meta = read_metadata(sf.metadata.get(MEMORY_METADATA_KEY))
    names = tuple(meta["tensors"]) if meta["format_version"] == RECIPE_FORMAT_VERSION else MEMORY_TENSORS
    if set(sf.tensors) != set(names):
        raise FormatError("tensor_set", f"tensors must be exactly {list(names)}, got {sorted(sf.tensors)}")
    want_dt = MEMORY_DTYPES[meta["dtype"]]
    for name in names:
        if sf.tensors[name].dtype != want_dt:
            raise FormatError("tensor_dtype", f"tensor {name} is {sf.tensors[name].dtype}, metadata says "
                                              f"{meta['dtype']} ({want_dt})")
    s = meta["memory_shape"]
    L, E, C, H, O = s["num_layers"], s["num_parents"], s["num_children"], s["hidden_size"], meta["max_labels"]  # noqa: E741
    want = {"P": (L, E, H), "K": (L, E * C, H), "Vt": (L, H, E * C), "head_weight": (O, H), "head_bias": (O,)}
    n_ln = sf.tensors["ln_weight"].shape[0] if "ln_weight" in sf.tensors and sf.tensors["ln_weight"].shape else 0
    recipe = {"ln_weight": (n_ln, H), "ln_bias": (n_ln, H), "head_dense_weight": (H, H), "head_dense_bias": (H,),
              "head_skip": (1,)}
    want.update({n: s for n, s in recipe.items() if n in names})
    for name, shape in want.items():
        if sf.tensors[name].shape != shape:
            raise FormatError("tensor_shape", f"tensor {name} has shape {list(sf.tensors[name].shape)}, the "
                                              f"metadata says {list(shape)}")
    mem = MemoryFile(meta, sf)
    for name in names:
        if not np.isfinite(mem.array(name)).all():
            raise FormatError("not_finite", f"tensor {name} has NaN or infinite values")
    n = meta["num_outputs"]
    if np.any(mem.array("head_weight")[n:]) or np.any(mem.array("head_bias")[n:]):
        raise FormatError("bad_padding", f"head rows from num_outputs ({n}) to max_labels ({O}) must be zero")
    if task is not None and meta["task"] != task:
        raise FormatError("task_mismatch", f"file is for task {meta['task']!r}, not {task!r}")
    if backbone is not None:
        check_against(meta, backbone)
        inputs = {i["name"]: i for i in backbone.get("inputs") or [] if isinstance(i, dict)}
        for name in names:  # a recipe tensor must be an input of the program (a plain program has none of them)
            if inputs and name in RECIPE_TENSORS and name not in inputs:
                raise FormatError("tensor_set", f"tensor {name} is not an input of the backbone's program")
            if name in inputs and inputs[name].get("shape") and list(sf.tensors[name].shape) != inputs[name]["shape"]:
                raise FormatError("tensor_shape", f"tensor {name} has shape {list(sf.tensors[name].shape)}, the "
                                                  f"program takes {inputs[name]['shape']}")
    return mem


def read_memory_file(path: str | os.PathLike, backbone: dict | None = None, task: str | None = None) -> MemoryFile:
    size = os.path.getsize(path)
    if size > MAX_MEMORY_BYTES:
        raise FormatError("too_large", f"{size} bytes is over the {MAX_MEMORY_BYTES}-byte memory file limit")
    return read_memory(Path(path).read_bytes(), backbone, task)


def memory_metadata(*, task: str, label_names: list[str], is_regression: bool, max_labels: int, metric: str,
                    backbone_fingerprint: str, memory_shape: dict, dtype: str, **extra: Any) -> dict:
    """The metadata object for a memory file (extra fields are allowed and kept)."""
    return {"format_version": MEMORY_FORMAT_VERSION, "task": task, "label_names": list(label_names),
            "is_regression": is_regression, "num_outputs": 1 if is_regression else len(label_names),
            "max_labels": max_labels, "metric": metric, "backbone_fingerprint": backbone_fingerprint,
            "memory_shape": dict(memory_shape), "dtype": dtype, **extra}


def memory_bytes(arrays: dict[str, np.ndarray], meta: dict) -> bytes:
    """Serialise a memory file (tensors cast to the metadata's dtype) and check it with the reader: a writer
    can never produce a file the readers refuse."""
    dt = NUMPY_DTYPES[meta["dtype"]] if is_memory_dtype(meta.get("dtype")) else None
    if dt is None:
        raise FormatError("bad_dtype", f"metadata dtype {meta.get('dtype')!r} is not one of {sorted(MEMORY_DTYPES)}")
    names = meta["tensors"] if meta.get("format_version") == RECIPE_FORMAT_VERSION else MEMORY_TENSORS
    tensors = {k: np.ascontiguousarray(np.asarray(arrays[k]), dtype=dt) for k in names}
    data = st_save(tensors, metadata={MEMORY_METADATA_KEY: json.dumps(meta, sort_keys=True)})
    read_memory(data)
    return data


def write_memory(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    return atomic_write_bytes(path, memory_bytes(arrays, meta))
