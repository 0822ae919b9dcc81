"""Message-IDs from headers a sender wrote: used only when they are safe to use.

A Message-ID, In-Reply-To or References value goes back out in our own headers (the
acknowledgement's In-Reply-To and References) and into threading queries, so a value
that could not be written back safely is not used at all:

- an id must be one plain ``<left@right>``: printable ASCII, no spaces, no brackets
  inside, at most :data:`MAX_ID` characters, and nothing that
  :func:`~mailflow.mail.compose.check_header` refuses (line breaks, literal, URL-encoded
  as ``%0d%0a`` or hidden in an encoded word);
- a Message-ID header that is not exactly one such id (several headers, junk around
  it, unbalanced brackets) is replaced by an id derived from the raw bytes, so the
  same message always gets the same one;
- In-Reply-To and References keep their usable ids and drop the rest; a value whose
  brackets do not balance is dropped whole (which of its parts is an id is a guess),
  and of a long References chain only the last :data:`MAX_REFERENCES` count.

Nothing here rejects the message: each header that could not be used becomes a
defect on it, and threading falls back to the other keys or a new case.
"""

from __future__ import annotations

import hashlib
import re

from mailflow.mail.compose import HeaderInjection, check_header

MAX_ID = 250                     # characters inside the brackets
MAX_REFERENCES = 100             # the newest ancestors are at the end of the chain
DERIVED_DOMAIN = "derived.mailflow.invalid"
_ID = re.compile(r"^[!-;=?-~]+@[!-;=?-~]+$")  # printable ASCII less space, < and >
_TOKENS = re.compile(r"<[^<>]*>|[<>]")


def usable(msgid: str) -> bool:
    """Whether an id (without its brackets) is safe to thread by and to write back."""
    if not 0 < len(msgid) <= MAX_ID or not _ID.match(msgid):
        return False
    try:
        check_header("Message-ID", f"<{msgid}>")
    except HeaderInjection:
        return False
    return True


def derived(raw: bytes) -> str:
    """The id a message without a usable Message-ID goes by: the same bytes, the same id."""
    return f"derived.{hashlib.sha256(raw).hexdigest()[:32]}@{DERIVED_DOMAIN}"


def message_id(values: list[str], raw: bytes) -> tuple[str, str | None]:
    """(the message's id, a defect or None) from its Message-ID header values."""
    if not values:
        return derived(raw), "no Message-ID"
    if len(values) > 1:
        return derived(raw), "several Message-ID headers: replaced by a derived id"
    match = re.fullmatch(r"\s*<([^<>]*)>\s*", values[0])
    if match and usable(match.group(1)):
        return match.group(1), None
    return derived(raw), "unusable Message-ID: replaced by a derived id"


def referenced(values: list[str], name: str) -> tuple[list[str], str | None]:
    """(the usable ids, a defect or None) from In-Reply-To or References values."""
    ids: list[str] = []
    dropped = 0
    for value in values:
        tokens = _TOKENS.findall(value)
        if any(t in ("<", ">") for t in tokens):
            dropped += 1  # unbalanced: which part is an id would be a guess
            continue
        for token in tokens:
            if usable(token[1:-1]):
                ids.append(token[1:-1])
            else:
                dropped += 1
    ids = list(dict.fromkeys(ids))[-MAX_REFERENCES:]
    return ids, (f"unusable {name} ignored for threading" if dropped else None)
