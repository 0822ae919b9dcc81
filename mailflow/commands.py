"""The command language: ``#word args`` lines in the new text of a member's mail.

- A command is a line whose first word is ``#`` plus a *known* word; any other line
  starting with ``#word`` is an error (so a typo never passes silently).
- Parsing stops at ``#end`` or at the quoted part (only the new text is read).
- Block commands (``#call``, ``#reply``, ...) take the lines after them, up to
  ``#end``, as their text.
- All commands of one mail apply together or not at all (one savepoint).
- Every command mail is answered with a transcript, debbugs style: each line
  echoed with what it did or why it failed.

Commands live in the modules that own what they change; each registers itself with
:func:`command`.  Who may use which command is policy: ``rules/permissions.toml``.
A member recused from a case may use no command on it.

Mail whose sender could not be proven (see ``auth``) is archived as a note: nothing
in it applies and it is not relayed; the member whose address it used is told why.
"""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import audit, cases, store
from .relay import mail_members

if TYPE_CHECKING:
    from .pipeline import Context

COMMAND_LINE = re.compile(r"^#([A-Za-z][A-Za-z\-]*)\b[ \t]*(.*)$")


class CommandError(Exception):
    """A command that cannot be applied; the message is shown in the transcript."""


@dataclass
class Command:
    word: str
    args: str
    line: str
    text: str = ""          # the block of a block command


@dataclass
class Spec:
    word: str
    run: Callable[[Invocation], str]
    summary: str
    usage: str
    example: str
    block: bool = False          # takes the following lines up to #end
    needs_case: bool = True
    # Case statuses the command is allowed in (None: any).
    states: tuple[str, ...] | None = None


REGISTRY: dict[str, Spec] = {}

# Modules that register commands; imported by load().  `mailflow help` presents them
# in this order, the framework's own #help last.
COMMAND_MODULES = [
    "mailflow.commands",
    "mailflow.workflow",
    "mailflow.recusal",
    "mailflow.consensus",
    "mailflow.severe",
    "mailflow.calls",
    "mailflow.mediation",
    "mailflow.resolution",
    "mailflow.drafts",
    "mailflow.redaction",
    "mailflow.sanctions",
    "mailflow.finalreport",
    "mailflow.scheduler",
    "mailflow.casefile",
]


def load() -> dict[str, Spec]:
    for name in COMMAND_MODULES:
        importlib.import_module(name)
    return REGISTRY


def command(word: str, *, summary: str, usage: str, example: str, block: bool = False,
            needs_case: bool = True, states: tuple[str, ...] | None = None):
    """Register ``#word``; the function gets an :class:`Invocation` and returns what it did."""
    def register(func: Callable[[Invocation], str]) -> Callable[[Invocation], str]:
        REGISTRY[word] = Spec(word, func, summary, usage, example, block, needs_case, states)
        return func
    return register


@dataclass
class Invocation:
    """One command being applied, with everything a handler needs."""

    ctx: Context
    cmd: Command
    actor: str

    @property
    def db(self):
        return self.ctx.db

    @property
    def cfg(self):
        return self.ctx.cfg

    @property
    def svc(self):
        return self.ctx.svc

    @property
    def case_id(self) -> str:
        if not self.ctx.case_id:
            raise CommandError("this command needs a case: reply to a case's mail")
        return self.ctx.case_id

    @property
    def is_chair(self) -> bool:
        return self.cfg.is_chair(self.actor)

    def block_text(self, what: str) -> str:
        """A block command's text: the words after it on its line, then its block."""
        text = "\n".join(filter(None, [self.cmd.args, self.cmd.text]))
        if not text:
            raise CommandError(f"the {what} is empty: write it on the lines after "
                               f"#{self.cmd.word}, then #end")
        return text

    def log(self, action: str, **detail) -> None:
        audit.append(self.db, self.actor, action, self.ctx.case_id,
                     proof=self.ctx.proof or "", **detail)


