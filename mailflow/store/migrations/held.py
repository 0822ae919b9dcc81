"""Held mail (see :mod:`mailflow.case.held`) and the forwarded text of messages.

Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3


def held_table(db: sqlite3.Connection) -> None:
    # Mail kept without being acted on, until the chair releases or discards it.  The
    # message itself is a row of `messages` (kind held or bounce) with this spool_id.
    db.execute("""
        CREATE TABLE held (
            id INTEGER PRIMARY KEY,
            spool_id INTEGER NOT NULL UNIQUE,
            reason TEXT NOT NULL,            -- spam, bounce, not-a-member
            detail TEXT NOT NULL DEFAULT '[]',  -- JSON: the verdicts or findings
            named TEXT NOT NULL DEFAULT '[]',   -- JSON: members it names, who never see it
            held_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'held', -- held, released, discarded
            decided_by TEXT,
            decided_at TEXT,
            case_id TEXT REFERENCES cases(id)   -- released: the case it was filed in
        )""")
    db.execute("CREATE INDEX held_state ON held(state, id)")


def forwarded_text(db: sqlite3.Connection) -> None:
    """The text of mail forwarded as an attachment (``message/rfc822``, ``.eml``), which
    is neither the new nor the quoted text of the mail carrying it, to be searched.
    Messages archived before this step get it from ``mailflow reindex``."""
    db.execute("ALTER TABLE messages ADD COLUMN forwarded_text TEXT")


MIGRATIONS = [("held_0001_held", held_table),
              ("held_0002_forwarded_text", forwarded_text)]
