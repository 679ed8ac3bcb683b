"""The publish token, with wrong-token attempts limited per client address.

After `AUTH_MAX_FAILURES` wrong or missing tokens from one address within `AUTH_WINDOW_S` seconds, every publish
request from that address gets 429 (with Retry-After) until the window has passed, without looking at the token:
guessing is capped at a few attempts a minute instead of thousands a second. The counts live in each worker
process (gunicorn -w N allows N times the limit); behind a reverse proxy, `remote_addr` must be the client's
(ProxyFix), or all clients share one budget.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import defaultdict, deque

from flask import current_app, request

from .errors import ApiError

_lock = threading.Lock()
_failures: dict[str, deque] = defaultdict(deque)


def _recent(addr: str, now: float, window: float) -> deque:
    q = _failures[addr]
    while q and now - q[0] > window:
        q.popleft()
    return q


def require_token() -> None:
    token = current_app.config.get("PUBLISH_TOKEN")
    if not token:
        raise ApiError(403, "publishing is disabled on this server (no publish token configured)")
    addr, now = request.remote_addr or "?", time.monotonic()
    window, limit = float(current_app.config["AUTH_WINDOW_S"]), int(current_app.config["AUTH_MAX_FAILURES"])
    with _lock:
        q = _recent(addr, now, window)
        if len(q) >= limit:
            retry = max(1, int(window - (now - q[0])) + 1)
            raise ApiError(429, f"too many wrong publish tokens from {addr}; retry in {retry} s", retry_after=retry)
    auth = request.headers.get("Authorization", "")
    ok = auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), str(token).encode())
    if ok:
        return
    with _lock:
        _recent(addr, now, window).append(now)
        if len(_failures) > 100_000:  # bound the table under an address-spraying attack
            for a in [a for a, q in _failures.items() if not _recent(a, now, window)]:
                del _failures[a]
    if not auth.startswith("Bearer "):
        raise ApiError(401, "publishing needs 'Authorization: Bearer <token>'")
    raise ApiError(401, "wrong publish token")
