"""The read side: one case in full, as plain data (for ``--json``) and as text for
people.  The lists of cases, the quarantine and the queue are :mod:`.listings`."""

from __future__ import annotations

import json
from typing import Any

from mailflow.case import casefile, cases, reads
from mailflow.config import Config
from mailflow.store.sqlite import Database


def case_detail(db: Database, case_id: str, cfg: Config) -> dict[str, Any] | None:
    """One case in full."""
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
    case["clocks"] = reads.clock_history(db, case_id)
    # The record, decisions and calls: what the committee knows (#status shows the same).
    case["file"] = casefile.case_file(db, cfg, case_id)
    return case


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
