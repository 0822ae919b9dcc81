"""mailflow's own mail to committee members: notices, transcripts, reminders, digests.

Each member's copy has its own Reply-To, ``committee+<member token>@``: replying to it
proves to mailflow which member wrote (the token is signed and expires), and the
From is the committee's own address, so reply-all cannot reach the reporter.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from mailflow import timestamps
from mailflow.case import cases, keys
from mailflow.config import Config
from mailflow.mail import render
from mailflow.mail.compose import Outgoing, compose
from mailflow.mail.openpgp import OpenPGPError
from mailflow.mail.pgpmime import encrypted, protected_entity
from mailflow.mail.scrub import scrub_text
from mailflow.outbound.queue import enqueue
from mailflow.pipeline.context import Context, Services
from mailflow.store import audit
from mailflow.store.sqlite import Database

log = logging.getLogger("mailflow.notices")

# What mail clients and mailflow put before a subject: replies and forwards (English
# and the common localised forms), "Transcript:", "Draft N to confirm:".
_PREFIX = re.compile(r"^(?:(?:re|fwd?|aw|wg|sv|antw|rif|tr|odp)(?:\[\d+\])?|transcript|"
                     r"draft \d+ to confirm)\s*:\s*", re.IGNORECASE)


def thread_subject(cfg: Config, subject: str) -> str:
    """The subject a thread started with: case tags, reply and forward prefixes,
    "Transcript:" and "Draft N to confirm:" taken off, spaces collapsed."""
    text = " ".join(cases.tag_pattern(cfg).sub(" ", subject or "").split())
    while (shorter := _PREFIX.sub("", text, count=1)) != text:
        text = shorter
    return text or "(no subject)"


def list_headers(cfg: Config, case_id: str | None) -> dict[str, str]:
    headers = {
        "List-Id": f"{cfg.committee.name} <committee.{cfg.committee.domain}>",
        "List-Post": f"<mailto:{cfg.committee.committee_address}>",
        "Precedence": "list",
    }
    if case_id:
        headers["X-Mailflow-Case"] = case_id
    return headers


def case_root_id(cfg: Config, case_id: str) -> str:
    """A Message-ID every relayed mail of a case refers to, so mail clients thread them."""
    return f"case-{case_id}@{cfg.committee.domain}"


def member_reply_address(svc: Services, case_id: str | None, member: str) -> str:
    days = svc.cfg.security.member_token_days
    expires = (timestamps.now() + timedelta(days=days)).date()
    token = svc.signer.member_token(case_id, member, expires)
    return f"committee+{token}@{svc.cfg.committee.domain}"


def mail_members(db: Database, svc: Services, case_id: str | None,
                 members: list[str], *, subject: str,
                 body: str, kind: str, in_reply_to: str | None = None,
                 auto_submitted: str = "auto-generated", filed: bool = True,
                 verbatim: bool = False, quotes: Sequence[str] = ()) -> None:
    """Mailflow's own mail to members (transcripts, notices): one copy each, with that
    member's own Reply-To so that answering it is authenticated.

    It is not indexed for search: it is made of records indexed on their own, and a
    digest or a search transcript quotes other cases than the one it is filed under.
    ``filed``: False to keep it out of the case's record altogether; ``quotes``: the
    cases whose records it quotes (search results), whose purge removes it.
    The text carries no token address (the recipient's own is in the Reply-To), unless
    ``verbatim``: a draft shown to the chair exactly as it would be sent."""
    cfg = svc.cfg
    body = body if verbatim else scrub_text(body)
    tag = cases.case_tag(cfg, case_id) + " " if case_id else ""
    refs = [case_root_id(cfg, case_id)] if case_id else []

    def for_member(member: str) -> Outgoing:
        return compose(
            cfg, from_=(f"{cfg.committee.name} (mailflow)", cfg.committee.committee_address),
            to=[member], subject=f"{tag}{subject}"[:200], body=body,
            reply_to=member_reply_address(svc, case_id, member), in_reply_to=in_reply_to,
            references=refs,
            headers={**list_headers(cfg, case_id), "Auto-Submitted": auto_submitted},
        )

    deliver(db, svc, case_id, members, for_member, kind=kind, searchable=False,
            filed=filed, quotes=quotes)


# What a member missed, in the notice sent instead of mail that could not be encrypted.
WHAT = {"relay": "a copy of a message on the case", "transcript": "the transcript of your "
        "commands", "digest": "your daily digest", "alarm": "a reminder of a clock",
        "urgent": "an urgent alert", "draft": "a draft to confirm", "notice": "a notice"}


@dataclass(frozen=True)
class Filing:
    """How a member's copy is queued: its kind, the case it is filed under (``filed``
    False: none), its envelope sender, whether it is indexed, and the cases it quotes."""

    kind: str
    case_id: str | None
    envelope_from: str = ""
    searchable: bool = True
    filed: bool = True
    quotes: Sequence[str] = ()

    def queue(self, db: Database, out: Outgoing, member: str) -> None:
        out_id = enqueue(db, out, kind=self.kind, rcpts=[member],
                         envelope_from=self.envelope_from,
                         case_id=self.case_id if self.filed else None,
                         searchable=self.searchable)
        if self.quotes:  # search results only
            db.conn.executemany("INSERT INTO outbound_quotes (outbound_id, case_id) "
                                "VALUES (?, ?)", [(out_id, c) for c in self.quotes])


def deliver(db: Database, svc: Services, case_id: str | None, members: list[str],
            compose_for: Callable[[str], Outgoing], *, kind: str, envelope_from: str = "",
            searchable: bool = True, filed: bool = True, quotes: Sequence[str] = ()) -> None:
    """The one way mailflow's mail reaches members: composed for each (with their own
    Reply-To), protected as their ``[committee.encryption]`` policy says, and queued.

    A member with a usable key gets it PGP/MIME-encrypted, with only the case's tag and
    code name outside; copies that are the same inside share one encryption.  A member
    whose policy is "required" and who has no usable key gets a notice instead, and
    nothing else."""
    filing = Filing(kind, case_id, envelope_from, searchable, filed, tuple(quotes))
    outer = outer_subject(db, svc.cfg, case_id)
    groups: dict[bytes, list[tuple[str, Outgoing, str]]] = {}
    for member in members:
        out = compose_for(member)
        key = keys.key_to_use(svc, member)
        if key is None:
            _plain_or_notice(db, svc, filing, member, out)
        else:  # sealed whole: the original it attaches by reference goes inside
            out = out.inlined(_spooled(db, out.attach_spool_id))
            groups.setdefault(protected_entity(out), []).append((member, out, key))
    for entity, copies in groups.items():
        fingerprints = tuple(fpr for _, _, fpr in copies)
        if svc.sealing is not None:  # the pipeline seals and queues its batch at once
            svc.sealing += [Pending(out, entity, fingerprints, outer, member, filing)
                            for member, out, _ in copies]
            continue
        try:
            sealed = svc.pgp().committee.encrypt(entity, fingerprints)
        except OpenPGPError as e:
            log.warning("case %s: could not encrypt %s: %s", case_id, kind, e)
            for member, out, _ in copies:  # as if they had no key
                _plain_or_notice(db, svc, filing, member, out, keyless=True)
            continue
        for member, out, _ in copies:
            filing.queue(db, encrypted(out, sealed, outer), member)


@dataclass(frozen=True)
class Pending:
    """A member's copy to encrypt and queue when the pipeline's batch is sealed."""

    out: Outgoing
    entity: bytes
    fingerprints: tuple[str, ...]
    outer: str
    member: str
    filing: Filing


@contextmanager
def sealed_in_batches(db: Database, svc: Services) -> Iterator[None]:
    """Around a batch of the pipeline, inside its transaction: members' copies to
    encrypt wait in ``svc.sealing``, and at the end one gpg run per set of recipients
    seals them all and they are queued, before the transaction commits.  (Starting gpg
    costs more than encrypting a report: bench/README.md.)  The runner drops the copies
    of a message whose handlers failed, as its savepoint drops the rest."""
    svc.sealing = []
    try:
        yield
        _seal(db, svc, svc.sealing)
    finally:
        svc.sealing = None


def _seal(db: Database, svc: Services, pending: list[Pending]) -> None:
    if not pending:
        return
    unique = list(dict.fromkeys((p.entity, p.fingerprints) for p in pending))
    sealed = dict(zip(unique, svc.pgp().committee.encrypt_many(unique), strict=True))
    for p in pending:
        ciphertext = sealed[(p.entity, p.fingerprints)]
        if ciphertext is None:
            log.warning("case %s: could not encrypt %s for %s", p.filing.case_id,
                        p.filing.kind, p.member)
            _plain_or_notice(db, svc, p.filing, p.member, p.out, keyless=True)
        else:
            p.filing.queue(db, encrypted(p.out, ciphertext, p.outer), p.member)


def _spooled(db: Database, spool_id: int | None) -> bytes:
    if spool_id is None:
        return b""
    row = db.execute("SELECT raw FROM spool WHERE id = ?", [spool_id]).fetchone()
    return row[0] if row else b""


def _plain_or_notice(db: Database, svc: Services, filing: Filing,
                     member: str, out: Outgoing, keyless: bool = False) -> None:
    """Mail for a member without a usable key: in clear, unless their policy is
    "required" (then a notice that says only that something could not be sent)."""
    cfg = svc.cfg
    if cfg.committee.encryption_policy(member) != "required":
        filing.queue(db, out, member)
        return
    case_id = filing.case_id
    text = render.render(svc.templates, "not-encrypted", committee=cfg.committee,
                         case_id=case_id, member=member,
                         what=WHAT.get(filing.kind, "a message"))
    tag = cases.case_tag(cfg, case_id) + " " if case_id else ""
    notice = compose(
        cfg, from_=(f"{cfg.committee.name} (mailflow)", cfg.committee.committee_address),
        to=[member], subject=f"{tag}{text.subject}", body=text.body,
        reply_to=member_reply_address(svc, case_id, member),
        headers={**list_headers(cfg, case_id), "Auto-Submitted": "auto-generated"})
    enqueue(db, notice, kind="not-encrypted", rcpts=[member], case_id=case_id)
    audit.append(db, "mailflow", "not encrypted: notice instead", case_id, to=[member],
                 kind=filing.kind, keyless=keyless)


def outer_subject(db: Database, cfg: Config, case_id: str | None) -> str:
    """What an encrypted mail shows outside: the case's tag and code name, no more."""
    case = cases.get(db, case_id) if case_id else None
    if case is None:
        return "..."  # the placeholder protected-headers clients replace with the inner one
    return f"{cases.case_tag(cfg, case['id'])} {case['codename']}"


def notify_committee(ctx: Context, case_id: str, subject: str, body: str,
                     to: list[str] | None = None) -> None:
    """A notice from mailflow to the members deciding the case (never the recused)."""
    active = cases.active_members(ctx.db, ctx.cfg, case_id)
    members = [m for m in (to if to is not None else active) if m in active]
    if members:
        mail_members(ctx.db, ctx.svc, case_id, members, subject=subject, body=body.rstrip() + "\n",
                     kind="notice")
