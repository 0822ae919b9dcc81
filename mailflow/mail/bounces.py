"""Recognising bounces by what they are, never by who they claim to be from.

A bounce is, by structure, a delivery status notification of RFC 3464
(``multipart/report; report-type=delivery-status``, whose ``message/delivery-status``
part names each recipient with its ``Action`` and ``Status``), whoever sent it.

The non-standard shapes older or odder MTAs still send (qmail's QSBMF, Exim's and
Sendmail's text, Exchange and Lotus NDRs, Yahoo's, Postfix's before 2.x ...) are
recognised by flufl.bounce, Mailman's library of bounce detectors.  Its detectors read
text, and some read it generously (any line with ``, someone@example,`` is a bounce to
one of them), so they are asked only about mail that can be a bounce at all: mail from
the null sender, which RFC 5321 requires of every non-delivery notice, or mail sent to
one of mailflow's own return paths.  Nothing here looks at From or its local part.

What is recognised here is matched to mailflow's own mail by the pipeline
(:mod:`mailflow.pipeline.handlers.screen`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.iterators import typed_subpart_iterator
from email.message import Message
from email.parser import HeaderParser

from mailflow.mail import msgids
from mailflow.mail.decode import header_text

log = logging.getLogger("mailflow.bounces")
_RETURNED_ID = re.compile(r"^\s*Message-ID:\s*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)
DETAIL_CHARS = 300


@dataclass(frozen=True)
class Failure:
    """One recipient of a notification: ``action`` is RFC 3464's (failed, delayed,
    delivered, relayed, expanded)."""

    recipient: str
    action: str
    status: str = ""
    diagnostic: str = ""

    def describe(self) -> str:
        why = " ".join(p for p in (self.status, self.diagnostic) if p)
        return f"{self.recipient}: {self.action}{' (' + why + ')' if why else ''}"[:DETAIL_CHARS]


@dataclass(frozen=True)
class Bounce:
    """A recognised notification about mail sent earlier."""

    shape: str                       # "RFC 3464" or "non-standard"
    failures: tuple[Failure, ...]
    returned_ids: tuple[str, ...]    # Message-IDs of the mail it is about

    @property
    def failed(self) -> list[str]:
        return [f.recipient for f in self.failures if f.action == "failed"]

    @property
    def delayed(self) -> list[str]:
        return [f.recipient for f in self.failures if f.action == "delayed"]


def _plain(value: object) -> str:
    """Text from a remote MTA, fit to quote in a notice: one line, no control characters."""
    return re.sub(r"[\x00-\x1f\x7f\s]+", " ", header_text(value)).strip()[:DETAIL_CHARS]


def _address(value: object) -> str:
    """``rfc822; someone@example`` (RFC 3464's address-type; address) to the address."""
    return _plain(value).rpartition(";")[2].strip().strip("<>").lower()


def _recipient_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    # Some MTAs send the fields as a single text body: blocks separated by blank lines.
    text = str(payload).replace("\r\n", "\n")
    return [HeaderParser().parsestr(block + "\n") for block in re.split(r"\n\s*\n", text)]


def _dsn_failures(msg: Message) -> list[Failure]:
    failures = []
    for part in typed_subpart_iterator(msg, "message", "delivery-status"):
        for block in _recipient_blocks(part):
            recipient = _address(block.get("Original-Recipient") or "") or _address(
                block.get("Final-Recipient") or "")
            action = _plain(block.get("Action") or "").split(" ")[0].lower()
            if recipient and action:
                failures.append(Failure(recipient, action, _plain(block.get("Status") or ""),
                                        _plain(block.get("Diagnostic-Code") or "")))
    return failures


def _returned_ids(msg: Message) -> tuple[str, ...]:
    """The Message-IDs of the returned mail: its attached copy or headers (RFC 3464,
    RFC 6522), else ``Message-ID:`` lines in the text of a non-standard bounce."""
    found: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822" and isinstance(part.get_payload(), list):
            found += [str(m.get("Message-ID", "")) for m in part.get_payload()
                      if isinstance(m, Message)]
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers", "text/plain"):
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            found += [f"<{i}>" for i in _RETURNED_ID.findall(text)]
    ids = [i[1:-1] for i in (f.strip() for f in found) if i.startswith("<") and i.endswith(">")]
    return tuple(dict.fromkeys(i for i in ids if msgids.usable(i)))


def is_delivery_report(msg: Message) -> bool:
    """RFC 3464 by structure: a multipart/report of type delivery-status."""
    return (msg.get_content_type() == "multipart/report"
            and str(msg.get_param("report-type") or "").lower() == "delivery-status")


def _non_standard(msg: Message) -> list[Failure]:
    # Imported for mail that looks like a bounce: its detectors cost 15 ms of the start
    # of every command that reads mail.
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector tripped on odd input: then it is no bounce it knows
        log.warning("bounce detection failed on a message", exc_info=True)
        return []
    return ([Failure(a.decode("ascii").lower(), "failed") for a in sorted(permanent)]
            + [Failure(a.decode("ascii").lower(), "delayed") for a in sorted(temporary)])


def recognise(msg: Message, *, null_sender: bool, to_return_path: bool) -> Bounce | None:
    """The bounce ``msg`` is, or None.  ``null_sender``: it came from MAIL FROM:<>;
    ``to_return_path``: it was sent to one of mailflow's return paths."""
    if is_delivery_report(msg):
        return Bounce("RFC 3464", tuple(_dsn_failures(msg)), _returned_ids(msg))
    if not (null_sender or to_return_path):
        return None
    failures = _dsn_failures(msg) or _non_standard(msg)
    if not failures:
        return None
    return Bounce("non-standard", tuple(failures), _returned_ids(msg))
