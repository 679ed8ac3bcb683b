"""Per-request registry connection and the app's blob store."""

from __future__ import annotations

import sqlite3

from flask import Flask, current_app, g

from . import registry
from .blobstore import FolderBlobStore


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = registry.connect(current_app.config["DATABASE"])
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def get_store() -> FolderBlobStore:
    return current_app.extensions["spartan_edge_store"]


def init_app(app: Flask) -> None:
    store = FolderBlobStore(app.config["BLOB_DIR"])
    store.sweep_tmp()  # leftovers of a crashed upload are invisible anyway; this just reclaims the space
    app.extensions["spartan_edge_store"] = store
    conn = registry.connect(app.config["DATABASE"])
    try:
        registry.init(conn)
    finally:
        conn.close()
    app.teardown_appcontext(close_db)
