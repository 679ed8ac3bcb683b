"""Server configuration: defaults, then an optional JSON file, then SPARTAN_EDGE_* environment variables.

    SPARTAN_EDGE_CONFIG=/etc/spartan-edge.json      JSON object with any of the keys below
    SPARTAN_EDGE_PUBLISH_TOKEN=...                  bearer token for publishing (unset = publishing off)
    SPARTAN_EDGE_INSTANCE=/srv/spartan-edge         instance folder (blobs/ + registry.sqlite3)
    SPARTAN_EDGE_DATABASE=postgresql://u@host/db     the registry on PostgreSQL instead (several instances)
    SPARTAN_EDGE_BLOB_OFFLOAD=nginx                  file bodies sent by nginx (X-Accel-Redirect), see offload.py
    SPARTAN_EDGE_BLOB_BASE_URL=https://cdn.example/blobs   or: redirect file bodies to a CDN/bucket mirror
"""

from __future__ import annotations

import json
import os

ENV_PREFIX = "SPARTAN_EDGE_"

DEFAULTS: dict = {
    # None disables publishing: a server without a configured token is read-only.
    "PUBLISH_TOKEN": None,
    # A memory is ~1 MB for MiniLM; the cap keeps a bad client from filling the disk through the validator.
    "MAX_MEMORY_BYTES": 64 * 1024 * 1024,
    # Backbone files (.pte, .mlpackage.zip) are ~100 MB; uploads are streamed to disk, never held in memory.
    "MAX_BLOB_BYTES": 4 * 1024 * 1024 * 1024,
    # Any other request body (the JSON of POST /backbone/<target> is a few KB).
    "MAX_JSON_BYTES": 1024 * 1024,
    # Wrong publish tokens allowed per client address and window before 429 (demo_server/auth.py).
    "AUTH_MAX_FAILURES": 10,
    "AUTH_WINDOW_S": 60,
    # Reverse proxies in front of the app (nginx: 1): the client address is then taken from X-Forwarded-For.
    "TRUSTED_PROXIES": 0,
    # Defaults to <instance>/blobs and <instance>/registry.sqlite3 when left None.
    "BLOB_DIR": None,
    # A file path (SQLite) or a postgresql:// URL (engines.py).
    "DATABASE": None,
    "TARGETS": ["android", "ios"],
    # Download counts are added up in each worker and written every this many seconds (0: at every download).
    "DOWNLOAD_COUNT_FLUSH_S": 5.0,
    # Who sends a blob's body once Flask has answered the request (offload.py): None = Flask itself,
    # "nginx" = X-Accel-Redirect to NGINX_BLOB_LOCATION, which nginx maps onto BLOB_DIR.
    "BLOB_OFFLOAD": None,
    "NGINX_BLOB_LOCATION": "/_blobs/",
    # Set: bodies are a redirect to <BLOB_BASE_URL>/<sha[:2]>/<sha256>, a CDN or bucket mirroring BLOB_DIR.
    "BLOB_BASE_URL": None,
    # The PNG the console shows under "On-device latency"; the repo's MiniLM plot when the server runs from a checkout.
    "CONSOLE_PLOT": os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "docs", "results", "latency_minilm.png"),
}

VERBATIM = ("PUBLISH_TOKEN", "BLOB_DIR", "DATABASE", "BLOB_OFFLOAD", "NGINX_BLOB_LOCATION", "BLOB_BASE_URL",
            "CONSOLE_PLOT")


def load_config(app, overrides: dict | None = None) -> None:
    """Fill app.config: defaults < JSON file (SPARTAN_EDGE_CONFIG) < SPARTAN_EDGE_* env vars < overrides."""
    app.config.from_mapping(DEFAULTS)
    path = os.environ.get(ENV_PREFIX + "CONFIG")
    if path:
        app.config.from_file(os.path.abspath(path), load=json.load)
    for key in DEFAULTS:
        raw = os.environ.get(ENV_PREFIX + key)
        if raw is None:
            continue
        if key in VERBATIM:
            app.config[key] = raw or None  # kept verbatim: a numeric-looking token must stay a string
        else:
            app.config[key] = json.loads(raw)
    if overrides:
        app.config.update(overrides)
    if app.config["BLOB_DIR"] is None:
        app.config["BLOB_DIR"] = os.path.join(app.instance_path, "blobs")
    if app.config["DATABASE"] is None:
        app.config["DATABASE"] = os.path.join(app.instance_path, "registry.sqlite3")
    if not isinstance(app.config["TRUSTED_PROXIES"], int) or app.config["TRUSTED_PROXIES"] < 0:
        raise ValueError(f"TRUSTED_PROXIES must be a count of proxies (0, 1, ...), not "
                         f"{app.config['TRUSTED_PROXIES']!r}")
    if app.config["BLOB_OFFLOAD"] not in (None, "nginx"):
        raise ValueError(f"BLOB_OFFLOAD must be unset or 'nginx', not {app.config['BLOB_OFFLOAD']!r}")
    if app.config["BLOB_OFFLOAD"] and app.config["BLOB_BASE_URL"]:
        raise ValueError("set BLOB_OFFLOAD or BLOB_BASE_URL, not both")
