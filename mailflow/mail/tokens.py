"""Signed tokens carried in plus-addresses: ``conduct+<token>@``, ``committee+<token>@``.

A token is dot-separated fields followed by an HMAC of them, so a forged or guessed
token is refused.  What the fields mean is up to the caller:

- case token (reporter side):   ``2026-0001.<sig>``
- member token (committee side): ``2026-0001.m<who>.<yyyymmdd expiry>.<sig>``
  (``-`` in place of the case id for mail about no case)
- purpose tokens (e.g. mediation consent) add their own field after the case id.

:meth:`Signer.code` makes codes that travel in a mail's text rather than an address:
the ``#confirm <draft> <code>`` line mailed to the chair (see
:mod:`mailflow.responses.draft_commands`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date

TOKEN_CHARS = re.compile(r"^[a-z0-9\-.]+$")
SIG_LEN = 12


def member_tag(address: str) -> str:
    """A short, stable, non-revealing name for a member inside tokens."""
    return "m" + hashlib.sha256(address.lower().encode()).hexdigest()[:8]


@dataclass
class Signer:
    secret: bytes

    def _sig(self, payload: str) -> str:
        mac = hmac.new(self.secret, payload.encode(), hashlib.sha256).digest()
        return base64.b32encode(mac).decode().lower()[:SIG_LEN]

    def sign(self, *fields: str) -> str:
        payload = ".".join(fields)
        return f"{payload}.{self._sig(payload)}"

    def code(self, *fields: str) -> str:
        """A short code only the holder of the key can make for these fields (the
        fields are not in it: who checks it knows them)."""
        return self._sig(".".join(("code", *fields)))

    def unsign(self, token: str) -> list[str] | None:
        """The fields of a well-signed token, else None."""
        token = token.lower()
        if not TOKEN_CHARS.match(token) or "." not in token:
            return None
        payload, _, sig = token.rpartition(".")
        if not hmac.compare_digest(sig, self._sig(payload)):
            return None
        return payload.split(".")

    def case_token(self, case_id: str) -> str:
        return self.sign(case_id)

    def member_token(self, case_id: str | None, member: str, expires: date) -> str:
        return self.sign(case_id or "-", member_tag(member), expires.strftime("%Y%m%d"))


@dataclass
class MemberProof:
    case_id: str | None
    member_tag: str
    expires: date


def read_member_token(fields: list[str]) -> MemberProof | None:
    if len(fields) != 3 or not fields[1].startswith("m"):
        return None
    try:
        expires = date(int(fields[2][:4]), int(fields[2][4:6]), int(fields[2][6:8]))
    except ValueError:
        return None
    return MemberProof(None if fields[0] == "-" else fields[0], fields[1], expires)


@dataclass
class Address:
    """One of our addresses, split: ``base`` is conduct or committee."""

    base: str
    token: str | None


def split_address(address: str, domain: str) -> Address | None:
    """Our address (``base[+token]@domain``), or None for anyone else's."""
    local, at, dom = address.strip().strip("<>").rpartition("@")
    if not at or dom.lower() != domain.lower():
        return None
    base, plus, token = local.partition("+")
    base = base.lower()
    if base not in ("conduct", "committee"):
        return None
    return Address(base, token.lower() if plus else None)
