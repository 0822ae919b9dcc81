"""``mailflow case export ID``: the whole case in one file, in the order things happened.

One timeline merges the mail in (with its text), the mail sent (acknowledgements,
transcripts of commands and their results, confirmed drafts; not the per-member copies
of relayed mail), the indexed records (call summaries, notes, drafts, case fields) and
the audit log of the case (every command, vote, decision and change, with who did it
and the proof of identity used).  Every other table holding rows of the case (case
fields, proposals and votes, drafts, bans, mediation ...) follows in full, found by its
``case_id`` column or a foreign key to such a table, so new tables need no change here.

Formats: ``json`` (everything, for tools), ``html`` (one self-contained page an officer
reads as a document from top to bottom, offline: each thing in order as a sentence,
then where the case stands, no table rows; see ``narrative`` and
``templates/dossier.html``), ``mbox`` (the mail itself for a mail client, plus one
message carrying the case record as text).
"""

from __future__ import annotations

import json
import mailbox
import tempfile
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailflow import store, timestamps
from mailflow.archive import auditview, narrative
from mailflow.case import cases
from mailflow.mail.parse import parse
from mailflow.mail.scrub import scrub_message, scrub_text
from mailflow.resources import builtin
from mailflow.store import audit
from mailflow.store.sqlite import Database

if TYPE_CHECKING:
    import jinja2

# Shown in their own sections, or internal (the index, the raw spool).
SHOWN_APART = {"cases", "people", "messages", "outbound", "outbound_rcpt", "audit",
               "search_docs", "search_records", "spool_state"}


def case_tables(db: Database) -> list[tuple[str, str]]:
    """Every table holding rows of a case, as (table, SQL condition with one ``?`` for
    the case id); rows that refer to another table's rows come before those rows."""
    names = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND sql NOT LIKE 'CREATE VIRTUAL%' AND name NOT LIKE 'search_fts_%'")]
    columns = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in names}
    children: dict[str, list[tuple[str, str, str]]] = {}
    for t in names:
        for fk in db.execute(f"PRAGMA foreign_key_list({t})").fetchall():
            parent, from_col, to_col = fk[2], fk[3], fk[4] or "rowid"
            if parent != t and parent != "cases":
                children.setdefault(parent, []).append((t, from_col, to_col))
    out: list[tuple[str, str]] = []

    def visit(table: str, cond: str, depth: int) -> None:
        for child, from_col, to_col in children.get(table, []) if depth < 4 else []:
            if "case_id" not in columns[child]:
                visit(child, f"{from_col} IN (SELECT {to_col} FROM {table} WHERE {cond})",
                      depth + 1)
        out.append((table, cond))

    for t in names:
        if "case_id" in columns[t] and t != "cases":
            visit(t, "case_id = ?", 0)
    return out


def _plain(value: Any) -> Any:
    return f"<{len(value)} bytes>" if isinstance(value, bytes) else value


def _sequence(audit_rows: list[dict[str, Any]], db: Database, case_id: str
              ) -> dict[tuple[str, Any], float]:
    """Where each mail and record stands in the audit log, whose order is the order
    things happened (timestamps have one-second steps; a mail's commands share its
    second): ("in", spool id), ("out", outbound id), ("record", ref) -> position."""
    seq: dict[tuple[str, Any], float] = {}
    opened = None  # a report opens its case before it is filed: it comes first
    for a in audit_rows:
        d = json.loads(a["detail"] or "{}")
        if a["action"] == "case opened":
            opened = a["id"] - 0.5
        if a["action"].startswith("mail in: ") and "spool_id" in d:
            seq.setdefault(("in", d["spool_id"]), opened or a["id"])
            opened = None
        elif a["action"].startswith("queued ") and d.get("outbound"):
            seq.setdefault(("out", d["outbound"]), a["id"])
        elif a["action"] == "draft filed" and "draft" in d:
            seq.setdefault(("record", f"draft:{d['draft']}"), a["id"] - 0.5)
    # Calls, notes and reports are filed by the commands of the mail that carried them.
    for kind, note_id, spool_id in db.execute(
            "SELECT kind, id, spool_id FROM notes WHERE case_id = ?", [case_id]):
        if ("in", spool_id) in seq:
            seq[("record", f"{kind}:{note_id}")] = seq[("in", spool_id)] + 0.5
    return seq


