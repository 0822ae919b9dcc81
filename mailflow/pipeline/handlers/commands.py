"""Handler: apply the ``#commands`` of an authenticated member's mail.

All commands of one mail apply together or not at all (one savepoint), and every
command mail is answered with a transcript, debbugs style: each line echoed with what
it did or why it failed.  A member recused from a case may use no command on it:
their mail naming it is withheld (see :mod:`.route`) and answered with the same words
as mail naming a case that does not exist.
Lines of the new text that start with a ``#word`` that is no command (a channel, a
hashtag) are echoed as "not a command" and change nothing; a mail with only such lines
gets no transcript.

Mail whose sender could not be proven (see :mod:`.authenticate`) was filed as a note:
nothing in it applies and it is not relayed; the member whose address it used is
told why, and the sender never is.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailflow import store
from mailflow.case import cases
from mailflow.case.notices import mail_members, thread_subject
from mailflow.commands.language import Command, Parsed, parse
from mailflow.commands.spec import CommandError, Invocation, permission
from mailflow.mail.compose import header_safe
from mailflow.mail.scrub import scrub_relayed
from mailflow.pipeline.context import Context
from mailflow.store import audit


@dataclass
class Outcome:
    line: str
    result: str
    ok: bool


def apply(ctx: Context) -> None:
    """Apply a proven member's #commands, together or not at all, and answer with a
    transcript."""
    if ctx.kind not in ("member", "note"):
        return
    if ctx.withheld:
        _answer_withheld(ctx)
        return
    parsed = parse(ctx.parsed.new_text, ctx.svc.parts.commands, ctx.parsed.hard_wrapped)
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
    outcomes += [Outcome(line, why, False) for line, why in parsed.ignored]
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
    spec = ctx.svc.parts.commands[cmd.word]
    actor = ctx.actor or ""
    if spec.needs_case and not ctx.case_id:
        raise CommandError(f"#{cmd.word} needs a case: reply to a case's mail")
    if ctx.case_id and actor in cases.recused(ctx.db, ctx.case_id) and cmd.word != "help":
        raise CommandError("this mail names no case you can write to")  # see route
    if not allowed(ctx, actor, cmd.word):
        raise CommandError(f"only the chair may use #{cmd.word}")
    if spec.states and ctx.case_id:
        status = (cases.get(ctx.db, ctx.case_id) or {}).get("status")
        if status not in spec.states:
            raise CommandError(f"#{cmd.word} is not possible while the case is {status}")
    inv = Invocation(ctx, cmd, actor)
    result = spec.run(inv)
    # Its words by fingerprint (the log holds no text); they are in the mail it came in.
    inv.log(f"command #{cmd.word}", spool_id=ctx.spool_id,
            text=audit.fingerprint(ctx.db, f"{cmd.args}\n{cmd.text}") if cmd.args or cmd.text
            else None)
    return result


def _refuse_unauthenticated(ctx: Context, parsed: Parsed) -> None:
    """Nothing applies; the member whose address was used is told, not the sender."""
    claimed = (ctx.sender or "").lower()
    reason = ctx.auth_failure or "no proof of identity"
    audit.append(ctx.db, ctx.audit_actor, "not accepted as a member's mail", ctx.case_id,
                 commands=len(parsed.commands) + len(parsed.errors))
    if not ctx.cfg.is_member(claimed):
        return
    lines = [Outcome(c.line, "not run", False) for c in parsed.commands]
    lines += [Outcome(line, why, False) for line, why in parsed.errors]
    send_transcript(ctx, claimed, lines, applied=False,
                    preface=f"A message using your address was not accepted as yours: {reason}.\n"
                            "It was archived as a note and not relayed to the committee.\n"
                            "If you sent it, reply to a committee mail (its Reply-To carries\n"
                            "your signed token) or send from a server that signs with DKIM.")


WITHHELD_SUBJECT = "Your message to the committee was not accepted"
WITHHELD = """\
A message from your address to the committee was not accepted: it names a case
(by its subject tag, the address it was sent to, or the mail it answers) that you
cannot write to, or that does not exist.  Nothing in it was applied, and it was not
relayed to anyone.

To write to the whole committee, send to {address} without a case tag.
"""


def _answer_withheld(ctx: Context) -> None:
    """The same answer whether the case does not exist or its sender is recused from
    it, proven or not, so that it tells nothing about which cases exist or name them."""
    member = (ctx.sender or "").lower()
    audit.append(ctx.db, ctx.audit_actor, "not accepted: names a case its sender cannot write to",
                 ctx.case_id)
    mail_members(ctx.db, ctx.svc, None, [member], subject=WITHHELD_SUBJECT,
                 body=WITHHELD.format(address=ctx.cfg.committee.committee_address),
                 kind="notice", in_reply_to=ctx.parsed.message_id,
                 auto_submitted="auto-replied", filed=False)


def send_transcript(ctx: Context, to: str, outcomes: list[Outcome], applied: bool,
                    preface: str = "") -> None:
    lines = [preface, ""] if preface else []
    for o in outcomes:
        lines += [f"> {scrub_relayed(o.line)}", o.result, ""]  # no secret echoed
    if outcomes:
        lines.append("All commands were applied." if applied
                     else "Nothing in this message was applied.")
    # mail_members puts the case's tag in front: "[coc #ID] Transcript: <subject>".
    # An answer quoting other cases (search results) is no part of this case's record;
    # it goes with the records it quotes when one of their cases is purged.
    quotes = sorted(ctx.quoted_cases - {ctx.case_id}) if applied else []
    mail_members(ctx.db, ctx.svc, ctx.case_id, [to], kind="transcript",
                 in_reply_to=ctx.parsed.message_id,
                 subject=header_safe(f"Transcript: {thread_subject(ctx.cfg, ctx.parsed.subject)}"),
                 body="\n".join(lines) + "\n", auto_submitted="auto-replied",
                 filed=not quotes, quotes=quotes)


def allowed(ctx: Context, actor: str, word: str) -> bool:
    if permission(ctx.svc.rules, word) == "chair":
        return ctx.cfg.is_chair(actor) or cases.acting_chair(ctx.db, ctx.cfg, ctx.case_id) == actor
    return ctx.cfg.is_member(actor)
