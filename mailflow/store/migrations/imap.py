"""Where the IMAP poller is in each folder (see :mod:`mailflow.intake.imap`)."""

from __future__ import annotations

import sqlite3


def state_table(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE imap_state (
            account TEXT NOT NULL,           -- user@host:port
            folder TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            last_uid INTEGER NOT NULL,       -- all up to here committed (and moved, if possible)
            updated_at TEXT NOT NULL,
            PRIMARY KEY (account, folder)
        )""")


MIGRATIONS = [("imap_0001_state", state_table)]
