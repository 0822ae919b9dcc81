"""``mailflow ingest``: an MTA's pipe transport runs it for every message, so it takes
the shortest way there is.  It reads its command line itself when it has the usual
form (:func:`read_args`), and the configuration from a cache
(:mod:`mailflow.intake.pipeconfig`).  It imports neither argparse nor tomllib.  Any
other command line (``--help``, a mistake) goes through the full parser with its
help and errors, to the same :func:`run`.  Its options and help are declared with
the other commands (:func:`mailflow.cli.running.cmd_ingest`).
"""

from __future__ import annotations

import sys

from mailflow.cli.sysexits import EX_DATAERR, EX_OK, EX_TEMPFAIL
from mailflow.store import private

SWITCHES = ("-v", "--verbose", "--debug-content")  # accepted anywhere; ingest logs nothing


def read_args(argv: list[str]) -> tuple[str | None, str | None, list[str]] | None:
    """(config, sender, recipients) of ``[OPTIONS] ingest [OPTIONS] [--] RECIPIENT...``
    with no option but ``--config FILE``, ``--sender ADDRESS`` (after ``ingest``) and
    the switches, each value a word of its own that does not start with a dash; None
    for anything else."""
    config = sender = None
    command, at = False, 0
    while at < len(argv):
        word = argv[at]
        if word in ("--config", "--sender"):
            value = argv[at + 1] if at + 1 < len(argv) else "-"
            if value.startswith("-") or (word == "--sender" and not command):
                return None
            config, sender = (value, sender) if word == "--config" else (config, value)
            at += 2
            continue
        if word == "ingest" and not command:
            command = True
        elif word == "--" and command:
            return config, sender, argv[at + 1:]
        elif command and not word.startswith("-"):
            rest = argv[at:]  # the recipients: options may not follow them
            return None if any(w.startswith("-") for w in rest) else (config, sender, rest)
        elif word not in SWITCHES:
            return None
        at += 1
    return (config, sender, []) if command else None


def fast(argv: list[str]) -> int | None:
    """Run ingest on a command line of the usual form; None: read it the long way."""
    args = read_args(argv)
    if args is None:
        return None
    private.restrict()  # as every command: what mailflow writes is its user's alone
    return run(*args)


def run(config: str | None, sender: str | None, recipients: list[str]) -> int:
    """Commit the message on standard input to the spool; the exit code is what
    ``mailflow ingest --help`` promises the MTA (:func:`mailflow.cli.running.cmd_ingest`)."""
    where = None
    try:
        from mailflow.intake import pipeconfig
        from mailflow.intake.spool import Envelope, commit_one
        from mailflow.store.sqlite import spool_path

        settings = pipeconfig.load(config)
        where = spool_path(settings.db_path)
        raw = sys.stdin.buffer.read(settings.max_size + 1)
        if len(raw) > settings.max_size:
            print("mailflow ingest: message exceeds intake.max_size", file=sys.stderr)
            return EX_DATAERR
        envelope = Envelope("pipe", None if sender is None else _text(sender),
                            [_text(r) for r in recipients])
        spool_id, duplicate = commit_one(settings.db_path, raw, envelope,
                                         timeout=settings.commit_timeout)
    except Exception as e:
        print(f"mailflow ingest: temporary failure: {_why(e, where)}", file=sys.stderr)
        return EX_TEMPFAIL
    print(f"{'duplicate of' if duplicate else 'queued as'} {spool_id}", file=sys.stderr)
    return EX_OK


def _text(word: str) -> str:
    """An envelope address from the command line as text SQLite can store: bytes that
    are not UTF-8 (Python keeps them as lone surrogates, which no database takes) are
    written as ``\\xNN``, so that the message is committed, not deferred for ever."""
    return word.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _why(e: Exception, where: str | None) -> str:
    """The reason on one line, for the MTA's log and its bounce."""
    from mailflow.cli.options import access_problem
    from mailflow.config import ConfigError

    if isinstance(e, ConfigError):
        return str(e).splitlines()[0]
    return access_problem(e, where) or f"{type(e).__name__}: {e}"
