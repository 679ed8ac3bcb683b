"""Read-only endpoints for devices: the catalog (GET /manifest), backbone bundles and task memories.

HTTP validators (docs/server.md, "What the validators promise"): every file response has a strong ETag, the
sha256 of exactly the bytes sent, so If-None-Match/If-Range by ETag are always right. Only pinned URLs (a memory
`version=N`, a bundle `version=N`), whose bytes can never change, carry Last-Modified (the version's publish time)
and `immutable`; "latest" URLs carry no date validator at all, so a date in If-Modified-Since/If-Range never
matches and can never yield a stale 304 or a 206 spliced from two versions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, request, send_file, url_for

from spartan_formats.catalog import CATALOG_FORMAT_VERSION
from spartan_formats.names import is_name, is_sha256

from . import registry
from .db import get_db, get_downloads, get_store
from .errors import ApiError
from .offload import hand_off

bp = Blueprint("api", __name__)

VERSION_RE = re.compile(r"[1-9][0-9]{0,8}")


def check_target(target: str | None) -> str:
    if target is None:
        targets = ", ".join(current_app.config["TARGETS"])
        raise ApiError(400, f"query parameter 'target' is required (one of: {targets})")
    if target not in current_app.config["TARGETS"]:
        raise ApiError(404, f"unknown target {target[:64]!r}", targets=current_app.config["TARGETS"])
    return target


def check_task(task: str) -> str:
    if not is_name(task):
        raise ApiError(400, "bad task name: use 1-64 characters from A-Z a-z 0-9 _ . - (no '..')")
    return task


def send_blob(sha256: str, name: str, pinned_at: float | None, headers: dict | None = None,
              on_download: Callable[[], None] | None = None) -> Response:
    """A stored file with a strong ETag (its sha256), Content-Length, Accept-Ranges; 304/206/412/416 come from
    werkzeug's conditional handling. `pinned_at` is the publish time of a pinned version (None for "latest")."""
    path = get_store().path(sha256)
    resp = send_file(path, mimetype="application/octet-stream", download_name=name, conditional=False,
                     etag=sha256, max_age=None)
    # send_file dates the response with the blob file's mtime, which is not the version served (a blob is shared
    # by every version with those bytes): only a pinned URL gets a date, its own publish time.
    del resp.headers["Last-Modified"]
    if pinned_at is not None:
        resp.last_modified = pinned_at
    resp = resp.make_conditional(request, accept_ranges=True, complete_length=path.stat().st_size)
    # "latest" URLs must be revalidated (cheap: a 304); a pinned version can be cached for good.
    resp.headers["Cache-Control"] = "public, max-age=31536000, immutable" if pinned_at is not None else "no-cache"
    resp.headers["X-Content-SHA256"] = sha256
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    if on_download is not None and request.method == "GET" and resp.status_code == 200:
        on_download()  # a new download: not a 304 revalidation, not a 206 resume
    return hand_off(resp, sha256)  # the body itself may be sent by nginx or a CDN (offload.py)


def _backbone_view(b: dict) -> dict:
    view = {k: v for k, v in b.items() if k != "files"}
    pin = {"fingerprint": b["fingerprint"], "version": b["version"]}  # a bundle version's bytes never change
    view["url"] = url_for("api.backbone", target=b["target"], **pin)
    view["files"] = [{**f, "url": url_for("api.backbone_file", target=b["target"], name=f["path"], **pin)}
                     for f in b["files"]]
    return view


def _memory_view(m: dict) -> dict:
    keep = ("version", "bytes", "sha256", "dtype", "backbone_fingerprint", "label_names", "is_regression",
            "metric", "metrics", "published_at")
    view = {k: m.get(k) for k in keep}
    view["url"] = url_for("api.memory", task=m["task"], target=m["target"], version=m["version"])
    return view


@bp.get("/healthz")
def healthz():
    get_db().one("SELECT 1 AS ok")
    return {"ok": True}


