"""The task artifact header (`task.safetensors` written by pipeline.save_task, format_version 1;
docs/formats.md "Task artifact"). Only the header is defined here (torch-free); pipeline owns the tensors."""

from __future__ import annotations

import os
import struct
from typing import Any

from . import fields as F
from .errors import FormatError
from .names import check_fingerprint, check_name, check_sha256

ARTIFACT_FORMAT_VERSION = 1
ARTIFACT_NAME = "task.safetensors"
ARTIFACT_METADATA_KEY = "spartan_edge"
MAX_HEADER_BYTES = 16 * 1024 * 1024


def read_artifact_metadata(meta_raw: Any) -> dict:
    """Validate the `spartan_edge` metadata JSON string of a task artifact."""
    m = F.metadata_object(meta_raw, ARTIFACT_METADATA_KEY, "not a task artifact")
    w = "artifact metadata"
    F.format_version(m, ARTIFACT_FORMAT_VERSION, w)
    F.string(F.need(m, "method", w), "method", 64)
    F.obj(F.need(m, "options", w), "options")
    task = F.obj(F.need(m, "task", w), "task")
    check_name(F.need(task, "name", "task"), "task.name")
    F.string_list(F.need(task, "label_names", "task"), "task.label_names")
    F.boolean(F.need(task, "is_regression", "task"), "task.is_regression")
    F.string(F.need(m, "metric", w), "metric", 64)
    bb = F.obj(F.need(m, "backbone", w), "backbone")
    F.string(F.need(bb, "id", "backbone"), "backbone.id", 1024)
    check_fingerprint(F.need(bb, "fingerprint", "backbone"), "backbone.fingerprint")
    F.integer(F.need(bb, "hidden_size", "backbone"), "backbone.hidden_size", 1)
    F.integer(F.need(bb, "num_layers", "backbone"), "backbone.num_layers", 1)
    check_sha256(F.need(m, "tensors_sha256", w), "tensors_sha256")
    return m


def read_artifact_header(path: str | os.PathLike) -> dict:
    """The artifact's metadata from the file's header alone (reads only the header bytes)."""
    from .safetensors_file import parse_header_only

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FormatError("truncated", f"{path} is shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > MAX_HEADER_BYTES:
            raise FormatError("bad_header_length", f"{path}: header length {n}")
        raw = f.read(n)
    if len(raw) < n:
        raise FormatError("bad_header_length", f"{path}: header length {n} is past the end of the file")
    return read_artifact_metadata(parse_header_only(raw).get(ARTIFACT_METADATA_KEY))
