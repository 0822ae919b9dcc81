"""The commands of held mail: ``#held`` lists it, the chair ``#release``s it (the
pipeline then handles it as a new report) or ``#discard-held``s it.  See
:mod:`mailflow.case.held` for what held mail is."""

from __future__ import annotations

from mailflow.case.held import HeldError, describe, discard, listing, release
from mailflow.commands.spec import CommandError, Invocation, command


def _ids(inv: Invocation) -> list[int]:
    words = inv.cmd.args.replace(",", " ").split()
    if not words or not all(w.isdigit() for w in words):
        raise CommandError(f"say which: #{inv.cmd.word} <held id> [more ids] (#held lists them)")
    return [int(w) for w in words]


@command("held", summary="list the held mail (suspected spam, stray bounces, non-members' "
         "mail to the committee) waiting for the chair", usage="#held", example="#held",
         needs_case=False)
def _held(inv: Invocation) -> str:
    rows = listing(inv.db, hide_from=inv.actor)
    if not rows:
        return "nothing is held"
    return (f"{len(rows)} held (#release <id> or #discard-held <id>, chair only):\n"
            + "\n".join(describe(r) for r in rows))


@command("release", summary="handle held mail after all, as a new report: acknowledged, "
         "copied to the committee, clocks started", usage="#release <held id> [more ids]",
         example="#release 12", needs_case=False)
def _release(inv: Invocation) -> str:
    try:
        return "\n".join(release(inv.db, i, inv.actor, hide_from=inv.actor) for i in _ids(inv))
    except HeldError as e:
        raise CommandError(str(e)) from None


@command("discard-held", summary="decide held mail needs nothing: it stays archived until "
         "retention", usage="#discard-held <held id> [more ids]", example="#discard-held 12 13",
         needs_case=False)
def _discard(inv: Invocation) -> str:
    try:
        return "\n".join(discard(inv.db, i, inv.actor, hide_from=inv.actor) for i in _ids(inv))
    except HeldError as e:
        raise CommandError(str(e)) from None
