"""Threading mail into cases.

Three keys can name a case: a signed plus-address token, the subject tag, and
In-Reply-To/References naming a message of the case.  The token is proof; the other
two can be copied by anyone, so on the reporter side they only join a case when the
sender is already one of its people.  Keys that disagree, or point nowhere, open a
new case: a report filed under a wrong case is worse than one filed twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailflow.case import cases, events
from mailflow.mail.tokens import read_member_token, split_address
from mailflow.pipeline.handlers.screen import hold

if TYPE_CHECKING:
    from mailflow.pipeline.context import Context


def address(ctx: Context) -> None:
    """Which side the mail is for (conduct or committee) and the token it was sent to."""
    ours = _our_recipients(ctx)
    committee = [a for a in ours if a.base == "committee"]
    conduct = [a for a in ours if a.base == "conduct"]
    # A member writing to both is talking to the committee; anyone else is reporting.
    if committee and (not conduct or ctx.cfg.is_member(ctx.sender or "")):
        ctx.side, chosen = "committee", committee
    else:
        ctx.side, chosen = "conduct", conduct
    ctx.token = next((a.token for a in chosen if a.token), None)


def route(ctx: Context) -> None:
    """Decide kind and case; open a case for a new report.  Mail that screening held
    or recognised as a bounce is already decided."""
    if ctx.kind:
        return
    if ctx.side == "committee":
        ctx.kind = "member" if ctx.cfg.is_member(ctx.sender or "") else "held"
        keys = _named_cases(ctx)
        ctx.case_id = _find_case(ctx, keys, trust_weak_keys=True)
        if ctx.kind == "member":
            _withhold_if_barred(ctx, keys[1])
        if ctx.kind == "held":
            hold(ctx, "not-a-member", [f"{ctx.sender or 'an unknown sender'} is not a member"])
        return

    # A configured event organiser's report form may name the case it belongs to.
    event = events.read_form(ctx)
    case_id = (_find_case(ctx, _named_cases(ctx), trust_weak_keys=event is not None)
               or events.named_case(ctx, event))
    if case_id:
        ctx.case_id, ctx.kind = case_id, "reply"
        events.file_report(ctx, event)
        return
    forwarded = ctx.parsed.forwarded[0] if ctx.parsed.forwarded else None
    delegate = events.is_delegate(ctx)
    if forwarded and forwarded.from_addr and (_trusted_forwarder(ctx) or delegate):
        # Someone went to the board (or to one member, or to an event's delegate)
        # instead, who passes it on.
        ctx.kind = "forward"
        ctx.case_id = cases.open_case(ctx.db, ctx.cfg, forwarded.subject or ctx.parsed.subject,
                                         when=ctx.when, status=ctx.status_opened)
        cases.add_person(ctx.db, ctx.case_id, "reporter", forwarded.from_addr, forwarded.from_name)
        cases.add_person(ctx.db, ctx.case_id, "delegate" if delegate else "forwarder",
                         ctx.sender or "", ctx.parsed.from_name)
    else:
        ctx.kind = "report"
        ctx.case_id = cases.open_case(ctx.db, ctx.cfg, ctx.parsed.subject, when=ctx.when,
                                      status=ctx.status_opened)
        if not event:
            events.record_sender(ctx)
    ctx.new_case = True
    events.file_report(ctx, event)


def _trusted_forwarder(ctx: Context) -> bool:
    """A board or committee member forwarding what was sent to them: the original
    author is the reporter (an event's delegate too, see ``events``).  Anyone else
    forwarding mail is its reporter themselves."""
    sender = ctx.sender or ""
    return ctx.cfg.is_board(sender) or ctx.cfg.is_member(sender)


def _our_recipients(ctx: Context):
    domain = ctx.cfg.committee.domain
    rcpts = ctx.rcpts or (ctx.parsed.to_addrs + ctx.parsed.cc_addrs)
    return [a for a in (split_address(r, domain) for r in rcpts) if a]


def _token_case(ctx: Context) -> str | None:
    if not ctx.token:
        return None
    fields = ctx.svc.signer.unsign(ctx.token)
    if fields is None:
        ctx.flags.append("bad-token")
        return None
    if ctx.side == "committee":
        proof = read_member_token(fields)
        return proof.case_id if proof else None
    # Case tokens are just the case id; purpose tokens (mediation consent) add fields.
    return fields[0] if fields[0] != "-" else None


def _reference_cases(ctx: Context) -> set[str]:
    ids = list(dict.fromkeys(ctx.parsed.in_reply_to + ctx.parsed.references))
    if not ids:
        return set()
    marks = ",".join("?" * len(ids))
    rows = ctx.db.execute(
        f"SELECT case_id FROM messages WHERE message_id IN ({marks}) AND case_id IS NOT NULL "
        f"UNION SELECT case_id FROM outbound WHERE message_id IN ({marks}) "
        "AND case_id IS NOT NULL", ids + ids).fetchall()
    return {r[0] for r in rows}


def _named_cases(ctx: Context) -> tuple[str | None, set[str]]:
    """(the case of the token, every case id any key names, existing or not)."""
    strong = _token_case(ctx)
    named = {strong} if strong else set()
    match = cases.tag_pattern(ctx.cfg).search(ctx.parsed.subject)
    if match:
        named.add(match.group(1))
    return strong, named | _reference_cases(ctx)


def _withhold_if_barred(ctx: Context, named: set[str]) -> None:
    """A member's mail naming a case they are recused from, or one that does not exist,
    is filed as a note and answered neutrally (the same answer for both, so that
    writing to case ids tells nobody which cases name them); it is never relayed."""
    sender = (ctx.sender or "").lower()
    missing = {c for c in named if not cases.exists(ctx.db, c)}
    barred = {c for c in named - missing if sender in cases.recused(ctx.db, c)}
    if missing or barred:
        ctx.kind, ctx.withheld = "note", True
        ctx.case_id = min(barred) if barred else None
        ctx.flags.append("not accepted: it names a case its sender cannot write to")


def _find_case(ctx: Context, keys: tuple[str | None, set[str]], trust_weak_keys: bool
               ) -> str | None:
    strong, named = keys
    found = {c for c in named if cases.exists(ctx.db, c)}
    if len(found) > 1:
        ctx.flags.append("ambiguous-thread:" + ",".join(sorted(found)))
        return None
    if not found:
        return None
    case_id = found.pop()
    if strong == case_id or trust_weak_keys or cases.is_on_case(ctx.db, case_id, ctx.sender or ""):
        return case_id
    # A copied tag or Message-ID from someone not on the case: do not let it in.
    ctx.flags.append(f"unverified-thread:{case_id}")
    return None
