"""Handler: mail that arrived encrypted or signed, opened before anything reads it.

PGP/MIME and inline PGP are decrypted with the committee's key after the spool
commit: the spool keeps the bytes as received (DKIM is checked on them), and the
clear message is what is threaded, filed, searched and copied to the committee.  Any
signature is judged here too; :mod:`.authenticate` decides whether it proves a
member.  Mail that cannot be decrypted is filed as it came, flagged with the reason
and copied to the committee like any other mail: never lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailflow.case import keys
from mailflow.mail import pgpmime
from mailflow.mail.parse import parse
from mailflow.store import audit

if TYPE_CHECKING:
    from mailflow.pipeline.context import Context

ENCRYPTED = "arrived encrypted"


def open_encrypted(ctx: Context) -> None:
    """Decrypt PGP/MIME and inline PGP with the committee's key and judge signatures;
    from here on the pipeline reads the clear message."""
    if not pgpmime.LOOKS_PGP.search(ctx.raw):
        return  # most mail: one scan, and the keyrings are never opened
    rings = ctx.svc.pgp_in_use()
    if rings is None:  # no key was ever made or imported: nothing to decrypt or check with
        if pgpmime.ENCRYPTED.search(ctx.raw):
            ctx.flags.append(f"{ENCRYPTED}, and the committee has no key to decrypt it")
        return
    opened = pgpmime.unwrap(rings.committee, ctx.raw)
    ctx.opened = opened
    if opened.raw != ctx.raw:
        ctx.parsed = parse(opened.raw)
    if opened.decrypted:
        ctx.flags.append(ENCRYPTED)
    elif opened.encrypted:
        ctx.flags.append(f"{ENCRYPTED}, and could not be decrypted: {opened.error}")


def mark_case(ctx: Context) -> None:
    """A reporter's encrypted mail marks its case "arrived encrypted", so that what goes
    back to them is encrypted too; a key of theirs sent along is kept for that."""
    opened = ctx.opened
    if opened is None or not opened.encrypted or not ctx.case_id or ctx.side != "conduct":
        return
    key = None
    if opened.decrypted and ctx.sender:
        key = keys.add_reporter_key(ctx.svc.pgp(), pgpmime.attached_keys(opened.raw), ctx.sender)
    ctx.db.execute("UPDATE cases SET encrypted = 1, reporter_key = coalesce(?, reporter_key) "
                   "WHERE id = ?", [key, ctx.case_id])
    audit.append(ctx.db, "mailflow", "arrived encrypted", ctx.case_id, spool_id=ctx.spool_id,
                 decrypted=opened.decrypted, reporter_key=key is not None)
