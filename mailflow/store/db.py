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

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from mailflow.store import audit, fulltext, migrations
from mailflow.store.sqlite import Database, open_spool, open_sqlite, spool_path, transaction

PAGE_CACHE_KB = 64 * 1024  # per connection to mailflow.db, filled only as pages are read


def connect_spool(db_path: Path, timeout: float = 10.0) -> Database:
    """The spool alone."""
    return Database(open_spool(db_path, timeout))


def connect(path: Path, timeout: float = 10.0) -> MainDatabase:
    """Open the database with the durability settings the intake promise relies on."""
    open_spool(path, timeout).close()  # the spool exists before we attach it
    conn = open_sqlite(path, timeout)
    conn.execute("PRAGMA foreign_keys=ON")
    # SQLite's own page cache is 2 MB; a search in a million messages reads some 16,000
    # pages of the index and search_docs, each a system call from the OS's cache.
    conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KB}")
    # Read-only: BEGIN IMMEDIATE locks every attached database it may write, and the
    # spool's write lock belongs to intake alone.
    conn.execute("ATTACH DATABASE ? AS spooldb",
                  [f"file:{quote(os.path.realpath(spool_path(path)))}?mode=ro"])
    return MainDatabase(conn)


class MainDatabase(Database):
    """``mailflow.db``, whose transactions index what they queued for search just before
    they commit, and anchor the audit log's head just after."""

    def before_commit(self) -> None:
        fulltext.before_commit(self)

    def after_commit(self) -> None:
        audit.anchor(self)

    def after_rollback(self) -> None:
        audit.forget_appended(self)


def open_db(path: Path, timeout: float = 10.0) -> MainDatabase:
    """``mailflow.db``, its schema brought up to date."""
    db = connect(path, timeout)
    upgrade(db)
    return db


def upgrade(db: Database) -> list[str]:
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
