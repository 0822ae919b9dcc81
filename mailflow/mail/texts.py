"""Every text of a mail a person reads: the headers a mail client shows, and every text
part, plain and HTML alike, attached messages included.  Recusal reads all of it (a
``multipart/alternative`` whose HTML names someone its plain text does not, names
them all the same).

For a reply, only what its writer wrote counts: :func:`unquoted` keeps every line
that is not quoted, above the quote, between quoted lines or below it (bottom-posting),
and stops at an Outlook-style quoted original, which carries no ``>``.
"""

from __future__ import annotations

import re
from email.message import Message

from mailflow.mail.parse import addresses, header_text, html_to_text, part_text

# Headers a mail client shows as text; the address headers count by their names.
SHOWN = ("Subject", "Comments", "Keywords")
NAMED = ("From", "To", "Cc", "Reply-To", "Sender")
ATTRIBUTION = re.compile(r"^\s*(On |Le |Am |El |Il |Op ).{0,200}$", re.IGNORECASE)
WROTE = re.compile(r"(wrote|a écrit|schrieb|escribió|ha scritto|schreef)\s*:?\s*$",
                   re.IGNORECASE)
ORIGINAL = re.compile(r"^\s*(-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message "
                      r"d'origine)\s*-{2,}|_{10,})\s*$", re.IGNORECASE)


def shown_headers(msg: Message) -> list[str]:
    """The headers of ``msg`` a reader sees as text: subject, comments, keywords, and
    the display names in its address headers."""
    out = [header_text(v) for name in SHOWN for v in msg.get_all(name) or []]
    for name in NAMED:
        out += [n for n, _ in addresses(msg.get_all(name) or []) if n]
    return out


def parts(msg: Message) -> list[str]:
    """Every text/plain and text/html part (HTML as text), in order, with the shown
    headers of each attached message before its text."""
    found: list[str] = []
    defects: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if part is not msg and ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found += shown_headers(inner[0])
        elif ctype == "text/plain":
            found.append(part_text(part, defects))
        elif ctype == "text/html":
            found.append(html_to_text(part_text(part, defects)))
    return found


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _attribution(lines: list[str], i: int) -> bool:
    """Whether line ``i`` is (part of) "On ..., X wrote:" just above quoted lines;
    mail clients wrap it over two lines."""
    line, at = lines[i], [*lines[i + 1:i + 3], "", ""]
    if ATTRIBUTION.match(line):
        return bool((WROTE.search(line) and _quoted(at[0]))
                    or (WROTE.search(at[0]) and _quoted(at[1])))
    return bool(WROTE.search(line) and i and ATTRIBUTION.match(lines[i - 1])
                and _quoted(at[0]))


def unquoted(text: str) -> str:
    """The lines of a reply its writer wrote, wherever they stand."""
    lines = text.splitlines()
    kept: list[str] = []
    for i, line in enumerate(lines):
        if ORIGINAL.match(line):
            break  # a quoted original without ">": everything below is quoted
        if not _quoted(line) and not _attribution(lines, i):
            kept.append(line)
    return "\n".join(kept).strip()
