"""Steps of the trust work (#15)."""

from __future__ import annotations

import sqlite3


def outbound_quotes(db: sqlite3.Connection) -> None:
    # Mail to a member that quotes other cases than its own (a #search transcript):
    # purging any of those cases removes the mail too.
    db.execute("""
        CREATE TABLE outbound_quotes (
            outbound_id INTEGER NOT NULL REFERENCES outbound(id),
            case_id TEXT NOT NULL REFERENCES cases(id),
            PRIMARY KEY (outbound_id, case_id)
        )""")
    db.execute("CREATE INDEX outbound_quotes_case ON outbound_quotes(case_id)")


MIGRATIONS = [
    ("trust_0001_outbound_quotes", outbound_quotes),
]
