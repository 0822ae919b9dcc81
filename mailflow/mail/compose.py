"""Composing outgoing mail safely: every header value checked for line breaks, the
message written as bytes."""

from __future__ import annotations

import quopri
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from email.header import Header, decode_header
from email.utils import format_datetime, formataddr, getaddresses

from mailflow import timestamps
from mailflow.config import Config

# Header values may carry no line breaks, literal or encoded (RFC 2047 can hide one),
# nor any other character Python's str.splitlines() breaks lines at.
LINE_BREAKS = ("\r", "\n", "\x00", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d",
               "\x1e", "\x85")
URL_ENCODED_BREAKS = ("%0a", "%0d")
# Any of them, in one pass: checked for every header of every message composed.
_BREAK = re.compile("|".join(map(re.escape, LINE_BREAKS + URL_ENCODED_BREAKS)), re.IGNORECASE)
ADDRESS_HEADERS = {"From", "To", "Cc", "Reply-To"}


class HeaderInjection(ValueError):
    pass


def _decoded_words(value: str) -> str:
    """The text of any RFC 2047 encoded words, where a line break can hide (=0A, base64)."""
    try:
        return "".join(chunk.decode(charset or "ascii", "replace") if isinstance(chunk, bytes)
                       else chunk for chunk, charset in decode_header(value))
    except Exception:  # undecodable: judged on its literal text alone
        return ""


def check_header(name: str, value: str) -> str:
    texts = [value, _decoded_words(value)] if "=?" in value else [value]
    for text in texts:
        if _BREAK.search(text):
            raise HeaderInjection(f"refused: a line break in the {name} header ({value[:60]!r})")
    return value


def header_safe(value: str) -> str:
    """Text someone else wrote (a subject, a display name), made fit for a header of an
    automatic mail: whatever :func:`check_header` would refuse is turned into spaces or
    taken out, so that odd input degrades the header instead of stopping the mail."""
    try:
        return check_header("Subject", value)
    except HeaderInjection:
        pass
    # No encoded word left to hide a line break.
    text = _BREAK.sub(" ", value.replace("=?", "= ?"))
    return " ".join(text.split())


def crlf(data: bytes) -> bytes:
    """``data`` with every line ending CRLF, as SMTP and MIME want it."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def new_message_id(cfg: Config) -> str:
    return f"<{uuid.uuid4().hex}@{cfg.committee.domain}>"


@dataclass
class Outgoing:
    """A composed message: its headers as given, its text, and its bytes on the wire.

    ``entity_at`` is where the body's MIME entity (its Content-* headers, then the
    content) begins in ``raw``: what encryption seals.  An encrypted message keeps
    the clear headers and text here, for the archive; only ``raw`` is sealed."""

    headers: list[tuple[str, str]]
    text: str
    raw: bytes
    # A copy that attaches an original from the spool holds its own bytes in raw, names
    # the original (its spool id) and ends with tail: delivery streams the three.
    attach_spool_id: int | None = None
    tail: bytes = b""
    entity_at: int = 0

    def __getitem__(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def as_bytes(self) -> bytes:
        return self.raw

    @property
    def entity(self) -> bytes:
        return self.raw[self.entity_at:]

    def inlined(self, original: bytes) -> Outgoing:
        """This copy carrying ``original`` itself instead of the spool's bytes: an
        original that had to be rewritten (:mod:`mailflow.mail.scrub`) or decrypted, or
        a copy to be sealed whole.  A copy that attaches nothing is returned as it is."""
        if self.attach_spool_id is None:
            return self
        return replace(self, raw=self.raw + crlf(original) + self.tail, attach_spool_id=None,
                       tail=b"")


def _encode_header(name: str, value: str) -> str:
    if name in ADDRESS_HEADERS:
        # formataddr encodes non-ASCII display names as RFC 2047 words.
        return value if value.isascii() else ", ".join(
            formataddr(pair) for pair in getaddresses([value]))
    if value.isascii() and len(name) + len(value) < 900:
        return value  # within SMTP's line limit as it is
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name=name).encode(linesep="\r\n")


def encode_headers(fields: Iterable[tuple[str, str]]) -> bytes:
    """Header fields on the wire, each value checked for line breaks first."""
    return "".join(f"{name}: {_encode_header(name, check_header(name, value))}\r\n"
                   for name, value in fields).encode("ascii")


def _text_part(body: str) -> bytes:
    text = body.replace("\r\n", "\n")
    if text.isascii() and all(len(line) <= 998 for line in text.split("\n")):
        cte, data = "7bit", text.encode()
    else:
        cte, data = "quoted-printable", quopri.encodestring(text.encode("utf-8"))
    return (b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n"
            + crlf(data))


def compose(
    cfg: Config,
    *,
    from_: tuple[str, str],
    to: Iterable[str],
    subject: str,
    body: str,
    cc: Iterable[str] = (),
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: Iterable[str] = (),
    headers: dict[str, str] | None = None,
    attach_spool_id: int | None = None,
) -> Outgoing:
    """A message ready to queue.  Every header value is checked for line breaks.

    Written as bytes directly: the email package's header registry costs more than
    the rest of processing a report put together.  ``attach_spool_id``: the spool
    row of an original to attach (as message/rfc822), by reference."""
    # Checked before formataddr, which would hide a line break inside an encoded word.
    fields: list[tuple[str, str]] = [
        ("From", formataddr((check_header("From", from_[0]), from_[1]))),
        ("To", ", ".join(to)),
        ("Subject", subject),
        ("Date", format_datetime(timestamps.now())),
        ("Message-ID", new_message_id(cfg)),
    ]
    cc = list(cc)
    if cc:
        fields.append(("Cc", ", ".join(cc)))
    if reply_to:
        fields.append(("Reply-To", reply_to))
    if in_reply_to:
        fields.append(("In-Reply-To", f"<{in_reply_to}>"))
    refs = [r for r in references if r]
    if refs:
        fields.append(("References", " ".join(f"<{r}>" for r in refs)))
    fields.extend((headers or {}).items())
    fields.append(("MIME-Version", "1.0"))
    head = encode_headers(fields)
    if attach_spool_id is None:
        return Outgoing(fields, body, head + _text_part(body), entity_at=len(head))
    boundary = f"=_mailflow_{uuid.uuid4().hex}".encode()
    raw = (head + b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n"
           + b"--" + boundary + b"\r\n" + _text_part(body) + b"\r\n"
           + b"--" + boundary + b"\r\nContent-Type: message/rfc822\r\n"
           + b"Content-Disposition: attachment; filename=\"original.eml\"\r\n"
           + b"Content-Transfer-Encoding: 8bit\r\n\r\n")
    return Outgoing(fields, body, raw, attach_spool_id, b"\r\n--" + boundary + b"--\r\n",
                    len(head))
