"""Storage: the SQLite databases (:mod:`.db`, and :mod:`.sqlite` for what needs only
``sqlite3``), the audit log (:mod:`.audit`), the schema's history (:mod:`.migrations`)
and the search index (:mod:`.fulltext`).

What most code needs of it is here by name: ``store.transaction(db)``,
``store.open_db(path)``, and the like.  Names are loaded on first use, so that
``mailflow ingest``, which needs only :mod:`.sqlite`, never loads the migrations or the
search index.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing: `mailflow ingest` starts faster
if TYPE_CHECKING:
    from typing import Any

    from mailflow.store.db import connect, connect_spool, inserted, open_db, upgrade
    from mailflow.store.sqlite import (
        Busy,
        begin,
        exclusive,
        open_spool,
        savepoint,
        spool_path,
        transaction,
    )

DB_NAMES = ("connect", "connect_spool", "inserted", "open_db", "upgrade")
SQLITE_NAMES = ("Busy", "begin", "exclusive", "open_spool", "savepoint", "spool_path",
                "transaction")
__all__ = ["Busy", "begin", "connect", "connect_spool", "exclusive", "inserted", "open_db",
           "open_spool", "savepoint", "spool_path", "transaction", "upgrade"]


def __getattr__(name: str) -> Any:
    if name in DB_NAMES:
        from mailflow.store import db

        return getattr(db, name)
    if name in SQLITE_NAMES:
        from mailflow.store import sqlite

        return getattr(sqlite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
