"""Records filed on a case besides mail: off-list call summaries and notes.

The guidelines want off-list communication (phone calls for a rapid response, say)
summarised back to the list.  ``#call`` files such a summary as a record of its own
(author, day of the call, participants, text), which the case view shows in order
and search finds (kind ``call``); ``#note`` files a note the same way.  The mail
carrying either is relayed to the other members as usual, so the list sees it too.

``#acted`` is the report-back the guidelines ask of whoever acted at once on an
ongoing threat ("within 24 hours"): it files what was done as a record (kind
``acted``), and it (or a ``#call`` summary) is what ends the acted-alone clock; other
mail on the case does not.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

from mailflow import store, timestamps
from mailflow.case import cases
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.store import fulltext
from mailflow.store.sqlite import Database

# Record kinds the search index knows; others (event reports, feedback) index as notes.
SEARCH_KINDS = ("call", "note")

HELP_TOPIC = "Off-list calls and notes"


def file_note(db: Database, case_id: str, *, kind: str, author: str, text: str,
              participants: list[str] | None = None, held_on: str | None = None,
              spool_id: int | None = None) -> int:
    """File a record on the case and index it for search; returns its id."""
    participants = participants or []
    now = timestamps.stamp()
    cur = db.execute(
        "INSERT INTO notes (case_id, kind, author, at, held_on, participants, text, spool_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [case_id, kind, author, now, held_on, json.dumps(participants), text, spool_id])
    note_id = store.inserted(cur)
    subject = {"call": f"Call on {held_on} with {', '.join(participants)}",
               "acted": "Report-back: action taken at once",
               "event-report": "Event incident report",
               "feedback": "Reporter's feedback on the proposed response"}.get(kind, "Note")
    fulltext.index_record(db, ref=f"{kind}:{note_id}", case_id=case_id, author=author,
                        kind=kind if kind in SEARCH_KINDS else "note", subject=subject,
                        body=text, at=now)
    cases.touch(db, case_id)
    return note_id


def parse_day(word: str) -> str:
    today = timestamps.now().date()
    named = {"today": today, "yesterday": today - timedelta(days=1)}
    if word.lower() in named:
        return named[word.lower()].isoformat()
    try:
        day = date.fromisoformat(word)
    except ValueError:
        raise CommandError(f"{word!r} is not a date: use YYYY-MM-DD, today or yesterday") from None
    if day > today:
        raise CommandError(f"{word} is in the future: a summary is of a call that took place")
    return day.isoformat()


@command("call", block=True,
         summary="file the summary of an off-list call (the lines after it, up to #end) as "
         "a record of the case",
         usage="#call <YYYY-MM-DD | today | yesterday> <with whom, comma-separated>\n"
               "    summary ...\n    #end",
         example="#call today the reporter, Kim\n"
                 "The reporter confirmed the messages of 3 May; no contact since.\n#end")
def _call(inv: Invocation) -> str:
    day, _, who = inv.cmd.args.partition(" ")
    if not day or not who.strip():
        raise CommandError("use #call <date> <with whom>, the summary below, then #end")
    if not inv.cmd.text:
        raise CommandError("the summary is empty: write it on the lines after #call, then #end")
    participants = [p.strip() for p in re.split(r",|\band\b", who) if p.strip()]
    held_on = parse_day(day)
    note_id = file_note(inv.db, inv.case_id, kind="call", author=inv.actor, text=inv.cmd.text,
                        participants=[inv.actor, *participants], held_on=held_on,
                        spool_id=inv.ctx.spool_id)
    return f"call summary #{note_id} filed (call of {held_on} with {', '.join(participants)})"


@command("note", block=True,
         summary="file a note on the case (the lines after it, up to #end)",
         usage="#note\n    text ...\n    #end",
         example="#note\nThe forum moderators confirmed the posts were removed.\n#end")
def _note(inv: Invocation) -> str:
    note_id = file_note(inv.db, inv.case_id, kind="note", author=inv.actor,
                        text=inv.block_text("note"),
                        spool_id=inv.ctx.spool_id)
    return f"note #{note_id} filed"


@command("acted", block=True,
         summary="report back what you did at once on an ongoing threat (the words after it "
         "and the lines up to #end): filed as a record, it ends the acted-alone clock",
         usage="#acted <what you did>\n    more lines ...\n    #end",
         example="#acted called the venue's security; Sam was escorted out at 21:10\n#end")
def _acted(inv: Invocation) -> str:
    note_id = file_note(inv.db, inv.case_id, kind="acted", author=inv.actor,
                        text=inv.block_text("report-back"), spool_id=inv.ctx.spool_id)
    return f"report-back #{note_id} filed: the committee has your account of what was done"
