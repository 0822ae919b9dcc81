"""Proof that a mail comes from the domain in its From: DKIM checked by mailflow itself,
or an ``Authentication-Results`` header written by the trusted MTA.

Alignment is DMARC's relaxed alignment (RFC 7489 3.1.1): the signing domain and the
From domain have the same organizational domain, found with the Public Suffix List
(the ``publicsuffixlist`` package, which ships the list and is released whenever the
list changes).  A public suffix (``co.uk``, ``github.io``) is nobody's organizational
domain, so a signature by one never aligns.

DKIM is verified here, on the raw bytes as they arrived (``dkimpy``), so the proof does
not depend on how the MTA is configured.  A signature counts only if it verifies, its
``d=`` aligns with the From domain, it covers From, and it has no ``l=`` body length
(with one, text can be added after the signed part).

``Authentication-Results`` (RFC 8601) is read only from the MTA named by
``security.trusted_authserv_id``, and only its topmost header: that MTA adds its own on
top, so anything below was already in the mail when it arrived.  The MTA must also
remove incoming headers that claim its authserv-id (see README, "Proof of identity").
The header is read by :func:`mailflow.mail.verdicts.trusted_results`, as for the
MTA's spam verdicts.  In a ``dkim`` result only ``header.d`` counts (a ``header.from``
there is the sender's claim, not what was verified); in a ``dmarc`` result,
``header.from``, which must be the From domain itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from email.message import Message
from functools import cache

from publicsuffixlist import PublicSuffixList

from mailflow.mail.verdicts import trusted_results

# A DNS TXT lookup as dkimpy calls it: (name, timeout=...) -> record or None.
TxtLookup = Callable[..., bytes | None]



@cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str | None:
    """The registrable domain (``mail.example.co.uk`` -> ``example.co.uk``); None for a
    public suffix or something that is no domain."""
    domain = domain.strip().strip(".").lower()
    if not domain or "." not in domain:
        return None
    return _psl().privatesuffix(domain)


def aligned(signing_domain: str, from_domain: str) -> bool:
    """DMARC relaxed alignment of a DKIM ``d=`` (or ``header.d``) with the From domain."""
    signer = signing_domain.strip().lstrip("@").lower()
    if "@" in signer:  # header.i style: the part after the @
        signer = signer.rsplit("@", 1)[1]
    org = organizational_domain(signer)
    return org is not None and org == organizational_domain(from_domain)


def header_proof(msg: Message, authserv_id: str, from_domain: str) -> str | None:
    """"mta-dmarc" or "mta-dkim" when the trusted MTA's header shows an aligned pass."""
    for r in trusted_results(msg, authserv_id) or []:
        if r.result != "pass":
            continue
        if r.method == "dmarc" and r.props.get("header.from", "").lower() == from_domain.lower():
            return "mta-dmarc"
        if r.method == "dkim" and aligned(r.props.get("header.d", ""), from_domain):
            return "mta-dkim"
    return None


def resolver(server: str, timeout: float) -> TxtLookup:
    """A TXT lookup through ``server`` ("host:port"; empty: the system's resolver)."""
    import dkim  # dkimpy and dnspython (40 ms) only where a signature is checked
    import dns.exception
    import dns.resolver

    res = dns.resolver.Resolver(configure=not server)
    if server:
        host, _, port = server.rpartition(":")
        res.nameservers = [host.strip("[]")]
        res.port = int(port)
    res.lifetime = timeout

    def lookup(name: bytes | str, timeout: float = timeout) -> bytes | None:
        qname = name.decode() if isinstance(name, bytes) else name
        try:
            answer = res.resolve(qname, "TXT", raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
            return None
        except dns.exception.Timeout as e:
            raise dkim.DnsTimeoutError(str(e)) from e
        for rrset in answer.response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(next(iter(rrset)).strings)
        return None
    return lookup


_QUIET = logging.getLogger("mailflow.dkim")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def dkim_proof(raw: bytes, from_domain: str, lookup: TxtLookup) -> str | None:
    """"dkim" when a signature of the raw mail verifies and aligns with From, else None."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    if b"dkim-signature:" not in head.lower():
        return None
    import dkim  # after the check above: most mail carries no signature

    checker = dkim.DKIM(raw, logger=_QUIET, minkey=1024)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    for idx in range(count):
        try:
            prep = checker.verify_headerprep(idx)
            if not prep:
                continue
            sig, include, _ = prep
            if b"l" in sig or b"from" not in include:
                continue
            signer = sig[b"d"].decode("ascii", "replace")
            if aligned(signer, from_domain) and checker.verify(idx, dnsfunc=lookup):
                return "dkim"
        except dkim.DKIMException:
            continue  # a broken or unverifiable signature is simply no proof
    return None
