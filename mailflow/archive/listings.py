"""The read side's lists: the cases, the quarantine and the outbound queue, as plain
data (for ``--json``) and as text for people.  Apart from :mod:`.views` (one case in
full), which loads every module of the case's records: listing the cases needs none."""

from __future__ import annotations

from typing import Any

from mailflow.store.sqlite import Database


def case_list(db: Database, status: str | None = None,
              as_member: str | None = None) -> list[dict[str, Any]]:
    """All cases (with ``as_member``: less those that member is recused from)."""
    sql = """
        SELECT c.id, c.status, c.kind, c.codename, c.subject, c.opened_at, c.updated_at,
               c.acknowledged_at, c.urgent,
               (SELECT address FROM people p WHERE p.case_id = c.id AND p.role = 'reporter'
                ORDER BY p.id LIMIT 1) AS reporter,
               (SELECT count(*) FROM messages m WHERE m.case_id = c.id) AS messages
        FROM cases c {where} ORDER BY c.year, c.seq"""
    conditions, args = (["c.status = ?"], [status]) if status else ([], [])
    if as_member:
        conditions.append("c.id NOT IN (SELECT case_id FROM people WHERE role = 'recused' "
                          "AND address = lower(?))")
        args.append(as_member)
    where = "WHERE " + " AND ".join(conditions) if conditions else ""
    return list(db.query(sql.format(where=where), args))


def quarantine(db: Database) -> list[dict[str, Any]]:
    return list(db.query(
        "SELECT s.id, s.received_at, s.source, s.envelope_from, s.size, q.attempts, q.last_error "
        "FROM spool_state q JOIN spool s ON s.id = q.spool_id WHERE q.state = 'quarantined' "
        "ORDER BY s.id"))


def queue(db: Database, include_sent: bool = False) -> list[dict[str, Any]]:
    where = "" if include_sent else "WHERE r.state != 'sent'"
    return list(db.query(
        "SELECT o.id, o.case_id, o.kind, o.subject, r.rcpt, r.state, r.attempts, "
        f"r.next_attempt_at, r.last_error FROM outbound_rcpt r JOIN outbound o "
        f"ON o.id = r.outbound_id {where} ORDER BY o.id, r.rcpt"))


def format_case_list(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No cases."
    lines = [f"{'case':<10} {'status':<9} {'opened':<20} {'msgs':>4}  code name / reporter"]
    for r in rows:
        lines.append(f"{r['id']:<10} {r['status']:<9} {r['opened_at']:<20} {r['messages']:>4}  "
                     f"{r['codename']} / {r['reporter'] or '-'}{'  URGENT' if r['urgent'] else ''}")
    return "\n".join(lines)
