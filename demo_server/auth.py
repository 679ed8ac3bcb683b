"""The publish token, with wrong-token attempts limited per client address.

After `AUTH_MAX_FAILURES` wrong or missing tokens from one address within `AUTH_WINDOW_S` seconds, every publish
request from that address gets 429 (with Retry-After) until the window has passed, without looking at the token:
guessing is capped at a few attempts a minute instead of thousands a second. The attempts are rows in the registry
database (table auth_failures), so the budget is one per address across every worker process and every instance
that shares the database. Behind a reverse proxy, set `TRUSTED_PROXIES` (the number of proxies in front, e.g. 1 for
nginx) so that the address is the client's from X-Forwarded-For (werkzeug's ProxyFix), not the proxy's.
"""

from __future__ import annotations

import hmac
import time

from flask import current_app, request

from . import registry
from .db import get_db
from .errors import ApiError


def require_token() -> None:
    token = current_app.config.get("PUBLISH_TOKEN")
    if not token:
        raise ApiError(403, "publishing is disabled on this server (no publish token configured)")
    addr, now = request.remote_addr or "?", time.time()
    window, limit = float(current_app.config["AUTH_WINDOW_S"]), int(current_app.config["AUTH_MAX_FAILURES"])
    db = get_db()
    count, first = registry.auth_failures_since(db, addr, now - window)
    if count >= limit:
        retry = max(1, int(window - (now - (first or now))) + 1)
        raise ApiError(429, f"too many wrong publish tokens from {addr}; retry in {retry} s", retry_after=retry)
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), str(token).encode()):
        return
    registry.add_auth_failure(db, addr, now, window)
    if not auth.startswith("Bearer "):
        raise ApiError(401, "publishing needs 'Authorization: Bearer <token>'")
    raise ApiError(401, "wrong publish token")
