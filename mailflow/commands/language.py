"""The command language: ``#word args`` lines in the new text of a member's mail.

- The text read is the member's own new text (:mod:`mailflow.mail.quotes`): above,
  below and between what they quoted, never the quote or the signature.  Reading stops
  at a line ``#end``.
- A command is a line whose first word is ``#`` plus a *known* word.  Another
  ``#word`` line is "not a command" (a channel, a hashtag) and is only echoed in the
  transcript; but one that looks like a mistyped command word (close to a known one,
  as ``#violaton``) is an error that stops the mail's commands, so a typo never passes
  silently.
- A command's line continues on the next line when that line is indented, or when the
  mail client hard-wrapped it (see :func:`wrapped`; only plain text that is not
  format=flowed: flowed text and HTML arrive unwrapped).  Block commands (``#call``,
  ``#note``, ...) take the lines after them, up to ``#end``, as their text.

What commands mean is :mod:`mailflow.commands.spec` and the modules that define them;
applying them to a member's mail is :mod:`mailflow.pipeline.handlers.commands`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailflow.pipeline.context import CommandSpec

COMMAND_LINE = re.compile(r"^#([A-Za-z][A-Za-z\-]*)\b[ \t]*(.*)$")
# Mail clients that hard-wrap plain text break lines at 72 to 78 columns (Gmail,
# Outlook's plain text at 76); a line shorter than WRAPPED_MIN was not wrapped.
WRAP_WIDTH = 72
WRAPPED_MIN = 60
# How alike a #word must be to a command word to count as a typo of it (difflib ratio).
TYPO_CUTOFF = 0.8


@dataclass
class Command:
    word: str
    args: str
    line: str
    text: str = ""          # the block of a block command


@dataclass
class Parsed:
    commands: list[Command] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)    # (line, why)
    ignored: list[tuple[str, str]] = field(default_factory=list)   # (line, why)


def parse(text: str, known: Mapping[str, CommandSpec], hard_wrapped: bool = False) -> Parsed:
    """The commands of a mail's new text; ``known``: the command words, with whether
    each takes a block; ``hard_wrapped``: the text may have been wrapped by its client
    (plain text, not format=flowed), so a long command line may go on on the next."""
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
        spec = known.get(word)
        if spec is None:
            typo = mistyped(word, known)
            if typo:
                out.errors.append((line, f"unknown command #{word}: did you mean #{typo}? "
                                         "(send #help for the list)"))
            else:
                out.ignored.append((line, "not a command: ignored"))
            continue
        args = match.group(2).strip()
        last = line  # the physical line: what a client may have wrapped
        while not spec.block and i < len(lines) and _continues(last, lines[i], hard_wrapped):
            last = lines[i].strip()
            line, args = f"{line} {last}", f"{args} {last}".strip()
            i += 1
        cmd = Command(word, args, line)
        if spec.block:
            block = []
            while i < len(lines) and lines[i].strip().lower() != "#end":
                block.append(lines[i])
                i += 1
            i += 1  # the #end
            cmd.text = "\n".join(block).strip()
        out.commands.append(cmd)
    return out


def mistyped(word: str, known: Mapping[str, CommandSpec]) -> str | None:
    """The command word that ``#word`` is probably a typo of, if any."""
    close = difflib.get_close_matches(word, [*known, "end"], n=1, cutoff=TYPO_CUTOFF)
    return close[0] if close else None


def _continues(line: str, following: str, hard_wrapped: bool) -> bool:
    """Whether ``following`` carries on the command on ``line``: it is indented, or
    the client wrapped a long line there."""
    stripped = following.strip()
    if not stripped or stripped.startswith("#"):
        return False
    return following[0] in " \t" or (hard_wrapped and wrapped(line, stripped))


def wrapped(line: str, following: str) -> bool:
    """Whether a client that hard-wraps (Gmail, Outlook in plain text) broke ``line``
    before ``following``: the line is long, and the next word would not have fitted."""
    first_word = following.split(None, 1)[0]
    return len(line) >= WRAPPED_MIN and len(line) + 1 + len(first_word) > WRAP_WIDTH
