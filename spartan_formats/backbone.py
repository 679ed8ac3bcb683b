"""The backbone bundle description: what one backbone program per target needs to be installed and fed.

It is the body of `POST /backbone/<target>` (built from dist/manifest.json by the publisher), the server's
registry record, and (with version/url fields added) each entry of the catalog's `backbones`. The memory shape
lives here too because every memory file is checked against it.
"""

from __future__ import annotations

from typing import Any

from . import fields as F
from .errors import FormatError
from .names import check_fingerprint, check_path, check_sha256

MEMORY_SHAPE_INTS = ("num_layers", "num_parents", "num_children", "top_k", "hidden_size")
MEMORY_SHAPE_KEYS = (*MEMORY_SHAPE_INTS, "temperature")
MAX_LABELS_LIMIT = 1024
MAX_FILES = 64
QUANTIZE = (None, "int8")
# Keys the server keeps in its registry record (besides fingerprint and files).
BACKBONE_META_KEYS = ("id", "model_type", "hidden_size", "num_layers", "memory_shape", "max_seq_length", "max_labels",
                      "program", "inputs", "outputs", "quantize", "tokenizer", "compute_precision")


def read_memory_shape(v: Any, what: str = "memory_shape") -> dict:
    """{num_layers, num_parents, num_children, top_k, hidden_size: positive ints, temperature: positive number};
    top_k <= num_parents. Other keys are ignored (dropped)."""
    d = F.obj(v, what)
    out: dict = {}
    for k in MEMORY_SHAPE_INTS:
        out[k] = F.integer(F.need(d, k, what), f"{what}.{k}", 1, 1 << 20)
    out["temperature"] = F.number(F.need(d, "temperature", what), f"{what}.temperature", positive=True)
    if out["top_k"] > out["num_parents"]:
        raise FormatError("bad_field", f"{what}.top_k {out['top_k']} exceeds num_parents {out['num_parents']}")
    return out


def read_file_list(v: Any, what: str = "files") -> list[dict]:
    """[{path, sha256, bytes}], non-empty, paths unique. Extra keys per entry (url, dtype) are checked elsewhere."""
    if not isinstance(v, list) or not v or len(v) > MAX_FILES:
        raise FormatError("bad_field", f"{what} must be a non-empty list of at most {MAX_FILES} files")
    out, seen = [], set()
    for i, f in enumerate(v):
        f = F.obj(f, f"{what}[{i}]")
        path = check_path(F.need(f, "path", f"{what}[{i}]"), f"{what}[{i}].path")
        sha = check_sha256(F.need(f, "sha256", f"{what}[{i}]"), f"{what}[{i}].sha256")
        size = F.integer(F.need(f, "bytes", f"{what}[{i}]"), f"{what}[{i}].bytes", 0, 1 << 50)
        if path in seen:
            raise FormatError("duplicate_path", f"{what} lists {path!r} twice")
        seen.add(path)
        out.append({"path": path, "sha256": sha, "bytes": size})
    return out


def read_inputs(v: Any, what: str = "inputs") -> list:
    """The program's input spec: names, or objects {name, shape (ints or symbolic names), dtype, ...}."""
    if not isinstance(v, list) or len(v) > 64:
        raise FormatError("bad_field", f"{what} must be a list")
    for i, x in enumerate(v):
        if isinstance(x, str):
            continue
        x = F.obj(x, f"{what}[{i}]")
        F.string(F.need(x, "name", f"{what}[{i}]"), f"{what}[{i}].name", 64)
        shape = x.get("shape")
        if shape is not None and (not isinstance(shape, list) or not all(
                isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape)):
            raise FormatError("bad_field", f"{what}[{i}].shape must be a list of sizes or names")
        if "dtype" in x:
            F.string(x["dtype"], f"{what}[{i}].dtype", 32)
    return v


def read_backbone(doc: Any, what: str = "backbone") -> dict:
    """Validate a bundle description; return it with only the known keys (files normalised)."""
    d = F.obj(doc, what, code="not_object")
    out: dict = {"fingerprint": check_fingerprint(F.need(d, "fingerprint", what), f"{what}.fingerprint")}
    if "memory_shape" not in d:
        raise FormatError("missing_field", f"{what} has no 'memory_shape'")
    shape = out["memory_shape"] = read_memory_shape(d["memory_shape"], f"{what}.memory_shape")
    out["max_labels"] = F.integer(F.need(d, "max_labels", what), f"{what}.max_labels", 1, MAX_LABELS_LIMIT)
    out["max_seq_length"] = F.integer(F.need(d, "max_seq_length", what), f"{what}.max_seq_length", 2, 1 << 16)
    for k in ("hidden_size", "num_layers"):
        if d.get(k) is not None:
            if F.integer(d[k], f"{what}.{k}", 1) != shape[k]:
                raise FormatError("bad_field", f"{what}.{k} is {d[k]}, memory_shape.{k} is {shape[k]}")
            out[k] = d[k]
    files = out["files"] = read_file_list(F.need(d, "files", what), f"{what}.files")
    paths = {f["path"] for f in files}
    out["program"] = check_path(F.need(d, "program", what), f"{what}.program")
    if out["program"] not in paths:
        raise FormatError("bad_field", f"{what}.program {out['program']!r} is not one of its files")
    if d.get("tokenizer") is not None:
        tok = out["tokenizer"] = F.string_list(d["tokenizer"], f"{what}.tokenizer", MAX_FILES)
        for p in tok:
            if check_path(p, f"{what}.tokenizer") not in paths:
                raise FormatError("bad_field", f"{what}.tokenizer names {p!r}, which is not one of its files")
    if d.get("inputs") is not None:
        out["inputs"] = read_inputs(d["inputs"], f"{what}.inputs")
    if d.get("outputs") is not None:
        out["outputs"] = F.string_list(d["outputs"], f"{what}.outputs", 64)
    if d.get("quantize") not in QUANTIZE:
        raise FormatError("bad_field", f"{what}.quantize must be null or 'int8', not {d.get('quantize')!r}")
    out["quantize"] = d.get("quantize")
    for k in ("id", "model_type", "compute_precision"):
        if d.get(k) is not None:
            out[k] = F.string(d[k], f"{what}.{k}", 512)
    return out


def check_against(memory_meta: dict, backbone: dict) -> None:
    """A (validated) memory file's metadata must fit a (validated) backbone: same fingerprint, same memory shape
    (top_k and temperature included: the program bakes them in), same max_labels (fixed program input shape)."""
    if memory_meta["backbone_fingerprint"] != backbone["fingerprint"]:
        raise FormatError("fingerprint_mismatch", f"memory was made for backbone {memory_meta['backbone_fingerprint']}"
                                                  f", not {backbone['fingerprint']}")
    for k in MEMORY_SHAPE_KEYS:
        if memory_meta["memory_shape"][k] != backbone["memory_shape"][k]:
            raise FormatError("memory_shape_mismatch", f"memory_shape.{k} is {memory_meta['memory_shape'][k]!r}, "
                                                       f"the backbone's program needs {backbone['memory_shape'][k]!r}")
    if memory_meta["max_labels"] != backbone["max_labels"]:
        raise FormatError("max_labels_mismatch", f"memory has max_labels {memory_meta['max_labels']}, the backbone's "
                                                 f"program takes {backbone['max_labels']}")
