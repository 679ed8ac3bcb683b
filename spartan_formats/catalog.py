"""The catalog: the server's `GET /manifest` document (format_version 1; docs/server.md), which devices read.

Every string a device later turns into a URL or a file name is checked here: digests are 64-hex, names are
whole-string matches of the name charset, URLs are paths on the same server (start with one "/", no scheme, no
"@", no backslash, no whitespace).
"""

from __future__ import annotations

import re
from typing import Any

from . import fields as F
from .backbone import read_backbone
from .errors import FormatError
from .names import check_fingerprint, check_name, check_sha256, is_memory_dtype

CATALOG_FORMAT_VERSION = 1
MAX_CATALOG_BYTES = 16 * 1024 * 1024
_URL = re.compile(r"/(?!/)[A-Za-z0-9_.~%/?&=:+-]*")


def check_url(v: Any, what: str) -> str:
    """A same-server path: the client appends it to its server URL, so `//host`, `@host` or a scheme would
    send it elsewhere."""
    if not isinstance(v, str) or len(v) > 2048 or not _URL.fullmatch(v) or "/../" in v + "/":
        raise FormatError("bad_url", f"{what} {F._show(v)} is not a path on this server")
    return v


def read_catalog_entry_backbone(doc: Any, target: str) -> dict:
    w = f"backbones.{target}"
    d = F.obj(doc, w)
    out = read_backbone(d, w)
    out["target"] = target
    out["version"] = F.integer(F.need(d, "version", w), f"{w}.version", 1)
    out["url"] = check_url(F.need(d, "url", w), f"{w}.url")
    if d.get("published_at") is not None:
        out["published_at"] = F.number(d["published_at"], f"{w}.published_at")
    for f, raw in zip(out["files"], d["files"], strict=True):
        f["url"] = check_url(F.need(raw, "url", f"{w}.files"), f"{w}.files.url")
    return out


def read_catalog_entry_memory(doc: Any, task: str, target: str) -> dict:
    w = f"tasks.{task}.{target}"
    d = F.obj(doc, w)
    out = {"version": F.integer(F.need(d, "version", w), f"{w}.version", 1),
           "sha256": check_sha256(F.need(d, "sha256", w), f"{w}.sha256"),
           "bytes": F.integer(F.need(d, "bytes", w), f"{w}.bytes", 0, 1 << 40),
           "backbone_fingerprint": check_fingerprint(F.need(d, "backbone_fingerprint", w),
                                                     f"{w}.backbone_fingerprint"),
           "url": check_url(F.need(d, "url", w), f"{w}.url")}
    if d.get("dtype") is not None and not is_memory_dtype(d["dtype"]):
        raise FormatError("bad_dtype", f"{w}.dtype {d['dtype']!r} is not fp32 or fp16")
    for k in ("dtype", "label_names", "is_regression", "metric", "metrics", "published_at"):
        if k in d:
            out[k] = d[k]
    return out


def read_catalog(doc: Any) -> dict:
    """Validate a catalog (parsed, or the response body); return a normalised copy (unknown keys dropped)."""
    if isinstance(doc, bytes | str):
        if len(doc) > MAX_CATALOG_BYTES:
            raise FormatError("too_large", f"catalog is over {MAX_CATALOG_BYTES} bytes")
        doc = F.parse_json(doc, "catalog")
    d = F.obj(doc, "catalog", code="not_object")
    F.format_version(d, CATALOG_FORMAT_VERSION, "catalog")
    out: dict = {"format_version": CATALOG_FORMAT_VERSION}
    out["targets"] = [check_name(t, "target") for t in F.string_list(d.get("targets", []), "targets", 64)]
    out["backbones"] = {check_name(t, "target"): read_catalog_entry_backbone(b, t)
                        for t, b in F.obj(F.need(d, "backbones", "catalog"), "backbones").items()}
    out["tasks"] = {}
    for task, per in F.obj(F.need(d, "tasks", "catalog"), "tasks").items():
        check_name(task, "task name")
        out["tasks"][task] = {check_name(t, "target"): read_catalog_entry_memory(e, task, t)
                              for t, e in F.obj(per, f"tasks.{task}").items()}
    return out
