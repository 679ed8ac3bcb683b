"""The registry: which blob is which backbone bundle or task memory version, and how often each was downloaded.

Rows are only ever added, so old versions stay downloadable. A row is committed after its blob is in place, so
every row a reader sees points at a complete file. Version numbers are taken inside a writer transaction that is
serialised per task/target (engines.py: SQLite's write lock, PostgreSQL's advisory lock), so two publishers, on one
instance or on several sharing PostgreSQL, never get the same number and never leave a gap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from .engines import Database

# Written in the SQL both engines accept; DOUBLE PRECISION because PostgreSQL's REAL is 4 bytes (seconds would round).
SCHEMA = """
CREATE TABLE IF NOT EXISTS backbones (
    target TEXT NOT NULL,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    meta TEXT NOT NULL,          -- JSON: the manifest's backbone section + this target's program/inputs/outputs
    files TEXT NOT NULL,         -- JSON list of {path, sha256, bytes}
    published_at DOUBLE PRECISION NOT NULL,
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
    published_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (task, target, version)
);
CREATE TABLE IF NOT EXISTS downloads (
    task TEXT NOT NULL,
    target TEXT NOT NULL,
    version INTEGER NOT NULL,
    count BIGINT NOT NULL,       -- full-body (200) memory downloads, summed over all instances
    PRIMARY KEY (task, target, version)
);
CREATE TABLE IF NOT EXISTS auth_failures (
    addr TEXT NOT NULL,          -- client address of a wrong or missing publish token (demo_server/auth.py)
    at DOUBLE PRECISION NOT NULL -- wall-clock seconds: instances on several machines compare them
);
CREATE INDEX IF NOT EXISTS auth_failures_by_addr ON auth_failures (addr, at);
CREATE INDEX IF NOT EXISTS auth_failures_by_time ON auth_failures (at)  -- the sweep of expired rows
"""


def init(db: Database) -> None:
    with db.writing("schema"):  # instances starting together must not race on CREATE TABLE
        for stmt in SCHEMA.split(";"):  # (no ";" inside the comments above)
            db.execute(stmt)


def _backbone(row: Mapping[str, Any] | None) -> dict | None:
    if row is None:
        return None
    return {**json.loads(row["meta"]), "target": row["target"], "version": row["version"],
            "fingerprint": row["fingerprint"], "files": json.loads(row["files"]), "published_at": row["published_at"]}


def _memory(row: Mapping[str, Any] | None) -> dict | None:
    if row is None:
        return None
    return {**json.loads(row["meta"]), "task": row["task"], "target": row["target"], "version": row["version"],
            "sha256": row["sha256"], "bytes": row["bytes"], "dtype": row["dtype"],
            "backbone_fingerprint": row["backbone_fingerprint"], "published_at": row["published_at"]}


def get_backbone(db: Database, target: str, version: int) -> dict | None:
    return _backbone(db.one("SELECT * FROM backbones WHERE target=? AND version=?", (target, version)))


def referenced_blobs(db: Database) -> set[str]:
    """Every sha256 a registry row names (all versions: old versions stay downloadable)."""
    shas = {r["sha256"] for r in db.rows("SELECT sha256 FROM memories")}
    for r in db.rows("SELECT files FROM backbones"):
        shas.update(f["sha256"] for f in json.loads(r["files"]))
    return shas


def latest_backbone(db: Database, target: str, fingerprint: str | None = None) -> dict | None:
    if fingerprint:
        row = db.one("SELECT * FROM backbones WHERE target=? AND fingerprint=? ORDER BY version DESC LIMIT 1",
                     (target, fingerprint))
    else:
        row = db.one("SELECT * FROM backbones WHERE target=? ORDER BY version DESC LIMIT 1", (target,))
    return _backbone(row)


def backbones(db: Database) -> list[dict]:
    """The latest bundle per target."""
    rows = db.rows("SELECT b.* FROM backbones b JOIN (SELECT target, MAX(version) v FROM backbones"
                   " GROUP BY target) m ON b.target=m.target AND b.version=m.v ORDER BY b.target")
    return [_backbone(r) for r in rows]


def backbone_versions(db: Database, target: str) -> list[dict]:
    return [_backbone(r) for r in db.rows("SELECT * FROM backbones WHERE target=? ORDER BY version", (target,))]


def add_backbone(db: Database, target: str, fingerprint: str, meta: dict, files: list[dict]) -> dict:
    """Register a bundle; publishing the same fingerprint and files again returns the existing version."""
    with db.writing(f"backbone:{target}"):
        cur = latest_backbone(db, target)
        if cur and cur["fingerprint"] == fingerprint and cur["files"] == files:
            return {**cur, "created": False}
        version = (cur["version"] if cur else 0) + 1
        db.execute("INSERT INTO backbones VALUES (?,?,?,?,?,?)",
                   (target, version, fingerprint, json.dumps(meta, sort_keys=True), json.dumps(files), time.time()))
    return {**latest_backbone(db, target, fingerprint), "created": True}


def get_memory(db: Database, task: str, target: str, version: int | None = None) -> dict | None:
    if version is None:
        row = db.one("SELECT * FROM memories WHERE task=? AND target=? ORDER BY version DESC LIMIT 1",
                     (task, target))
    else:
        row = db.one("SELECT * FROM memories WHERE task=? AND target=? AND version=?", (task, target, version))
    return _memory(row)


def task_exists(db: Database, task: str) -> bool:
    return db.one("SELECT 1 AS x FROM memories WHERE task=? LIMIT 1", (task,)) is not None


def memory_versions(db: Database, task: str, target: str) -> list[dict]:
    rows = db.rows("SELECT * FROM memories WHERE task=? AND target=? ORDER BY version", (task, target))
    return [_memory(r) for r in rows]


def all_memories(db: Database) -> list[dict]:
    return [_memory(r) for r in db.rows("SELECT * FROM memories ORDER BY task, target, version")]


def latest_memories(db: Database) -> list[dict]:
    rows = db.rows("SELECT m.* FROM memories m JOIN (SELECT task, target, MAX(version) v FROM memories"
                   " GROUP BY task, target) l ON m.task=l.task AND m.target=l.target AND m.version=l.v"
                   " ORDER BY m.task, m.target")
    return [_memory(r) for r in rows]


def add_memory(db: Database, task: str, target: str, sha256: str, size: int, dtype: str,
               backbone_fingerprint: str, meta: dict) -> dict:
    """Register a new version; re-publishing the latest version's exact bytes returns it unchanged."""
    with db.writing(f"memory:{task}:{target}"):
        cur = get_memory(db, task, target)
        if cur and cur["sha256"] == sha256:
            return {**cur, "created": False}
        version = (cur["version"] if cur else 0) + 1
        db.execute("INSERT INTO memories VALUES (?,?,?,?,?,?,?,?,?)",
                   (task, target, version, sha256, size, dtype, backbone_fingerprint,
                    json.dumps(meta, sort_keys=True), time.time()))
    return {**get_memory(db, task, target, version), "created": True}