def collect(db: Database, case_id: str) -> dict[str, Any] | None:
    case = cases.get(db, case_id)
    if case is None:
        return None
    audit_rows = list(db.query("SELECT * FROM audit WHERE case_id = ? ORDER BY id", [case_id]))
    seq = _sequence(audit_rows, db, case_id)
    timeline: list[dict[str, Any]] = []
    for m in db.query(
            "SELECT m.*, s.raw FROM messages m LEFT JOIN spool s ON s.id = m.spool_id "
            "WHERE m.case_id = ? ORDER BY m.id", [case_id]):
        timeline.append({
            "at": m["received_at"], "seq": seq.get(("in", m["spool_id"])), "type": "mail in",
            "kind": m["kind"], "from": m["from_addr"], "from_name": m["from_name"],
            "to": json.loads(m["to_addrs"] or "[]") + json.loads(m["cc_addrs"] or "[]"),
            "subject": m["subject"], "date": m["date"], "message_id": m["message_id"],
            "text": m["body_text"], "attachments": json.loads(m["attachments"] or "[]"),
            "flags": json.loads(m["flags"] or "[]"), "raw": m["raw"]})
    for o in db.query(
            "SELECT o.*, (SELECT group_concat(rcpt || ' (' || state || ')', ', ') FROM "
            "outbound_rcpt r WHERE r.outbound_id = o.id) AS rcpts FROM outbound o "
            "WHERE o.case_id = ? AND o.kind != 'relay' ORDER BY o.id", [case_id]):
        p = parse(o["raw"])
        timeline.append({
            "at": o["created_at"], "seq": seq.get(("out", o["id"])), "type": "mail out",
            "kind": o["kind"], "from": p.from_addr, "to": o["rcpts"], "subject": o["subject"],
            "message_id": o["message_id"], "text": p.body_text, "raw": o["raw"]})
    for r in db.query("SELECT * FROM search_records WHERE case_id = ? AND kind != 'case' "
                      "ORDER BY at", [case_id]):
        timeline.append({"at": r["at"], "seq": seq.get(("record", r["ref"])), "type": "record",
                         "kind": r["kind"], "from": r["author"], "subject": r["subject"],
                         "text": r["body"], "ref": r["ref"]})
    for a in audit_rows:
        detail = auditview.detail(db, a["action"], json.loads(a["detail"] or "{}"))
        timeline.append({"at": a["at"], "seq": a["id"], "type": "event", "kind": a["action"],
                         "from": a["actor"], "proof": a["proof"], "detail": detail,
                         "audit_id": a["id"]})
    order = {"mail in": 0, "record": 1, "mail out": 2, "event": 3}
    timeline.sort(key=lambda e: (e["at"] or "", e["seq"] is None, e["seq"] or 0,
                                 order[e["type"]]))
    records = {}
    for table, cond in case_tables(db):
        if table in SHOWN_APART or table in records:
            continue
        rows = [{k: _plain(v) for k, v in row.items()}
                for row in db.query(f"SELECT * FROM {table} WHERE {cond}", [case_id])]
        if rows:
            records[table] = rows
    return {"case": case, "people": cases.people(db, case_id), "timeline": timeline,
            "records": records, "exported_at": timestamps.stamp()}


def to_json(d: dict[str, Any]) -> bytes:
    timeline = [{k: v for k, v in e.items() if k != "raw"} for e in d["timeline"]]
    return json.dumps({**d, "timeline": timeline}, indent=2, ensure_ascii=False,
                      default=str).encode()


def _html_template() -> jinja2.Template:
    import jinja2  # for the dossier alone: the other commands never load it

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(builtin("templates")),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("dossier.html")


def to_html(d: dict[str, Any], by: str | None = None) -> bytes:
    """The case as a document an officer reads from top to bottom (``narrative``)."""
    c = d["case"]
    return _html_template().render(
        c=c, people=[p for p in d["people"] if p["role"] not in ("recused", "acting-chair")],
        story=narrative.story(d), exported=narrative.when(d["exported_at"]), by=by,
        opened=narrative.when(c["opened_at"]),
        acknowledged=c["acknowledged_at"] and narrative.when(c["acknowledged_at"])).encode()


def _record_text(d: dict[str, Any]) -> str:
    c = d["case"]
    lines = [f"Case {c['id']} ({c['codename']}): {c['status']}, {c['kind']}",
             f"Subject: {c['subject'] or ''}", f"Opened {c['opened_at']}", "", "People:"]
    lines += [f"  {p['role']:<12} {p['name']} <{p['address']}>" for p in d["people"]]
    lines += ["", "Timeline:"]
    for e in d["timeline"]:
        who = f" {e['from']}" if e.get("from") else ""
        lines.append(f"  {e['at']} {e['type']}: {e['kind']}{who}")
        if e["type"] == "record":
            lines += [f"      {line}" for line in (e["text"] or "").splitlines()]
        elif e["type"] == "event" and e["detail"]:
            lines.append(f"      {json.dumps(e['detail'], ensure_ascii=False)}")
    for table, rows in d["records"].items():
        lines += ["", f"{table}:"]
        lines += [f"  {json.dumps(r, ensure_ascii=False, default=str)}" for r in rows]
    return "\n".join(lines) + "\n"


def to_mbox(d: dict[str, Any]) -> bytes:
    c = d["case"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.mbox"
        box = mailbox.mbox(str(path))
        for e in d["timeline"]:
            if e.get("raw"):
                box.add(scrub_message(e["raw"]))
        record = EmailMessage()
        record["From"] = "mailflow <mailflow@localhost>"
        record["Subject"] = f"Case {c['id']} ({c['codename']}): the case record"
        record["Date"] = format_datetime(timestamps.now())
        record["X-Mailflow-Case"] = c["id"]
        record.set_content(scrub_text(_record_text(d)))
        box.add(record)
        box.flush()
        box.close()
        return path.read_bytes()


def export(db: Database, case_id: str, fmt: str, by: str | None = None
           ) -> bytes | None:
    """The case in ``fmt``, or None if there is no such case; the export is audited."""
    d = collect(db, case_id)
    if d is None:
        return None
    if fmt == "mbox":
        data = to_mbox(d)
    else:  # no reply address with a token in it: each is its holder's alone
        data = scrub_text({"json": to_json, "html": lambda x: to_html(x, by)}[fmt](d)
                          .decode()).encode()
    with store.transaction(db):
        audit.append(db, by or "admin", "case exported", case_id, format=fmt)
    return data
