"""Read-only endpoints for devices: the manifest, backbone bundles and task memories."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, request, send_file, url_for

from . import registry
from .db import get_db, get_downloads, get_store
from .errors import ApiError
from .offload import hand_off
from .validate import FINGERPRINT_RE, valid_task_name

bp = Blueprint("api", __name__)

VERSION_RE = re.compile(r"^[1-9][0-9]{0,8}$")
MANIFEST_FORMAT_VERSION = 1


def check_target(target: str | None) -> str:
    if target is None:
        targets = ", ".join(current_app.config["TARGETS"])
        raise ApiError(400, f"query parameter 'target' is required (one of: {targets})")
    if target not in current_app.config["TARGETS"]:
        raise ApiError(404, f"unknown target {target[:64]!r}", targets=current_app.config["TARGETS"])
    return target


def check_task(task: str) -> str:
    if not valid_task_name(task):
        raise ApiError(400, "bad task name: use 1-64 characters from A-Z a-z 0-9 _ . - (no '..')")
    return task


def send_blob(sha256: str, name: str, immutable: bool, headers: dict | None = None,
              on_download: Callable[[], None] | None = None) -> Response:
    """A stored file with a strong ETag (its sha256), Content-Length, Accept-Ranges; 304 and 206 come from
    werkzeug's conditional handling. Blobs never change once written, so a 206 continuation is always
    consistent with the bytes a client already has (If-Range guards the rare case it asked about another file)."""
    resp = send_file(get_store().path(sha256), mimetype="application/octet-stream", download_name=name,
                     conditional=True, etag=sha256, last_modified=None, max_age=None)
    # "latest" URLs must be revalidated (cheap: a 304); a pinned version can be cached for good.
    resp.headers["Cache-Control"] = "public, max-age=31536000, immutable" if immutable else "no-cache"
    resp.headers["X-Content-SHA256"] = sha256
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    if on_download is not None and request.method == "GET" and resp.status_code == 200:
        on_download()  # a new download: not a 304 revalidation, not a 206 resume
    return hand_off(resp, sha256)  # the body itself may be sent by nginx or a CDN (offload.py)


def _backbone_view(b: dict) -> dict:
    view = {k: v for k, v in b.items() if k != "files"}
    view["url"] = url_for("api.backbone", target=b["target"], fingerprint=b["fingerprint"])
    view["files"] = [{**f, "url": url_for("api.backbone_file", target=b["target"], name=f["path"],
                                          fingerprint=b["fingerprint"])} for f in b["files"]]
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
def manifest():
    """The registry view: the latest backbone per target and every task's latest memory per target."""
    conn = get_db()
    tasks: dict[str, dict] = {}
    for m in registry.latest_memories(conn):
        tasks.setdefault(m["task"], {})[m["target"]] = _memory_view(m)
    body = {"format_version": MANIFEST_FORMAT_VERSION,
            "targets": current_app.config["TARGETS"],
            "backbones": {b["target"]: _backbone_view(b) for b in registry.backbones(conn)},
            "tasks": tasks}
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-cache"
    resp.add_etag()  # a device polling the manifest gets a 304 while nothing changed
    return resp.make_conditional(request)


def _find_backbone(target: str) -> dict:
    fp = request.args.get("fingerprint")
    if fp is not None and not FINGERPRINT_RE.match(fp):
        raise ApiError(400, "bad fingerprint parameter")
    b = registry.latest_backbone(get_db(), target, fp)
    if b is None:
        raise ApiError(404, f"no backbone published for target {target}" + (f" with fingerprint {fp}" if fp else ""))
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
    return send_blob(f["sha256"], name.rsplit("/", 1)[-1], immutable="fingerprint" in request.args,
                     headers={"X-Backbone-Fingerprint": b["fingerprint"]})


@bp.get("/memories/<task>")
def memory(task: str):
    check_task(task)
    target = check_target(request.args.get("target"))
    version = request.args.get("version")
    if version is not None and not VERSION_RE.match(version):
        raise ApiError(400, "version must be a positive integer")
    want_fp = request.args.get("backbone")
    if want_fp is not None and not FINGERPRINT_RE.match(want_fp):
        raise ApiError(400, "bad backbone fingerprint parameter")
    conn = get_db()
    m = registry.get_memory(conn, task, target, int(version) if version else None)
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
    return send_blob(m["sha256"], f"{task}.v{m['version']}.safetensors", immutable=version is not None,
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
