"""Storage: the SQLite databases (:mod:`.db`), the audit log (:mod:`.audit`), the
schema's history (:mod:`.migrations`) and the search index (:mod:`.fulltext`).

What most code needs of it is here by name: ``store.transaction(db)``,
``store.open_db(path)``, and the like.
"""

from mailflow.store.db import (
    Busy,
    begin,
    connect,
    connect_spool,
    exclusive,
    inserted,
    open_db,
    savepoint,
    spool_path,
    transaction,
    upgrade,
)

__all__ = ["Busy", "begin", "connect", "connect_spool", "exclusive", "inserted", "open_db",
           "savepoint", "spool_path", "transaction", "upgrade"]
