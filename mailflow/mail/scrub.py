"""Keeping every signed token with the one it was given to.

A ``committee+<token>@`` address proves a member; a ``conduct+<token>@`` address lets
its holder write into a case.  Members' mail carries them (in To, in a quoted
header, in a signature), so whatever mailflow passes on to someone else, the committee's
copies of a member's mail, their attached original, search results, exports, has
every such address rewritten to the bare ``committee@`` / ``conduct@``; a #confirm
code quoted from the chair's draft mail is left out of what the others get.

An attached file that is not text and still holds a token address (a mail saved
as an attachment of another type, say) cannot be rewritten: it is replaced by a note
saying so.  Compressed or encrypted attachments are passed on as they are: what is in
them cannot be read without opening them, and mailflow does not open them.
"""

from __future__ import annotations

import binascii
import re
from email.header import Header
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

from mailflow.mail import sketch
from mailflow.mail.decode import header_text

TOKEN_ADDRESS = re.compile(r"\b(conduct|committee)\+[A-Za-z0-9.\-=]+@", re.IGNORECASE)
TOKEN_BYTES = re.compile(rb"(conduct|committee)\+[A-Za-z0-9.\-=]+@", re.IGNORECASE)
TOKEN_MAX = 512  # longer than any token address: the overlap kept between chunks
# The code of a #confirm line (mailed to the chair only) in a reply quoting that mail.
CONFIRM_CODE = re.compile(r"(#confirm[ \t]+\d+)[ \t]+[a-z0-9]{6,}", re.IGNORECASE)
REMOVED = ("[an attachment was removed here: it carried a committee reply address, which "
           "belongs to the member it was sent to]\n")


def scrub_text(text: str) -> str:
    """``text`` with every token address made the bare address."""
    if "+" not in text:  # every token address has one; most text has none
        return text
    return TOKEN_ADDRESS.sub(r"\1@", text)


def scrub_relayed(text: str) -> str:
    """Text written by one member, for the others: token addresses made bare, and the
    codes of #confirm lines (quoted from the chair's draft mail) left out."""
    return CONFIRM_CODE.sub(r"\1 <code>", scrub_text(text))


def has_token(text: str) -> bool:
    return TOKEN_ADDRESS.search(text) is not None


def _scrub_headers(part: Message) -> bool:
    changed = False
    for name, value in list(part.items()):
        text = header_text(value)
        if not has_token(text) and not TOKEN_BYTES.search(str(value).encode("utf-8",
                                                                           "surrogateescape")):
            continue
        clean = scrub_text(text)
        new = clean if clean.isascii() else Header(clean, "utf-8", header_name=name).encode()
        part.replace_header(name, new)
        changed = True
    return changed


def _scrub_leaf(part: Message) -> bool:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    if part.get_content_maintype() == "text":
        charset = part.get_content_charset() or "utf-8"
        try:
            text = data.decode(charset, "replace")
        except LookupError:
            text = data.decode("utf-8", "replace")
        clean = scrub_relayed(text)
        if clean == text:
            return False
        part.set_payload(clean.encode("utf-8"))
        del part["Content-Transfer-Encoding"]
        part.set_charset("utf-8")  # encodes the payload and sets the transfer encoding
    elif not TOKEN_BYTES.search(data):
        return False
    else:
        for name in ("Content-Type", "Content-Transfer-Encoding", "Content-Disposition"):
            del part[name]
        part["Content-Type"] = "text/plain; charset=utf-8"
        part.set_payload(REMOVED)
    return True


def scrub_message(raw: bytes) -> bytes:
    """The raw mail with every token address rewritten (and #confirm codes left out), in
    every header and every part, attached messages included; the bytes unchanged if
    there was none.

    A large message (a video as evidence) is first looked at as its sketch, with its
    large bodies searched a chunk at a time: parsed whole, it would take about nine
    times its size, and most such mail (a report) carries no token at all.  One that
    does is rewritten whole."""
    if len(raw) > sketch.LARGE and not _large_needs_scrub(raw):
        return raw
    msg = BytesParser(policy=compat32).parsebytes(raw)
    return msg.as_bytes() if _scrub(msg) else raw


def _scrub(msg: Message) -> bool:
    """Rewrite ``msg`` in place; whether anything changed."""
    changed = False
    for part in msg.walk():
        changed |= _scrub_headers(part)
        if not part.is_multipart() and part.get_content_type() != "message/rfc822":
            changed |= _scrub_leaf(part)
    return changed


def _large_needs_scrub(raw: bytes) -> bool:
    cuts = sketch.cuts(raw)
    if _scrub(BytesParser(policy=compat32).parsebytes(sketch.assemble(raw, cuts))):
        return True
    return any(_base64_has_token(raw, start, end) for _, start, end, _ in cuts)


CHUNK = 1024 * 1024
WHITESPACE = b" \t\r\n"


def _base64_has_token(raw: bytes, start: int, end: int) -> bool:
    """Whether the base64 body raw[start:end] decodes to bytes holding a token address,
    decoded a chunk at a time (a token split between two chunks is found too)."""
    view, pending, tail = memoryview(raw), b"", b""
    for at in range(start, end, CHUNK):
        pending += view[at:min(at + CHUNK, end)].tobytes().translate(None, WHITESPACE)
        usable = len(pending) - len(pending) % 4
        try:
            data = tail + binascii.a2b_base64(pending[:usable])
        except binascii.Error:  # not base64 after all: judged on its bytes as they are
            data = tail + pending[:usable]
        pending = pending[usable:]
        if TOKEN_BYTES.search(data):
            return True
        tail = data[-TOKEN_MAX:]
    return False
