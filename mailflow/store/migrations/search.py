"""Records other parts index for search (call summaries, notes, drafts, case fields).

The index itself (``search_docs``, ``search_fts``, ``search_queue`` and the triggers)
is derived data, built and rebuilt by :mod:`mailflow.store.fulltext`.
"""

from __future__ import annotations

import sqlite3


def search_tables(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE search_records (
            ref TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            case_id TEXT,
            at TEXT NOT NULL,
            author TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL DEFAULT '',
            body TEXT NOT NULL DEFAULT ''
        )""")
    db.execute("CREATE INDEX search_records_case ON search_records(case_id)")


def index_rebuilt(db: sqlite3.Connection) -> None:
    """These steps changed the index, which :mod:`mailflow.store.fulltext` now rebuilds
    whenever its definition changes: nothing is left for them to do."""


MIGRATIONS = [("0100_search_index", search_tables),
              ("0101_queue_and_outbound_columns", index_rebuilt),
              ("0102_queue_by_reference", index_rebuilt)]
