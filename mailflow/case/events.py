"""Event incident reports from event organisers (``committee.delegates``).

Where no committee member is present, an event organiser acts as the committee's
delegate and forwards reports with a summary of the actions they took.  Mail from a
delegate written in the form below opens a case (kind "event"), or joins the case
it names (a ``Case:`` line, the subject tag or a reply), and files the delegate's
summary as a record of the case (kind "event-report").  People in the form are
recorded with their roles; the event becomes the record's channel.

Like a reporter, a delegate is recognised by the From address; the form's people
and summary are shown to the committee as the delegate's word, nothing more.

A delegate is a delegate and the reporter is the reporter, whatever order the mail
comes in: a delegate's mail opening a case records them as its delegate, never as
its reporter (:func:`record_sender`), and the form's ``Reporter:`` names the
reporter.  A case that recorded the delegate as reporter before (an earlier release
did) is put right when their form arrives, unless the form names them as reporter.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mailflow.case import cases
from mailflow.case.calls import file_note
from mailflow.case.record import parse_person
from mailflow.commands.spec import CommandError

if TYPE_CHECKING:
    from mailflow.pipeline.context import Context

FORM = """\
Event incident reports (for event organisers named in committee.delegates)
---------------------------------------------------------------------------
A delegate writes to the conduct address, or fills in the form that
`#send event-incident-report to=delegates` mails them and replies.  mailflow reads
these labelled parts (each runs until the next label; only Event and the actions
taken are required; people go one per line, as Name <address>, an address or a
name):

  Event: <name of the event>
  Date: <when and where>
  Case: <case id, e.g. 2026-0007, to add to a case already open>
  Reporter: <who reported it to you>
  Person(s) whose behaviour was reported:  (or Originator:)
  Person(s) affected:                      (or Affected:)
  Witnesses:
  What happened:
  Action you took:                         (or Actions taken:)
"""
# Labels, as the start of a line ending its label with ":"; the value runs on.
LABELS = {
    "event": r"event\b",
    "date": r"date\b",
    "case": r"case\b",
    "reporter": r"reporter\b|reported by\b",
    "originator": r"originators?\b|person\(?s?\)? whose behaviou?r",
    "affected": r"affected\b|person\(?s?\)? affected",
    "witness": r"witness",
    "what happened": r"what happened",
    "actions taken": r"actions? (?:taken|you took)",
    "other": r"your name|how to reach you|is it still going on|anything else",
}
LINE = re.compile(r"^(?:" + "|".join(f"(?P<{k.replace(' ', '_')}>{v})" for k, v in LABELS.items())
                  + r")(?:[^:(]|\([^)]*\)){0,200}?:\s*(?P<value>.*)$", re.IGNORECASE)
PEOPLE = ("reporter", "originator", "affected", "witness")


def parse_form(text: str) -> list[tuple[str, str]]:
    """The form's (field, value) pairs in order; each value runs to the next label.
    Quote markers are dropped: a form filled in inside a quoted reply still reads."""
    lines: list[str] = []
    for line in (ln.lstrip("> \t").rstrip() for ln in text.splitlines()):
        # A label whose parenthesis wraps onto the next line is one line.
        if lines and lines[-1].count("(") > lines[-1].count(")"):
            lines[-1] += " " + line
        else:
            lines.append(line)
    fields: list[tuple[str, str]] = []
    for line in lines:
        match = LINE.match(line)
        if match:
            name = next(k for k in LABELS if match.group(k.replace(" ", "_")))
            fields.append((name, match.group("value").strip()))
        elif fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value}\n{line}".strip())
    return fields


def is_delegate(ctx: Context) -> bool:
    return (ctx.sender or "").lower() in {d.lower() for d in ctx.cfg.committee.delegates}


def record_sender(ctx: Context) -> None:
    """The sender of mail opening a case: its delegate if they are one, else its reporter."""
    if ctx.sender and ctx.case_id:
        cases.add_person(ctx.db, ctx.case_id, "delegate" if is_delegate(ctx) else "reporter",
                         ctx.sender, ctx.parsed.from_name)


def read_form(ctx: Context) -> list[tuple[str, str]] | None:
    """The event-report form, if a configured delegate sent one."""
    if not is_delegate(ctx):
        return None
    fields = [(k, v) for k, v in parse_form(ctx.parsed.body_text) if v]
    names = {name for name, _ in fields}
    return fields if {"event", "actions taken"} <= names else None


def named_case(ctx: Context, form: list[tuple[str, str]] | None) -> str | None:
    case_id = next((v for k, v in form or [] if k == "case"), "").strip("#[] ")
    return case_id if case_id and cases.exists(ctx.db, case_id) else None


def file_report(ctx: Context, form: list[tuple[str, str]] | None) -> None:
    """Record a delegate's form on the case the router chose."""
    if not form or not ctx.case_id:
        return
    db, case_id, delegate = ctx.db, ctx.case_id, (ctx.sender or "").lower()
    cases.add_person(db, case_id, "delegate", delegate, ctx.parsed.from_name)
    if ctx.new_case:
        db.execute("UPDATE cases SET kind = 'event' WHERE id = ?", [case_id])
    values = dict(form)
    named = " ".join(v for k, v in form if k == "reporter").lower()
    if delegate not in named and db.execute(
            "DELETE FROM people WHERE case_id = ? AND role = 'reporter' AND address = ?",
            [case_id, delegate]).rowcount:
        ctx.flags.append(f"{delegate} is the event's delegate, not its reporter")
    for role, value in form:
        for person in (line.strip() for line in value.splitlines() if role in PEOPLE):
            try:
                address, name = parse_person(person)
            except CommandError as e:
                ctx.flags.append(f"event report: {role} {person!r} not recorded: {e}")
                continue
            cases.add_person(db, case_id, role, address, name, actor=delegate)
    rec = cases.record(db, case_id)
    event = values["event"].splitlines()[0]
    if not rec["channel"]:
        cases.update_record(db, case_id, channel=event)
    if not rec["what_happened"] and values.get("what happened"):
        cases.update_record(db, case_id, what_happened=values["what happened"].splitlines()[0])
    summary = "\n\n".join(f"{k.capitalize()}: {v}" for k, v in form if k != "event")
    note_id = file_note(db, case_id, kind="event-report", author=delegate,
                        text=f"Event: {event}\n\n{summary}", spool_id=ctx.spool_id)
    ctx.flags.append(f"event incident report from delegate {delegate} (record #{note_id})")
