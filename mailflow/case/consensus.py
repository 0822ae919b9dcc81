"""Consensus: proposals and votes.

The committee decides by consensus.  A proposal passes when every member deciding
the case (not recused) has voted agree or abstain and at least one agrees; any
objection blocks it.  A member may change their vote; a new ``#propose`` replaces
the open proposal.  The moment an objection first blocked consensus is kept in
``proposals.deadlocked_at`` (inherited by a replacing proposal) for the clock that
turns a deadlock of over a week over to the officers.

The same rule signs off the clear-and-severe fast path (``#signoff``, see ``severe``)
and finds a report false or abusive (``#false-report``, see ``abuse``).  ``#vote``
takes the proposal's number when more than one is open.

A decision has consequences here, in the same transaction: an agreed response ends
the interim bans that last until the committee's review, a signed-off fast path those
that last until the sign-off, and a false-report finding marks the case, so that the
menu of responses applies to the reporter (see ``sanctions``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailflow import store, timestamps
from mailflow.case import cases, sanctions
from mailflow.case.menu import FALSE_REPORT, RESPONSE, RESPONSES, SIGNOFF, describe, what
from mailflow.case.notices import notify_committee
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.store import audit
from mailflow.store.sqlite import Database

if TYPE_CHECKING:
    from mailflow.pipeline.context import Context

VOTES = ("agree", "object", "abstain")
# What #vote without a number may mean; a sign-off item has #signoff.
VOTED_KINDS = (RESPONSE, FALSE_REPORT)


def parse_response(text: str) -> tuple[str, str]:
    """(menu key, details) from e.g. ``private reprimand: for the insults``."""
    for key in RESPONSES:
        words = r"[\s\-]+".join(map(re.escape, key.split("-")))
        match = re.match(rf"\s*{words}(?=$|[\s:])[\s:\-]*(.*)$", text, re.I | re.S)
        if match:
            return key, match.group(1).strip()
    menu = ", ".join(k.replace("-", " ") for k in RESPONSES)
    raise CommandError(f"{text.strip() or '(nothing)'!r} is not on the menu of responses: {menu}")


def open_proposal(db: Database, case_id: str, kind: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM proposals WHERE case_id = ? AND kind = ? AND "
                         "status = 'open' ORDER BY id DESC LIMIT 1", [case_id, kind]))
    return rows[0] if rows else None


def new_proposal(ctx: Context, case_id: str, kind: str, response: str, detail: str,
                 actor: str) -> int:
    """File a proposal, replacing the open one of the same kind."""
    db = ctx.db
    previous = open_proposal(db, case_id, kind)
    if previous:
        db.execute("UPDATE proposals SET status = 'superseded', decided_at = ? WHERE id = ?",
                   [timestamps.stamp(), previous["id"]])
    cur = db.execute(
        "INSERT INTO proposals (case_id, kind, response, detail, proposed_by, proposed_at, "
        "deadlocked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [case_id, kind, response, detail, actor, timestamps.stamp(),
         previous["deadlocked_at"] if previous else None])
    proposal_id = store.inserted(cur)
    audit.append(db, actor, f"proposal {proposal_id} ({kind})", case_id, response=response,
                 detail=audit.fingerprint(db, detail) if detail else None,
                 replaces=previous["id"] if previous else None)
    return proposal_id


@dataclass
class Tally:
    votes: dict[str, str]                  # member -> vote, of the members deciding
    waiting: list[str] = field(default_factory=list)

    @property
    def objections(self) -> list[str]:
        return [m for m, v in self.votes.items() if v == "object"]

    @property
    def passes(self) -> bool:
        return (not self.objections and not self.waiting
                and any(v == "agree" for v in self.votes.values()))

    def describe(self) -> str:
        if self.passes:
            return "consensus reached"
        if self.objections:
            return f"blocked: {', '.join(self.objections)} object(s)"
        if self.waiting:
            return f"waiting for {', '.join(self.waiting)}"
        return "no agree vote yet (abstentions alone do not pass a proposal)"


def tally(ctx: Context, proposal: dict[str, Any]) -> Tally:
    """Votes of the members deciding the case; the recused do not count."""
    active = cases.active_members(ctx.db, ctx.cfg, proposal["case_id"])
    cast = dict(ctx.db.execute("SELECT member, vote FROM votes WHERE proposal_id = ?",
                               [proposal["id"]]).fetchall())
    return Tally({m: cast[m] for m in active if m in cast},
                 [m for m in active if m not in cast])


def settle(ctx: Context, proposal: dict[str, Any]) -> Tally:
    """Record what the votes now say: passed, or blocked since when."""
    t = tally(ctx, proposal)
    db, case_id = ctx.db, proposal["case_id"]
    if t.objections and not proposal["deadlocked_at"]:
        db.execute("UPDATE proposals SET deadlocked_at = ? WHERE id = ?",
                   [timestamps.stamp(), proposal["id"]])
    if not t.passes:
        return t
    db.execute("UPDATE proposals SET status = 'passed', decided_at = ? WHERE id = ?",
               [timestamps.stamp(), proposal["id"]])
    audit.append(db, "mailflow", f"proposal {proposal['id']} passed", case_id,
                 votes=t.votes)
    notify_committee(ctx, case_id, "Consensus reached", _carry_out(db, proposal))
    return t


def _carry_out(db: Database, proposal: dict[str, Any]) -> str:
    """What a decision changes at once, and the notice saying it and what comes next."""
    case_id, kind = proposal["case_id"], proposal["kind"]
    if kind == FALSE_REPORT:
        sanctions.flag_case(db, case_id, sanctions.FALSE_REPORT)
        return ("The committee found the report false or abusive\n"
                f"(proposal #{proposal['id']}: {proposal['detail']}).\n\nThe guidelines hold "
                "those who abuse the reporting process to the same\nconsequences: the menu of "
                "responses now applies to the reporter\n(#propose, #warn reporter, #ban reporter, "
                "#send private-reprimand to=reporter).")
    if kind == RESPONSE:
        cases.update_record(db, case_id, response=proposal["response"],
                            response_detail=proposal["detail"])
        body = (f"The committee agreed on {what(proposal)}\n(proposal #{proposal['id']}).\n\n"
                "Next: tell the reporter before it is carried out (#consult), then #enact.")
        ended = sanctions.end_interim(db, case_id, "review")
    else:
        body = ("The committee signed off the use of the clear-and-severe fast path\n"
                f"(sign-off item #{proposal['id']}).")
        ended = sanctions.end_interim(db, case_id, "signoff")
    if ended:
        body += (f"\n\nThe interim ban{'s' * (len(ended) > 1)} of the fast path "
                 f"({', '.join(f'#{b}' for b in ended)}) ended with this decision.  If a ban\n"
                 "must go on, record it: #ban originator scope=... until=...")
    return body


def settle_all(ctx: Context, case_id: str) -> None:
    """After a recusal: the open proposals may pass without the recused member."""
    for proposal in list(ctx.db.query("SELECT * FROM proposals WHERE case_id = ? AND "
                                      "status = 'open'", [case_id])):
        settle(ctx, proposal)


def cast(inv: Invocation, proposal: dict[str, Any], vote: str, comment: str) -> Tally:
    inv.db.execute(
        "INSERT INTO votes (proposal_id, member, vote, comment, at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(proposal_id, member) DO UPDATE SET vote = excluded.vote, "
        "comment = excluded.comment, at = excluded.at",
        [proposal["id"], inv.actor, vote, comment, timestamps.stamp()])
    return settle(inv.ctx, proposal)


def parse_vote(args: str, default: str | None = None) -> tuple[str, str]:
    word, _, comment = args.strip().partition(" ")
    vote = word.lower() or default
    if vote not in VOTES:
        raise CommandError(f"vote agree, object or abstain, not {word or '(nothing)'!r}")
    return vote, comment.strip()


@command("propose", summary="propose the response, from the guidelines' menu: "
         + ", ".join(k.replace("-", " ") for k in RESPONSES)
         + ". It replaces any open proposal; your own vote counts as agree",
         usage="#propose <response>[: details]",
         example="#propose private reprimand: for the insults in #dev on 3 May",
         states=(cases.OPEN,))
def _propose(inv: Invocation) -> str:
    response, detail = parse_response(inv.cmd.args)
    proposal_id = new_proposal(inv.ctx, inv.case_id, RESPONSE, response, detail, inv.actor)
    proposal = next(iter(inv.db.query("SELECT * FROM proposals WHERE id = ?", [proposal_id])))
    t = cast(inv, proposal, "agree", "")
    return f"proposal #{proposal_id}: {describe(response, detail)}; {t.describe()}"


def voted_on(db: Database, case_id: str, number: int | None) -> dict[str, Any]:
    """The open proposal a #vote is about: the one numbered, else the only one open."""
    rows = list(db.query("SELECT * FROM proposals WHERE case_id = ? AND status = 'open' "
                         "ORDER BY id", [case_id]))
    if number is not None:
        for proposal in rows:
            if proposal["id"] == number:
                return proposal
        raise CommandError(f"proposal {number} is not open on this case"
                           + (f" (open: {', '.join(str(p['id']) for p in rows)})" if rows else ""))
    rows = [p for p in rows if p["kind"] in VOTED_KINDS]
    if not rows:
        raise CommandError("there is no open proposal to vote on (#propose <response>)")
    if len(rows) > 1:
        raise CommandError("more than one proposal is open: say which, e.g. " + "; ".join(
            f"#vote {p['id']} agree ({what(p)})" for p in rows))
    return rows[0]


