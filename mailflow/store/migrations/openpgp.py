"""OpenPGP on cases (see :mod:`mailflow.pipeline.handlers.decrypt`)."""

from __future__ import annotations

import sqlite3


def encrypted_cases(db: sqlite3.Connection) -> None:
    # 1: the case's report arrived encrypted, so what goes back to the reporter is
    # encrypted too, to reporter_key (the fingerprint of the key they sent with it) or
    # to a key the keyrings hold for their address.
    db.execute("ALTER TABLE cases ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE cases ADD COLUMN reporter_key TEXT")


def used_signatures(db: sqlite3.Connection) -> None:
    # Each OpenPGP signature proves a member once: a copy of a signed mail sent again
    # (a replay) proves nothing.  Ids only: no text, no name.
    db.execute("""
        CREATE TABLE pgp_signatures (
            sig_id TEXT PRIMARY KEY,         -- GnuPG's SIG_ID of the signature
            spool_id INTEGER NOT NULL,       -- the mail it proved
            used_at TEXT NOT NULL
        )""")


MIGRATIONS = [("openpgp_0001_encrypted_cases", encrypted_cases),
              ("openpgp_0002_used_signatures", used_signatures)]