@bp.get("/manifest")
def catalog():
    """The catalog (spartan_formats.catalog): the latest backbone per target and every task's latest memory per
    target, every URL pinned to its version."""
    conn = get_db()
    tasks: dict[str, dict] = {}
    for m in registry.latest_memories(conn):
        tasks.setdefault(m["task"], {})[m["target"]] = _memory_view(m)
    body = {"format_version": CATALOG_FORMAT_VERSION,
            "targets": current_app.config["TARGETS"],
            "backbones": {b["target"]: _backbone_view(b) for b in registry.backbones(conn)},
            "tasks": tasks}
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-cache"
    resp.add_etag()  # a device polling the manifest gets a 304 while nothing changed
    return resp.make_conditional(request)


def _version_arg(name: str) -> int | None:
    v = request.args.get(name)
    if v is not None and not VERSION_RE.fullmatch(v):
        raise ApiError(400, f"{name} must be a positive integer")
    return int(v) if v is not None else None


def _find_backbone(target: str) -> dict:
    """`?version=N` pins one bundle version (immutable); `?fingerprint=FP` alone is the latest bundle with that
    fingerprint, which a later bundle for the same backbone can replace (so not immutable)."""
    fp = request.args.get("fingerprint")
    if fp is not None and not is_sha256(fp):
        raise ApiError(400, "bad fingerprint parameter: 64 lowercase hex digits")
    version = _version_arg("version")
    if version is not None:
        b = registry.get_backbone(get_db(), target, version)
        if b is not None and fp is not None and b["fingerprint"] != fp:
            raise ApiError(404, f"bundle version {version} for {target} has another fingerprint",
                           fingerprint=b["fingerprint"])
    else:
        b = registry.latest_backbone(get_db(), target, fp)
    if b is None:
        raise ApiError(404, f"no backbone published for target {target}" + (f" with fingerprint {fp}" if fp else "")
                       + (f" with version {version}" if version else ""))
    return b


@bp.get("/backbone/<target>")
def backbone(target: str):
    check_target(target)
    return jsonify(_backbone_view(_find_backbone(target)))


@bp.get("/backbone/<target>/<path:name>")
def backbone_file(target: str, name: str):
    check_target(target)
    b = _find_backbone(target)
    # Files are looked up by name in the registry, never by joining the name onto a folder: no traversal possible.
    f = next((f for f in b["files"] if f["path"] == name), None)
    if f is None:
        raise ApiError(404, f"backbone bundle for {target} has no file {quote(name[:200])!r}",
                       files=[x["path"] for x in b["files"]])
    pinned = "version" in request.args
    return send_blob(f["sha256"], name.rsplit("/", 1)[-1], b["published_at"] if pinned else None,
                     headers={"X-Backbone-Fingerprint": b["fingerprint"], "X-Backbone-Version": str(b["version"])})


@bp.get("/memories/<task>")
def memory(task: str):
    check_task(task)
    target = check_target(request.args.get("target"))
    version = _version_arg("version")
    want_fp = request.args.get("backbone")
    if want_fp is not None and not is_sha256(want_fp):
        raise ApiError(400, "bad backbone fingerprint parameter: 64 lowercase hex digits")
    conn = get_db()
    m = registry.get_memory(conn, task, target, version)
    if m is None:
        if not registry.task_exists(conn, task):
            raise ApiError(404, f"unknown task {task!r}")
        if version and registry.get_memory(conn, task, target) is not None:
            raise ApiError(404, f"task {task!r} has no version {version} for {target}",
                           versions=[v["version"] for v in registry.memory_versions(conn, task, target)])
        raise ApiError(404, f"task {task!r} has no memory for target {target}")
    if want_fp is not None and want_fp != m["backbone_fingerprint"]:
        raise ApiError(409, f"task {task!r} version {m['version']} is for another backbone",
                       requested_backbone=want_fp, memory_backbone=m["backbone_fingerprint"], version=m["version"])
    return send_blob(m["sha256"], f"{task}.v{m['version']}.safetensors",
                     m["published_at"] if version is not None else None,
                     headers={"X-Memory-Version": str(m["version"]),
                              "X-Backbone-Fingerprint": m["backbone_fingerprint"]},
                     on_download=lambda: get_downloads().count(task, target, m["version"]))


@bp.get("/memories/<task>/versions")
def memory_versions(task: str):
    check_task(task)
    target = check_target(request.args.get("target"))
    versions = registry.memory_versions(get_db(), task, target)
    if not versions:
        raise ApiError(404, f"unknown task {task!r} for target {target}")
    return jsonify({"task": task, "target": target, "versions": [_memory_view(v) for v in versions]})
