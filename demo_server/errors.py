"""Every error is JSON: {"error": <short name>, "message": <what went wrong>, ...}."""

from __future__ import annotations

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from spartan_formats import FormatError


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def from_format_error(e: FormatError, status: int = 400, **extra) -> ApiError:
    """A refused file or document: 4xx with the format's error code (docs/formats.md) in the body."""
    return ApiError(status, e.message, code=e.code, **extra)


def _json(status: int, name: str, message: str, **extra):
    resp = jsonify({"error": name, "message": message, "status": status, **extra})
    resp.status_code = status
    return resp


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(e: ApiError):
        names = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
                 411: "length_required", 413: "too_large", 429: "too_many_requests"}
        resp = _json(e.status, names.get(e.status, "error"), e.message, **e.extra)
        if e.status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="spartan-edge"'
        if "retry_after" in e.extra:
            resp.headers["Retry-After"] = str(e.extra["retry_after"])
        return resp

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        # A bug or a lost database connection (db.py drops it, so the next request reconnects): still JSON, and
        # nothing about the internals in the body; the traceback goes to the server log.
        if isinstance(e, HTTPException):
            return _http_error(e)
        app.logger.exception("unhandled error")
        return _json(500, "internal_error", "internal server error; the request can be retried")

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        resp = _json(e.code or 500, (e.name or "error").lower().replace(" ", "_"), e.description or e.name)
        for k, v in e.get_headers():  # keep e.g. Allow on 405, Content-Range on 416
            if k.lower() != "content-type":
                resp.headers[k] = v
        return resp
