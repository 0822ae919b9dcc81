"""format=flowed (RFC 3676): the soft line breaks a client added, taken out again.

Thunderbird, Apple Mail and others send plain text as ``format=flowed``: a line that
ends in a space continues on the next line (the client wrapped it there), quoted lines
carry their depth as leading ``>`` characters, and a line that starts with a space,
``>`` or ``From `` is "space-stuffed" with one more space.  Unflowed, each paragraph is
one line again, so a command the client wrapped is read whole, and a quoted line is
``> text`` at its own depth whatever the wrapping was.
"""

from __future__ import annotations

SIGNATURE = "-- "  # never flowed, though it ends in a space (RFC 3676, 4.3)


def unflow(text: str, delsp: bool = False) -> str:
    """The text of a ``format=flowed`` body (with ``\\n`` line ends) as its logical lines.

    ``delsp``: the ``DelSp=yes`` parameter; the space before each soft break was added
    by the client and is removed, not kept between the joined words."""
    out: list[str] = []
    pending: str | None = None   # a flowed line waiting for its continuation
    pending_depth = 0
    for raw in text.split("\n"):
        depth = len(raw) - len(raw.lstrip(">"))
        line = raw[depth:]
        if line.startswith(" "):  # space-stuffing (after any quote marks)
            line = line[1:]
        if pending is not None and depth != pending_depth:
            # RFC 3676 4.5: a change of depth ends the paragraph, whatever the flow.
            out.append(_quoted(pending, pending_depth))
            pending = None
        flowed = line.endswith(" ") and line != SIGNATURE
        if flowed and delsp:
            line = line[:-1]
        joined = line if pending is None else pending + line
        if flowed:
            pending, pending_depth = joined, depth
        else:
            out.append(_quoted(joined, depth))
            pending = None
    if pending is not None:
        out.append(_quoted(pending, pending_depth))
    return "\n".join(out)


def _quoted(line: str, depth: int) -> str:
    if not depth:
        return line
    return ">" * depth + (" " + line if line else "")
