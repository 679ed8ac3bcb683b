"""A request-body limit on every endpoint, enforced before the body is read.

Uploads are streamed to disk and capped by their own limits; every other request (JSON bodies such as
`POST /backbone/<target>`, and GETs) is capped at `MAX_JSON_BYTES`. A declared Content-Length over the limit is
refused at once with 413; a chunked body is cut off by werkzeug at the same limit (413).
"""

from __future__ import annotations

from flask import Flask, current_app, request

from .errors import ApiError

UPLOAD_LIMITS = {"publish.put_blob": "MAX_BLOB_BYTES", "publish.upload_memory": "MAX_MEMORY_BYTES"}


def body_limit() -> int:
    return int(current_app.config[UPLOAD_LIMITS.get(request.endpoint or "", "MAX_JSON_BYTES")])


def init_app(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_JSON_BYTES"]

    @app.before_request
    def _limit_body() -> None:
        limit = body_limit()
        request.max_content_length = limit
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, f"request body of {request.content_length} bytes is over this endpoint's limit "
                                f"of {limit}")
