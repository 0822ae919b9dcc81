"""Abuse of the reporting process.

The guidelines hold those who abuse the reporting process to the same consequences as
any violation: "False reporting, especially to retaliate or exclude, will not be
accepted or tolerated."  Two things serve that clause:

- ``#false-report <reason>`` proposes to find the case's report false or abusive.
  It is decided by consensus like any other decision (``#vote``); once it passes, the
  case carries the mark (:data:`mailflow.case.sanctions.FALSE_REPORT`) and the menu
  of responses applies to the reporter: ``#warn reporter``, ``#ban reporter``,
  ``#send private-reprimand to=reporter`` (refused before, see ``sanctions``).
- The committee's copy of every new report shows the reporter's earlier cases, as
  reporter or as originator: their ids, state, outcome and any false-report mark
  (:func:`histories`).  Each member's copy lists only the cases that member is not
  recused from, and counts only those: a recusal hides a case by every route.
"""

from __future__ import annotations

from typing import Any

from mailflow.case import cases, consensus, reads, sanctions
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.store.sqlite import Database

ROLES = ("reporter", "originator")


@command("false-report", summary="propose to find the report false or abusive (decided by "
         "consensus: #vote); once found, the menu of responses applies to the reporter "
         "(#warn reporter, #ban reporter, #send ... to=reporter)",
         usage="#false-report <why the report is false or abusive>",
         example="#false-report the logs show no such messages; the reporter was banned "
                 "by the originator the day before", states=(cases.OPEN,))
def _false_report(inv: Invocation) -> str:
    reason = inv.cmd.args.strip()
    if not reason:
        raise CommandError("say why the report is false or abusive: #false-report <reason>")
    if not cases.reporters(inv.db, inv.case_id):
        raise CommandError("this case has no reporter to find a false report against")
    if sanctions.FALSE_REPORT in reads.case_flags(inv.db, inv.case_id):
        raise CommandError("the report was already found false or abusive")
    proposal_id = consensus.new_proposal(inv.ctx, inv.case_id, consensus.FALSE_REPORT,
                                         consensus.FALSE_REPORT, reason, inv.actor)
    proposal = next(iter(inv.db.query("SELECT * FROM proposals WHERE id = ?", [proposal_id])))
    t = consensus.cast(inv, proposal, "agree", "")
    return (f"proposal #{proposal_id}: {consensus.what(proposal)}; {t.describe()}. "
            f"The others vote with #vote {proposal_id} agree|object|abstain")


def outcome(db: Database, case: dict[str, Any]) -> str:
    """How a case ended, or where it stands, in a few words."""
    rec = cases.record(db, case["id"])
    if rec["response"]:
        said = f"response: {consensus.describe(rec['response'])}"
    elif rec["violation"] == "no":
        said = "no violation found"
    else:
        said = "no response agreed"
    return f"{case['status']}, {said}"


def histories(db: Database, case_id: str, members: list[str]
              ) -> dict[str, list[dict[str, Any]]]:
    """For each of ``members``: the other cases of this case's reporters, as reporter
    or originator, that member may see (never one they are recused from), oldest
    first.  One reading for every member's copy: most reporters have no other case."""
    reporters = cases.reporters(db, case_id)
    if not reporters:
        return {m: [] for m in members}
    marks = ",".join("?" * len(reporters))
    rows = list(db.query(
        "SELECT c.*, group_concat(DISTINCT p.role) AS roles FROM cases c JOIN people p "
        f"ON p.case_id = c.id WHERE p.address IN ({marks}) AND p.role IN (?, ?) "
        "AND c.id != ? GROUP BY c.id ORDER BY c.year, c.seq",
        [*reporters, *ROLES, case_id]))
    if not rows:
        return {m: [] for m in members}
    ids = [c["id"] for c in rows]
    recused = {(r[0], r[1]) for r in db.execute(
        f"SELECT address, case_id FROM people WHERE role = 'recused' AND case_id IN "
        f"({','.join('?' * len(ids))})", ids)}
    entries = [(c["id"], _entry(db, c)) for c in rows]
    return {m: [e for other, e in entries if (m.lower(), other) not in recused]
            for m in members}


def _entry(db: Database, case: dict[str, Any]) -> dict[str, Any]:
    roles = sorted(case["roles"].split(","))
    return {"id": case["id"], "roles": roles, "opened": case["opened_at"][:10],
            "outcome": outcome(db, case),
            # The mark is about their report; on a case they were reported in, it speaks
            # for them, not against them.
            "false_report": "reporter" in roles and
            sanctions.FALSE_REPORT in reads.case_flags(db, case["id"])}
