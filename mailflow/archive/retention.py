"""Retention: ``mailflow purge --before DATE`` removes expired cases' mail and text.

A case is expired when its status counts as closed (``rules/retention.toml``
``closed_statuses``) and its last activity (the later of its last mail and its last
audit entry) is older than ``closed_days``.  ``--before DATE`` limits a run to the
expired cases last active before DATE.  A case with an ongoing ban (not lifted, not
ended) is refused: the ban's record must stay reviewable while it is in force.

What a purge removes, in one transaction per case: its messages, everything sent about
it (relayed copies included), the indexed records, and the rows of every other table
with the case's ``case_id`` (or pointing at such rows): case fields, proposals and
votes, notes and call summaries, drafts, mediation, people; then the raw mail of those
messages from ``spool.db``.  What it keeps: the case row itself, with its subject
cleared and the status ``purged`` (so its id is never reused), the registries the
guidelines require (bans, warnings), and the audit log, which gains an entry for the
purge (the log is hash-chained; its entries name addresses, never mail text).

Then it makes the text unrecoverable: ``secure_delete`` (on for every connection)
zeroes freed content, an FTS5 ``optimize`` rewrites the index without the removed
terms, and a ``wal_checkpoint(TRUNCATE)`` of both databases empties their WALs.
Held mail never released (:mod:`mailflow.case.held`) is kept as long, then removed
the same way.  Mail to a member that quotes the case from another (search results)
goes too.  Without a relay, the Maildir outbox under the archive holds a copy of every
mail delivered there: those of a purged case (by their Message-ID) are removed too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from mailflow import store, timestamps
from mailflow.archive import dossier
from mailflow.case import held
from mailflow.mail.openpgp import Keyring
from mailflow.store import audit
from mailflow.store.sqlite import Database

# Registries kept beyond a case's retention; the audit log is never rewritten.
KEEP = {"audit", "bans", "warnings", "spool_state", "search_docs"}


@dataclass
class Outcome:
    case_id: str
    last_active: str
    action: str          # purged, kept, refused (and "would purge" in a dry run)
    why: str = ""


def _candidates(db: Database, statuses: list[str], before: str
                ) -> list[tuple[str, str]]:
    marks = ", ".join("?" * len(statuses))
    return db.execute(
        "SELECT id, last FROM (SELECT c.id, max(c.updated_at, coalesce((SELECT max(at) FROM "
        f"audit a WHERE a.case_id = c.id), '')) AS last FROM cases c WHERE c.status IN ({marks}))"
        " WHERE last < ? ORDER BY id", [*statuses, before]).fetchall()


def ongoing_bans(db: Database, case_id: str) -> list[str]:
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'bans'").fetchone():
        return []
    return [r[0] for r in db.execute(
        "SELECT person FROM bans WHERE case_id = ? AND lifted_at IS NULL "
        "AND (ends_at IS NULL OR ends_at > ?)", [case_id, timestamps.stamp()])]


def _purge_quoting(db: Database, case_id: str) -> int:
    """Remove the mail to members that quotes the case (search results sent from
    another case); returns how many."""
    ids = [r[0] for r in db.execute("SELECT outbound_id FROM outbound_quotes WHERE case_id = ?",
                                    [case_id])]
    marks = ", ".join("?" * len(ids))
    for table, column in (("outbound_rcpt", "outbound_id"), ("outbound_quotes", "outbound_id"),
                          ("outbound", "id")):
        db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
    return len(ids)


def _purge_case(db: Database, case_id: str, before: str
                ) -> tuple[dict[str, int], set[str]]:
    """Purge one case; (rows removed by table, Message-IDs of the mail sent about it)."""
    removed: dict[str, int] = {}
    with store.transaction(db):
        # Rows go table by table; the references between them are checked at commit.
        db.execute("PRAGMA defer_foreign_keys = ON")
        sent = {r[0] for r in db.execute(
            "SELECT message_id FROM outbound WHERE case_id = ? OR id IN (SELECT outbound_id "
            "FROM outbound_quotes WHERE case_id = ?)", [case_id, case_id])}
        quoting = _purge_quoting(db, case_id)
        if quoting:
            removed["mail quoting it"] = quoting
        spool_ids = [r[0] for r in db.execute(
            "SELECT spool_id FROM messages WHERE case_id = ? AND spool_id IS NOT NULL",
            [case_id])]
        for table, cond in dossier.case_tables(db):
            if table not in KEEP:
                n = db.execute(f"DELETE FROM {table} WHERE {cond}", [case_id]).rowcount
                if n > 0:
                    removed[table] = removed.get(table, 0) + n
        removed["raw messages"] = len(spool_ids)  # from spool.db next, by _sweep_spool
        db.conn.executemany("DELETE FROM pgp_signatures WHERE spool_id = ?",
                            [(i,) for i in spool_ids])
        db.execute("UPDATE cases SET subject = NULL, reporter_key = NULL, status = 'purged' "
                   "WHERE id = ?", [case_id])
        audit.append(db, "admin", "purged", case_id, before=before, removed=removed)
    return removed, sent


def _sweep_spool(db: Database, spool: Database) -> int:
    """Remove the raw bytes no message refers to any more.  The spool is its own
    database (intake's), so this follows the purge's commit; a crash in between
    leaves raw bytes that the next purge removes."""
    orphans = [r[0] for r in db.execute(
        "SELECT st.spool_id FROM spool_state st WHERE st.state = 'done' AND NOT EXISTS "
        "(SELECT 1 FROM messages m WHERE m.spool_id = st.spool_id) AND EXISTS "
        "(SELECT 1 FROM spool s WHERE s.id = st.spool_id)")]
    with store.transaction(spool):
        for start in range(0, len(orphans), 500):
            part = orphans[start:start + 500]
            spool.execute(f"DELETE FROM spool WHERE id IN ({', '.join('?' * len(part))})", part)
    return len(orphans)


def _checkpoint(db: Database, name: str) -> str | None:
    for _ in range(50):  # a reader (mailflow serve) may hold the WAL for a moment
        # main: the spool attached to mailflow.db is read-only there.
        if not db.execute("PRAGMA main.wal_checkpoint(TRUNCATE)").fetchone()[0]:
            return None
        timestamps.sleep(0.1)
    return (f"{name}: the WAL could not be emptied while other processes read it; run the "
            "purge again when they are idle")


def _scrub(db: Database, spool: Database) -> list[str]:
    """Leave no copy of removed text in the index, the free pages or the WALs."""
    with store.transaction(db):
        db.execute("INSERT INTO search_fts (search_fts) VALUES ('optimize')")
    _sweep_spool(db, spool)
    return [p for p in (_checkpoint(db, "mailflow.db"), _checkpoint(spool, "spool.db")) if p]


def _sweep_outbox(outbox: Path, message_ids: set[str]) -> int:
    """Remove the purged cases' mail from a Maildir outbox; returns how many."""
    removed = 0
    for path in [*outbox.glob("new/*"), *outbox.glob("cur/*")]:
        try:
            with open(path, "rb") as f:
                headers = BytesHeaderParser().parsebytes(f.read(65536))
        except FileNotFoundError:
            continue
        if (headers.get("Message-ID") or "").strip().strip("<>") in message_ids:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def purge(db: Database, spool: Database, rules: dict[str, Any],
          before: datetime, dry_run: bool = False, outbox: Path | None = None,
          correspondents: Keyring | None = None) -> tuple[list[Outcome], list[str]]:
    """Purge the expired cases last active before ``before``; (outcomes, problems).
    ``spool`` is a writable connection to spool.db (``store.connect_spool``);
    ``outbox``: the Maildir outbox, if mail is delivered there; ``correspondents``: the
    keyring whose reporters' keys go with their cases."""
    table = rules.get("retention", {})
    days = table.get("closed_days", 1825)
    statuses = table.get("closed_statuses", ["closed"])
    cutoff = timestamps.stamp(timestamps.now() - timedelta(days=days))
    outcomes = []
    sent: set[str] = set()
    stamp = timestamps.stamp(before)
    for case_id, last in _candidates(db, statuses, stamp):
        if last >= cutoff:
            keep_until = timestamps.stamp(timestamps.parse(last) + timedelta(days=days))[:10]
            outcomes.append(Outcome(case_id, last, "kept",
                                    f"retention ({days} days) runs until {keep_until}"))
            continue
        bans = ongoing_bans(db, case_id)
        if bans:
            outcomes.append(Outcome(case_id, last, "refused",
                                    f"ongoing ban of {', '.join(bans)}"))
            continue
        if dry_run:
            outcomes.append(Outcome(case_id, last, "would purge"))
            continue
        key = _reporter_key(db, case_id)
        removed, mail = _purge_case(db, case_id, stamp)
        sent |= mail
        if key and correspondents and not _reporter_key_used(db, key):
            correspondents.delete(key)  # the reporter's key names them: it goes too
            removed["reporter's key"] = 1
        outcomes.append(Outcome(case_id, last, "purged",
                                ", ".join(f"{n} {t}" for t, n in sorted(removed.items()))))
    outcomes += _purge_held(db, cutoff, stamp, dry_run)
    purged = any(o.action == "purged" for o in outcomes)
    if purged and outbox is not None:
        _sweep_outbox(outbox, sent)
    return outcomes, _scrub(db, spool) if purged else []


def _purge_held(db: Database, cutoff: str, before: str, dry_run: bool
                ) -> list[Outcome]:
    """Held mail never released (discarded, or never decided) is kept as long as a
    closed case: past ``closed_days``, it goes too."""
    until = min(cutoff, before)
    if dry_run:
        n = db.execute("SELECT count(*) FROM held WHERE state != 'released' AND held_at < ?",
                       [until]).fetchone()[0]
        return [Outcome("held mail", until, "would purge", f"{n} message(s)")] if n else []
    with store.transaction(db):
        n = held.purge(db, until)
    return [Outcome("held mail", until, "purged", f"{n} message(s)")] if n else []


def _reporter_key(db: Database, case_id: str) -> str | None:
    row = db.execute("SELECT reporter_key FROM cases WHERE id = ?", [case_id]).fetchone()
    return row[0] if row else None


def _reporter_key_used(db: Database, key: str) -> bool:
    """Whether a case not purged still encrypts to this reporter's key."""
    return db.execute("SELECT 1 FROM cases WHERE reporter_key = ?", [key]).fetchone() is not None


def format_outcomes(outcomes: list[Outcome], problems: list[str]) -> str:
    lines = [f"{o.case_id}  {o.action:<11} last active {o.last_active[:10]}"
             f"{': ' + o.why if o.why else ''}" for o in outcomes]
    return "\n".join(lines + problems) or "No closed case was last active before that date."
