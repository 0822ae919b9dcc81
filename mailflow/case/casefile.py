"""The case file: the record, the people, the decisions, mediation, the consultation
and the records filed on a case, as data (``mailflow case show --json``) and as text
(``#status`` and ``mailflow case show``), with what is still undetermined and what
holds back closing it.  Made of :mod:`.reads` alone, so that showing a case loads none
of the modules that act on one."""

from __future__ import annotations

from typing import Any

from mailflow.case import cases, menu, reads
from mailflow.config import Config
from mailflow.store.sqlite import Database


def case_file(db: Database, cfg: Config, case_id: str) -> dict[str, Any]:
    proposals = [{**p, "votes": reads.votes(db, p["id"])} for p in db.query(
        "SELECT * FROM proposals WHERE case_id = ? ORDER BY id", [case_id])]
    consultation = reads.latest_consultation(db, case_id)
    if consultation:
        consultation = {**consultation,
                        "state": reads.draft_state(db, consultation["draft_id"])}
    return {
        "record": cases.record(db, case_id),
        "undetermined": reads.undetermined(db, case_id),
        "chair": cases.acting_chair(db, cfg, case_id),
        "deciding": cases.active_members(db, cfg, case_id),
        "recused": sorted(cases.recused(db, case_id)),
        "people": [p for p in cases.people(db, case_id)
                   if p["role"] not in ("recused", "acting-chair")],
        "proposals": proposals,
        "mediation": reads.current_mediation(db, case_id),
        "consultation": consultation,
        "bans": reads.bans(db, case_id),
        "flags": reads.case_flags(db, case_id),
        "drafts": reads.drafts_on_case(db, case_id),
        "notes": reads.notes(db, case_id),
        "close_blockers": reads.close_blockers(db, case_id),
    }


def _undetermined(value: Any) -> str:
    return str(value) if value else "(undetermined)"


def format_record(cf: dict[str, Any]) -> str:
    """The case file as text, section by section (``#status``, ``mailflow case show``)."""
    sections = (_determinations, _committee, _decisions, _measures, _records)
    return "\n".join(line for section in sections for line in section(cf))


def _determinations(cf: dict[str, Any]) -> list[str]:
    rec = cf["record"]

    def role(name: str) -> str:
        return _undetermined(", ".join(cases.person_text(p) for p in cf["people"]
                                       if p["role"] == name))

    response = (menu.describe(rec["response"], rec["response_detail"] or "")
                if rec["response"] else None)
    lines = [
        "Determinations",
        f"  What happened:        {_undetermined(rec['what_happened'])}",
        f"  Channel or event:     {_undetermined(rec['channel'])}",
        f"  Violation:            {_undetermined(rec['violation'])}",
        f"  Originator(s):        {role('originator')}",
        f"  Affected party(ies):  {role('affected')}",
        f"  Ongoing:              {_undetermined(rec['ongoing'])}",
        f"  Threat to safety:     {_undetermined(rec['safety'])}",
        f"  Required response:    {_undetermined(response)}",
    ]
    if cf["undetermined"]:
        lines.append(f"  Still undetermined:   {', '.join(cf['undetermined'])}")
    return lines


def _committee(cf: dict[str, Any]) -> list[str]:
    lines = ["", "Committee",
             f"  Chair:     {cf['chair'] or 'none: every chair is recused; #chair <member>'}",
             f"  Deciding:  {', '.join(cf['deciding']) or 'nobody: the case is with the board'}",
             f"  Recused:   {', '.join(cf['recused']) or 'nobody'}", "", "People"]
    return lines + ([f"  {p['role']:<11} {cases.person_text(p)}" for p in cf["people"]]
                    or ["  (none)"])


def _decisions(cf: dict[str, Any]) -> list[str]:
    lines = ["", "Decisions"]
    for p in cf["proposals"]:
        what = menu.what(p)
        blocked = f", blocked since {p['deadlocked_at']}" if (
            p["deadlocked_at"] and p["status"] == "open") else ""
        lines.append(f"  #{p['id']} {what}: {p['status']}{blocked} "
                     f"(proposed by {p['proposed_by']}, {p['proposed_at']})")
        lines += [f"      {v['vote']:<8} {v['member']}{': ' + v['comment'] if v['comment'] else ''}"
                  for v in p["votes"]]
    if not cf["proposals"]:
        lines.append("  (no proposal yet: #propose <response>)")
    return lines


def _measures(cf: dict[str, Any]) -> list[str]:
    rec, lines = cf["record"], []
    if rec["severe_at"]:
        lines += ["", f"Clear and severe breach: fast path used {rec['severe_at']} by "
                      f"{rec['severe_by']} ({rec['severe_scope']}): {rec['severe_reason']}"]
    m = cf["mediation"]
    if m:
        target = f", to complete by {m['target_date']}" if m["target_date"] else ""
        lines += ["", f"Mediation #{m['id']} with {m['mediator_name'] or m['mediator']} "
                      f"<{m['mediator']}>: {m['status']}{target}"]
        lines += [_consent_line(c) for c in m["consents"]]
    c = cf["consultation"]
    if c:
        lines += ["", f"Reporter consulted: draft {c['draft_id']} ({c['state']}), {c['at']}"]
    if rec["enacted_at"]:
        lines.append(f"Enacted: {rec['enacted_at']} by {rec['enacted_by']}")
    if cf["bans"]:
        lines += ["", "Bans"]
        lines += [f"  #{b['id']} {b['person']} from {b['spaces']}, {b['start']} to {b['end']} "
                  f"({b['status']})" for b in cf["bans"]]
    if cf["flags"]:
        lines += ["", "Flags: " + "; ".join(cf["flags"])]
    return lines


def _consent_line(c: dict[str, Any]) -> str:
    how = f" (recorded by {c['recorded_by']}: {c['how']})" if c["how"] else ""
    proposed = f" - {c['proposed']}" if c["proposed"] else ""
    return f"  {c['role']:<11} {c['party']}: {c['answer'] or 'not answered yet'}{proposed}{how}"


def _records(cf: dict[str, Any]) -> list[str]:
    lines = []
    if cf["drafts"]:
        lines += ["", "Drafts (#confirm by the chair sends one)"]
        lines += [f"  #{d['id']} {d['template']} to the {d['to_role']}: {d['state']} "
                  f"(by {d['author']}, {d['created_at']})" for d in cf["drafts"]]
    if cf["notes"]:
        lines += ["", "Calls and notes, in order"]
        for n in cf["notes"]:
            about = (f"call of {n['held_on']} with {', '.join(n['participants'])}"
                     if n["kind"] == "call" else n["kind"])
            lines.append(f"  #{n['id']} {n['at']} {about}, filed by {n['author']}")
            lines += [f"      {line}" for line in n["text"].splitlines()]
    if cf["close_blockers"]:
        lines += ["", "Before it can close: " + "; ".join(cf["close_blockers"])]
    return lines
