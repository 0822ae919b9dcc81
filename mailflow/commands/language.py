"""The command language: ``#word args`` lines in the new text of a member's mail.

- A command is a line whose first word is ``#`` plus a *known* word; any other line
  starting with ``#word`` is an error (so a typo never passes silently).
- Parsing stops at ``#end`` or at the quoted part (only the new text is read).
- Block commands (``#call``, ``#reply``, ...) take the lines after them, up to
  ``#end``, as their text.

What commands mean is :mod:`mailflow.commands.spec` and the modules that define them;
applying them to a member's mail is :mod:`mailflow.pipeline.handlers.commands`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mailflow.pipeline.context import CommandSpec

COMMAND_LINE = re.compile(r"^#([A-Za-z][A-Za-z\-]*)\b[ \t]*(.*)$")


@dataclass
class Command:
    word: str
    args: str
    line: str
    text: str = ""          # the block of a block command


@dataclass
class Parsed:
    commands: list[Command] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)   # (line, why)


def parse(text: str, known: Mapping[str, CommandSpec]) -> Parsed:
    """The commands of a mail's new text (which already excludes the quoted part);
    ``known``: the command words, with whether each takes a block."""
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


