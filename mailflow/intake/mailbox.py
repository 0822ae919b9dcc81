"""What a message taken from a mailbox (IMAP) tells of its envelope: no SMTP session
said who sent it or to whom, so the headers a delivery left must."""

from __future__ import annotations

import logging
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr

from mailflow.intake.spool import Envelope
from mailflow.mail.tokens import split_address

log = logging.getLogger("mailflow.intake")

# Where the envelope recipients of delivered mail show up, most precise first.
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc")


def envelope_from_headers(raw: bytes, domain: str, source: str) -> Envelope:
    """For mail taken from a mailbox, what SMTP would have told us: Return-Path as the
    sender (None if absent), and our own addresses among the delivery and address
    headers as the recipients."""
    try:
        head = BytesHeaderParser().parsebytes(raw)
        return_path = head.get("Return-Path")
        sender = None
        if return_path is not None:
            text = str(return_path).strip()
            sender = "" if text == "<>" else (parseaddr(text)[1] or None)
        rcpts: list[str] = []
        for name in RECIPIENT_HEADERS:
            for _, addr in getaddresses([str(v) for v in head.get_all(name) or []]):
                if split_address(addr, domain) and addr.lower() not in map(str.lower, rcpts):
                    rcpts.append(addr)
    except Exception as e:
        # A message we cannot read the headers of is still a report: take it, and
        # let threading fall back to its own parse.
        log.warning("unreadable envelope headers (%s); taking the message without them", e)
        return Envelope(source, None, [])
    return Envelope(source, sender, rcpts)
