"""The SQLite side of the store that needs nothing but ``sqlite3``: the connection
every module is handed (:class:`Database`), opening a file with the durable settings,
the spool's schema, transactions that wait for the write lock in short steps,
savepoints and a cross-process lock.

``mailflow ingest`` (an MTA runs it for every message) commits through this module
alone: it never loads the migrations or the search index.  Everything here takes a
``sqlite3.Connection`` or a :class:`Database` alike (both have ``execute``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from contextlib import contextmanager

from mailflow import timestamps
from mailflow.store import private

# typing's, without importing typing (nor pathlib): `mailflow ingest` starts faster.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path
    from typing import Any, Protocol, TypeVar

    class Executes(Protocol):
        """A connection: ``sqlite3.Connection`` or :class:`Database`."""

        def execute(self, sql: str, parameters: list | tuple = ..., /) -> sqlite3.Cursor: ...

    DB = TypeVar("DB", bound=Executes)
    Params = Sequence[Any] | Mapping[str, Any]


class Database:
    """A connection to one of mailflow's SQLite files, as every module is handed it:
    ``execute`` gives the cursor, ``query`` the rows as dicts, ``conn`` is the
    ``sqlite3`` connection itself (opened in autocommit mode: transactions are explicit,
    :func:`transaction`).

    Its own rather than sqlite-utils': importing that took 130 ms of every command's
    start (click, dateutil, pluggy and a scan of the installed packages), nine times a
    bare interpreter, for the two methods mailflow used (bench/README.md)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        # As sqlite-utils set it, which the schema's triggers were written under: a row
        # that INSERT OR REPLACE replaces fires its delete triggers.
        conn.execute("PRAGMA recursive_triggers=on")

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        """The rows of ``sql``, each a dict by column name (a repeated name gets _2)."""
        cursor = self.conn.execute(sql, params)
        keys = _unique([d[0] for d in cursor.description])
        return (dict(zip(keys, row, strict=True)) for row in cursor)

    def columns(self, table: str) -> list[str]:
        return [row[1] for row in self.conn.execute(f'PRAGMA table_info("{table}")')]

    def close(self) -> None:
        self.conn.close()


def _unique(names: list[str]) -> list[str]:
    if len(set(names)) == len(names):  # every query asks: nearly always so
        return names
    seen: set[str] = set()
    out = []
    for name in names:
        unique, n = name, 1
        while unique in seen:
            n += 1
            unique = f"{name}_{n}"
        seen.add(unique)
        out.append(unique)
    return out


# spool.db: raw bytes exactly as received, committed before the MTA hears 250.
# Written by intake only; created on connect (IF NOT EXISTS), so it has no migrations.
SPOOL_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,            -- smtp, lmtp, pipe, imap, import
    envelope_from TEXT,
    rcpts TEXT NOT NULL,             -- JSON list of envelope recipients
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE, -- Message-ID + body hash, else sha256
    raw BLOB NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0
);
"""


def spool_path(db_path: str | os.PathLike[str]) -> str:
    """spool.db, beside mailflow.db."""
    return os.path.join(os.path.dirname(db_path), "spool.db")


def _durable(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA secure_delete=ON")


def open_sqlite(path: str | os.PathLike[str], timeout: float) -> sqlite3.Connection:
    # 0600 before SQLite writes a byte: it gives the WAL and shared-memory files it
    # makes beside the database the database's own mode.
    private.create_file(path)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing commits by surprise.
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None,
                           check_same_thread=False, uri=True)
    _durable(conn)
    return conn


def open_spool(db_path: str | os.PathLike[str], timeout: float = 10.0) -> sqlite3.Connection:
    """The spool alone, created if need be: what intake writes to."""
    conn = open_sqlite(spool_path(db_path), timeout)
    conn.executescript(SPOOL_SCHEMA)
    return conn


class Busy(sqlite3.OperationalError):
    """Another connection kept the write lock for longer than we would wait."""


def begin(db: Executes, timeout: float | None = None) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in short steps, for ``timeout``
    seconds (None: the connection's busy timeout; 0: one try); :class:`Busy` if it
    stays taken.

    SQLite's own busy handler backs off to 100 ms sleeps, so under steady contention a
    waiter sleeps long after the lock is free; intake latency is what pays for that."""
    busy_ms = db.execute("PRAGMA busy_timeout").fetchone()[0]
    deadline = timestamps.monotonic() + (busy_ms / 1000 if timeout is None else timeout)
    if busy_ms:
        db.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if timestamps.monotonic() >= deadline:
                    raise Busy(str(e)) from e
                timestamps.sleep(0.0005)
    finally:
        if busy_ms:
            db.execute(f"PRAGMA busy_timeout = {busy_ms}")


@contextmanager
def transaction(db: DB, timeout: float | None = None) -> Iterator[DB]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.  ``timeout``: how long
    to wait for the write lock, if not the connection's busy timeout.  A connection
    with a ``before_commit`` method (``mailflow.db``: the search index) has it called
    just before the commit, and ``after_commit`` / ``after_rollback`` (the audit log's
    anchor) just after."""
    begin(db, timeout)
    try:
        yield db
        before_commit = getattr(db, "before_commit", None)
        if before_commit is not None:
            before_commit()
    except BaseException:
        db.execute("ROLLBACK")
        getattr(db, "after_rollback", lambda: None)()
        raise
    db.execute("COMMIT")
    getattr(db, "after_commit", lambda: None)()


@contextmanager
def savepoint(db: Executes, name: str = "step") -> Iterator[None]:
    """A nested unit inside a transaction: undone alone if it fails."""
    db.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        db.execute(f"ROLLBACK TO {name}")
        db.execute(f"RELEASE {name}")
        raise
    db.execute(f"RELEASE {name}")


@contextmanager
def exclusive(lock_path: Path, timeout: float = 30.0) -> Iterator[None]:
    """One holder at a time across processes (one pipeline per archive, say).
    The kernel drops the lock when its holder dies, however it dies."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = timestamps.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if timestamps.monotonic() > deadline:
                    raise TimeoutError(f"{lock_path} is held by another process") from None
                timestamps.sleep(0.1)
        yield
    finally:
        os.close(fd)


def held(lock_path: Path) -> bool:
    """Whether a process holds :func:`exclusive` on ``lock_path`` now."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
