"""What the ``mailflow`` subcommands share: how one is declared (:func:`command`, its
docstring being its ``--help``), and their common options (the exit codes are
:mod:`mailflow.cli.sysexits`).

Declaring a command registers nothing: :mod:`mailflow.cli.parser` lists the commands
it offers.  This module imports little, so that every command starts fast.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from mailflow import config as config_mod
from mailflow.cli.sysexits import EX_TEMPFAIL
from mailflow.config import Config, ConfigError

if TYPE_CHECKING:
    from mailflow.store.sqlite import Database


Run = Callable[[argparse.Namespace], int]


class Arg(NamedTuple):
    """One argument or option, as ``argparse.add_argument`` takes it.  (NamedTuples,
    not dataclasses, here: ``mailflow ingest`` must not import ``inspect``.)"""

    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


AS_MEMBER = arg("--as", dest="as_member", metavar="MEMBER",
                help="as this committee member sees it: without the cases they are recused "
                     "from")


class CommandSpec(NamedTuple):
    """A subcommand: ``name`` may have two words (``case show``); ``summary`` is its line
    in ``mailflow --help``, the function's docstring its ``--help``."""

    name: str
    summary: str
    args: tuple[Arg, ...]
    json: bool
    run: Run
    epilog: str = ""
    logs: bool = True


def command(name: str, summary: str, *args: Arg, json_out: bool = False, epilog: str = "",
            logs: bool = True) -> Callable[[Run], Run]:
    """Mark ``cmd_*`` as the subcommand ``name``; ``epilog`` ends its ``--help``;
    ``logs=False``: the command sets no logging up (it starts faster)."""
    def mark(func: Run) -> Run:
        func.cli = CommandSpec(name, summary, args, json_out,  # type: ignore[attr-defined]
                               func, epilog, logs)
        return func
    return mark


class Failed(Exception):
    """A command could not do its work for a reason the administrator can act on: the
    message is printed on one line, and the command exits with ``code``."""

    def __init__(self, message: str, code: int = EX_TEMPFAIL):
        super().__init__(message)
        self.code = code


def whoami() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def access_problem(e: BaseException, where: str | os.PathLike[str] | None = None
                   ) -> str | None:
    """One line for a file or directory this user may not use, or None if ``e`` is
    something else.  ``where``: the file SQLite was opening (its errors name none)."""
    import sqlite3

    text = str(e)
    if isinstance(e, PermissionError) and where is None:
        return f"{e.filename}: permission denied (running as {whoami()})"
    if isinstance(e, PermissionError) or (isinstance(e, sqlite3.OperationalError) and (
            "unable to open database" in text or "readonly database" in text)):
        place = f"{where}" if where else "the archive"
        why = "permission denied" if isinstance(e, PermissionError) else text
        return (f"{place}: cannot write it ({why}; running as {whoami()}): the archive "
                "directory and its files must belong to the user mailflow runs as")
    return None


def load_config(args: argparse.Namespace) -> Config:
    return config_mod.load(args.config)


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    import json

    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else text)


def open_db(cfg: Config) -> Database:
    from mailflow import store

    return store.open_db(cfg.db_path)


def member_filter(args: argparse.Namespace, cfg: Config) -> str | None:
    """``--as MEMBER``: see only what that member may see (no case they are recused from)."""
    member = getattr(args, "as_member", None)
    if member and not cfg.is_member(member):
        raise ConfigError(f"--as {member}: not a member of the committee")
    return member.lower() if member else None
