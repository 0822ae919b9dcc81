"""The ``mailflow`` command: its subcommands, listed once, and ``main``.

Each subcommand is a ``cmd_*`` function of the modules below, marked with
:func:`mailflow.cli.options.command`; its docstring is its ``--help``.  They import
what they need when they run, so that ``mailflow ingest`` (an MTA runs it for every
message) starts fast.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mailflow.cli import admin, cases, held, running, setup
from mailflow.cli.options import EX_CONFIG, EX_USAGE, CommandSpec, Run
from mailflow.config import ConfigError

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
    admin.cmd_queue, held.cmd_held, setup.cmd_parts,
)
GROUPS = {"case": "one case: show, export", "audit": "the tamper-evident audit log: verify"}


def spec(func: Run) -> CommandSpec:
    return func.cli  # type: ignore[attr-defined]


def _global_options(parser: argparse.ArgumentParser, default: object) -> None:
    """--config and -v, accepted before the subcommand and after it."""
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="configuration file (TOML)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log debugging detail")


def _add(sub: argparse._SubParsersAction, name: str, command: CommandSpec) -> None:
    p = sub.add_parser(name, help=command.summary, description=command.run.__doc__,
                       epilog=command.epilog or None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(p, argparse.SUPPRESS)
    for a in command.args:
        p.add_argument(*a.flags, **a.options)
    if command.json:
        p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=command.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailflow", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for func in COMMANDS:
        command = spec(func)
        group, _, action = command.name.partition(" ")
        if not action:
            _add(sub, group, command)
            continue
        if group not in groups:
            p = sub.add_parser(group, help=GROUPS[group])
            groups[group] = p.add_subparsers(dest=f"{group}_command", metavar="ACTION",
                                             required=True)
        _add(groups[group], action, command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.verbose:
        # aiosmtpd logs every SMTP command at INFO: a line per command per message.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return EX_USAGE
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
