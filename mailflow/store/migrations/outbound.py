"""The outbound queue keeps a large original by reference.

Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3


def attached_original_by_reference(db: sqlite3.Connection) -> None:
    # A committee copy that attaches the original (a report with a video, say) holds
    # its own text in raw, names the original's spool row, and ends with raw_tail:
    # delivery streams the three, so the original is stored once, not once a member.
    db.execute("ALTER TABLE outbound ADD COLUMN attach_spool_id INTEGER")
    db.execute("ALTER TABLE outbound ADD COLUMN raw_tail BLOB NOT NULL DEFAULT x''")


MIGRATIONS = [("outbound: attached original by reference", attached_original_by_reference)]
