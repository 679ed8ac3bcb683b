"""dist/manifest.json, the export's own index (format_version 1; docs/formats.md "dist manifest").

Written by mobile_export beside the files it lists; read by the publisher (demo_server publish). Not to be confused
with the server's catalog (`GET /manifest`, catalog.py), which is what devices read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import fields as F
from .atomic import atomic_write_bytes
from .backbone import read_backbone, read_file_list, read_inputs, read_memory_shape
from .errors import FormatError
from .names import check_fingerprint, check_name, check_path, check_sha256, is_memory_dtype

DIST_MANIFEST_FORMAT_VERSION = 1
RECIPE_DIST_MANIFEST_FORMAT_VERSION = 2  # the recipe program: LayerNorm and MLP-head inputs, a defaults file
DIST_MANIFEST_NAME = "manifest.json"
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


def read_dist_manifest(doc: Any) -> dict:
    """Validate a dist manifest (a parsed object, or the file's bytes); return it."""
    if isinstance(doc, bytes | str):
        if len(doc) > MAX_DOCUMENT_BYTES:
            raise FormatError("too_large", f"dist manifest is over {MAX_DOCUMENT_BYTES} bytes")
        doc = F.parse_json(doc, "dist manifest")
    d = F.obj(doc, "dist manifest", code="not_object")
    F.format_version(d, (DIST_MANIFEST_FORMAT_VERSION, RECIPE_DIST_MANIFEST_FORMAT_VERSION), "dist manifest")
    bb = F.obj(F.need(d, "backbone", "dist manifest"), "backbone")
    check_fingerprint(F.need(bb, "fingerprint", "backbone"), "backbone.fingerprint")
    if "memory_shape" not in bb:
        raise FormatError("missing_field", "backbone has no 'memory_shape'")
    read_memory_shape(bb["memory_shape"], "backbone.memory_shape")
    F.integer(F.need(bb, "max_labels", "backbone"), "backbone.max_labels", 1)
    F.integer(F.need(bb, "max_seq_length", "backbone"), "backbone.max_seq_length", 2)
    targets = F.obj(F.need(d, "targets", "dist manifest"), "targets")
    for name, t in targets.items():
        check_name(name, "target name")
        w = f"targets.{name}"
        t = F.obj(t, w)
        files = read_file_list(F.need(t, "files", w), f"{w}.files")
        prog = check_path(F.need(t, "program", w), f"{w}.program")
        if prog not in {f["path"] for f in files}:
            raise FormatError("bad_field", f"{w}.program {prog!r} is not one of its files")
        if "inputs" in t:
            read_inputs(t["inputs"], f"{w}.inputs")
        for p in t.get("tokenizer") or []:
            check_path(p, f"{w}.tokenizer")
        backbone_description(d, name)  # the publisher's view must be valid too
    tasks = F.obj(F.need(d, "tasks", "dist manifest"), "tasks")
    for task, e in tasks.items():
        check_name(task, "task name")
        w = f"tasks.{task}"
        e = F.obj(e, w)
        check_fingerprint(F.need(e, "backbone_fingerprint", w), f"{w}.backbone_fingerprint")
        F.string_list(F.need(e, "label_names", w), f"{w}.label_names")
        F.boolean(F.need(e, "is_regression", w), f"{w}.is_regression")
        for target, f in F.obj(F.need(e, "files", w), f"{w}.files").items():
            if target not in targets:
                raise FormatError("bad_field", f"{w}.files names target {target!r}, which the manifest does not have")
            f = F.obj(f, f"{w}.files.{target}")
            check_path(F.need(f, "path", f"{w}.files.{target}"), f"{w}.files.{target}.path")
            check_sha256(F.need(f, "sha256", f"{w}.files.{target}"), f"{w}.files.{target}.sha256")
            F.integer(F.need(f, "bytes", f"{w}.files.{target}"), f"{w}.files.{target}.bytes", 0)
            if not is_memory_dtype(f.get("dtype", "fp32")):
                raise FormatError("bad_dtype", f"{w}.files.{target}.dtype {f.get('dtype')!r} is not fp32 or fp16")
    return d


def _in_target(path: str, target: str) -> str:
    return path[len(target) + 1:] if path.startswith(target + "/") else path


def backbone_description(manifest: dict, target: str) -> dict:
    """The bundle description (backbone.py) the publisher registers for one target: paths relative to the target's
    folder (`android/backbone.pte` is served as `/backbone/android/backbone.pte`)."""
    bb, spec = manifest["backbone"], manifest["targets"][target]
    body = {k: bb[k] for k in ("id", "model_type", "fingerprint", "hidden_size", "num_layers", "memory_shape",
                               "max_seq_length", "max_labels") if k in bb}
    for k in ("inputs", "outputs", "quantize", "compute_precision"):
        if k in spec:
            body[k] = spec[k]
    if spec.get("tokenizer") is not None:
        body["tokenizer"] = [_in_target(p, target) for p in spec["tokenizer"]]
    body["program"] = _in_target(spec["program"], target)
    body["files"] = [{"path": _in_target(f["path"], target), "sha256": f["sha256"], "bytes": f["bytes"]}
                     for f in spec["files"]]
    return read_backbone(body, f"targets.{target} (as a bundle description)")


def load_dist_manifest(dist: str | os.PathLike) -> dict:
    path = Path(dist) / DIST_MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FormatError("missing_file", f"{path}: {e.strerror}") from None
    return read_dist_manifest(raw)


def write_dist_manifest(dist: str | os.PathLike, manifest: dict) -> Path:
    read_dist_manifest(manifest)  # a writer never writes what the readers refuse
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return atomic_write_bytes(Path(dist) / DIST_MANIFEST_NAME, data)
