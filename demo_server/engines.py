"""The two registry databases behind one small interface: SQLite (embedded default) and PostgreSQL (scale-out).

    DATABASE=/srv/spartan-edge/registry.sqlite3        a file path: SQLite, one machine
    DATABASE=postgresql://user@db-host:5432/spartan    a URL: PostgreSQL, any number of app instances

The registry's SQL is written once, with `?` placeholders, in the subset both engines speak (ON CONFLICT upserts
included). What differs is how a writer is serialised: SQLite takes its one database write lock (`BEGIN
IMMEDIATE`); PostgreSQL takes a transaction-scoped advisory lock on the key being versioned (task/target), so
publishers on different instances queue for the same task and the next version number is always MAX + 1.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol


class Database(Protocol):
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> Mapping[str, Any] | None: ...
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def writing(self, key: str) -> Any: ...  # context manager: one transaction, writers of `key` serialised
    def close(self) -> None: ...
    @property
    def usable(self) -> bool: ...


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def connect(url: str) -> Database:
    return PostgresDatabase(url) if is_postgres(url) else SqliteDatabase(url)


class SqliteDatabase:
    def __init__(self, path: str) -> None:
        # autocommit; explicit BEGIN when writing. A connection is reused by one thread at a time (see db.py).
        self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self._use_wal()  # readers (downloads) never wait for a publisher
        self.conn.execute("PRAGMA synchronous=FULL")  # a committed version survives power loss, like its blob
        self.conn.execute("PRAGMA busy_timeout=30000")

    def _use_wal(self, wait_s: float = 30.0) -> None:
        """Switch a new database to WAL. SQLite answers "database is locked" at once, without its busy handler,
        when other connections switch the same new file at the same moment (gunicorn's workers, or instances,
        starting together: 7 of 160 starts of 8 processes failed here); WAL is then set by one of them, so retry."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Mapping[str, Any] | None:
        return self.conn.execute(sql, params).fetchone()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(sql, params)

    @contextmanager
    def writing(self, key: str) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")  # the database-wide write lock; `key` needs no finer lock here
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    @property
    def usable(self) -> bool:
        return True


class PostgresDatabase:
    def __init__(self, url: str) -> None:
        import psycopg  # imported here: an SQLite-only server does not need the driver
        from psycopg.rows import dict_row

        self.conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)

    @staticmethod
    def _sql(sql: str) -> str:
        # The registry's SQL has no literal '?' or '%', so placeholder translation is a plain replace.
        return sql.replace("?", "%s")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return self.conn.execute(self._sql(sql), params).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Mapping[str, Any] | None:
        return self.conn.execute(self._sql(sql), params).fetchone()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(self._sql(sql), params)

    @contextmanager
    def writing(self, key: str) -> Iterator[None]:
        with self.conn.transaction():
            # Held until COMMIT/ROLLBACK; other transactions asking for the same key wait here.
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            yield

    def close(self) -> None:
        self.conn.close()

    @property
    def usable(self) -> bool:
        return not self.conn.broken and not self.conn.closed
