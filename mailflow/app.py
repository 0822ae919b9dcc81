"""The one list of mailflow's built-in parts.

Everything that makes up the behaviour is listed here, in order: the pipeline's
handler chain, the modules that define ``#commands``, the checks that can hold back
closing a case, the schema's migrations and the stages ``mailflow serve`` runs.  The
close checks and the migrations are kept beside what applies them (the case file's
reads, the store) and named here.  Only entry points (the CLI, ``serve``, the test
harness) import this module; the parts receive what they need of it through
:class:`~mailflow.pipeline.context.Parts` and never find each other by name or
register themselves on import.

``mailflow parts`` prints these lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mailflow import rules
from mailflow.archive import search_commands
from mailflow.case import (
    abuse,
    calls,
    consensus,
    grievance,
    held_commands,
    keys,
    mediation,
    reads,
    record,
    recusal,
    resolution,
    sanctions,
    severe,
)
from mailflow.clocks import scheduler
from mailflow.commands import help
from mailflow.commands.spec import collect
from mailflow.config import Config
from mailflow.mail import render
from mailflow.mail.tokens import Signer
from mailflow.pipeline.context import Handler, Parts, Services
from mailflow.pipeline.handlers import (
    acknowledge,
    authenticate,
    clocks,
    commands,
    decrypt,
    file,
    recuse,
    route,
    screen,
    to_committee,
    triage,
)
from mailflow.responses import draft_commands, finalreport, redaction
from mailflow.store import migrations
from mailflow.store.secret import load_secret

if TYPE_CHECKING:  # serve makes them; the registry only names the type
    from mailflow.wakeups import Wakeups

# The pipeline, in order: each handler reads what the ones before it decided.
HANDLERS: tuple[Handler, ...] = (
    decrypt.open_encrypted,        # before anything reads it: the clear message
    route.address,                 # conduct or committee side, and the token in the address
    screen.screen,                 # released held mail; bounces; the MTA's spam verdicts
    route.route,                   # which case; a new one?
    decrypt.mark_case,             # a reporter's encrypted mail marks the case
    triage.assess,                 # urgent words in a new report
    authenticate.authenticate,     # before filing: unproven member mail is filed as a note
    recuse.recuse_named,           # before anything is relayed
    mediation.record_consent,      # a party's answer to a mediation request
    resolution.file_feedback,      # the reporter's feedback on the proposed response
    grievance.detect_grievance,    # the originator asks for a review
    file.file_message,             # into the archive
    commands.apply,                # a member's #commands, and the transcript
    clocks.start_clocks,           # after the commands: they may start clocks
    acknowledge.acknowledge,       # the reporter hears at once
    triage.alert,                  # urgent: every member alerted
    to_committee.copy_to_committee,  # each member's copy
)

# What imported history goes through: threaded and filed like live mail, but it sends
# nothing, applies no #commands and starts no clocks; it happened long ago.
HISTORY_HANDLERS: tuple[Handler, ...] = (decrypt.open_encrypted, route.address, screen.screen,
                                         route.route, file.file_message)

# The modules that define #commands; `mailflow help` presents them in this order.
COMMAND_MODULES = (
    record,           # the case record: #what, #violation, #close, #status ...
    recusal,          # #recuse, #chair
    consensus,        # #propose, #vote, #signoff
    abuse,            # #false-report
    severe,           # #severe
    calls,            # #call, #note, #acted
    mediation,        # #mediate, #mediation-consent
    resolution,       # #consult, #enact, #reply
    draft_commands,   # #send, #edit, #confirm, #discard
    redaction,        # #consent
    sanctions,        # #ban, #unban, #warn
    finalreport,      # #report, #public-record
    scheduler,        # #timeline
    search_commands,  # #search
    held_commands,    # #held, #release, #discard-held
    keys,             # #key
    help,             # #help
)
COMMANDS = collect(COMMAND_MODULES)

# Why a case cannot close yet (kept beside the case file's reads, so that showing a
# case needs none of the parts above).
CLOSE_CHECKS = reads.CLOSE_CHECKS

# The schema's history, in the order it applies (kept beside the store, which applies
# it whenever it opens the database).
MIGRATIONS = migrations.ALL

PARTS = Parts(handlers=HANDLERS, history_handlers=HISTORY_HANDLERS, commands=COMMANDS)


def services(cfg: Config) -> Services:
    """What every part may use, for one process."""
    return Services(cfg, rules.load(cfg), Signer(load_secret(cfg.secret_path)),
                    render.environment(cfg), PARTS)


# The stages `mailflow serve` runs, each in a process of its own, behind the listener.
# Module-level functions, so that a spawned process can find them.  Each imports its
# loop when it starts: a command that reads this registry (help, parts) does not load
# the IMAP client or the SMTP delivery.

def pipeline_stage(cfg: Config, wake: Wakeups) -> None:
    """Process what intake committed."""
    from mailflow.pipeline import runner

    def progress(spool_id: int) -> None:
        wake.settled.value = spool_id

    runner.run_forever(services(cfg), wake.stop, wake.pipeline, wake.outbound.set, progress)


def outbound_stage(cfg: Config, wake: Wakeups) -> None:
    """Deliver the outbound queue."""
    from mailflow.outbound import delivery

    delivery.run_forever(cfg, wake.stop, wake.outbound)


def scheduler_stage(cfg: Config, wake: Wakeups) -> None:
    """Fire the clocks' alarms."""
    scheduler.run_forever(services(cfg), wake.stop, wake.outbound.set)


def imap_stage(cfg: Config, wake: Wakeups) -> None:
    """Poll the IMAP mailbox of [intake.imap]."""
    from mailflow.intake.imap import Poller

    Poller(cfg, wake.stop, on_commit=wake.pipeline.set).run()


Stage = Callable[[Config, "Wakeups"], None]
STAGES: tuple[tuple[str, Stage], ...] = (
    ("pipeline", pipeline_stage),
    ("outbound", outbound_stage),
    ("scheduler", scheduler_stage),
)


def stages(cfg: Config) -> list[tuple[str, Stage]]:
    """The stages this configuration runs: IMAP polling only when configured."""
    return [*STAGES, *([("imap", imap_stage)] if cfg.intake.imap else [])]


def _name(part: Callable[..., Any]) -> str:
    return f"{part.__module__.rpartition('.')[2]}.{part.__name__}"


def _summary(part: object) -> str:
    """The first paragraph of a docstring, on one line."""
    return " ".join((getattr(part, "__doc__", None) or "").strip().split("\n\n")[0].split())


def describe() -> dict[str, Any]:
    """These lists as data, for ``mailflow parts``."""
    return {
        "handlers": [{"name": _name(h), "does": _summary(h)} for h in HANDLERS],
        "history_handlers": [_name(h) for h in HISTORY_HANDLERS],
        "commands": {m.__name__.rpartition(".")[2]: [w for w, s in COMMANDS.items()
                                                     if s.run.__module__ == m.__name__]
                     for m in COMMAND_MODULES},
        "close_checks": [_name(c) for c in CLOSE_CHECKS],
        "migrations": [name for name, _ in MIGRATIONS],
        "stages": [name for name, _ in STAGES],
    }
