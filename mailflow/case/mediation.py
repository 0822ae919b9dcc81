"""Voluntary mediation, as the guidelines lay it out.

``#mediate <mediator>`` proposes a candidate and drafts a consent request to each
reporter and each originator (the chair confirms them, as any mail leaving the
committee).  Each request carries the person's own signed reply addresses, one per
answer: agree, decline, or propose another mediator.  The case shows who answered
what; the mediator is settled only when everyone agreed, and then a target date
(``mediation_days`` in ``rules/workflow.toml``, two weeks by default) is set for
the mediation to complete.  Any decline or counter-proposal stops this candidate:
the committee may then propose another with ``#mediate``.

Parties do not always answer as asked.  ``#mediation-consent <party> agree|decline``
records an answer given another way (by phone, in person), with the member who
recorded it and how it was given; the audit log names the member.  And a party's
plain reply to the case ("Yes, I agree to mediation with Mia") that clearly says yes
or no is offered to the committee on its copy of that reply, with the exact command
that records it: mailflow never records consent from a guess.  (``#consent`` is a
different thing: a reporter's or witness's consent to being named.)
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mailflow import store, timestamps
from mailflow.case import cases
from mailflow.case.notices import notify_committee
from mailflow.case.reads import current_mediation
from mailflow.case.record import parse_person
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.mail.decode import ADDR_SPEC
from mailflow.responses import drafts
from mailflow.store import audit

if TYPE_CHECKING:
    from mailflow.pipeline.context import Context, Services

PARTY_ROLES = ("reporter", "originator")
ANSWERS = ("agree", "decline", "propose")
OPEN_STATES = ("asking", "settled", "declined", "counter-proposed")


def party_tag(address: str) -> str:
    """A short, non-revealing name for a party inside their tokens."""
    return "p" + hashlib.sha256(address.lower().encode()).hexdigest()[:8]


def answer_address(svc: Services, case_id: str, mediation_id: int, party: str, answer: str
                   ) -> str:
    token = svc.signer.sign(case_id, f"med{mediation_id}", party_tag(party), answer)
    return f"conduct+{token}@{svc.cfg.committee.domain}"


@command("mediate", summary="propose a mediator: consent requests to every reporter and "
         "originator are drafted for the chair, each with its own signed reply addresses",
         usage="#mediate <address | Name <address>>",
         example="#mediate Mia Mediator <mia@example.net>", states=(cases.OPEN,))
def _mediate(inv: Invocation) -> str:
    address, name = parse_person(inv.cmd.args)
    if not address:
        raise CommandError("the mediator needs an address: #mediate Name <address>")
    db, case_id = inv.db, inv.case_id
    parties: dict[str, str] = {}   # address -> role; someone in both roles is asked once
    for role in PARTY_ROLES:
        people = [p["address"] for p in cases.people(db, case_id, role) if p["address"]]
        if not people:
            raise CommandError(f"no {role} with an address is recorded on this case: "
                               "mediation needs the agreement of every reporter and originator")
        for party in people:
            parties.setdefault(party, role)
    db.execute("UPDATE mediations SET status = 'superseded' WHERE case_id = ? AND status IN "
               f"({', '.join('?' * len(OPEN_STATES))})", [case_id, *OPEN_STATES])
    mediation_id = store.inserted(db.execute(
        "INSERT INTO mediations (case_id, mediator, mediator_name, proposed_by, proposed_at) "
        "VALUES (?, ?, ?, ?, ?)", [case_id, address, name, inv.actor, timestamps.stamp()]))
    mediator = f"{name} <{address}>" if name else address
    drafted = []
    for party, role in parties.items():
        addresses = {f"{a}_address": answer_address(inv.ctx.svc, case_id, mediation_id, party, a)
                     for a in ANSWERS}
        draft_id = drafts.create_draft(db, inv.svc, case_id=case_id, template="mediation-consent",
                                       to_role=role, recipients=[party], author=inv.actor,
                                       context={"mediator": mediator, **addresses})
        db.execute("INSERT INTO consents (mediation_id, party, role, draft_id) VALUES (?, ?, ?, ?)",
                   [mediation_id, party, role, draft_id])
        drafted.append(str(draft_id))
    return (f"mediation #{mediation_id} with {mediator}: {len(parties)} consent request(s) "
            f"drafted (drafts {', '.join(drafted)}) for the chair to confirm")


def _status(consents: list[dict[str, Any]]) -> str:
    answers = [c["answer"] for c in consents]
    if "decline" in answers:
        return "declined"
    if "propose" in answers:
        return "counter-proposed"
    return "settled" if all(a == "agree" for a in answers) else "asking"


def _proposed_mediator(text: str) -> str:
    for word in text.replace("<", " ").replace(">", " ").split():
        if ADDR_SPEC.match(word.strip(".,;")):
            line = next(ln for ln in text.splitlines() if word in ln)
            return line.strip()
    return text.strip().splitlines()[0] if text.strip() else "(no name given)"


def record_consent(ctx: Context) -> None:
    """Record a party's answer sent to their mediation consent address; offer the
    committee a plain reply from a party that clearly says yes or no."""
    if ctx.side != "conduct" or not ctx.case_id:
        return
    fields = (ctx.svc.signer.unsign(ctx.token) or []) if ctx.token else []
    if len(fields) != 4 or not fields[1].startswith("med") or fields[3] not in ANSWERS:
        _offer_plain_answer(ctx)
        return
    db, case_id, answer = ctx.db, ctx.case_id, fields[3]
    mediation = current_mediation(db, case_id)
    if mediation is None or f"med{mediation['id']}" != fields[1]:
        ctx.flags.append("an answer to an earlier mediation proposal: not counted")
        return
    party = next((c for c in mediation["consents"] if party_tag(c["party"]) == fields[2]), None)
    if party is None:
        return
    proposed = _proposed_mediator(ctx.parsed.new_text) if answer == "propose" else ""
    ctx.flags.append(f"mediation: the {party['role']} answers {answer}"
                     + (f" ({proposed})" if proposed else ""))
    record_answer(ctx, mediation, party, answer, proposed, actor=ctx.sender or party["party"])


def record_answer(ctx: Context, mediation: dict[str, Any], party: dict[str, Any], answer: str,
                  proposed: str, *, actor: str, how: str | None = None) -> str:
    """File a party's answer (``how`` it was given, when a member records it) and
    settle what the answers now say; returns the mediation's status."""
    db, case_id = ctx.db, mediation["case_id"]
    recorded_by = actor if how is not None else None
    db.execute("UPDATE consents SET answer = ?, proposed = ?, answered_at = ?, recorded_by = ?, "
               "how = ? WHERE mediation_id = ? AND party = ?",
               [answer, proposed, timestamps.stamp(), recorded_by, how, mediation["id"],
                party["party"]])
    # A party is named by their role: the audit log names no one outside the committee.
    audit.append(db, recorded_by or party["role"], f"mediation consent: {answer}", case_id,
                 mediation=mediation["id"], proposed=bool(proposed),
                 **({"recorded_by": recorded_by} if recorded_by else {}))
    status = _status(current_mediation(db, case_id)["consents"])  # type: ignore[index]
    if status != mediation["status"]:
        _settle(ctx, mediation, status, party, proposed)
    return status


