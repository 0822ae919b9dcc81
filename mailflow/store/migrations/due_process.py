"""Due process (issue 18): interim bans, how a mediation answer was recorded, and the
fast path's instructions to the moderators.  Append new migrations; never edit one
that has shipped.

- ``bans.until_event``: an interim ban (the clear-and-severe fast path) that lasts
  until the committee's sign-off ('signoff') or its review of the case ('review'),
  rather than to a date; ``ends_at`` is set when that moment comes.
- ``consents.recorded_by`` / ``consents.how``: an answer a party gave another way (by
  phone, in person), recorded by a member with ``#mediation-consent``; NULL for an
  answer the party mailed to their own answer address.
- ``severe_instructions``: the drafts ``#severe`` wrote to the moderators of the
  channels named; the notices saying "disconnected" wait until they are sent.
"""

from __future__ import annotations

import sqlite3


def due_process(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE bans ADD COLUMN until_event TEXT")
    db.execute("ALTER TABLE consents ADD COLUMN recorded_by TEXT")
    db.execute("ALTER TABLE consents ADD COLUMN how TEXT")
    db.execute("""
        CREATE TABLE severe_instructions (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            draft_id INTEGER NOT NULL REFERENCES drafts(id),
            channels TEXT NOT NULL,          -- comma-separated, as in the ban's scope
            created_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX severe_instructions_case ON severe_instructions(case_id)")


MIGRATIONS = [
    ("due_process_0001_interim_bans_consents_instructions", due_process),
]
