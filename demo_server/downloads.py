"""Per-version download counts, kept in the registry so every instance adds to the same numbers.

A download is a full-body (200) memory response; 304 revalidations and 206 resumes are not new downloads.
Writing a row per download would put a database write on the hot path, so each worker process adds counts in
memory and flushes them every `flush_s` seconds as additive upserts (registry.add_downloads); `flush_s = 0`
writes at once. A worker killed with SIGKILL loses at most its last `flush_s` seconds of counts.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import Counter

from . import registry
from .engines import connect


class DownloadCounter:
    def __init__(self, database: str, flush_s: float) -> None:
        self.database, self.flush_s = database, float(flush_s)
        self.pending: Counter[tuple[str, str, int]] = Counter()
        self.lock = threading.Lock()
        self.flusher: threading.Thread | None = None
        self.pid = os.getpid()

    def count(self, task: str, target: str, version: int) -> None:
        with self.lock:
            self.pending[(task, target, version)] += 1
            if self.flush_s > 0 and (self.flusher is None or self.pid != os.getpid()):
                # Started lazily, in the process that counts (threads do not survive gunicorn's fork).
                self.pid = os.getpid()
                self.flusher = threading.Thread(target=self._loop, daemon=True, name="download-counts")
                self.flusher.start()
                atexit.register(self.flush)
        if self.flush_s <= 0:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, Counter()
        if not batch:
            return
        try:
            db = connect(self.database)
            try:
                registry.add_downloads(db, batch)
            finally:
                db.close()
        except Exception:
            with self.lock:  # the database is away: keep the counts for the next flush
                self.pending.update(batch)
            raise

    def _loop(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a failed flush is retried next period; downloads must go on
                pass
