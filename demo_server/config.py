"""Server configuration: defaults, then an optional JSON file, then SPARTAN_EDGE_* environment variables.

    SPARTAN_EDGE_CONFIG=/etc/spartan-edge.json      JSON object with any of the keys below
    SPARTAN_EDGE_PUBLISH_TOKEN=...                  bearer token for publishing (unset = publishing off)
    SPARTAN_EDGE_INSTANCE=/srv/spartan-edge         instance folder (blobs/ + registry.sqlite3)
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
    # Defaults to <instance>/blobs and <instance>/registry.sqlite3 when left None.
    "BLOB_DIR": None,
    "DATABASE": None,
    "TARGETS": ["android", "ios"],
}


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
        if key in ("PUBLISH_TOKEN", "BLOB_DIR", "DATABASE"):
            app.config[key] = raw or None  # kept verbatim: a numeric-looking token must stay a string
        else:
            app.config[key] = json.loads(raw)
    if overrides:
        app.config.update(overrides)
    if app.config["BLOB_DIR"] is None:
        app.config["BLOB_DIR"] = os.path.join(app.instance_path, "blobs")
    if app.config["DATABASE"] is None:
        app.config["DATABASE"] = os.path.join(app.instance_path, "registry.sqlite3")
