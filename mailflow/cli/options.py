"""What the ``mailflow`` subcommands share: how one is declared (:func:`command`, its
docstring being its ``--help``), their common options, and the exit codes.

Declaring a command registers nothing: :mod:`mailflow.cli.main` lists the commands
it offers.  This module imports little, so that ``mailflow ingest`` starts fast.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from mailflow import config as config_mod
from mailflow.config import Config, ConfigError

# sysexits.h: what an MTA and a shell script understand.
EX_OK, EX_USAGE, EX_DATAERR, EX_TEMPFAIL, EX_CONFIG = 0, 64, 65, 75, 78

Run = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Arg:
    """One argument or option, as ``argparse.add_argument`` takes it."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


AS_MEMBER = arg("--as", dest="as_member", metavar="MEMBER",
                help="as this committee member sees it: without the cases they are recused "
                     "from")


@dataclass(frozen=True)
class CommandSpec:
    """A subcommand: ``name`` may have two words (``case show``); ``summary`` is its line
    in ``mailflow --help``, the function's docstring its ``--help``."""

    name: str
    summary: str
    args: tuple[Arg, ...]
    json: bool
    run: Run
    epilog: str = ""


def command(name: str, summary: str, *args: Arg, json_out: bool = False, epilog: str = ""
            ) -> Callable[[Run], Run]:
    """Mark ``cmd_*`` as the subcommand ``name``; ``epilog`` ends its ``--help``."""
    def mark(func: Run) -> Run:
        func.cli = CommandSpec(name, summary, args, json_out,  # type: ignore[attr-defined]
                               func, epilog)
        return func
    return mark


def load_config(args: argparse.Namespace) -> Config:
    return config_mod.load(args.config)


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else text)


def open_db(cfg: Config) -> sqlite_utils.Database:
    from mailflow import store

    return store.open_db(cfg.db_path)


def member_filter(args: argparse.Namespace, cfg: Config) -> str | None:
    """``--as MEMBER``: see only what that member may see (no case they are recused from)."""
    member = getattr(args, "as_member", None)
    if member and not cfg.is_member(member):
        raise ConfigError(f"--as {member}: not a member of the committee")
    return member.lower() if member else None
