"""The app's registry connections, blob store and download counter.

A registry connection is opened once per worker thread and reused by its requests (a PostgreSQL connection costs a
few ms to open; a broken one is dropped after the request that saw it fail, and the next request reconnects).
"""

from __future__ import annotations

import threading

from flask import Flask, current_app, g

from . import registry
from .blobstore import FolderBlobStore
from .downloads import DownloadCounter
from .engines import Database, connect


class _Connections(threading.local):
    db: Database | None = None


def get_db() -> Database:
    if "db" not in g:
        local: _Connections = current_app.extensions["spartan_edge_connections"]
        if local.db is None:
            local.db = connect(current_app.config["DATABASE"])
        g.db = local.db
    return g.db


def _release_db(exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None and (exc is not None or not db.usable):
        current_app.extensions["spartan_edge_connections"].db = None
        try:
            db.close()
        except Exception:  # noqa: BLE001 - it is being thrown away because it failed
            pass


def get_store() -> FolderBlobStore:
    return current_app.extensions["spartan_edge_store"]


def get_downloads() -> DownloadCounter:
    return current_app.extensions["spartan_edge_downloads"]


def init_app(app: Flask) -> None:
    store = FolderBlobStore(app.config["BLOB_DIR"])
    store.sweep_tmp()  # leftovers of a crashed upload are invisible anyway; this just reclaims the space
    app.extensions["spartan_edge_store"] = store
    app.extensions["spartan_edge_connections"] = _Connections()
    db = connect(app.config["DATABASE"])
    try:
        registry.init(db)
    finally:
        db.close()
    app.extensions["spartan_edge_downloads"] = DownloadCounter(app.config["DATABASE"],
                                                               app.config["DOWNLOAD_COUNT_FLUSH_S"])
    app.teardown_appcontext(_release_db)
