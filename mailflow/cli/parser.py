"""The ``mailflow`` command's parser: every subcommand, listed once, and running the
one a command line names.

Each subcommand is a ``cmd_*`` function of the modules below, marked with
:func:`mailflow.cli.options.command`; its docstring is its ``--help``.  They import
what they need when they run, so that each command starts on what it uses.
"""

from __future__ import annotations

import argparse
import os
import sys

from mailflow.cli import admin, cases, held, keys, running, setup
from mailflow.cli.options import CommandSpec, Failed, Run, access_problem
from mailflow.cli.sysexits import EX_CONFIG, EX_USAGE
from mailflow.config import ConfigError
from mailflow.store import private

DESCRIPTION = """\
mailflow handles Code of Conduct reports by email.

Reporters write to conduct@DOMAIN; every report becomes a case, is acknowledged at
once and reaches the committee's private list; members act by #commands in replies.

Configuration comes from --config FILE, else $MAILFLOW_CONFIG, else ./mailflow.toml,
else the embedded defaults (listen on 127.0.0.1:8025, archive in ./archive, outgoing
mail to the Maildir ./archive/outbox).  `mailflow init` writes a starter file;
`mailflow demo` plays a whole case on this machine to show how it works.
"""

# Every subcommand, in the order `mailflow --help` lists them.
COMMANDS: tuple[Run, ...] = (
    setup.cmd_init, setup.cmd_check, running.cmd_serve, running.cmd_ingest, running.cmd_poll,
    running.cmd_process, running.cmd_tick, cases.cmd_deadlines, setup.cmd_help, setup.cmd_demo,
    cases.cmd_cases, cases.cmd_case_show, cases.cmd_case_export, cases.cmd_search,
    admin.cmd_import, admin.cmd_reindex, admin.cmd_audit_verify, admin.cmd_purge,
    cases.cmd_bans, cases.cmd_report, cases.cmd_transparency, admin.cmd_quarantine,
    admin.cmd_queue, admin.cmd_queue_flush, admin.cmd_status, held.cmd_held, keys.cmd_keys,
    keys.cmd_keys_import, keys.cmd_keys_generate, keys.cmd_keys_export, setup.cmd_parts,
)
# Subcommands of two words; `mailflow queue` and `mailflow keys` alone are commands too.
GROUPS = {"case": "one case: show, export", "audit": "the tamper-evident audit log: verify",
          "queue": "the outbound queue: list it, or flush",
          "keys": "the OpenPGP keys: list them, or import, generate, export"}


class Help(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, as wide as $COLUMNS says (else 80): argparse builds one for
    every option it adds, and asking the terminal its width imports shutil (with bz2
    and lzma), a tenth of `mailflow ingest`'s start."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None):
        columns = os.environ.get("COLUMNS", "")
        super().__init__(prog, indent_increment, max_help_position,
                         width or (int(columns) - 2 if columns.isdigit() else 78))


def spec(func: Run) -> CommandSpec:
    return func.cli  # type: ignore[attr-defined]


def _global_options(parser: argparse.ArgumentParser, default: object) -> None:
    """--config, -v and --debug-content, accepted before the subcommand and after it."""
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="configuration file (TOML)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log debugging detail (never the content of mail)")
    parser.add_argument("--debug-content", action="store_true", default=default,
                        help="log the SMTP conversation, every message's text included: "
                             "for debugging only, and said loudly in the log")


def _add(sub: argparse._SubParsersAction, name: str, command: CommandSpec
         ) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=command.summary, description=command.run.__doc__,
                       epilog=command.epilog or None,
                       formatter_class=Help)
    _global_options(p, argparse.SUPPRESS)
    for a in command.args:
        p.add_argument(*a.flags, **a.options)
    if command.json:
        p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=command.run)
    return p


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or (``only``: a subcommand's first word) of that
    one alone: ``mailflow ingest`` runs once per message, and building the parsers of
    all the others took longer than the rest of its start."""
    parser = argparse.ArgumentParser(prog="mailflow", description=DESCRIPTION,
                                     formatter_class=Help)
    _global_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    known = {spec(func).name.split()[0] for func in COMMANDS}
    for func in COMMANDS:
        command = spec(func)
        group, _, action = command.name.partition(" ")
        if only in known and group != only:
            continue
        if not action:
            p = _add(sub, group, command)
            if group in GROUPS:  # `mailflow queue`, and `mailflow queue flush`
                groups[group] = p.add_subparsers(dest=f"{group}_command", metavar="ACTION")
            continue
        if group not in groups:
            p = sub.add_parser(group, help=GROUPS[group], formatter_class=Help)
            groups[group] = p.add_subparsers(dest=f"{group}_command", metavar="ACTION",
                                             required=True)
        _add(groups[group], action, command)
    return parser


def run(argv: list[str], only: str | None) -> int:
    """Parse ``argv`` and run its subcommand; ``only``: the subcommand's first word, if
    the caller knows it (then only its parser is built)."""
    parser = build_parser(only)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EX_USAGE
    private.restrict()  # whatever mailflow writes (archive, exports) is its user's alone
    command = spec(args.func)
    if command.logs:
        from mailflow import logs

        args.log_settings = logs.settings(args.verbose, args.debug_content)
        logs.setup(args.log_settings)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EX_CONFIG
    except Failed as e:
        print(f"mailflow {command.name}: {e}", file=sys.stderr)
        return e.code
    except Exception as e:
        problem = access_problem(e)
        if problem is None:
            raise
        print(f"mailflow {command.name}: {problem}", file=sys.stderr)
        return EX_CONFIG
