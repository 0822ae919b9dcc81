"""Decoding what a message carries: header text, addresses, a part's text.

Two views of the sender exist on purpose: the parser's ``from_addr`` is lenient (good
enough to thread and to acknowledge), :func:`strict_from` is what identity checks use
and refuses anything ambiguous: several From headers, several addresses, an address
hidden in the display name, encoded words in the address.

The small readers that modules beyond the parser need (the verdicts, scrubbing,
bounces, the case's commands): kept apart from :mod:`mailflow.mail.parse`, whose HTML
renderer and reply splitter are slow to import, so that a command that reads a case
does not load them.
"""

from __future__ import annotations

import re
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses

ADDR_SPEC = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+$"
)


def clean(text: str) -> str:
    """Text safe to store: no lone surrogates from 8-bit bytes, no NULs."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.replace("\x00", "")


def header_text(value: object) -> str:
    """A header decoded for display: encoded words decoded, folding removed."""
    if value is None:
        return ""
    raw = clean(str(value))  # raw 8-bit UTF-8 arrives surrogate-escaped
    try:
        parts = []
        for chunk, charset in decode_header(raw):
            if isinstance(chunk, str):
                parts.append(chunk)
            elif charset is None:  # unencoded text beside encoded words
                parts.append(chunk.decode("raw-unicode-escape", "replace"))
            else:
                parts.append(decoded(chunk, charset))
        text = "".join(parts)
    except Exception:  # a broken encoded word: keep the raw text
        text = raw
    return re.sub(r"[\r\n]+[ \t]*", " ", clean(text)).strip()


def decoded(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset, "replace")
    except LookupError:  # unknown charset
        return data.decode("utf-8", "replace")


# A value that is one plain address, bare or after a display name of plain words:
# what most mail carries.  Read by this expression as email.utils.getaddresses reads it
# (a test holds the two to the same answers); anything else goes to getaddresses, which
# costs 30 us a value, and a message has a dozen.
_PLAIN_ADDRESS = re.compile(
    r"[ \t]*(?:(?P<name>[A-Za-z0-9]+(?: [A-Za-z0-9]+)*)[ \t]*<(?P<inner>{a})>|(?P<bare>{a}))[ \t]*"
    .format(a=r"[A-Za-z0-9+_-]+(?:\.[A-Za-z0-9+_-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"))


def addresses(values: list[str]) -> list[tuple[str, str]]:
    """(name, address) pairs from header values, keeping only well-formed addresses."""
    result = []
    for value in values:
        text = clean(str(value))
        plain = _PLAIN_ADDRESS.fullmatch(text)
        pairs = ([(plain["name"] or "", plain["inner"] or plain["bare"])] if plain
                 else getaddresses([text]))
        for name, addr in pairs:
            addr = addr.strip()
            if ADDR_SPEC.match(addr):
                result.append((header_text(name), addr.lower()))
    return result


def strict_from(msg: Message) -> tuple[str | None, str]:
    """The single, unambiguous From address, or (None, why not)."""
    values = msg.get_all("From") or []
    if len(values) != 1:
        return None, "no From header" if not values else "several From headers"
    raw = re.sub(r"\r?\n[ \t]+", " ", clean(str(values[0])))
    if raw.count("@") != 1:
        return None, "From must contain exactly one address and no address in its name"
    if "=?" in raw.split("<")[-1]:
        return None, "encoded words in the From address"
    pairs = getaddresses([raw])
    if len(pairs) != 1:
        return None, "From must contain exactly one address"
    name, addr = pairs[0]
    if "@" in header_text(name):
        return None, "an address hidden in the display name"
    if not ADDR_SPEC.match(addr) or addr.count("@") != 1:
        return None, f"From address {addr!r} is not a plain address"
    try:
        addr.encode("ascii")
    except UnicodeEncodeError:
        return None, "non-ASCII From address"
    return addr.lower(), ""


def part_text(part: Message, defects: list[str]) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception as e:
        defects.append(f"undecodable part: {type(e).__name__}")
        return ""
    if isinstance(payload, str):
        return unix_lines(clean(payload))
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        defects.append(f"unknown charset {charset!r}")
    return unix_lines(clean(decoded(payload, charset)))


def unix_lines(text: str) -> str:
    """Line ends as ``\n``, whatever the sender's (CRLF from SMTP, a lone CR)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
