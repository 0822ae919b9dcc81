"""Finding a forwarded message inside a mail, as the world's mail clients forward.

Attached, the forwarded mail is a part of its own: ``message/rfc822`` (sometimes, against
RFC 2046, base64- or quoted-printable-encoded), or any part named ``*.eml`` whatever its
content type (Outlook on the web, phones, "save as" and attach).

Inline, it follows the forwarder's note after a marker line and a block of header
lines: Gmail's ``---------- Forwarded message ---------``, Apple Mail's ``Begin
forwarded message:`` (a blank line before the headers), Thunderbird's ``--------
Forwarded Message --------`` (tab-separated headers), Outlook's ``-----Original
Message-----`` or a bare ``From:``/``Sent:`` block (what its HTML forward becomes as
text), in the languages listed below.

:mod:`mailflow.mail.parse` turns what is found here into ``Forwarded`` records.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from email.message import Message
from email.parser import BytesParser
from email.policy import Policy

_MARKER_WORDS = (r"Forwarded message|Weitergeleitete Nachricht|Message transf[ée]r[ée]|"
                 r"Mensaje reenviado|Messaggio inoltrato|Doorgestuurd bericht|"
                 r"Original Message|Urspr[üu]ngliche Nachricht|Message d'origine")
MARKER = re.compile(
    rf"^\s*(-{{3,}}\s*(?:{_MARKER_WORDS})\s*-{{3,}}|"
    r"Begin forwarded message\s*:|Anfang der weitergeleiteten Nachricht\s*:|"
    r"D[ée]but du message r[ée]exp[ée]di[ée]\s*:|Inicio del mensaje reenviado\s*:)\s*$",
    re.IGNORECASE,
)
# A subject that says "forwarded", in the prefixes clients use (FW, Fwd, WG, TR, RV, ...).
FORWARD_SUBJECT = re.compile(r"^\s*(?:re:\s*)*(?:fwd?|wg|tr|rv|enc|vs|doorst)\s*:", re.I)
# Header names in forwarded blocks, in the languages above, to the English name.
FIELDS = {
    "from": "from", "von": "from", "de": "from", "da": "from", "van": "from",
    "subject": "subject", "betreff": "subject", "objet": "subject", "oggetto": "subject",
    "asunto": "subject", "onderwerp": "subject",
    "date": "date", "sent": "date", "datum": "date", "gesendet": "date", "envoyé": "date",
    "fecha": "date", "enviado": "date", "data": "date", "inviato": "date", "verzonden": "date",
    "to": "to", "an": "to", "à": "to", "a": "to", "para": "to", "aan": "to",
    "cc": "cc", "kopie": "cc",
}
_MAILTO = re.compile(r"\[mailto:([^\]\s]+)\]", re.IGNORECASE)


def attached_message(part: Message, policy: Policy) -> Message | None:
    """The message a part carries, if it is an attached mail."""
    filename = (part.get_filename() or "").strip().lower()
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if not (isinstance(inner, list) and inner and isinstance(inner[0], Message)):
            return None
        cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        if cte in ("base64", "quoted-printable"):
            # Not allowed by RFC 2046, sent all the same: the parser took the encoded
            # text for a message without headers.
            return _parse(_decode(str(inner[0].get_payload()), cte), policy)
        return inner[0]
    if filename.endswith(".eml") and not part.is_multipart():
        data = part.get_payload(decode=True)
        return _parse(data, policy) if isinstance(data, bytes) and data.strip() else None
    return None


def _decode(text: str, cte: str) -> bytes:
    data = text.encode("ascii", "replace")
    if cte == "quoted-printable":
        return quopri.decodestring(data)
    try:
        return base64.b64decode(data)
    except (binascii.Error, ValueError):
        return b""


def _parse(data: bytes, policy: Policy) -> Message | None:
    if not data.strip():
        return None
    inner = BytesParser(policy=policy).parsebytes(data)
    return inner if inner.keys() else None  # no header at all: not a mail


def _header_block(lines: list[str], start: int) -> tuple[dict[str, str], int]:
    """The header lines from ``start`` (blank lines before them skipped): their fields
    by English name, and the index of the first line after them."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    fields: dict[str, str] = {}
    while i < len(lines) and lines[i].strip():
        key, sep, value = lines[i].partition(":")
        name = FIELDS.get(key.strip().strip("*").lower())
        if not sep or name is None:
            break
        fields.setdefault(name, _MAILTO.sub(r"<\1>", value.strip()))
        i += 1
    return fields, i


def inline_block(text: str, subject: str) -> tuple[dict[str, str], str] | None:
    """(header fields, forwarded text) of an inline forward in ``text``, or None.  A bare
    ``From:``/``Sent:`` block counts only in a mail whose subject says it is a forward:
    in a reply, the same block introduces the quoted original."""
    lines = text.splitlines()
    forward_subject = bool(FORWARD_SUBJECT.match(subject))
    for i, line in enumerate(lines):
        if MARKER.match(line):
            fields, end = _header_block(lines, i + 1)
        elif forward_subject and line.strip().lower().startswith(("from:", "von:", "de:")):
            fields, end = _header_block(lines, i)
            if "date" not in fields:
                continue
        else:
            continue
        if "from" in fields:
            return fields, "\n".join(lines[end:]).strip()
    return None
