"""The SQLite registry: which blob is which backbone bundle or task memory version.

Rows are only ever added, so old versions stay downloadable. A row is committed after its blob is in place, so
every row a reader sees points at a complete file. WAL mode lets readers (downloads) run while a publisher writes;
version numbers are taken inside a `BEGIN IMMEDIATE` transaction, so two publishers never get the same number.
"""

from __future__ import annotations

import json
import sqlite3
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS backbones (
    target TEXT NOT NULL,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    meta TEXT NOT NULL,          -- JSON: the manifest's backbone section + this target's program/inputs/outputs
    files TEXT NOT NULL,         -- JSON list of {path, sha256, bytes}
    published_at REAL NOT NULL,
    PRIMARY KEY (target, version)
);
CREATE TABLE IF NOT EXISTS memories (
    task TEXT NOT NULL,
    target TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    backbone_fingerprint TEXT NOT NULL,
    meta TEXT NOT NULL,          -- JSON: label_names, is_regression, metric, metrics
    published_at REAL NOT NULL,
    PRIMARY KEY (task, target, version)
);
"""


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)  # autocommit; explicit BEGIN when writing
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a committed version survives power loss, like its fsynced blob
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def init(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def _backbone(row: sqlite3.Row | None) -> dict | None:
    if row is None:
        return None
    return {**json.loads(row["meta"]), "target": row["target"], "version": row["version"],
            "fingerprint": row["fingerprint"], "files": json.loads(row["files"]), "published_at": row["published_at"]}


def _memory(row: sqlite3.Row | None) -> dict | None:
    if row is None:
        return None
    return {**json.loads(row["meta"]), "task": row["task"], "target": row["target"], "version": row["version"],
            "sha256": row["sha256"], "bytes": row["bytes"], "dtype": row["dtype"],
            "backbone_fingerprint": row["backbone_fingerprint"], "published_at": row["published_at"]}


def get_backbone(conn: sqlite3.Connection, target: str, version: int) -> dict | None:
    return _backbone(conn.execute("SELECT * FROM backbones WHERE target=? AND version=?",
                                  (target, version)).fetchone())


def referenced_blobs(conn: sqlite3.Connection) -> set[str]:
    """Every sha256 a registry row names (all versions: old versions stay downloadable)."""
    shas = {r[0] for r in conn.execute("SELECT sha256 FROM memories")}
    for (files,) in conn.execute("SELECT files FROM backbones"):
        shas.update(f["sha256"] for f in json.loads(files))
    return shas


def latest_backbone(conn: sqlite3.Connection, target: str, fingerprint: str | None = None) -> dict | None:
    if fingerprint:
        row = conn.execute("SELECT * FROM backbones WHERE target=? AND fingerprint=? ORDER BY version DESC LIMIT 1",
                           (target, fingerprint)).fetchone()
    else:
        row = conn.execute("SELECT * FROM backbones WHERE target=? ORDER BY version DESC LIMIT 1", (target,)).fetchone()
    return _backbone(row)


def backbones(conn: sqlite3.Connection) -> list[dict]:
    """The latest bundle per target."""
    rows = conn.execute("SELECT b.* FROM backbones b JOIN (SELECT target, MAX(version) v FROM backbones"
                        " GROUP BY target) m ON b.target=m.target AND b.version=m.v ORDER BY b.target").fetchall()
    return [_backbone(r) for r in rows]


def add_backbone(conn: sqlite3.Connection, target: str, fingerprint: str, meta: dict, files: list[dict]) -> dict:
    """Register a bundle; publishing the same fingerprint and files again returns the existing version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = latest_backbone(conn, target)
        if cur and cur["fingerprint"] == fingerprint and cur["files"] == files:
            conn.execute("COMMIT")
            return {**cur, "created": False}
        version = conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM backbones WHERE target=?",
                               (target,)).fetchone()[0]
        conn.execute("INSERT INTO backbones VALUES (?,?,?,?,?,?)",
                     (target, version, fingerprint, json.dumps(meta, sort_keys=True), json.dumps(files), time.time()))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {**latest_backbone(conn, target, fingerprint), "created": True}


def get_memory(conn: sqlite3.Connection, task: str, target: str, version: int | None = None) -> dict | None:
    if version is None:
        row = conn.execute("SELECT * FROM memories WHERE task=? AND target=? ORDER BY version DESC LIMIT 1",
                           (task, target)).fetchone()
    else:
        row = conn.execute("SELECT * FROM memories WHERE task=? AND target=? AND version=?",
                           (task, target, version)).fetchone()
    return _memory(row)


def task_exists(conn: sqlite3.Connection, task: str) -> bool:
    return conn.execute("SELECT 1 FROM memories WHERE task=? LIMIT 1", (task,)).fetchone() is not None


def memory_versions(conn: sqlite3.Connection, task: str, target: str) -> list[dict]:
    rows = conn.execute("SELECT * FROM memories WHERE task=? AND target=? ORDER BY version", (task, target)).fetchall()
    return [_memory(r) for r in rows]


def latest_memories(conn: sqlite3.Connection) -> list[dict]:
    rows = conn.execute("SELECT m.* FROM memories m JOIN (SELECT task, target, MAX(version) v FROM memories"
                        " GROUP BY task, target) l ON m.task=l.task AND m.target=l.target AND m.version=l.v"
                        " ORDER BY m.task, m.target").fetchall()
    return [_memory(r) for r in rows]


def add_memory(conn: sqlite3.Connection, task: str, target: str, sha256: str, size: int, dtype: str,
               backbone_fingerprint: str, meta: dict) -> dict:
    """Register a new version; re-publishing the latest version's exact bytes returns it unchanged."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = get_memory(conn, task, target)
        if cur and cur["sha256"] == sha256:
            conn.execute("COMMIT")
            return {**cur, "created": False}
        version = (cur["version"] if cur else 0) + 1
        conn.execute("INSERT INTO memories VALUES (?,?,?,?,?,?,?,?,?)",
                     (task, target, version, sha256, size, dtype, backbone_fingerprint,
                      json.dumps(meta, sort_keys=True), time.time()))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {**get_memory(conn, task, target, version), "created": True}
