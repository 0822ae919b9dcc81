"""Held mail: kept, listed, and acted on only when the chair says so.

Three kinds of mail are held instead of handled:

- ``spam``: the trusted MTA's verdicts (``rules/spam.toml``) say the mail to the
  conduct address is spam;
- ``bounce``: a bounce that matches no mail mailflow sent (backscatter of spam
  forging our address, or, rarely, a report that only looks like a bounce);
- ``not-a-member``: mail to the committee list from someone not on it.

Held mail is archived and searchable (``kind:held``, ``kind:bounce``) but gets no
acknowledgement (never backscatter to a forged sender), no committee copy and no
clocks.  It is listed by ``mailflow held``, ``#held`` and the daily digest, except to
the members it names, who never see it.  The chair releases it (``#release``: the
pipeline then handles it afresh as mail to the conduct address, so a report becomes a
case, acknowledged and copied) or discards it (``#discard-held``: it stays archived
until retention, :func:`purge`).  Every step has an audit entry.  The commands are
:mod:`mailflow.case.held_commands`.
"""

from __future__ import annotations

import json
from typing import Any

from mailflow import timestamps
from mailflow.store import audit
from mailflow.store.sqlite import Database

REASONS = {"spam": "suspected spam", "bounce": "a bounce of mail mailflow did not send",
           "not-a-member": "mail to the committee from a non-member"}
SUBJECT_CHARS = 70


class HeldError(Exception):
    """A release or discard that cannot be done; the message says why."""


def hold(db: Database, spool_id: int, reason: str, detail: list[str],
         named: list[str]) -> int:
    """Hold a message (in the transaction that files it); returns the held id."""
    cur = db.execute(
        "INSERT INTO held (spool_id, reason, detail, named, held_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(spool_id) DO UPDATE SET reason = excluded.reason, detail = "
        "excluded.detail, named = excluded.named, state = 'held', decided_by = NULL, "
        "decided_at = NULL RETURNING id",
        [spool_id, reason, json.dumps(detail), json.dumps(sorted(named)), timestamps.stamp()])
    held_id = int(cur.fetchone()[0])
    audit.append(db, "mailflow", f"held: {reason}", None, held=held_id, spool_id=spool_id,
                 details=len(detail))  # the details name people: they stay in `held`
    return held_id


def released(db: Database, spool_id: int) -> dict[str, Any] | None:
    """The held row of a message the chair released, waiting to be handled afresh."""
    rows = list(db.query("SELECT * FROM held WHERE spool_id = ? AND state = 'released' "
                         "AND case_id IS NULL", [spool_id]))
    return rows[0] if rows else None


def filed(db: Database, spool_id: int, case_id: str | None) -> None:
    """A released message was handled: note the case it went to."""
    db.execute("UPDATE held SET case_id = ? WHERE spool_id = ?", [case_id, spool_id])


LIST_SQL = """
    SELECT h.id, h.spool_id, h.reason, h.detail, h.named, h.held_at, h.state, h.decided_by,
           h.decided_at, h.case_id, m.from_addr, m.envelope_from, m.subject
    FROM held h LEFT JOIN messages m ON m.spool_id = h.spool_id {where} ORDER BY h.id"""


def listing(db: Database, *, everything: bool = False,
            hide_from: str | None = None) -> list[dict[str, Any]]:
    """Held mail waiting for the chair (``everything``: released and discarded too);
    ``hide_from``: leave out what names that member."""
    rows = []
    for row in db.query(LIST_SQL.format(where="" if everything else "WHERE h.state = 'held'")):
        row["detail"], row["named"] = json.loads(row["detail"]), json.loads(row["named"])
        if hide_from is None or hide_from.lower() not in row["named"]:
            rows.append(row)
    return rows


def _pending(db: Database, held_id: int, hide_from: str | None
             ) -> dict[str, Any]:
    rows = [r for r in listing(db, hide_from=hide_from) if r["id"] == held_id]
    if not rows:
        state = db.execute("SELECT state FROM held WHERE id = ?", [held_id]).fetchone()
        if state and state[0] != "held" and hide_from is None:
            raise HeldError(f"held message {held_id} was already {state[0]}")
        raise HeldError(f"there is no held message {held_id}")
    return rows[0]


def release(db: Database, held_id: int, actor: str,
            hide_from: str | None = None) -> str:
    """Hand a held message back to the pipeline, to be handled as mail to the conduct
    address (the pipeline takes it up within a second)."""
    row = _pending(db, held_id, hide_from)
    db.execute("UPDATE held SET state = 'released', decided_by = ?, decided_at = ? "
               "WHERE id = ?", [actor, timestamps.stamp(), held_id])
    db.execute("UPDATE spool_state SET state = 'new', attempts = 0 WHERE spool_id = ?",
               [row["spool_id"]])
    audit.append(db, actor, "held mail released", None, held=held_id,
                 spool_id=row["spool_id"])
    return f"released held message {held_id}: it is handled now as a new report"


def discard(db: Database, held_id: int, actor: str,
            hide_from: str | None = None) -> str:
    """Decide a held message is nothing to act on; it stays archived until retention."""
    row = _pending(db, held_id, hide_from)
    db.execute("UPDATE held SET state = 'discarded', decided_by = ?, decided_at = ? "
               "WHERE id = ?", [actor, timestamps.stamp(), held_id])
    audit.append(db, actor, "held mail discarded", None, held=held_id,
                 spool_id=row["spool_id"])
    return f"discarded held message {held_id} (kept in the archive until retention)"


def purge(db: Database, cutoff: str) -> int:
    """Remove held mail (never released) held before ``cutoff``, with its archived
    message; inside the caller's transaction.  Returns how many."""
    rows = db.execute("SELECT id, spool_id FROM held WHERE state != 'released' AND "
                      "held_at < ?", [cutoff]).fetchall()
    for held_id, spool_id in rows:
        db.execute("DELETE FROM messages WHERE spool_id = ?", [spool_id])
        db.execute("DELETE FROM held WHERE id = ?", [held_id])
    if rows:
        audit.append(db, "admin", "purged held mail", None, held=[r[0] for r in rows])
    return len(rows)


def describe(row: dict[str, Any]) -> str:
    """One line per held message, for the CLI, #held and the digest."""
    sender = row["from_addr"] or row["envelope_from"] or "<>"
    subject = (row["subject"] or "(no subject)")[:SUBJECT_CHARS]
    why = "; ".join(row["detail"]) if row["detail"] else REASONS.get(row["reason"], "")
    state = "" if row["state"] == "held" else f" [{row['state']} by {row['decided_by']}]"
    return (f"{row['id']:>5}  {row['held_at'][:16].replace('T', ' ')}  {row['reason']:<12} "
            f"from {sender}: \"{subject}\" ({why}){state}")