@command("vote", summary="vote on the open proposal (give its number when more than one is "
         "open); any objection blocks it, and a later vote replaces your earlier one",
         usage="#vote [<proposal>] agree|object|abstain [comment]",
         example="#vote object a public reprimand would expose the reporter", states=(cases.OPEN,))
def _vote(inv: Invocation) -> str:
    first, _, rest = inv.cmd.args.strip().partition(" ")
    number = int(first.lstrip("#")) if first.lstrip("#").isdigit() else None
    vote, comment = parse_vote(rest if number is not None else inv.cmd.args)
    proposal = voted_on(inv.db, inv.case_id, number)
    t = cast(inv, proposal, vote, comment)
    return f"{vote} on proposal #{proposal['id']} ({what(proposal)}); {t.describe()}"


@command("signoff", summary="review the use of the clear-and-severe fast path and sign it off "
         "(all members, by consensus); the case cannot close before",
         usage="#signoff [agree|object|abstain] [comment]",
         example="#signoff agree the threats were explicit")
def _signoff(inv: Invocation) -> str:
    vote, comment = parse_vote(inv.cmd.args, default="agree")
    proposal = open_proposal(inv.db, inv.case_id, SIGNOFF)
    if proposal is None:
        raise CommandError("there is nothing to sign off: the fast path (#severe) was not used, "
                           "or it is signed off already")
    t = cast(inv, proposal, vote, comment)
    return f"{vote} on sign-off item #{proposal['id']}; {t.describe()}"
