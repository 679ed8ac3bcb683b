"""The device cache's state file (`<cache>/state.json`, format_version 1): the last catalog and its ETag, the
backbone bundle in use, and the last good memory per task. Written only by the device itself, but read back with
the same checks as network input: a path is never built from an unchecked string, even one read from disk.

    {"format_version": 1, "catalog": {...} | null, "catalog_etag": "\"...\"" | null,
     "backbone": <catalog backbone entry> | null,
     "memories": {"<task>": {"version", "sha256", "backbone_fingerprint", "label_names", "is_regression",
                             "num_outputs"}}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import fields as F
from .atomic import atomic_write_bytes
from .catalog import read_catalog, read_catalog_entry_backbone
from .errors import FormatError
from .names import check_fingerprint, check_name, check_sha256

CACHE_STATE_FORMAT_VERSION = 1


def empty_state() -> dict:
    return {"format_version": CACHE_STATE_FORMAT_VERSION, "catalog": None, "catalog_etag": None, "backbone": None,
            "memories": {}}


def read_memory_entry(doc: Any, task: str) -> dict:
    w = f"memories.{task}"
    d = F.obj(doc, w)
    return {"version": F.integer(F.need(d, "version", w), f"{w}.version", 1),
            "sha256": check_sha256(F.need(d, "sha256", w), f"{w}.sha256"),
            "backbone_fingerprint": check_fingerprint(F.need(d, "backbone_fingerprint", w)),
            "label_names": F.string_list(F.need(d, "label_names", w), f"{w}.label_names"),
            "is_regression": F.boolean(F.need(d, "is_regression", w), f"{w}.is_regression"),
            "num_outputs": F.integer(F.need(d, "num_outputs", w), f"{w}.num_outputs", 1)}


def read_cache_state(doc: Any) -> dict:
    if isinstance(doc, bytes | str):
        doc = F.parse_json(doc, "cache state")
    d = F.obj(doc, "cache state", code="not_object")
    F.format_version(d, CACHE_STATE_FORMAT_VERSION, "cache state")
    out = empty_state()
    if d.get("catalog") is not None:
        out["catalog"] = read_catalog(d["catalog"])
        out["catalog_etag"] = F.optional_string(d.get("catalog_etag"), "catalog_etag")
    if d.get("backbone") is not None:
        bb = F.obj(d["backbone"], "backbone")
        out["backbone"] = read_catalog_entry_backbone(bb, check_name(F.need(bb, "target", "backbone"), "target"))
    out["memories"] = {check_name(t, "task name"): read_memory_entry(e, t)
                       for t, e in F.obj(d.get("memories", {}), "memories").items()}
    return out


def load_cache_state(path: str | os.PathLike) -> dict:
    """The state, or FormatError (code `missing_file` when there is none yet)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise FormatError("missing_file", f"{path} does not exist") from None
    return read_cache_state(raw)


def write_cache_state(path: str | os.PathLike, state: dict) -> Path:
    read_cache_state(state)
    return atomic_write_bytes(path, json.dumps(state, indent=1, sort_keys=True).encode())
