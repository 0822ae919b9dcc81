"""What the trusted MTA says about a message: its spam filters' verdicts and its
Authentication-Results (SPF, DKIM, DMARC).

mailflow runs no spam filter of its own.  Behind the MTA named by
``security.trusted_authserv_id`` it reads that MTA's findings, per ``rules/spam.toml``:

- SpamAssassin: ``X-Spam-Flag: YES``; ``X-Spam-Status`` by its ``score=``;
- rspamd: ``X-Spam: yes``; ``X-Spamd-Result`` by its ``[score / required]``;
- the topmost ``Authentication-Results`` header carrying the trusted authserv-id:
  its ``spf`` and ``dmarc`` results.

Without a trusted MTA, none of these is read: anyone can write such headers.  With
one, the MTA must remove the ones that arrive from outside before its own filters
add theirs (README, "Spam and bounces").  Should one slip through all the same, the
*worst* verdict of every copy of a header counts, so a forged ``X-Spam-Flag: NO``
cannot talk a message out of being held; a forged ``YES`` only holds the forger's
own mail.

:func:`read` is what the pipeline calls; :func:`trusted_results` is the reading of
Authentication-Results that member authentication can share.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from mailflow.mail.decode import header_text

# RFC 8601 property values are tokens or quoted strings; comments are dropped first.
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_RESINFO = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(?:/\d+)?\s*=\s*([A-Za-z0-9_\-]+)(.*)$", re.S)
_PROPERTY = re.compile(r"([A-Za-z0-9_\-]+)\.([A-Za-z0-9_.\-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)")
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_SA_SCORE = re.compile(rf"\b(?:score|hits)\s*=\s*{_NUMBER}", re.I)
_RSPAMD_SCORE = re.compile(rf"\[\s*{_NUMBER}\s*/\s*{_NUMBER}\s*\]")


@dataclass(frozen=True)
class Result:
    """One method's result in an Authentication-Results header: ``dmarc=fail``, with its
    properties by ``ptype.property`` (``header.from``, ``smtp.mailfrom`` ...)."""

    method: str
    result: str
    props: Mapping[str, str] = field(default_factory=dict)


def _strip_comments(value: str) -> str:
    while True:  # comments nest
        stripped = _COMMENT.sub(" ", value)
        if stripped == value:
            return value
        value = stripped


def parse_authentication_results(value: str) -> tuple[str, list[Result]]:
    """(authserv-id, results) of one Authentication-Results value; ("", []) if it has no
    authserv-id.  Unreadable result clauses are skipped, never guessed at."""
    parts = [p.strip() for p in _strip_comments(value).split(";")]
    head = parts[0].split()
    if not head:
        return "", []
    results = []
    for clause in parts[1:]:
        match = _RESINFO.match(clause)
        if not match:
            continue
        method, result, rest = match.groups()
        props = {f"{ptype.lower()}.{prop.lower()}": val.strip('"')
                 for ptype, prop, val in _PROPERTY.findall(rest)}
        results.append(Result(method.lower(), result.lower(), props))
    return head[0].lower(), results


def trusted_results(msg: Message, authserv_id: str) -> list[Result] | None:
    """The results of the topmost Authentication-Results header stamped by the trusted
    MTA, or None (no trusted MTA configured, or no header of its).  Anything below the
    topmost was there before the mail reached that MTA, so a sender may have written it."""
    trusted = authserv_id.strip().lower()
    if not trusted:
        return None
    for raw in msg.get_all("Authentication-Results") or []:
        authserv, results = parse_authentication_results(header_text(raw))
        if authserv == trusted:
            return results
    return None


def _domain(value: str) -> str:
    return value.rpartition("@")[2].strip().strip("<>").lower()


def _values(msg: Message, name: str) -> list[str]:
    return [header_text(v) for v in msg.get_all(name) or []]


@dataclass(frozen=True)
class Verdict:
    """What the trusted MTA said.  ``trusted``: there is a trusted MTA to listen to;
    ``reasons``: why the message is suspected spam (none: it is not);
    ``sender_verified``: SPF passed for the envelope sender's domain, or DMARC for the
    From domain, so an answer to the sender reaches whoever really wrote."""

    trusted: bool
    reasons: tuple[str, ...] = ()
    sender_verified: bool = False

    @property
    def spam(self) -> bool:
        return bool(self.reasons)


def _flagged(msg: Message, name: str) -> list[str]:
    return [f"{name}: {v}" for v in _values(msg, name) if v.split()[:1]
            and v.split()[0].lower().rstrip(",") in ("yes", "true")]


def _scored(msg: Message, name: str, pattern: re.Pattern[str], threshold: float) -> list[str]:
    reasons = []
    for value in _values(msg, name):
        match = pattern.search(value)
        if match and float(match.group(1)) >= threshold:
            reasons.append(f"{name} score {match.group(1)} (holds from {threshold:g})")
    return reasons


def _filter_reasons(msg: Message, rules: Mapping[str, Any]) -> list[str]:
    """Every copy of every counted header, the worst first: one is enough to hold."""
    reasons: list[str] = []
    filters = (("spamassassin", "X-Spam-Flag", "X-Spam-Status", _SA_SCORE),
               ("rspamd", "X-Spam", "X-Spamd-Result", _RSPAMD_SCORE))
    for table, flag, scored, pattern in filters:
        spec = rules.get(table, {})
        counted = {h.lower() for h in spec.get("headers", [])}
        if flag.lower() in counted:
            reasons += _flagged(msg, flag)
        if scored.lower() in counted:
            reasons += _scored(msg, scored, pattern, float(spec.get("score", 5.0)))
    return reasons


def _auth_reasons(results: list[Result], rules: Mapping[str, Any]) -> list[str]:
    spec = rules.get("authentication", {})
    held = {m: {r.lower() for r in spec.get(m, [])} for m in ("spf", "dmarc")}
    return [f"{r.method}={r.result} (trusted Authentication-Results)" for r in results
            if r.result in held.get(r.method, set())]


def _verified(results: list[Result], envelope_from: str | None, from_addr: str | None) -> bool:
    for r in results:
        if r.result != "pass":
            continue
        if r.method == "spf" and envelope_from and _domain(
                r.props.get("smtp.mailfrom", "")) == _domain(envelope_from):
            return True
        if r.method == "dmarc" and from_addr and _domain(
                r.props.get("header.from", "")) == _domain(from_addr):
            return True
    return False


def read(msg: Message, *, authserv_id: str, rules: Mapping[str, Any],
         envelope_from: str | None, from_addr: str | None) -> Verdict:
    """The trusted MTA's verdict on ``msg``; ``rules``: the table of ``rules/spam.toml``."""
    if not authserv_id.strip():
        return Verdict(trusted=False)
    results = trusted_results(msg, authserv_id) or []
    reasons = _filter_reasons(msg, rules) + _auth_reasons(results, rules)
    return Verdict(True, tuple(dict.fromkeys(reasons)),
                   _verified(results, envelope_from, from_addr))
