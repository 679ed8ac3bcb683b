"""The read-only web console at `/`: what is published, per target and task, and how often it was downloaded.

Server-rendered HTML (a Jinja template, inline CSS, no JavaScript), no login: it shows only what the public
manifest already does, plus download counts. The latency plot is a PNG from docs/results (CONSOLE_PLOT).
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict

from flask import Blueprint, abort, current_app, render_template, send_file, url_for

from . import registry
from .db import get_db
from .engines import PostgresDatabase

bp = Blueprint("console", __name__)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _plot_path() -> str | None:
    p = current_app.config["CONSOLE_PLOT"]
    return p if p and os.path.isfile(p) else None


@bp.get("/")
def console():
    db = get_db()
    counts = registry.download_counts(db)
    backbones = []
    for target in current_app.config["TARGETS"]:
        versions = registry.backbone_versions(db, target)
        for b in versions:
            b["total_bytes"] = sum(f["bytes"] for f in b["files"])
        backbones.append({"target": target, "versions": list(reversed(versions))})
    tasks: dict[str, dict] = defaultdict(lambda: {"targets": defaultdict(list), "downloads": 0})
    for m in registry.all_memories(db):
        m["downloads"] = counts.get((m["task"], m["target"], m["version"]), 0)
        t = tasks[m["task"]]
        t["targets"][m["target"]].insert(0, m)  # newest first
        t["downloads"] += m["downloads"]
    return render_template("console.html", backbones=backbones, tasks=dict(sorted(tasks.items())),
                           when=_when, size=_size, plot=url_for("console.latency_plot") if _plot_path() else None,
                           offload=current_app.config["BLOB_OFFLOAD"] or
                           ("redirect" if current_app.config["BLOB_BASE_URL"] else None),
                           engine="PostgreSQL" if isinstance(db, PostgresDatabase) else "SQLite")


@bp.get("/console/latency.png")
def latency_plot():
    path = _plot_path()
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/png", max_age=300)
