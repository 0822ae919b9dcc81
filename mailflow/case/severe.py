"""The clear-and-severe fast path.

For personal threats, violent, sexist or racist language any member may act before
consensus.  ``#severe`` records the originator's disconnection from the named
channels (a ban in the registry, with that scope and no end), drafts the notice to
the reporter (received, originator disconnected) and the notice to each originator
with an address (what qualified as a clear and severe breach, and the right to ask
for a review), and opens a sign-off item: the case cannot close until the committee
signs the use of the fast path off by consensus (``#signoff``), so that it is never
used to settle ordinary heated disagreement.
"""

from __future__ import annotations

import sqlite_utils

from mailflow import timestamps
from mailflow.case import cases, consensus, sanctions
from mailflow.case.notices import notify_committee
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.responses import drafts


@command("severe", summary="clear and severe breach: record the originator's disconnection from "
         "the channels named (or all), draft the notices to the reporter and the originator, "
         "and open a sign-off item that blocks closing until #signoff",
         usage="#severe <channels, comma-separated | all>: <what qualified as a clear and "
               "severe breach>",
         example="#severe forum, chat: threatened to hurt another contributor",
         states=(cases.OPEN,))
def _severe(inv: Invocation) -> str:
    scope, colon, reason = inv.cmd.args.partition(":")
    if not colon or not scope.strip() or not reason.strip():
        raise CommandError("use #severe <channels or all>: <what qualified as a clear and "
                           "severe breach>")
    scope, reason = sanctions.normalise_scope(scope), reason.strip()
    db, case_id = inv.db, inv.case_id
    used = cases.record(db, case_id)["severe_at"]
    if used:
        raise CommandError(f"the fast path was already used on this case ({used})")
    originators = cases.people(db, case_id, "originator")
    if not originators:
        raise CommandError("record the originator first (#originator ...), on a line above")
    for o in originators:
        sanctions.record_ban(db, case_id=case_id, person=o["address"] or o["name"],
                             scope=scope, until=None, reason=f"clear and severe breach: {reason}",
                             actor=inv.actor)
    spaces = "all community channels" if scope == "all" else scope.replace(",", ", ")
    done = [f"disconnection of {len(originators)} originator(s) from {spaces} recorded"]
    # The notices name the spaces from the ban just recorded.
    if cases.reporters(db, case_id):
        draft = drafts.create_draft(db, inv.svc, case_id=case_id,
                                    template="notice-to-reporter-severe", to_role="reporter",
                                    context={}, author=inv.actor)
        done.append(f"notice to the reporter drafted (draft {draft})")
    with_address = [o for o in originators if o["address"]]
    for o in with_address:
        draft = drafts.create_draft(
            db, inv.svc, case_id=case_id, template="notice-to-originator-severe",
            to_role="originator", recipients=[o["address"]], author=inv.actor,
            context={"breach": reason})
        done.append(f"notice to {o['address']} drafted (draft {draft})")
    if len(with_address) < len(originators):
        done.append("no address for some originators: contact them another way and file it "
                    "with #call or #note")
    cases.update_record(db, case_id, severe_at=timestamps.stamp(), severe_by=inv.actor,
                        severe_reason=reason, severe_scope=scope)
    item = consensus.new_proposal(inv.ctx, case_id, consensus.SIGNOFF, consensus.SIGNOFF,
                                  reason, inv.actor)
    notify_committee(
        inv.ctx, case_id, "Clear and severe breach: fast path used",
        f"{inv.actor} used the clear-and-severe fast path on case {case_id}:\n"
        f"  {reason}\nThe originator's disconnection from {spaces} is recorded and the\n"
        "notices to the reporter and the originator went to the chair to confirm.\n\n"
        f"Every member must review this use (sign-off item #{item}) and sign it off:\n"
        "  #signoff            (or #signoff object <why>)\n"
        "The case cannot close before.")
    done.append(f"sign-off item #{item} opened; the case cannot close until it is signed off")
    return "; ".join(done)


def unsigned(db: sqlite_utils.Database, case_id: str) -> str | None:
    """Close-blocker: the fast path was used and the committee has not signed it off."""
    if not cases.record(db, case_id)["severe_at"]:
        return None
    if consensus.passed(db, case_id, consensus.SIGNOFF):
        return None
    return "the clear-and-severe fast path is not signed off yet (#signoff)"

