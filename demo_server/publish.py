"""Publishing endpoints (bearer token) and the service functions the local CLI shares with them.

Everything an upload claims is checked by spartan_formats (the one definition of each format): a refused upload
is a 4xx whose body carries the format's error `code` (docs/formats.md) and nothing visible changes.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import ClientDisconnected

from spartan_formats import FormatError
from spartan_formats.backbone import check_against, read_backbone
from spartan_formats.fields import parse_json
from spartan_formats.memory import read_memory
from spartan_formats.names import is_sha256

from . import registry
from .api import check_target, check_task, send_blob
from .auth import require_token
from .blobstore import IncompleteUpload, StagedBlob, TooLarge
from .db import get_db, get_store
from .errors import ApiError, from_format_error
from .limits import body_limit

bp = Blueprint("publish", __name__)


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
            raise ApiError(400, f"sha256 mismatch: client claimed {claimed_sha256}, body is {staged.sha256}")
        try:
            meta = read_memory(staged.read_bytes(), task=task).meta
        except FormatError as e:
            raise from_format_error(e) from None
        fp = meta["backbone_fingerprint"]
        conn = get_db()
        backbone = registry.latest_backbone(conn, target, fp)
        if backbone is None:
            known = registry.latest_backbone(conn, target)
            raise ApiError(409, f"memory is for backbone {fp}, which is not published for {target}",
                           code="fingerprint_mismatch", memory_backbone=fp,
                           server_backbone=known["fingerprint"] if known else None)
        try:
            check_against(meta, read_backbone(backbone))
        except FormatError as e:
            raise from_format_error(e) from None
    except BaseException:
        staged.discard()
        raise
    sha = staged.commit()  # blob first (fsynced, renamed), registry row second: a row never names a missing file
    keep = {k: meta.get(k) for k in ("label_names", "is_regression", "metric", "metrics", "memory_shape")}
    return registry.add_memory(get_db(), task, target, sha, staged.size, meta["dtype"], fp, keep)


def register_backbone(target: str, body: object) -> dict:
    """Register a bundle whose files were uploaded as blobs already."""
    try:
        bb = read_backbone(body, "bundle description")
    except FormatError as e:
        raise from_format_error(e) from None
    store = get_store()
    for f in bb["files"]:
        if not store.exists(f["sha256"]):
            raise ApiError(409, f"file {f['path']} (sha256 {f['sha256'][:12]}…) was not uploaded")
        if store.size(f["sha256"]) != f["bytes"]:
            raise ApiError(400, f"file {f['path']} is {store.size(f['sha256'])} bytes, not {f['bytes']}")
    meta = {k: v for k, v in bb.items() if k not in ("fingerprint", "files")}
    return registry.add_backbone(get_db(), target, bb["fingerprint"], meta, bb["files"])


@bp.post("/memories/<task>")
def upload_memory(task: str):
    require_token()
    check_task(task)
    target = check_target(request.args.get("target"))
    claimed = request.headers.get("X-Content-SHA256", "").lower()
    if not is_sha256(claimed):
        raise ApiError(400, "header X-Content-SHA256 (hex sha256 of the body) is required")
    staged = stage_body(current_app.config["MAX_MEMORY_BYTES"])
    entry = publish_memory(staged, task, target, claimed)
    created = entry.pop("created")
    return jsonify({k: entry[k] for k in ("task", "target", "version", "sha256", "bytes", "backbone_fingerprint")}
                   | {"created": created}), 201 if created else 200


@bp.route("/blobs/<sha256>", methods=["HEAD"])
def head_blob(sha256: str):
    """Whether a blob is stored, with its real Content-Length (a HEAD of the file itself)."""
    require_token()
    if not is_sha256(sha256):
        raise ApiError(400, "not a sha256")
    if not get_store().exists(sha256):
        raise ApiError(404, "no such blob")
    return send_blob(sha256, sha256, None)


@bp.put("/blobs/<sha256>")
def put_blob(sha256: str):
    """Upload one backbone bundle file, named by its sha256 (checked). Not visible until a bundle names it."""
    require_token()
    if not is_sha256(sha256):
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
    limit = body_limit()
    # Read at most limit+1 bytes ourselves: a chunked body has no Content-Length for the early check, and werkzeug
    # may hand over a body cut at the limit, which must be refused as too large rather than parsed.
    raw = request.stream.read(limit + 1)
    if len(raw) >= limit:
        raise ApiError(413, f"request body is at or over this endpoint's limit of {limit} bytes")
    try:
        body = parse_json(raw, "request body")
    except FormatError as e:
        raise from_format_error(e) from None
    entry = register_backbone(target, body)
    created = entry.pop("created")
    return jsonify({"target": target, "version": entry["version"], "fingerprint": entry["fingerprint"],
                    "created": created}), 201 if created else 200
