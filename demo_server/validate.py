"""Validation of uploads with numpy and the files' own headers only (no torch, no pipeline).

A memory file is a safetensors file with tensors P [L,E,H], K [L,E*C,H], Vt [L,H,E*C], head_weight [O,H],
head_bias [O] (all float32 or all float16) and the JSON metadata `spartan_edge_memory` (docs/formats.md).
"""

from __future__ import annotations

import json
import re
import struct

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load

MEMORY_KEY = "spartan_edge_memory"
FORMAT_VERSION = 1
RECIPE_FORMAT_VERSION = 2  # a task with its own LayerNorms and/or an MLP head: the optional tensors below
TENSORS = ("P", "K", "Vt", "head_weight", "head_bias")
RECIPE_TENSORS = ("ln_weight", "ln_bias", "head_dense_weight", "head_dense_bias", "head_skip")
# The export writes "fp32"/"fp16"; the long numpy names are accepted too.
DTYPES = {"fp32": np.float32, "fp16": np.float16, "float32": np.float32, "float16": np.float16}
# Task names become URL segments and cache keys: a conservative charset rules out traversal and odd encodings.
TASK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FINGERPRINT_RE = re.compile(r"^[0-9A-Za-z:_.-]{8,128}$")
# File paths inside a backbone bundle: relative, no "..", no absolute, no backslashes.
BUNDLE_PATH_RE = re.compile(r"^(?!.*(?:^|/)\.\.?(?:/|$))[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")


class Invalid(Exception):
    """The upload is not acceptable; the message says why. `status` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400, **extra) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


def valid_task_name(task: str) -> bool:
    return bool(TASK_RE.match(task)) and ".." not in task


def read_header(data: bytes) -> dict:
    """The safetensors JSON header, with bounds checked before anything is trusted."""
    if len(data) < 8:
        raise Invalid("not a safetensors file: shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n == 0 or n > len(data) - 8 or n > 16 * 1024 * 1024:
        raise Invalid(f"not a safetensors file (corrupt or truncated): header length {n}, file {len(data)} bytes")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, ValueError) as e:
        raise Invalid(f"not a safetensors file: header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise Invalid("not a safetensors file: header is not a JSON object")
    return header


def memory_metadata(data: bytes) -> dict:
    meta = (read_header(data).get("__metadata__") or {}).get(MEMORY_KEY)
    if meta is None:
        raise Invalid(f"not a SPARTAN Edge memory file: no '{MEMORY_KEY}' metadata")
    try:
        meta = json.loads(meta)
    except ValueError:
        raise Invalid(f"'{MEMORY_KEY}' metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise Invalid(f"'{MEMORY_KEY}' metadata is not a JSON object")
    if meta.get("format_version") not in (FORMAT_VERSION, RECIPE_FORMAT_VERSION):
        raise Invalid(f"memory format_version {meta.get('format_version')!r}; this server reads "
                      f"{FORMAT_VERSION}, {RECIPE_FORMAT_VERSION}")
    return meta


def validate_memory(data: bytes, task: str, backbone: dict) -> dict:
    """Check a memory file against the registered backbone it names; return its metadata.

    `backbone` is the registry entry (manifest backbone section) for the fingerprint in the file.
    """
    meta = memory_metadata(data)
    if meta.get("task") != task:
        raise Invalid(f"file is for task {meta.get('task')!r}, uploaded as {task!r}")
    labels, is_reg = meta.get("label_names"), meta.get("is_regression")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or not isinstance(is_reg, bool):
        raise Invalid("metadata needs label_names (list of strings) and is_regression (bool)")
    if not is_reg and len(labels) < 2:
        raise Invalid("a classification task needs at least two label_names")
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, OSError) as e:
        raise Invalid(f"safetensors payload is corrupt or truncated: {e}") from None
    optional = set(RECIPE_TENSORS) if meta["format_version"] == RECIPE_FORMAT_VERSION else set()
    if not set(TENSORS) <= set(tensors) <= set(TENSORS) | optional:
        extra = f" (format_version 2 may add {list(RECIPE_TENSORS)})" if optional else ""
        raise Invalid(f"tensors must be {list(TENSORS)}{extra}, got {sorted(tensors)}")
    dtype = meta.get("dtype")
    if dtype not in DTYPES:
        raise Invalid(f"metadata dtype {dtype!r} is not one of {sorted(DTYPES)}")
    for name, t in tensors.items():
        if t.dtype != DTYPES[dtype]:
            raise Invalid(f"tensor {name} is {t.dtype}, metadata says {dtype}")

    shape = backbone.get("memory_shape") or {}
    mshape = meta.get("memory_shape") or {}
    for k, v in shape.items():  # the program bakes these in (sizes, top_k, temperature): they must agree
        if k in mshape and mshape[k] != v:
            raise Invalid(f"memory_shape.{k} is {mshape[k]!r}, the backbone's program needs {v!r}")
    L = shape.get("num_layers", backbone.get("num_layers"))
    E, C = shape.get("num_parents"), shape.get("num_children")
    H = shape.get("hidden_size", backbone.get("hidden_size"))
    n_out = 1 if is_reg else len(labels)
    max_labels = backbone.get("max_labels")
    out_ok = {n_out} | ({max_labels} if max_labels else set())
    O = tensors["head_weight"].shape[0] if tensors["head_weight"].ndim == 2 else -1  # noqa: E741
    if max_labels and n_out > max_labels:
        raise Invalid(f"{n_out} outputs is more than the backbone program's max_labels {max_labels}")
    if O not in out_ok:
        raise Invalid(f"head_weight has {O} outputs; the task needs {n_out} (or max_labels {max_labels})")
    want = {"P": (L, E, H), "K": (L, E * C, H) if E and C else None, "Vt": (L, H, E * C) if E and C else None,
            "head_weight": (O, H), "head_bias": (O,)}
    n_ln = len(backbone.get("layernorms") or []) or (tensors["ln_weight"].shape[0] if "ln_weight" in tensors else 0)
    recipe = {"ln_weight": (n_ln, H), "ln_bias": (n_ln, H), "head_dense_weight": (H, H), "head_dense_bias": (H,),
              "head_skip": (1,)}
    want.update({n: s for n, s in recipe.items() if n in tensors})
    for name, w in want.items():
        got = tuple(tensors[name].shape)
        if w is None or None in w:
            raise Invalid("the backbone's memory_shape is incomplete; cannot check shapes", status=409)
        if got != w:
            raise Invalid(f"tensor {name} has shape {list(got)}, the backbone needs {list(w)}")
    for name, t in tensors.items():
        if not np.isfinite(t).all():
            raise Invalid(f"tensor {name} has NaN or infinite values")
    return meta


def validate_bundle_files(files: object) -> list[dict]:
    if not isinstance(files, list) or not files:
        raise Invalid("files must be a non-empty list of {path, sha256, bytes}")
    out, seen = [], set()
    for f in files:
        if not isinstance(f, dict):
            raise Invalid("each file must be an object {path, sha256, bytes}")
        path, sha, size = f.get("path"), f.get("sha256"), f.get("bytes")
        if not isinstance(path, str) or not BUNDLE_PATH_RE.match(path) or len(path) > 200:
            raise Invalid(f"bad bundle file path {path!r}")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise Invalid(f"bad sha256 for {path}")
        if not isinstance(size, int) or size < 0:
            raise Invalid(f"bad byte count for {path}")
        if path in seen:
            raise Invalid(f"duplicate bundle file path {path}")
        seen.add(path)
        out.append({"path": path, "sha256": sha, "bytes": size})
    return out