def _settle(ctx: Context, mediation: dict[str, Any], status: str, party: dict[str, Any],
            proposed: str) -> None:
    db, case_id = ctx.db, mediation["case_id"]
    target = None
    if status == "settled":
        days = ctx.svc.rules.get("workflow", {}).get("mediation_days", 14)
        target = (timestamps.now() + timedelta(days=days)).date().isoformat()
        cases.add_person(db, case_id, "mediator", mediation["mediator"],
                         mediation["mediator_name"])
    db.execute("UPDATE mediations SET status = ?, settled_at = ?, target_date = ? WHERE id = ?",
               [status, timestamps.stamp() if target else None, target, mediation["id"]])
    mediator = mediation["mediator_name"] or mediation["mediator"]
    text = {
        "settled": f"Everyone agreed to mediation with {mediator}.\n"
                   f"The mediator is settled; the mediation should complete by {target}.",
        "declined": f"The {party['role']} declined mediation with {mediator}.\n"
                    "Mediation is voluntary: it does not go ahead with this candidate.",
        "counter-proposed": f"The {party['role']} proposes another mediator instead of "
                            f"{mediator}:\n  {proposed}\nTo ask everyone about them: "
                            "#mediate <address>",
        "asking": f"Mediation with {mediator} is waiting for answers again.",
    }[status]
    notify_committee(ctx, case_id, f"Mediation: {status}", text)


# -- answers given another way --------------------------------------------------------

# A plain reply reads as yes or no only when one of these says so and the other does
# not, and nothing hedges it ("but", "if", "maybe" ...): then it is for people to read.
_IDIOM = r"no (?:problem|objections?|issues?|worries)"
SAYS_YES = re.compile(rf"\b(yes|yeah|i agree|i accept|i consent|agreed|happy to|fine with me|"
                      rf"sounds good|that works|{_IDIOM})\b", re.IGNORECASE)
SAYS_NO = re.compile(rf"\b((?!{_IDIOM})no|nope|i decline|i refuse|not agree|don'?t agree|"
                     r"do not agree|won'?t|will not|rather not|not interested|don'?t want|"
                     r"do not want|not comfortable)\b", re.IGNORECASE)
