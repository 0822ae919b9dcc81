"""Splitting a reply into the writer's new text and the text they quoted."""

from __future__ import annotations

import re

QUOTE_START = re.compile(
    r"^(>|On .{0,200}wrote:\s*$|Le .{0,200}a écrit\s*:\s*$|Am .{0,200}schrieb.{0,80}:\s*$|"
    r"-{2,}\s*Original Message\s*-{2,}|_{10,}\s*$)",
    re.IGNORECASE,
)


# "On Mon, 1 Jan 2026 at 10:00, Alice <a@x>" followed by "wrote:" on the next line.
QUOTE_START_SPLIT = re.compile(r"^On .{0,200}$", re.IGNORECASE)


def split_quoted(text: str) -> tuple[str, str]:
    """(new text, quoted text): the quote starts at the first quoting marker."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        starts = QUOTE_START.match(stripped)
        wrapped = (
            QUOTE_START_SPLIT.match(stripped)
            and i + 1 < len(lines)
            and lines[i + 1].strip().lower().endswith("wrote:")
        )
        if starts or wrapped:
            return "\n".join(lines[:i]).rstrip(), "\n".join(lines[i:])
    return text.rstrip(), ""
