"""The SQLite store under the archive directory, WAL, ``synchronous=FULL``.

Two files: ``spool.db`` holds the raw bytes as received and is written by intake
alone, so accepting mail never waits for the pipeline's write lock (Postfix keeps its
incoming queue apart for the same reason); ``mailflow.db`` holds everything else.
Every connection to ``mailflow.db`` attaches the spool, read-only, as ``spooldb``,
so queries name ``spool`` as if it were one database.

The schema is the named migrations of :mod:`mailflow.store.migrations`, applied once
each, in order, by :func:`open_db`; the search index (:mod:`mailflow.store.fulltext`)
is derived from the tables and rebuilt when its definition changes.  Every
transaction on ``mailflow.db`` indexes what it queued for search just before it
commits (:func:`fulltext.before_commit`).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from mailflow import timestamps
from mailflow.store import fulltext, migrations

PAGE_CACHE_KB = 64 * 1024  # per connection to mailflow.db, filled only as pages are read

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


def spool_path(db_path: Path) -> Path:
    return db_path.with_name("spool.db")


def _durable(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA secure_delete=ON")


def _open(path: Path, timeout: float) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing commits by surprise.
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None,
                           check_same_thread=False, uri=True)
    _durable(conn)
    return conn


def connect_spool(db_path: Path, timeout: float = 10.0) -> sqlite_utils.Database:
    """The spool alone: what intake writes to."""
    conn = _open(spool_path(db_path), timeout)
    conn.executescript(SPOOL_SCHEMA)
    return sqlite_utils.Database(conn)


def connect(path: Path, timeout: float = 10.0) -> sqlite_utils.Database:
    """Open the database with the durability settings the intake promise relies on."""
    connect_spool(path, timeout).close()  # the spool exists before we attach it
    conn = _open(path, timeout)
    conn.execute("PRAGMA foreign_keys=ON")
    # SQLite's own page cache is 2 MB; a search in a million messages reads some 16,000
    # pages of the index and search_docs, each a system call from the OS's cache.
    conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KB}")
    # Read-only: BEGIN IMMEDIATE locks every attached database it may write, and the
    # spool's write lock belongs to intake alone.
    conn.execute("ATTACH DATABASE ? AS spooldb",
                  [f"file:{quote(str(spool_path(path).resolve()))}?mode=ro"])
    return Database(conn)


class Database(sqlite_utils.Database):
    """``mailflow.db``: sqlite-utils' Database, whose transactions index what they queued
    for search just before they commit."""

    indexes_search = True


def open_db(path: Path, timeout: float = 10.0) -> sqlite_utils.Database:
    """``mailflow.db``, its schema brought up to date."""
    db = connect(path, timeout)
    upgrade(db)
    return db


def upgrade(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations not yet applied and build the search index if its
    definition changed; returns the names of the migrations applied."""
    applied = migrations.migrate(db, transaction)
    fulltext.ensure(db, transaction)
    return applied


def inserted(cursor: sqlite3.Cursor) -> int:
    """The rowid of the row the INSERT on ``cursor`` made."""
    if cursor.lastrowid is None:
        raise sqlite3.OperationalError("the statement inserted no row")
    return cursor.lastrowid


class Busy(sqlite3.OperationalError):
    """Another connection kept the write lock for longer than we would wait."""


def begin(db: sqlite_utils.Database, timeout: float | None = None) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in short steps, for ``timeout``
    seconds (None: the connection's busy timeout; 0: one try); :class:`Busy` if it
    stays taken.

    SQLite's own busy handler backs off to 100 ms sleeps, so under steady contention a
    waiter sleeps long after the lock is free; intake latency is what pays for that."""
    busy_ms = db.conn.execute("PRAGMA busy_timeout").fetchone()[0]
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
def transaction(db: sqlite_utils.Database, timeout: float | None = None
                ) -> Iterator[sqlite_utils.Database]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.  ``timeout``: how long
    to wait for the write lock, if not the connection's busy timeout."""
    begin(db, timeout)
    try:
        yield db
        if getattr(db, "indexes_search", False):
            fulltext.before_commit(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextmanager
def savepoint(db: sqlite_utils.Database, name: str = "step") -> Iterator[None]:
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
