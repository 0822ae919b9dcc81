"""``mailflow status``: what an administrator looks at first, read from the archive."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from mailflow import timestamps
from mailflow.store import sqlite
from mailflow.store.sqlite import Database

SERVE_LOCK, SERVE_PID = "serve.lock", "serve.pid"  # in the archive, held by `mailflow serve`


def serve_state(archive: Path) -> dict[str, Any]:
    """Whether ``mailflow serve`` runs on this archive (it holds serve.lock), and its pid."""
    running = sqlite.held(archive / SERVE_LOCK)
    pid = None
    if running:
        with contextlib.suppress(OSError, ValueError):
            pid = int((archive / SERVE_PID).read_text().strip())
    return {"running": running, "pid": pid}


def _one(db: Database, sql: str, params: list | None = None) -> Any:
    return db.execute(sql, params or []).fetchone()[0]


def counts(db: Database) -> dict[str, Any]:
    now = timestamps.stamp()
    outbound = dict(db.execute(
        "SELECT CASE WHEN state = 'queued' AND attempts > 0 THEN 'deferred' ELSE state END, "
        "count(*) FROM outbound_rcpt WHERE state != 'sent' GROUP BY 1").fetchall())
    return {
        # Committed by intake, not yet processed (new mail, and mail being retried).
        "spool_backlog": _one(db, "SELECT count(*) FROM spool WHERE id > (SELECT "
                                  "coalesce(max(spool_id), 0) FROM spool_state)")
                         + _one(db, "SELECT count(*) FROM spool_state WHERE state = 'new'"),
        "quarantined": _one(db, "SELECT count(*) FROM spool_state WHERE state = 'quarantined'"),
        "outbound": {"queued": outbound.get("queued", 0), "deferred": outbound.get("deferred", 0),
                     "failed": outbound.get("failed", 0),
                     "due_now": _one(db, "SELECT count(*) FROM outbound_rcpt WHERE state = "
                                         "'queued' AND next_attempt_at <= ?", [now])},
        # Suspected spam, stray bounces, non-members' mail to the committee.
        "held": _one(db, "SELECT count(*) FROM held WHERE state = 'held'"),
    }


def next_clock(db: Database) -> dict[str, Any] | None:
    row = db.execute("SELECT clock, case_id, due_at FROM alarms WHERE state = 'pending' "
                     "ORDER BY due_at LIMIT 1").fetchone()
    return dict(zip(("clock", "case_id", "due_at"), row, strict=True)) if row else None


def last_errors(db: Database) -> dict[str, str]:
    """The latest error of each kind still standing (processing, delivery, clocks)."""
    found = {
        "processing": db.execute("SELECT 'spool ' || spool_id || ': ' || last_error FROM "
                                 "spool_state WHERE last_error IS NOT NULL "
                                 "ORDER BY spool_id DESC LIMIT 1").fetchone(),
        "delivery": db.execute("SELECT 'outbound ' || outbound_id || ' to ' || rcpt || ': ' "
                               "|| last_error FROM outbound_rcpt WHERE last_error IS NOT NULL "
                               "AND state != 'sent' ORDER BY id DESC LIMIT 1").fetchone(),
        "clock": db.execute("SELECT clock || ' (' || coalesce(case_id, '-') || '): ' || "
                            "last_error FROM alarms WHERE last_error IS NOT NULL AND state "
                            "IN ('pending', 'failed') ORDER BY id DESC LIMIT 1").fetchone(),
    }
    return {kind: row[0] for kind, row in found.items() if row}


def status(db: Database, archive: Path) -> dict[str, Any]:
    return {"serve": serve_state(archive), **counts(db), "next_clock": next_clock(db),
            "last_errors": last_errors(db)}


def format_status(s: dict[str, Any]) -> str:
    serve = s["serve"]
    out = s["outbound"]
    clock = s["next_clock"]
    lines = [
        "serve:          " + (f"running (pid {serve['pid']})" if serve["running"]
                              else "not running"),
        f"spool backlog:  {s['spool_backlog']} message(s) waiting for the pipeline",
        f"outbound queue: {out['queued']} recipient(s) queued ({out['due_now']} due now), "
        f"{out['deferred']} deferred, {out['failed']} failed",
        f"held:           {s['held']} message(s)",
        f"quarantine:     {s['quarantined']} message(s)",
        "next clock:     " + (f"{clock['clock']}"
                              f"{' of ' + clock['case_id'] if clock['case_id'] else ''} due "
                              f"{clock['due_at']}" if clock else "none"),
    ]
    errors = s["last_errors"]
    lines += [f"last error:     {kind}: {text}" for kind, text in errors.items()] or [
        "last error:     none"]
    return "\n".join(lines)
