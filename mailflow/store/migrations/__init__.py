"""The schema of ``mailflow.db`` as history: named steps, applied once each, in order.

Each module here holds the steps of one part of the schema and imports no application
code, so a step means tomorrow what it meant the day it shipped (sqlite-utils'
``migrations.py`` model); a step is given the ``sqlite3`` connection itself.  Append
new steps; never edit one that has shipped.  The search index is not here: it is
derived from these tables, and :mod:`mailflow.store.fulltext` rebuilds it when its
definition changes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from mailflow.store.migrations import (
    clocks,
    core,
    due_process,
    held,
    imap,
    openpgp,
    outbound,
    responses,
    search,
    trust,
    workflow,
)


class Connected(Protocol):
    """The database the runner is handed: it holds the ``sqlite3`` connection each
    step is given, and is what the caller's transactions take."""

    conn: sqlite3.Connection


Migration = tuple[str, Callable[[sqlite3.Connection], None]]
Transaction = Callable[[Any], AbstractContextManager[Any]]

# Every step, in the order they apply.
ALL: list[Migration] = [
    *core.MIGRATIONS,
    *imap.MIGRATIONS,
    *search.MIGRATIONS,
    *clocks.MIGRATIONS,
    *workflow.MIGRATIONS,
    *responses.MIGRATIONS,
    *held.MIGRATIONS,
    *due_process.MIGRATIONS,
    *outbound.MIGRATIONS,
    *trust.MIGRATIONS,
    *openpgp.MIGRATIONS,
]


def migrate(database: Connected, transaction: Transaction,
            steps: list[Migration] = ALL) -> list[str]:
    """Apply the steps not yet applied, each in a transaction of its own; returns the
    names applied."""
    db = database.conn
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
    )
    applied = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
    done = []
    for name, step in steps:
        if name in applied:
            continue
        with transaction(database):
            # Another process may have migrated between our read and the lock.
            if db.execute("SELECT 1 FROM schema_migrations WHERE name=?", [name]).fetchone():
                continue
            step(db)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?)",
                       [name, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")])
        done.append(name)
    return done
