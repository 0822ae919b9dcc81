"""The final report to the officers, and the maintainers' notice while a ban is in force.

``#report`` renders the report from the case record (where it happened, what occurred
and any public record, whether it was a violation, the originators, the affected
parties, any threat to physical safety, the agreed response and the measures taken),
with the reporter's and witnesses' identities withheld unless they consented, and
drafts it for the chair's ``#confirm``; with a ban in force it also drafts the notice
to the maintainers.  ``mailflow report ID`` prints the same text.  A case cannot
close before its report was sent (after the latest review request, if any).
"""

from __future__ import annotations

from typing import Any

from mailflow import timestamps
from mailflow.case import cases, consensus, reads, sanctions
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.responses import drafts, redaction
from mailflow.store.sqlite import Database

NOTICE = "maintainers-notice"
# What a sent draft tells the officers was done, beyond the menu's own words.
MEASURE_WORDS = {
    **consensus.RESPONSES,
    "notice-to-originator-severe": "notice to the originator of a clear and severe breach, "
                                   "with the right to ask for a review",
    "ban-notice": "ban notice to the person banned",
    "moderator-instruction": "instruction to the moderators",
    "outcome": "outcome to the reporter",
}
PERSON_KEYS = {"originator": "originators", "affected": "affected"}


def missing(record: dict[str, Any]) -> list[str]:
    """The determinations the report still lacks (no originator or affected party is
    needed when the committee found no violation)."""
    skip = PERSON_KEYS if record["violation"] == "no" else {}
    return [label for key, label in reads.DETERMINATIONS if key not in skip
            and record[PERSON_KEYS.get(key, key)] in (drafts.UNDETERMINED, [])]


def _measures(db: Database, case_id: str, row: dict[str, Any]) -> list[str]:
    out = []
    if row.get("severe_at"):
        out.append(f"{row['severe_at'][:10]}: clear and severe breach: the originator was "
                   f"disconnected at once ({row['severe_reason']})")
    out += [f"{b['start']}: ban of {b['person']} from {b['spaces']}, "
            f"{'permanent' if b['permanent'] else 'until ' + b['end']} ({b['status']})"
            for b in reads.bans(db, case_id)]
    out += [f"{w['at'][:10]}: warning to {w['person']}" for w in db.query(
        "SELECT person, at FROM warnings WHERE case_id = ? ORDER BY id", [case_id])]
    out += [f"{d['decided_at'][:10]}: {MEASURE_WORDS[d['template']]} sent" for d in db.query(
        "SELECT template, decided_at FROM drafts WHERE case_id = ? AND state = 'sent' "
        "ORDER BY decided_at", [case_id]) if d["template"] in MEASURE_WORDS]
    if row.get("enacted_at"):
        out.append(f"{row['enacted_at'][:10]}: the agreed response was carried out")
    return out


def report_context(db: Database, svc, case_id: str) -> dict[str, Any]:
    """The report's fields, every identity the officers may not see already withheld."""
    record = drafts.case_record(db, case_id)
    rows = list(db.query("SELECT * FROM case_record WHERE case_id = ?", [case_id]))
    row = rows[0] if rows else {}
    withheld_people = redaction.protected_people(db, case_id, svc.cfg.committee.officers)
    identities = [i for p in withheld_people for i in redaction.identities_of(p)]
    withheld = {redaction.person_key(p): f"{redaction.LABELS[p['role']]} (identity withheld)"
                for p in withheld_people}

    def shown(p: dict) -> str:
        return withheld.get(redaction.person_key(p)) or cases.person_text(p)

    public = [r[0] for r in db.execute("SELECT text FROM public_records WHERE case_id = ? "
                                       "ORDER BY id", [case_id])]
    report = {
        **record,
        "originators": [shown(p) for p in cases.people(db, case_id, "originator")],
        "affected": [shown(p) for p in cases.people(db, case_id, "affected")],
        "public_records": public,
        "measures": _measures(db, case_id, row),
    }
    return {"report": _redacted(report, identities), "missing": missing(record)}


def _redacted(value: Any, identities: list[redaction.Identity]) -> Any:
    if isinstance(value, str):
        return redaction.redact(value, identities)
    if isinstance(value, list):
        return [_redacted(v, identities) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v, identities) for k, v in value.items()}
    return value


def prepare(db: Database, svc, case_id: str, report: dict[str, Any]
            ) -> list[drafts.Prepared]:
    """The report, and the maintainers' notice while a ban is in force, rendered and
    checked as ``#report`` drafts them (``mailflow report`` prints these)."""
    out = [drafts.prepare(db, svc, case_id=case_id, template=reads.REPORT, to_role="officers",
                          context={"report": report})]
    in_force = sanctions.ongoing(db, case_id)
    if in_force:
        out.append(drafts.prepare(db, svc, case_id=case_id, template=NOTICE,
                                  to_role="maintainers", context={"bans_in_force": in_force}))
    return out


@command("report", summary="draft the final report to the officers from the case record "
         "(and the notice to the maintainers while a ban is in force); the chair confirms it",
         usage="#report", example="#report")
def _report(inv: Invocation) -> str:
    context = report_context(inv.db, inv.svc, inv.case_id)
    if context["missing"]:
        raise CommandError("the report needs every determination first; still missing: "
                           + ", ".join(context["missing"]))
    done = []
    for p in prepare(inv.db, inv.svc, inv.case_id, context["report"]):
        draft_id = drafts.file_draft(inv.db, inv.svc, p, inv.actor)
        done.append(f"draft {draft_id} ({p.template} to the {p.to_role})")
    return f"{' and '.join(done)} went to the chair to confirm"


@command("public-record", summary="add a publicly available record of what occurred (a link, "
         "a recording) for the officers' report", usage="#public-record <link or description>",
         example="#public-record https://discourse.example.org/t/1234 (the thread)")
def _public_record(inv: Invocation) -> str:
    text = inv.cmd.args.strip()
    if not text:
        raise CommandError("say what and where: #public-record <link or description>")
    inv.db.execute("INSERT INTO public_records (case_id, text, actor, at) VALUES (?, ?, ?, ?)",
                   [inv.case_id, text, inv.actor, timestamps.stamp()])
    return "public record added for the officers' report"
