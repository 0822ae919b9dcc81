"""A large message as the parser needs to see it: every header, boundary and text part
as it is, and the base64 bodies of large non-text parts (a video, a PDF) cut down.

The email package holds a part's body as lines, then as one string, then decoded to
learn its size: seven to eight times a 23 MB report.  Nothing mailflow reads is in
such a body (text is read from text parts only, and the raw bytes stay the record
of the message and what a committee copy attaches), so the parser gets a sketch in
which each such body is one short line, and the part's header block carries its
decoded size under :data:`ELIDED`, a header name of this process that mail cannot
forge.

The parts are found as the email package finds them: by the boundary each
multipart's Content-Type declares, so a boundary-like line inside a text part cannot
end it early, and no text is ever cut.
"""

from __future__ import annotations

import re
import secrets
from email.message import Message
from email.parser import BytesHeaderParser

LARGE = 256 * 1024   # a message or a part body above this size is worth a sketch
MAX_DEPTH = 20       # nested multiparts and attached messages followed this deep
ELIDED = f"X-Mailflow-Elided-{secrets.token_hex(6)}"
HEAD_END = re.compile(rb"\r?\n\r?\n")
STAND_IN = b"AA==\r\n"

Cut = tuple[int, int, int, int]  # header block end, body start, body end, decoded size


def sketch(raw: bytes) -> bytes:
    """``raw``, or (if large) its sketch."""
    if len(raw) <= LARGE:
        return raw
    return assemble(raw, cuts(raw))


def cuts(raw: bytes) -> list[Cut]:
    """Where the large base64 bodies of non-text parts are in ``raw``."""
    found: list[Cut] = []
    _walk(raw, 0, len(raw), found, 0)
    return found


def assemble(raw: bytes, cuts: list[Cut]) -> bytes:
    """The sketch of ``raw``: each of ``cuts`` one short line."""
    if not cuts:
        return raw
    out, pos = [], 0
    for head_end, body_start, body_end, size in cuts:
        out += [raw[pos:head_end], f"\r\n{ELIDED}: {size}".encode(),
                raw[head_end:body_start], STAND_IN]
        pos = body_end
    out.append(raw[pos:])
    return b"".join(out)


def elided_size(part: Message) -> int | None:
    """The decoded size of a part whose body the sketch cut, else None."""
    value = part.get(ELIDED)
    return int(value) if value is not None else None


def _walk(raw: bytes, start: int, end: int, cuts: list[Cut], depth: int) -> None:
    """The entity (header block and body) in raw[start:end]."""
    head = HEAD_END.search(raw, start, end)
    if head is None or depth > MAX_DEPTH:
        return
    headers = BytesHeaderParser().parsebytes(raw[start:head.end()])
    ctype, body = headers.get_content_type(), head.end()
    if ctype.startswith("multipart/"):
        boundary = headers.get_boundary()
        if boundary:
            for part_start, part_end in _parts(raw, body, end, boundary):
                _walk(raw, part_start, part_end, cuts, depth + 1)
    elif ctype == "message/rfc822":
        _walk(raw, body, end, cuts, depth + 1)
    elif (not ctype.startswith("text/") and end - body > LARGE
          and str(headers.get("Content-Transfer-Encoding", "")).strip().lower() == "base64"):
        cuts.append((head.start(), body, end, _decoded_size(raw, body, end)))


def _parts(raw: bytes, start: int, end: int, boundary: str) -> list[tuple[int, int]]:
    """(start, end) of each part between the boundary's delimiter lines (RFC 2046 5.1.1:
    the CRLF before a delimiter belongs to the delimiter)."""
    delimiter = re.compile(rb"^--" + re.escape(boundary.encode("ascii", "replace"))
                           + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    parts, part_start = [], None
    for line in delimiter.finditer(raw, start, end):
        if part_start is not None:
            line_break = line.start() - (2 if raw[line.start() - 2:line.start()] == b"\r\n"
                                         else 1)
            parts.append((part_start, max(line_break, part_start)))
        if line.group(1):  # the close delimiter
            break
        part_start = line.end() + 1
    return parts


def _decoded_size(raw: bytes, start: int, end: int) -> int:
    """What a base64 body decodes to, counted in place (no copy of it)."""
    chars = (end - start) - sum(raw.count(c, start, end) for c in (b"\r", b"\n", b" ", b"\t"))
    return max(chars * 3 // 4 - raw.count(b"=", start, end), 0)
