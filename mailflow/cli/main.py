"""The ``mailflow`` command.

``mailflow ingest`` (an MTA runs it for every message) takes its own short way,
:mod:`mailflow.cli.ingest`; every other command line is read by the parser of every
subcommand, :mod:`mailflow.cli.parser`.  This module imports nothing else, so that
the short way stays short.
"""

from __future__ import annotations

import sys


def named(argv: list[str]) -> str | None:
    """The first word of the subcommand ``argv`` names, if any."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = named(argv)
    if command == "ingest":
        from mailflow.cli import ingest

        code = ingest.fast(argv)
        if code is not None:
            return code
    from mailflow.cli import parser

    return parser.run(argv, command)


if __name__ == "__main__":
    sys.exit(main())
