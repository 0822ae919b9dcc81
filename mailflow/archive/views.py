"""The read side: cases, one case in full, the quarantine and the outbound queue,
as plain data (for ``--json``) and as text for people."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from mailflow.case import casefile, cases
from mailflow.clocks import alarms
from mailflow.config import Config
from mailflow.pipeline.context import CloseCheck
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


def case_detail(db: Database, case_id: str, cfg: Config,
                close_checks: Iterable[CloseCheck]) -> dict[str, Any] | None:
    """One case in full; ``close_checks``: :data:`mailflow.app.CLOSE_CHECKS`."""
    case = cases.get(db, case_id)
    if case is None:
        return None
    case["people"] = cases.people(db, case_id)
    case["messages"] = [
        {**m, "flags": json.loads(m["flags"] or "[]"),
         "attachments": json.loads(m["attachments"] or "[]")}
        for m in db.query(
            "SELECT id, kind, received_at, from_addr, from_name, subject, message_id, "
            "new_text, attachments, flags FROM messages WHERE case_id = ? ORDER BY id", [case_id])
    ]
    case["sent"] = list(db.query(
        "SELECT o.id, o.kind, o.created_at, o.subject, group_concat(r.rcpt, ', ') AS rcpts, "
        "min(r.state) AS state FROM outbound o JOIN outbound_rcpt r ON r.outbound_id = o.id "
        "WHERE o.case_id = ? GROUP BY o.id ORDER BY o.id", [case_id]))
    case["clocks"] = alarms.history(db, case_id)
    # The record, decisions and calls: what the committee knows (#status shows the same).
    case["file"] = casefile.case_file(db, cfg, case_id, close_checks)
    return case


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


def format_case(case: dict[str, Any]) -> str:
    lines = [
        f"Case {case['id']} ({case['codename']}) - {case['status']}, {case['kind']}",
        f"Opened {case['opened_at']}; acknowledged {case['acknowledged_at'] or 'not yet'}"
        + ("; arrived encrypted" if case.get("encrypted") else ""),
        f"Subject: {case['subject'] or ''}",
        "",
        casefile.format_record(case["file"]),
    ]
    lines += ["", "Messages:"]
    for m in case["messages"]:
        flags = f"  [{', '.join(m['flags'])}]" if m["flags"] else ""
        lines.append(f"  #{m['id']} {m['received_at']} {m['kind']:<8} {m['from_addr']}{flags}")
        lines.append(f"      {m['subject']}")
    lines += ["", "Sent:"]
    lines += [f"  #{s['id']} {s['created_at']} {s['kind']:<11} to {s['rcpts']} ({s['state']})"
              for s in case["sent"]] or ["  (nothing)"]
    lines += ["", "Clocks:"]
    for a in case["clocks"]:
        when = f"fired {a['fired_at']}" if a["state"] == "fired" else a["state"]
        about = f" ({a['ref']})" if a["ref"] else ""
        late = " LATE" if a["late"] else ""
        lines.append(f"  {a['clock']}{about}: due {a['due_at']}, {when}{late}"
                     f"{': ' + a['outcome'] if a['outcome'] else ''}")
    if not case["clocks"]:
        lines.append("  (none)")
    return "\n".join(lines)