def add_downloads(db: Database, counts: Mapping[tuple[str, str, int], int]) -> None:
    """Add download increments. An additive upsert, so instances never overwrite each other's counts."""
    if not counts:
        return
    with db.writing("downloads"):
        for (task, target, version), n in sorted(counts.items()):  # one order everywhere: no deadlocks
            db.execute("INSERT INTO downloads VALUES (?,?,?,?) ON CONFLICT (task, target, version)"
                       " DO UPDATE SET count = downloads.count + excluded.count", (task, target, version, n))


def auth_failures_since(db: Database, addr: str, since: float) -> tuple[int, float | None]:
    """How many wrong publish tokens `addr` sent after `since`, and when the oldest of them was."""
    row = db.one("SELECT COUNT(*) AS n, MIN(at) AS first FROM auth_failures WHERE addr=? AND at > ?", (addr, since))
    return (int(row["n"]), row["first"]) if row else (0, None)


def add_auth_failure(db: Database, addr: str, now: float, window: float) -> None:
    """Record one wrong token; rows older than the window (any address) go, so the table stays small."""
    with db.writing("auth_failures"):
        db.execute("DELETE FROM auth_failures WHERE at <= ?", (now - window,))
        db.execute("INSERT INTO auth_failures VALUES (?, ?)", (addr, now))


def download_counts(db: Database) -> dict[tuple[str, str, int], int]:
    return {(r["task"], r["target"], r["version"]): int(r["count"]) for r in db.rows("SELECT * FROM downloads")}
