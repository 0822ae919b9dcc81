"""Tables of the committee workflow (issue 3).  Append new migrations; never edit one
that has shipped.

Other parts read these directly, so the columns are documented here:

- ``case_record``: one row per case, the determinations the guidelines list.
  ``violation``/``ongoing``/``safety`` are 'yes', 'no' or NULL (undetermined).
- ``proposals`` / ``votes``: ``#propose`` (kind 'response') and the sign-off of the
  clear-and-severe fast path (kind 'signoff').  ``status`` is open, passed or
  superseded.  ``deadlocked_at`` is when an objection first blocked consensus; a
  superseding proposal inherits it, so re-proposing does not restart the clock.
  The deadlock clock runs for rows with ``status = 'open' AND deadlocked_at IS NOT NULL``.
- ``notes``: first-class records filed on a case besides mail: off-list call summaries
  (kind 'call'), notes ('note'), event organisers' summaries ('event-report') and the
  reporter's feedback on a proposed response ('feedback').
- ``mediations`` / ``consents``: a proposed mediator and each party's answer.
  ``target_date`` (YYYY-MM-DD) is set when every party agreed: the clock for the
  mediation to complete.
- ``consultations``: the mail telling the reporter the agreed response (a draft).
"""

from __future__ import annotations

import sqlite3


def workflow_tables(db: sqlite3.Connection) -> None:
    _case_record(db)
    _proposals(db)
    _votes(db)
    _notes(db)
    _mediations(db)
    _consents(db)
    _consultations(db)


def _case_record(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE case_record (
            case_id TEXT PRIMARY KEY REFERENCES cases(id),
            what_happened TEXT,
            channel TEXT,                    -- communication channel or event
            violation TEXT,                  -- yes, no, NULL: undetermined
            ongoing TEXT,
            safety TEXT,                     -- threat to anyone's physical safety
            response TEXT,                   -- agreed response (menu key), from consensus
            response_detail TEXT,
            severe_at TEXT,                  -- the clear-and-severe fast path was used
            severe_by TEXT,
            severe_reason TEXT,              -- what qualified as a clear and severe breach
            severe_scope TEXT,               -- channels the originator was disconnected from
            enacted_at TEXT,
            enacted_by TEXT,
            enacted_proposal INTEGER,        -- the proposal whose response was enacted
            closed_at TEXT,
            grievance_at TEXT,               -- the originator asked for a review
            updated_at TEXT NOT NULL
        )""")


def _proposals(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE proposals (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            kind TEXT NOT NULL,              -- response, signoff
            response TEXT NOT NULL,          -- menu key; 'signoff' for a sign-off item
            detail TEXT NOT NULL DEFAULT '',
            proposed_by TEXT NOT NULL,
            proposed_at TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open',   -- open, passed, superseded
            deadlocked_at TEXT,              -- an objection blocked consensus since then
            decided_at TEXT
        )""")
    db.execute("CREATE INDEX proposals_case ON proposals(case_id, kind, status)")


def _votes(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE votes (
            proposal_id INTEGER NOT NULL REFERENCES proposals(id),
            member TEXT NOT NULL,
            vote TEXT NOT NULL,              -- agree, object, abstain
            comment TEXT NOT NULL DEFAULT '',
            at TEXT NOT NULL,
            PRIMARY KEY (proposal_id, member)
        )""")


def _notes(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE notes (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            kind TEXT NOT NULL,              -- call, note, event-report, feedback
            author TEXT NOT NULL,
            at TEXT NOT NULL,                -- when it was filed
            held_on TEXT,                    -- calls: the day of the call (YYYY-MM-DD)
            participants TEXT NOT NULL DEFAULT '[]',   -- JSON list
            text TEXT NOT NULL,
            spool_id INTEGER                 -- the mail that filed it
        )""")
    db.execute("CREATE INDEX notes_case ON notes(case_id, id)")


def _mediations(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE mediations (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            mediator TEXT NOT NULL,          -- address
            mediator_name TEXT NOT NULL DEFAULT '',
            proposed_by TEXT NOT NULL,
            proposed_at TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'asking',  -- asking, settled, declined,
                                                    -- counter-proposed, superseded
            settled_at TEXT,
            target_date TEXT                 -- mediation to complete by (YYYY-MM-DD)
        )""")
    db.execute("CREATE INDEX mediations_case ON mediations(case_id, id)")


def _consents(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE consents (
            mediation_id INTEGER NOT NULL REFERENCES mediations(id),
            party TEXT NOT NULL,             -- address
            role TEXT NOT NULL,              -- reporter, originator
            draft_id INTEGER,                -- the consent request (a draft for the chair)
            answer TEXT,                     -- NULL (asked), agree, decline, propose
            proposed TEXT NOT NULL DEFAULT '',  -- the other mediator a party proposed
            answered_at TEXT,
            PRIMARY KEY (mediation_id, party)
        )""")


def _consultations(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE consultations (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            proposal_id INTEGER NOT NULL REFERENCES proposals(id),
            draft_id INTEGER NOT NULL,
            author TEXT NOT NULL,
            at TEXT NOT NULL
        )""")


MIGRATIONS = [
    ("0301_workflow_tables", workflow_tables),
]
