"""A case told as a document, for an officer reading ``mailflow case export --format
html``: each thing that happened as a sentence in order (mail received and sent,
calls and notes, commands, decisions, clocks), then the outcome in words: the
record, the decisions with their votes, bans, mediation.  No database row is shown
as such: what has no sentence of its own is said as "who did what (details)".

It reads what :func:`mailflow.archive.dossier.collect` gathered, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mailflow import timestamps
from mailflow.case import consensus

# Audit actions that repeat what the timeline shows as mail or as a record.
SHOWN_ELSEWHERE = re.compile(r"^(mail in: |queued |draft filed$)")
MAIL_IN = {
    "report": "{who} reported",
    "forward": "{who} forwarded a report on someone else's behalf",
    "reply": "{who} wrote on the case",
    "member": "{who} wrote to the committee",
    "note": "mail claiming to come from {who} was not accepted as theirs (no proof of "
            "identity); it was kept as a note and not passed on",
    "held": "mail from {who}, who is not a committee member, was held and not passed on",
    "bounce": "a delivery failure report arrived",
}
MAIL_OUT = {
    "ack": "mailflow acknowledged the report to {to} automatically",
    "transcript": "mailflow answered {to} with the transcript of their commands",
    "response": "the committee sent “{subject}” to {to}",
    "draft": "the draft “{subject}” went to the chair ({to}) to confirm",
    "notice": "mailflow told {to}: “{subject}”",
    "alarm": "a clock reminded {to}: “{subject}”",
    "escalation": "mailflow sent the deadlock to the officers ({to})",
    "digest": "mailflow sent {to} their digest",
}
RECORDS = {
    "call": "{who} summarised an off-list call",
    "note": "{who} filed a note",
    "acted": "{who} reported back on what they did at once",
    "event-report": "{who}, the event's delegate, sent the event incident report",
    "feedback": "the reporter gave feedback on the proposed response",
    "draft": "{who} drafted “{subject}” for the chair to confirm",
}


def when(stamp: str | None) -> str:
    if not stamp:
        return "at an unknown time"
    return f"{timestamps.parse(stamp):%a %d %b %Y, %H:%M} UTC"


def _person(address: str | None, names: dict[str, tuple[str, str]]) -> str:
    if not address:
        return "someone"
    name, role = names.get(address.lower(), ("", ""))
    label = f"{name} <{address}>" if name else address
    return f"{label}, the {role}," if role else label


def _details(detail: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in detail.items()
             if k not in skip and v not in (None, "", [], {})]
    return f" ({'; '.join(parts)})" if parts else ""


def _event(e: dict[str, Any], names: dict[str, tuple[str, str]]) -> str:
    """One audit entry as a sentence."""
    action, d = e["kind"], e["detail"]
    who = "mailflow" if e["from"] == "mailflow" else _person(e["from"], names)
    sayings: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"case opened$", lambda m: "the case was opened"),
        (r"person added: (.+)", lambda m: f"{who} recorded {d.get('name') or ''} "
         f"{d.get('address') or ''} as {m.group(1)}".replace("  ", " ")),
        (r"command #(\S+)", lambda m: f"{who} used #{m.group(1)} {d.get('args', '')}".rstrip()),
        (r"proposal (\d+) passed", lambda m: f"proposal {m.group(1)} passed by consensus"
         + _details(d.get("votes") or {})),
        (r"proposal (\d+) \((.+)\)", lambda m: f"{who} proposed "
         + consensus.what({"kind": m.group(2), "response": d.get("response") or "",
                           "detail": d.get("detail") or ""}) + f" (proposal {m.group(1)})"),
        (r"draft sent$", lambda m: f"{who} confirmed draft {d.get('draft')} "
         f"({d.get('template')}); it went to {', '.join(d.get('to') or [])}"),
        (r"draft discarded$", lambda m: f"draft {d.get('draft')} was discarded"
         + _details(d, ("draft",))),
        (r"ban recorded$", lambda m: f"{who} recorded a ban of {d.get('person')} from "
         f"{d.get('scope')}, until {d.get('until')}"),
        (r"interim ban ended$", lambda m: f"the interim ban {d.get('ban')} ended with the "
         f"committee's {d.get('event')}"),
        (r"warning recorded$", lambda m: f"{who} recorded warning {d.get('count')} for "
         f"{d.get('person')}"),
        (r"clock armed: (.+)", lambda m: f"the {m.group(1)} clock started, due "
         f"{when(d.get('due'))}"),
        (r"clock moved: (.+)", lambda m: f"the {m.group(1)} clock now runs to "
         f"{when(d.get('due'))}"),
        (r"clock disarmed: (.+)", lambda m: f"the {m.group(1)} clock was met: {d.get('reason')}"),
        (r"alarm (fired|ended|failed): (.+)", lambda m: f"the {m.group(2)} clock "
         f"{'ran out' if m.group(1) == 'fired' else m.group(1)}: "
         f"{d.get('outcome') or d.get('error')}"),
        (r"case flagged$", lambda m: f"the case was flagged: {d.get('flag')}"),
        (r"no acknowledgement$", lambda m: f"no acknowledgement was sent: {d.get('reason')}"),
        (r"case exported$", lambda m: f"{who} exported the case ({d.get('format')})"),
    ]
    for pattern, say in sayings:
        match = re.match(pattern, action)
        if match:
            return say(match)
    return f"{who}: {action}{_details(d)}"


def _entry(e: dict[str, Any], names: dict[str, tuple[str, str]]) -> dict[str, Any] | None:
    kind, who = e["kind"], _person(e.get("from"), names)
    if e["type"] == "mail in":
        sentence = MAIL_IN.get(kind, "{who} wrote").format(who=who)
        return {"css": "mail-in", "sentence": sentence, "subject": e["subject"],
                "text": e["text"], "attachments": e.get("attachments") or [],
                "notes": e.get("flags") or []}
    if e["type"] == "mail out":
        sentence = MAIL_OUT.get(kind, "mailflow sent “{subject}” to {to}").format(
            to=e["to"], subject=e["subject"])
        return {"css": "mail-out", "sentence": sentence, "text": e["text"],
                "folded": kind not in ("response", "escalation")}
    if e["type"] == "record":
        record_kind = (e.get("ref") or kind).partition(":")[0]
        sentence = RECORDS.get(record_kind, "{who} filed a record").format(
            who=who, subject=e["subject"])
        return {"css": "record", "sentence": sentence, "text": e["text"],
                "folded": record_kind == "draft"}
    if SHOWN_ELSEWHERE.match(kind):
        return None
    proof = f" (proof of identity: {e['proof']})" if e.get("proof") else ""
    return {"css": "event", "sentence": _event(e, names) + proof}


def _outcome(records: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The record and the measures, as sentences."""
    rec = (records.get("case_record") or [{}])[0]
    lines = []
    for key, label in (("what_happened", "What happened"), ("channel", "Where"),
                       ("violation", "A violation of the Code of Conduct"),
                       ("ongoing", "Ongoing"), ("safety", "A threat to anyone's safety"),
                       ("response", "The response agreed")):
        value = rec.get(key)
        if key == "response" and value:
            value = consensus.describe(value, rec.get("response_detail") or "")
        lines.append(f"{label}: {value or 'not determined'}.")
    votes = records.get("votes") or []
    for p in records.get("proposals") or []:
        cast = [f"{v['member']} {v['vote']}s" + (f" ({v['comment']})" if v["comment"] else "")
                for v in votes if v["proposal_id"] == p["id"]]
        lines.append(f"Proposal {p['id']}, {consensus.what(p)}, by {p['proposed_by']} on "
                     f"{when(p['proposed_at'])}: {p['status']}. "
                     + ("; ".join(cast) + "." if cast else "No votes."))
    for b in records.get("bans") or []:
        end = (b["ends_at"] and when(b["ends_at"])) or (
            f"the committee's {b['until_event']}" if b.get("until_event") else "no end")
        lifted = f" It was lifted on {when(b['lifted_at'])}." if b.get("lifted_at") else ""
        lines.append(f"Ban {b['id']}: {b['person']} from {b['scope']}, from "
                     f"{when(b['starts_at'])} until {end}, for {b['reason']}.{lifted}")
    for w in records.get("warnings") or []:
        lines.append(f"Warning to {w['person']} on {when(w['at'])}: "
                     f"{w['reason'] or '(no reason given)'}.")
    for m in records.get("mediations") or []:
        lines.append(f"Mediation {m['id']} with {m['mediator_name'] or m['mediator']}: "
                     f"{m['status']}" + (f", to complete by {m['target_date']}"
                                         if m.get("target_date") else "") + ".")
    return lines


def _capitalised(sentence: str) -> str:
    """A sentence's first letter in capitals, unless it begins with a name as written
    (mailflow, an address)."""
    first = sentence.split(" ", 1)[0]
    if first == "mailflow" or "@" in first:
        return sentence
    return sentence[:1].upper() + sentence[1:]


def story(d: dict[str, Any]) -> dict[str, Any]:
    """The case as entries in order (each ``when``, ``sentence`` and what it shows) and
    the outcome as sentences."""
    names = {(p["address"] or "").lower(): (p["name"], p["role"]) for p in d["people"]
             if p["address"] and p["role"] not in ("recused", "acting-chair")}
    entries = []
    for e in d["timeline"]:
        entry = _entry(e, names)
        if entry:
            entries.append({**entry, "when": when(e["at"]),
                            "sentence": _capitalised(entry["sentence"]) + "."})
    return {"entries": entries, "outcome": _outcome(d["records"])}