HEDGED = re.compile(r"\b(but|however|unless|if|maybe|perhaps|not sure|depends|only)\b",
                    re.IGNORECASE)
ADDRESS = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")


def _party_word(mediation: dict[str, Any], party: dict[str, Any]) -> str:
    """How a command names the party: their role when nobody else has it, else the address."""
    same = [c for c in mediation["consents"] if c["role"] == party["role"]]
    return party["role"] if len(same) == 1 else party["party"]


def read_plain_answer(text: str, mediator: str) -> tuple[str, str] | None:
    """(answer, proposed mediator) when a reply clearly says yes or no, else None."""
    others = [a for a in ADDRESS.findall(text) if a.lower() != mediator.lower()]
    if others:
        return "propose", others[0]
    yes, no = bool(SAYS_YES.search(text)), bool(SAYS_NO.search(text))
    if yes == no or HEDGED.search(text):
        return None
    return ("agree" if yes else "decline"), ""


def _offer_plain_answer(ctx: Context) -> None:
    """A party who has not answered replies in their own words: when the reply clearly
    says yes or no, the committee's copy offers the command that records it."""
    if ctx.kind != "reply" or not ctx.case_id:
        return
    mediation = current_mediation(ctx.db, ctx.case_id)
    sender = (ctx.sender or "").lower()
    party = next((c for c in (mediation or {}).get("consents", [])
                  if c["party"] == sender and c["answer"] is None), None)
    if mediation is None or party is None:
        return
    read = read_plain_answer(ctx.parsed.new_text or ctx.parsed.body_text, mediation["mediator"])
    candidate = mediation["mediator_name"] or mediation["mediator"]
    if read is None:
        ctx.flags.append(f"mediation: the {party['role']} has not answered the request about "
                         f"{candidate}, and this reply does not clearly say yes or no")
        return
    answer, proposed = read
    reads = {"agree": f"agreeing to mediation with {candidate}",
             "decline": f"declining mediation with {candidate}",
             "propose": f"proposing {proposed} as mediator instead of {candidate}"}[answer]
    day = timestamps.now().date().isoformat()
    ctx.flags.append(f"mediation: this reads as the {party['role']} {reads}. Nothing is "
                     "recorded yet; if that is what they said, reply with: #mediation-consent "
                     f"{_party_word(mediation, party)} {answer}{' ' + proposed if proposed else ''}"
                     f": in their reply of {day}")


@command("mediation-consent",
         summary="record a party's answer to the mediation request that they gave another way "
         "(by phone, in person, in a plain reply): agree, decline, or propose another mediator, "
         "and after a colon how it was given; the audit log names you as having recorded it",
         usage="#mediation-consent <reporter|originator|address> agree|decline|propose "
               "[<mediator>]: <how it was given>",
         example="#mediation-consent reporter agree: by phone with the chair on 12 May",
         states=(cases.OPEN,))
def _mediation_consent(inv: Invocation) -> str:
    head, colon, how = inv.cmd.args.partition(":")
    words = head.split()
    if len(words) < 2 or words[1].lower() not in ANSWERS or not colon or not how.strip():
        raise CommandError("use #mediation-consent <party> agree|decline|propose [<mediator>]: "
                           "<how it was given>")
    mediation = current_mediation(inv.db, inv.case_id)
    if mediation is None:
        raise CommandError("no mediation has been proposed on this case (#mediate <mediator>)")
    who, answer, named = words[0].lower(), words[1].lower(), " ".join(words[2:]).strip()
    parties = [c for c in mediation["consents"] if who in (c["role"], c["party"])]
    if len(parties) != 1:
        known = ", ".join(f"{c['party']} ({c['role']})" for c in mediation["consents"])
        raise CommandError(f"{who!r} names {len(parties)} of the parties asked ({known}): "
                           "give one address")
    candidate = f"{mediation['mediator_name']} <{mediation['mediator']}>".strip()
    if answer == "propose" and not named:
        raise CommandError("say whom they propose: #mediation-consent <party> propose "
                           "<mediator>: <how>")
    if answer == "agree" and named and named.lower() not in candidate.lower():
        raise CommandError(f"the candidate asked about is {candidate}, not {named!r}: if they "
                           f"want {named} instead, record: #mediation-consent {who} propose "
                           f"{named}: <how>")
    status = record_answer(inv.ctx, mediation, parties[0], answer,
                           named if answer == "propose" else "", actor=inv.actor,
                           how=how.strip())
    return (f"recorded: the {parties[0]['role']} answers {answer} on mediation "
            f"#{mediation['id']} ({how.strip()}); the mediation is {status}")
