"""Every text of a mail a person reads: the headers a mail client shows, and every text
part, plain and HTML alike, attached messages included.  Recusal reads all of it (a
``multipart/alternative`` whose HTML names someone its plain text does not, names
them all the same); of a reply, only what its writer wrote, wherever it stands
(:func:`mailflow.mail.quotes.split` on each part).
"""

from __future__ import annotations

from email.message import Message

from mailflow.mail import quotes
from mailflow.mail.decode import addresses, header_text, part_text
from mailflow.mail.htmltext import html_to_text

# Headers a mail client shows as text; the address headers count by their names.
SHOWN = ("Subject", "Comments", "Keywords")
NAMED = ("From", "To", "Cc", "Reply-To", "Sender")


def shown_headers(msg: Message) -> list[str]:
    """The headers of ``msg`` a reader sees as text: subject, comments, keywords, and
    the display names in its address headers."""
    out = [header_text(v) for name in SHOWN for v in msg.get_all(name) or []]
    for name in NAMED:
        out += [n for n, _ in addresses(msg.get_all(name) or []) if n]
    return out


def parts(msg: Message, new_only: bool = False) -> list[str]:
    """Every text/plain and text/html part (HTML as text), in order, with the shown
    headers of each attached message before its text.  ``new_only``: of each part,
    only the writer's new text (top, bottom or between quotes)."""
    found: list[str] = []
    defects: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if part is not msg and ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found += shown_headers(inner[0])
        elif ctype == "text/plain":
            text = part_text(part, defects)
            found.append(quotes.split(text).new_text if new_only else text)
        elif ctype == "text/html":
            html = html_to_text(part_text(part, defects))
            found.append(quotes.split(html.marked).new_text if new_only else html.text)
    return found