@dataclass
class Parsed:
    commands: list[Command] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)   # (line, why)


def parse(text: str) -> Parsed:
    """The commands of a mail's new text (which already excludes the quoted part)."""
    out = Parsed()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        match = COMMAND_LINE.match(line)
        if not match:
            continue
        word = match.group(1).lower()
        if word == "end":
            break
        spec = REGISTRY.get(word)
        if spec is None:
            out.errors.append((line, f"unknown command #{word} (send #help for the list)"))
            continue
        cmd = Command(word, match.group(2).strip(), line)
        if spec.block:
            block = []
            while i < len(lines) and lines[i].strip().lower() != "#end":
                block.append(lines[i])
                i += 1
            i += 1  # the #end
            cmd.text = "\n".join(block).strip()
        out.commands.append(cmd)
    return out


def permission(rules: dict, word: str) -> str:
    """Who may use ``#word``: "chair" or "member" (the default for a word listed nowhere)."""
    return "chair" if word in rules.get("permissions", {}).get("chair", []) else "member"


def allowed(ctx: Context, actor: str, word: str) -> bool:
    if permission(ctx.svc.rules, word) == "chair":
        return ctx.cfg.is_chair(actor) or cases.acting_chair(ctx.db, ctx.cfg, ctx.case_id) == actor
    return ctx.cfg.is_member(actor)


@dataclass
class Outcome:
    line: str
    result: str
    ok: bool


def apply(ctx: Context) -> None:
    """Pipeline handler: run the commands of an authenticated member's mail."""
    if ctx.kind not in ("member", "note"):
        return
    parsed = parse(ctx.parsed.new_text)
    if ctx.actor is None:  # unproven: authentication filed it as a note
        _refuse_unauthenticated(ctx, parsed)
        return
    if not parsed.commands and not parsed.errors:
        return
    outcomes = [Outcome(line, why, False) for line, why in parsed.errors]
    failed = bool(outcomes)
    if not failed:
        failed = _run_all(ctx, parsed.commands, outcomes)
    else:
        outcomes += [Outcome(c.line, "not run", False) for c in parsed.commands]
    # The other members' copy says whether the commands they read took effect.
    ctx.flags.append("its commands were not applied (see the transcript)" if failed
                     else "its commands were applied")
    send_transcript(ctx, ctx.actor, outcomes, applied=not failed)


def _run_all(ctx: Context, commands: list[Command], outcomes: list[Outcome]) -> bool:
    """Run in order inside one savepoint; on the first failure undo everything."""
    failed = False
    try:
        with store.savepoint(ctx.db, "commands"):
            for n, cmd in enumerate(commands):
                try:
                    result = _run_one(ctx, cmd)
                except CommandError as e:
                    outcomes.append(Outcome(cmd.line, f"Error: {e}", False))
                    outcomes += [Outcome(c.line, "not run", False) for c in commands[n + 1:]]
                    raise
                outcomes.append(Outcome(cmd.line, result, True))
    except CommandError:
        failed = True
        for o in outcomes:
            if o.ok:
                o.result, o.ok = f"undone: {o.result}", False
    return failed


def _run_one(ctx: Context, cmd: Command) -> str:
    spec = REGISTRY[cmd.word]
    actor = ctx.actor or ""
    if spec.needs_case and not ctx.case_id:
        raise CommandError(f"#{cmd.word} needs a case: reply to a case's mail")
    if ctx.case_id and actor in cases.recused(ctx.db, ctx.case_id) and cmd.word != "help":
        raise CommandError(f"you are recused from case {ctx.case_id}")
    if not allowed(ctx, actor, cmd.word):
        raise CommandError(f"only the chair may use #{cmd.word}")
    if spec.states and ctx.case_id:
        status = (cases.get(ctx.db, ctx.case_id) or {}).get("status")
        if status not in spec.states:
            raise CommandError(f"#{cmd.word} is not possible while the case is {status}")
    inv = Invocation(ctx, cmd, actor)
    result = spec.run(inv)
    inv.log(f"command #{cmd.word}", args=cmd.args)
    return result


