"""``#help`` and ``mailflow help``: every command, who may use it, its usage and an
example, grouped by topic."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from mailflow.commands.spec import Invocation, command, permission
from mailflow.pipeline.context import CommandSpec

HELP_INTRO = """\
Commands go on lines of their own in what you write in a reply to a committee mail:
above the quoted message, below it, or between quoted parts.  Quoted text and your
signature are never read, whatever your mail program (lines starting with ">", an
"On ... wrote:" line and what follows it, Outlook's "From: / Sent:" block and the
original below it, everything after a line "-- ", "Sent from my iPhone" and the
like).  A line #end stops reading.  Block commands (marked "block") take the lines
after them, up to a line #end, as their text.  All commands of one message apply
together or not at all, and a transcript answers every message: each command line
echoed with what it did or why it failed.

A line starting with a #word that is no command (#general, a hashtag) is only
echoed as "not a command"; but one that looks like a mistyped command (#violaton)
stops all the commands of the message, so that a typo never passes unnoticed.

A long command may go on over several lines: indent the lines that continue it.
Lines your mail program wrapped are joined as well: format=flowed and HTML mail
arrive whole, and in other plain text a command line of 60 characters or more is
joined to the next line when that line's first word would have passed the 72nd
column (where Gmail and Outlook break lines).

Who may use a command: every committee member, unless it says "chair" (the chair,
or the substitute chair named for the case with #chair).  A member recused from a
case may use no command on it.

How mailflow knows a mail is yours: replying to a committee mail sends it to an
address carrying your signed token (or your mail server's DKIM signature is
verified by the committee's own mail server).  Mail from your address without
such proof is archived as a note: nothing in it applies, it is not relayed, and
you are told why."""


def _topic(spec: CommandSpec) -> str:
    """Commands are grouped by the module that defines them, titled by its
    ``HELP_TOPIC`` or the first words of its docstring."""
    module = getattr(spec.run, "__globals__", {})
    doc = module.get("HELP_TOPIC") or module.get("__doc__") or spec.run.__module__
    return str(doc).strip().splitlines()[0].replace("``", "").split(": ")[0].rstrip(".:")


def help_text(known: Mapping[str, CommandSpec], rules: dict[str, Any] | None = None) -> str:
    """Every command with who may use it, its usage and an example: ``#help`` and
    ``mailflow help``, grouped by topic in the order of ``known``."""
    out = [HELP_INTRO]
    topics: dict[str, list[CommandSpec]] = {}
    for spec in known.values():
        topics.setdefault(_topic(spec), []).append(spec)
    for topic, specs in topics.items():
        out += ["", topic, "-" * len(topic)]
        for spec in specs:
            marks = [m for m in (
                "chair" if rules is not None and permission(rules, spec.word) == "chair" else "",
                "block" if spec.block else "",
                f"case {' or '.join(spec.states)}" if spec.states else "",
            ) if m]
            out.append(spec.usage + (f"   ({', '.join(marks)})" if marks else ""))
            out += textwrap.wrap(spec.summary, 80, initial_indent="    ",
                                 subsequent_indent="    ")
            example = spec.example.splitlines()
            out.append(f"    e.g. {example[0]}")
            out += [f"         {line}" for line in example[1:]]
    return "\n".join(out) + "\n"


HELP_TOPIC = "Help"


@command("help", summary="reply with this list of commands", usage="#help",
         example="#help", needs_case=False)
def _help(inv: Invocation) -> str:
    return help_text(inv.svc.parts.commands, inv.svc.rules)
