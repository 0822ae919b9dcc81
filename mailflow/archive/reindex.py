"""``mailflow reindex``: recompute what derives from the raw bytes."""

from __future__ import annotations

from mailflow import store
from mailflow.mail import pgpmime
from mailflow.mail.openpgp import Keyring
from mailflow.mail.parse import parse
from mailflow.pipeline.handlers.file import parsed_columns
from mailflow.progress import Progress
from mailflow.store import audit, fulltext
from mailflow.store.sqlite import Database


def reindex(db: Database, show_progress: bool = True,
            ring: Keyring | None = None) -> dict[str, int]:
    """``mailflow reindex``: recompute what derives from the raw bytes, in one
    transaction: the parsed columns of every message (:func:`parsed_columns`)
    from ``spool.raw`` (decrypted with ``ring``, the committee's keyring, as the
    pipeline did), then the whole search index.  Which case a message belongs to,
    its kind and flags, people, decisions and the audit log are history, not derived,
    and stay as they are."""
    total = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    progress = Progress("reindexing", total) if show_progress else None
    with store.transaction(db):
        fulltext.drop_triggers(db)  # the index is rebuilt once, at the end
        last = 0
        while rows := db.execute(
                "SELECT m.id, s.raw FROM messages m JOIN spool s ON s.id = m.spool_id "
                "WHERE m.id > ? ORDER BY m.id LIMIT 500", [last]).fetchall():
            updates = [{**parsed_columns(parse(pgpmime.unwrap(ring, raw).raw if ring else raw)),
                        "id": mid} for mid, raw in rows]
            names = [k for k in updates[0] if k != "id"]
            db.conn.executemany(
                f"UPDATE messages SET {', '.join(f'{n} = :{n}' for n in names)} WHERE id = :id",
                updates)
            last = rows[-1][0]
            if progress:
                progress.advance(len(rows))
        docs = fulltext.rebuild_index(db)
        audit.append(db, "admin", "reindex", None, messages=total, documents=docs)
    if progress:
        progress.finish()
    return {"messages": total, "documents": docs}