def _refuse_unauthenticated(ctx: Context, parsed: Parsed) -> None:
    """Nothing applies; the member whose address was used is told, not the sender."""
    claimed = (ctx.sender or "").lower()
    reason = ctx.auth_failure or "no proof of identity"
    audit.append(ctx.db, claimed or "unknown", "not accepted as a member's mail", ctx.case_id,
                 reason=reason, commands=len(parsed.commands) + len(parsed.errors))
    if not ctx.cfg.is_member(claimed):
        return
    if ctx.case_id and claimed in cases.recused(ctx.db, ctx.case_id):
        return  # a recused member hears nothing more of the case, not even this
    lines = [Outcome(c.line, "not run", False) for c in parsed.commands]
    lines += [Outcome(line, why, False) for line, why in parsed.errors]
    send_transcript(ctx, claimed, lines, applied=False,
                    preface=f"A message using your address was not accepted as yours: {reason}.\n"
                            "It was archived as a note and not relayed to the committee.\n"
                            "If you sent it, reply to a committee mail (its Reply-To carries\n"
                            "your signed token) or send from a server that signs with DKIM.")


def send_transcript(ctx: Context, to: str, outcomes: list[Outcome], applied: bool,
                    preface: str = "") -> None:
    lines = [preface, ""] if preface else []
    for o in outcomes:
        lines += [f"> {o.line}", o.result, ""]
    if outcomes:
        lines.append("All commands were applied." if applied
                     else "Nothing in this message was applied.")
    # mail_members puts the case's tag in front; the one quoted from the subject goes.
    subject = cases.tag_pattern(ctx.cfg).sub("", ctx.parsed.subject).strip()
    mail_members(ctx.db, ctx.svc, ctx.case_id, [to], kind="transcript",
                 in_reply_to=ctx.parsed.message_id,
                 subject=f"Transcript: {subject or '(no subject)'}",
                 body="\n".join(lines) + "\n", auto_submitted="auto-replied")


HELP_INTRO = """\
Commands go on lines of their own in the new text of a reply to a committee mail,
above any quoted part; a line #end stops reading.  Block commands (marked "block")
take the lines after them, up to a line #end, as their text.  All commands of one
message apply together or not at all, and a transcript answers every message:
each command line echoed with what it did or why it failed.

Who may use a command: every committee member, unless it says "chair" (the chair,
or the substitute chair named for the case with #chair).  A member recused from a
case may use no command on it.

How mailflow knows a mail is yours: replying to a committee mail sends it to an
address carrying your signed token (or your mail server's DKIM signature is
verified by the committee's own mail server).  Mail from your address without
such proof is archived as a note: nothing in it applies, it is not relayed, and
you are told why."""


def _topic(spec: Spec) -> str:
    """Commands are grouped by the module that registers them, titled by its
    ``HELP_TOPIC`` or the first words of its docstring."""
    module = sys.modules.get(spec.run.__module__)
    doc = (getattr(module, "HELP_TOPIC", None) or (module.__doc__ if module else None)
           or spec.run.__module__)
    return doc.strip().splitlines()[0].replace("``", "").split(": ")[0].rstrip(".:")


def _order(spec: Spec) -> tuple[bool, int]:
    module = spec.run.__module__
    listed = COMMAND_MODULES.index(module) if module in COMMAND_MODULES else len(COMMAND_MODULES)
    return module == __name__, listed


def help_text(rules: dict | None = None) -> str:
    """Every command with who may use it, its usage and an example: ``#help`` and
    ``mailflow help``."""
    out = [HELP_INTRO]
    topics: dict[str, list[Spec]] = {}
    for spec in sorted(REGISTRY.values(), key=_order):
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
    return help_text(inv.svc.rules)
