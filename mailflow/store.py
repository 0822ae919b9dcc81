"""The SQLite store: one file under the archive directory, WAL, ``synchronous=FULL``.

Schema changes are named migrations, applied once each in order and recorded in
``schema_migrations``; a module that owns tables lists its migrations in
``MIGRATION_MODULES`` below.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from . import clock

Migration = tuple[str, Callable[[sqlite_utils.Database], None]]

# Modules whose ``MIGRATIONS`` lists make up the schema, in order.
MIGRATION_MODULES = ["mailflow.schema"]


def connect(path: Path, timeout: float = 10.0) -> sqlite_utils.Database:
    """Open the database with the durability settings the intake promise relies on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing commits by surprise.
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA secure_delete=ON")
    return sqlite_utils.Database(conn)


def open_db(path: Path, timeout: float = 10.0) -> sqlite_utils.Database:
    db = connect(path, timeout)
    migrate(db)
    return db


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
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
