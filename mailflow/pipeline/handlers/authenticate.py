"""Who sent a member's mail, and the proof of it.

The actor is the roster member named by the strictly parsed From (never Reply-To,
Sender or the display name), and only with proof:

- ``token``: the mail was sent to ``committee+<token>@`` and the token is this
  member's, unexpired, and for this case (or for no case);
- ``pgp``: a good OpenPGP signature over the whole mail by the member's key in the
  committee's keyring, made in the last week, on text naming the case, and not seen
  on any other mail (:func:`pgp_proof`); a bad, unknown or expired one proves nothing;
- ``dkim``: a DKIM signature of the raw mail, verified by mailflow, whose domain
  aligns with the From domain (:mod:`mailflow.mail.domainauth`);
- ``mta-dkim`` / ``mta-dmarc``: an ``Authentication-Results`` header stamped by the
  trusted MTA (``security.trusted_authserv_id``) shows a pass aligned with the From
  domain.  Only the topmost header with that authserv-id counts, and only if that MTA
  removes incoming headers claiming it (docs/mta-authentication.md).

DKIM and DMARC prove the domain, not the person: they are as good as the member's
mail provider is at keeping others from sending with that member's address.

Mail that fails is kept as a *note*: archived, flagged with the reason, never relayed,
and nothing in it applies (``commands`` tells the member whose address it used).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from mailflow import timestamps
from mailflow.mail.decode import strict_from
from mailflow.mail.domainauth import dkim_proof, header_proof
from mailflow.mail.tokens import member_tag, read_member_token

if TYPE_CHECKING:
    from mailflow.pipeline.context import Context

def token_proof(ctx: Context, member: str) -> tuple[str | None, str]:
    if not ctx.token:
        return None, ""
    fields = ctx.svc.signer.unsign(ctx.token)
    proof = read_member_token(fields) if fields else None
    if proof is None:
        return None, "the address it was sent to carries no valid token"
    if proof.member_tag != member_tag(member):
        return None, "the token in the address belongs to another member"
    if proof.expires < timestamps.now().date():
        return None, "the token in the address has expired"
    if proof.case_id is not None and proof.case_id != ctx.case_id:
        return None, "the token in the address belongs to another case"
    return "token", ""


# A signed mail proves its sender for this long after it was signed; and only once.
SIGNATURE_FRESH = timedelta(days=7)
VERDICTS = {"bad": "its OpenPGP signature is bad (the mail was changed after signing, or "
            "the signature is forged)",
            "unknown": "it is signed by a key the committee's keyring does not hold",
            "expired": "it is signed by an expired key",
            "revoked": "it is signed by a revoked key",
            "partial": "its OpenPGP signature covers only part of it"}


def pgp_proof(ctx: Context, member: str) -> tuple[str | None, str]:
    """A good OpenPGP signature over the whole mail by one of ``member``'s keys in the
    committee's keyring: made in the last week, used once, and, on a case, over text
    that names the case (a reply quoting the member's copy does), so that a signed
    mail cannot be sent again, or to another case, by someone else."""
    signature = ctx.opened.signature if ctx.opened else None
    if signature is None or signature.status == "none":
        return None, ""
    if not signature.good:
        return None, VERDICTS.get(signature.status, f"its signature is {signature.status}")
    key = ctx.svc.pgp().committee.get(signature.fingerprint or "")
    if key is None or member not in key.addresses:
        return None, f"it is signed by a key that is not {member}'s"
    if not _first_use(ctx, signature.sig_id or ""):
        return None, "its OpenPGP signature was already used on another mail (a replay)"
    now = timestamps.now()
    if signature.signed_at is None or not (
            timedelta(minutes=-15) <= now - signature.signed_at <= SIGNATURE_FRESH):
        return None, "its OpenPGP signature was not made in the last week"
    if ctx.case_id and ctx.case_id not in ctx.parsed.body_text:
        return None, f"the text it signs does not name case {ctx.case_id}"
    return "pgp", ""


def _first_use(ctx: Context, sig_id: str) -> bool:
    """Record that this mail carries the signature; whether no other mail did before.
    (Every signed member mail is recorded, whatever proved it, so a copy of it proves
    nothing later.)"""
    used = ctx.db.execute("SELECT spool_id FROM pgp_signatures WHERE sig_id = ?",
                          [sig_id]).fetchone()
    if used is None:
        ctx.db.execute("INSERT INTO pgp_signatures (sig_id, spool_id, used_at) VALUES (?, ?, ?)",
                       [sig_id, ctx.spool_id, timestamps.stamp()])
    return used is None or used[0] == ctx.spool_id


def domain_proof(ctx: Context, member: str) -> str | None:
    """A DKIM signature we verified, else the trusted MTA's aligned result."""
    domain, security = member.split("@", 1)[1], ctx.cfg.security
    if security.verify_dkim:
        proof = dkim_proof(ctx.raw, domain, ctx.svc.txt_lookup())
        if proof:
            return proof
    return header_proof(ctx.parsed.msg, security.trusted_authserv_id, domain)


def authenticate(ctx: Context) -> None:
    """Prove which member wrote committee mail (their token, or a trusted DKIM/DMARC
    pass): set ``ctx.actor`` and ``ctx.proof``; unproven mail becomes a note."""
    if ctx.kind != "member":
        return
    member, problem = strict_from(ctx.parsed.msg)
    if member is not None and not ctx.cfg.is_member(member):
        member, problem = None, f"{member} is not a committee member"
    proof, why = token_proof(ctx, member) if member else (None, "")
    signed, signed_why = pgp_proof(ctx, member) if member else (None, "")
    proof, why = proof or signed, "; ".join(filter(None, (why, signed_why)))
    proof = proof or (domain_proof(ctx, member) if member else None)
    if member is None or proof is None:
        ctx.auth_failure = (problem or why or "no signed token in the address, no good "
                            "OpenPGP signature and no DKIM signature or trusted DKIM/DMARC "
                            "pass aligned with From")
        ctx.kind = "note"
        ctx.flags.append(f"not accepted as a member's mail: {ctx.auth_failure}")
        return
    ctx.actor, ctx.proof = member, proof
