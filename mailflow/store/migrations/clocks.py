"""The clocks' alarms (see :mod:`mailflow.clocks.alarms`)."""

from __future__ import annotations

import sqlite3


def alarm_tables(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE alarms (
            id INTEGER PRIMARY KEY,
            case_id TEXT REFERENCES cases(id),    -- NULL: not about one case (the digest)
            clock TEXT NOT NULL,                  -- a [clocks.NAME] of rules/clocks.toml
            ref TEXT NOT NULL DEFAULT '',         -- which one within the case: a proposal
                                                  -- id, a ban id, a member ...
            armed_at TEXT NOT NULL,
            due_at TEXT NOT NULL,                 -- UTC, sortable
            state TEXT NOT NULL DEFAULT 'pending',  -- pending, fired, ended, disarmed, failed
            fired_at TEXT,
            late INTEGER NOT NULL DEFAULT 0,      -- fired well after its due time
            outcome TEXT NOT NULL DEFAULT '',     -- what it did, or why it ended
            detail TEXT NOT NULL DEFAULT '{}',    -- JSON from whoever armed it
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        )""")
    # One pending alarm per (case, clock, ref): arming again moves its due time.
    db.execute("CREATE UNIQUE INDEX alarms_pending ON alarms(coalesce(case_id, ''), clock, ref)"
               " WHERE state = 'pending'")
    db.execute("CREATE INDEX alarms_due ON alarms(state, due_at)")
    db.execute("CREATE INDEX alarms_case ON alarms(case_id, id)")


MIGRATIONS = [("clocks_0001_alarms", alarm_tables)]
