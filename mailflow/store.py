"""The SQLite store under the archive directory, WAL, ``synchronous=FULL``.

Two files: ``spool.db`` holds the raw bytes as received and is written by intake
alone, so accepting mail never waits for the pipeline's write lock (Postfix keeps its
incoming queue apart for the same reason); ``mailflow.db`` holds everything else.
Every connection to ``mailflow.db`` attaches the spool, read-only, as ``spooldb``,
so queries name ``spool`` as if it were one database.

Schema changes are named migrations, applied once each in order and recorded in
``schema_migrations``; a module that owns tables lists its migrations in
``MIGRATION_MODULES`` below.  Such a module may also define ``on_connect(conn)`` to
register the SQL functions its triggers call, and ``before_commit(db)`` for work that
belongs at the end of every transaction on ``mailflow.db`` (the search index's).
"""

from __future__ import annotations

import fcntl
import importlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from . import clock
from .schema import SPOOL_SCHEMA

Migration = tuple[str, Callable[[sqlite_utils.Database], None]]

# Modules whose ``MIGRATIONS`` lists make up the schema, in order.
MIGRATION_MODULES = ["mailflow.schema", "mailflow.imap", "mailflow.search", "mailflow.clocks",
                     "mailflow.workflow_tables", "mailflow.schema_responses"]


PAGE_CACHE_KB = 64 * 1024  # per connection to mailflow.db, filled only as pages are read


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
    modules = [importlib.import_module(name) for name in MIGRATION_MODULES]
    for module in modules:
        if hasattr(module, "on_connect"):
            module.on_connect(conn)
    return Database(conn, [m.before_commit for m in modules if hasattr(m, "before_commit")])


class Database(sqlite_utils.Database):
    """``mailflow.db``: sqlite-utils' Database, with the hooks :func:`transaction` runs
    just before it commits."""

    def __init__(self, conn: sqlite3.Connection,
                 before_commit: list[Callable[[sqlite_utils.Database], None]]):
        super().__init__(conn)
        self.before_commit = before_commit


def open_db(path: Path, timeout: float = 10.0) -> sqlite_utils.Database:
    db = connect(path, timeout)
    migrate(db)
    return db


class Busy(sqlite3.OperationalError):
    """Another connection kept the write lock for longer than we would wait."""


def begin(db: sqlite_utils.Database, timeout: float | None = None) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in short steps, for ``timeout``
    seconds (None: the connection's busy timeout; 0: one try); :class:`Busy` if it
    stays taken.

    SQLite's own busy handler backs off to 100 ms sleeps, so under steady contention a
    waiter sleeps long after the lock is free; intake latency is what pays for that."""
    busy_ms = db.conn.execute("PRAGMA busy_timeout").fetchone()[0]
    deadline = clock.monotonic() + (busy_ms / 1000 if timeout is None else timeout)
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
                if clock.monotonic() >= deadline:
                    raise Busy(str(e)) from e
                clock.sleep(0.0005)
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
        for hook in getattr(db, "before_commit", ()):
            hook(db)
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


def all_migrations() -> list[Migration]:
    result: list[Migration] = []
    for name in MIGRATION_MODULES:
        result.extend(importlib.import_module(name).MIGRATIONS)
    return result


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply pending migrations; returns the names applied."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
    )
    applied = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
    pending = [(n, f) for n, f in all_migrations() if n not in applied]
    done = []
    for name, func in pending:
        with transaction(db):
            # Another process may have migrated between our read and the lock.
            if db.execute("SELECT 1 FROM schema_migrations WHERE name=?", [name]).fetchone():
                continue
            func(db)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?)", [name, clock.stamp()])
        done.append(name)
    return done


@contextmanager
def exclusive(lock_path: Path, timeout: float = 30.0) -> Iterator[None]:
    """One holder at a time across processes (one pipeline per archive, say).
    The kernel drops the lock when its holder dies, however it dies."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = clock.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock.monotonic() > deadline:
                    raise TimeoutError(f"{lock_path} is held by another process") from None
                clock.sleep(0.1)
        yield
    finally:
        os.close(fd)
