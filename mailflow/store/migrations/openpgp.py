"""OpenPGP on cases (see :mod:`mailflow.pipeline.handlers.decrypt`)."""

from __future__ import annotations

import sqlite_utils


def encrypted_cases(db: sqlite_utils.Database) -> None:
    # 1: the case's report arrived encrypted, so what goes back to the reporter is
    # encrypted too, to reporter_key (the fingerprint of the key they sent with it) or
    # to a key the keyrings hold for their address.
    db.execute("ALTER TABLE cases ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE cases ADD COLUMN reporter_key TEXT")


MIGRATIONS = [("openpgp_0001_encrypted_cases", encrypted_cases)]
