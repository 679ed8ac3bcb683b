"""Publishing endpoints (bearer token) and the service functions the local CLI shares with them."""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import ClientDisconnected

from . import registry
from .api import check_target, check_task
from .blobstore import SHA256_RE, IncompleteUpload, StagedBlob, TooLarge
from .db import get_db, get_store
from .errors import ApiError
from .validate import FINGERPRINT_RE, Invalid, memory_metadata, validate_bundle_files, validate_memory

bp = Blueprint("publish", __name__)

BACKBONE_META_KEYS = ("id", "hidden_size", "num_layers", "memory_shape", "max_seq_length", "max_labels",
                      "program", "inputs", "outputs", "quantize", "tokenizer")


def require_token() -> None:
    token = current_app.config.get("PUBLISH_TOKEN")
    if not token:
        raise ApiError(403, "publishing is disabled on this server (no publish token configured)")
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        raise ApiError(401, "publishing needs 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(auth[7:].strip().encode(), str(token).encode()):
        raise ApiError(401, "wrong publish token")


def stage_body(max_bytes: int) -> StagedBlob:
    """Stream the request body to a temporary file. A short body (client killed, connection cut) leaves nothing."""
    length = request.content_length
    if length is None:
        raise ApiError(411, "Content-Length is required (chunked uploads are not accepted)")
    try:
        return get_store().stage(request.stream, length, max_bytes)
    except TooLarge as e:
        raise ApiError(413, str(e)) from None
    except (IncompleteUpload, ClientDisconnected) as e:
        raise ApiError(400, f"upload incomplete: {e}") from None


def publish_memory(staged: StagedBlob, task: str, target: str, claimed_sha256: str | None) -> dict:
    """Validate a staged memory file, then store and register it. On any failure the staged file is deleted and
    nothing visible changes."""
    try:
        if claimed_sha256 is not None and claimed_sha256 != staged.sha256:
            raise Invalid(f"sha256 mismatch: client claimed {claimed_sha256}, body is {staged.sha256}")
        data = staged.read_bytes()
        fp = memory_metadata(data).get("backbone_fingerprint")
        if not isinstance(fp, str) or not FINGERPRINT_RE.match(fp):
            raise Invalid("metadata has no valid backbone_fingerprint")
        conn = get_db()
        backbone = registry.latest_backbone(conn, target, fp)
        if backbone is None:
            known = registry.latest_backbone(conn, target)
            raise Invalid(f"memory is for backbone {fp}, which is not published for {target}", status=409,
                          memory_backbone=fp, server_backbone=known["fingerprint"] if known else None)
        meta = validate_memory(data, task, backbone)
    except BaseException:
        staged.discard()
        raise
    sha = staged.commit()  # blob first (fsynced, renamed), registry row second: a row never names a missing file
    keep = {k: meta.get(k) for k in ("label_names", "is_regression", "metric", "metrics", "memory_shape")}
    return registry.add_memory(get_db(), task, target, sha, staged.size, meta["dtype"], fp, keep)


def register_backbone(target: str, body: dict) -> dict:
    """Register a bundle whose files were uploaded as blobs already."""
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    fp = body.get("fingerprint")
    if not isinstance(fp, str) or not FINGERPRINT_RE.match(fp):
        raise Invalid("fingerprint is missing or malformed")
    files = validate_bundle_files(body.get("files"))
    store = get_store()
    for f in files:
        if not store.exists(f["sha256"]):
            raise Invalid(f"file {f['path']} (sha256 {f['sha256'][:12]}…) was not uploaded", status=409)
        if store.size(f["sha256"]) != f["bytes"]:
            raise Invalid(f"file {f['path']} is {store.size(f['sha256'])} bytes, not {f['bytes']}")
    shape = body.get("memory_shape")
    if not isinstance(shape, dict) or not all(isinstance(shape.get(k), int) and shape[k] > 0
                                              for k in ("num_layers", "num_parents", "num_children", "hidden_size")):
        raise Invalid("memory_shape needs positive integers num_layers, num_parents, num_children, hidden_size")
    if body.get("program") not in {f["path"] for f in files}:
        raise Invalid("program must name one of the bundle's files")
    meta = {k: body[k] for k in BACKBONE_META_KEYS if k in body}
    return registry.add_backbone(get_db(), target, fp, meta, files)


def _invalid(e: Invalid) -> ApiError:
    return ApiError(e.status, str(e), **e.extra)


@bp.post("/memories/<task>")
def upload_memory(task: str):
    require_token()
    check_task(task)
    target = check_target(request.args.get("target"))
    claimed = request.headers.get("X-Content-SHA256", "").lower()
    if not SHA256_RE.match(claimed):
        raise ApiError(400, "header X-Content-SHA256 (hex sha256 of the body) is required")
    staged = stage_body(current_app.config["MAX_MEMORY_BYTES"])
    try:
        entry = publish_memory(staged, task, target, claimed)
    except Invalid as e:
        raise _invalid(e) from None
    created = entry.pop("created")
    return jsonify({k: entry[k] for k in ("task", "target", "version", "sha256", "bytes", "backbone_fingerprint")}
                   | {"created": created}), 201 if created else 200


@bp.route("/blobs/<sha256>", methods=["HEAD"])
def head_blob(sha256: str):
    require_token()
    if not SHA256_RE.match(sha256):
        raise ApiError(400, "not a sha256")
    if not get_store().exists(sha256):
        raise ApiError(404, "no such blob")
    return "", 200, {"Content-Length": str(get_store().size(sha256))}


@bp.put("/blobs/<sha256>")
def put_blob(sha256: str):
    """Upload one backbone bundle file, named by its sha256 (checked). Not visible until a bundle names it."""
    require_token()
    if not SHA256_RE.match(sha256):
        raise ApiError(400, "blob name must be the lowercase hex sha256 of the body")
    staged = stage_body(current_app.config["MAX_BLOB_BYTES"])
    if staged.sha256 != sha256:
        staged.discard()
        raise ApiError(400, f"sha256 mismatch: URL says {sha256}, body is {staged.sha256}")
    staged.commit()
    return jsonify({"sha256": sha256, "bytes": staged.size}), 201


@bp.post("/backbone/<target>")
def upload_backbone(target: str):
    require_token()
    check_target(target)
    body = request.get_json(silent=True)
    try:
        entry = register_backbone(target, body)
    except Invalid as e:
        raise _invalid(e) from None
    created = entry.pop("created")
    return jsonify({"target": target, "version": entry["version"], "fingerprint": entry["fingerprint"],
                    "created": created}), 201 if created else 200
