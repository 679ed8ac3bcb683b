"""Who sends a blob's bytes once Flask has answered the request.

Flask always does the lookup, validation, fingerprint check and the whole conditional logic (ETag, 304, Range,
If-Range: werkzeug's, in api.send_blob). Only then, and only for a plain full-body 200, the body is handed on:

- BLOB_OFFLOAD=nginx: the response keeps every header and loses its body; `X-Accel-Redirect` names the blob
  under NGINX_BLOB_LOCATION, an `internal` nginx location aliased onto BLOB_DIR (nginx.py writes it with
  `etag off; if_modified_since off; max_ranges 0`, so nginx sends the bytes and decides nothing). 206, 304 and 416
  answers stay Flask's, bodies included, as do requests with If-Match/If-Unmodified-Since (nginx's static module
  would evaluate those against its own validators).
- BLOB_BASE_URL=https://cdn/blobs: a 302 to <base>/<sha[:2]>/<sha256>, a CDN or bucket mirroring BLOB_DIR key for
  key (docs/server.md). The redirect carries the same headers as the body would have; 206 answers are redirected
  too (the mirror holds the same immutable bytes, and its own If-Range check cannot splice versions: a stale
  validator there means a full 200).

nginx copies only a few upstream headers onto an X-Accel-Redirect answer, so it is told to add these back.
"""

from __future__ import annotations

from flask import Response, current_app, request

PASS_HEADERS = ("ETag", "Last-Modified", "X-Content-SHA256", "X-Memory-Version", "X-Backbone-Fingerprint",
                "X-Backbone-Version")
# Preconditions nginx's static module would check again, against its own (mtime-based) validators.
NGINX_WOULD_RECHECK = ("If-Match", "If-Unmodified-Since")


def blob_key(sha256: str) -> str:
    """The blob's path under BLOB_DIR, and its key on a mirror (FolderBlobStore's layout)."""
    return f"{sha256[:2]}/{sha256}"


def hand_off(resp: Response, sha256: str) -> Response:
    cfg = current_app.config
    if cfg["BLOB_BASE_URL"] and resp.status_code in (200, 206):
        resp.close()  # the file send_file opened
        resp.set_data(b"")
        resp.status_code = 302
        resp.headers.pop("Content-Range", None)
        resp.headers["Location"] = f"{cfg['BLOB_BASE_URL'].rstrip('/')}/{blob_key(sha256)}"
        return resp
    if cfg["BLOB_OFFLOAD"] == "nginx" and resp.status_code == 200 \
            and not any(h in request.headers for h in NGINX_WOULD_RECHECK):
        resp.close()
        resp.set_data(b"")  # Content-Length: 0 to nginx; nginx sends the file's own length
        resp.headers["X-Accel-Redirect"] = cfg["NGINX_BLOB_LOCATION"] + blob_key(sha256)
    return resp
