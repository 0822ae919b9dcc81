"""Tables of templated responses (drafts, identity consents, the officers' report) and
of sanctions (bans, warnings).

Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3


def drafts_and_sanctions(db: sqlite3.Connection) -> None:
    _drafts(db)
    _identity_consents(db)
    _bans(db)
    _warnings(db)
    _public_records(db)
    _case_flags(db)


def _drafts(db: sqlite3.Connection) -> None:
    # A draft is never changed once filed: an edit files a new draft that replaces
    # it, so the chair always confirms exactly the text that was mailed to them.
    db.execute("""
        CREATE TABLE drafts (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            template TEXT NOT NULL,
            to_role TEXT NOT NULL,
            recipients TEXT NOT NULL,        -- JSON list of addresses
            cc_committee INTEGER NOT NULL DEFAULT 0,
            reply_to TEXT NOT NULL,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            fields TEXT NOT NULL DEFAULT '{}',  -- JSON: what the author supplied
            author TEXT NOT NULL,
            created_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',  -- pending, sent, discarded, replaced
            replaces INTEGER REFERENCES drafts(id),
            decided_by TEXT,
            decided_at TEXT
        )""")
    db.execute("CREATE INDEX drafts_case ON drafts(case_id, id)")


def _identity_consents(db: sqlite3.Connection) -> None:
    # A reporter's or witness's consent to being named in mail that leaves the
    # committee; withdrawing it keeps the row, so the history stays reviewable.
    db.execute("""
        CREATE TABLE identity_consents (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            person TEXT NOT NULL,            -- the people row's address, else its name
            given_at TEXT NOT NULL,
            given_by TEXT NOT NULL,          -- the member who recorded it
            withdrawn_at TEXT
        )""")
    db.execute("CREATE INDEX identity_consents_case ON identity_consents(case_id)")


def _bans(db: sqlite3.Connection) -> None:
    # Bans are never deleted: they expire by their end date (NULL: permanent) or are
    # lifted, and stay for later review as the guidelines require.
    db.execute("""
        CREATE TABLE bans (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            person TEXT NOT NULL,            -- lower-cased address, or a name/handle
            scope TEXT NOT NULL,             -- comma-separated spaces, or "all"
            starts_at TEXT NOT NULL,
            ends_at TEXT,                    -- NULL: permanent
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            created_at TEXT NOT NULL,
            lifted_at TEXT,
            lifted_by TEXT,
            lift_reason TEXT
        )""")
    db.execute("CREATE INDEX bans_person ON bans(person)")
    db.execute("CREATE INDEX bans_case ON bans(case_id)")


def _warnings(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE warnings (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            person TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            actor TEXT NOT NULL,
            at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX warnings_person ON warnings(person)")


def _public_records(db: sqlite3.Connection) -> None:
    # The publicly available record of what occurred (a link, a recording), for the
    # officers' report.
    db.execute("""
        CREATE TABLE public_records (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            text TEXT NOT NULL,
            actor TEXT NOT NULL,
            at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX public_records_case ON public_records(case_id)")


def _case_flags(db: sqlite3.Connection) -> None:
    # Conditions a case carries for the committee's attention, e.g. a third warning.
    db.execute("""
        CREATE TABLE case_flags (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            flag TEXT NOT NULL,
            at TEXT NOT NULL,
            UNIQUE(case_id, flag)
        )""")


MIGRATIONS = [
    ("responses_0001_drafts_and_sanctions", drafts_and_sanctions),
]
