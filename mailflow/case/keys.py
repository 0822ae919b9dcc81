"""Whose key is whose: the committee's own key, the members' keys, and the rule for
adding one.

A key in the committee's keyring that carries a member's address is that member's
key: mail to them is encrypted to it, and a good signature by it proves them.  So a
key may name one member at most, and a member adding a key by mail may add only a key
that names them and no other member.  Keys naming no member go to the
correspondents' keyring (a reporter's key, for the replies to them) and prove nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.config import Config
from mailflow.mail.compose import Outgoing
from mailflow.mail.gpgoutput import Key
from mailflow.mail.openpgp import COMMITTEE, CORRESPONDENTS, Keyring, Keyrings, OpenPGPError
from mailflow.mail.pgpmime import attached_keys, seal
from mailflow.pipeline.context import Services

HELP_TOPIC = "Your OpenPGP key"
# The digest warns of a member's key running out this long before (and after) it does.
WARN_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class Added:
    """One key of an import: where it went (``ring``: "committee", "correspondents",
    or "" when refused), for which member, and why not."""

    key: Key
    ring: str
    member: str | None = None
    refused: str = ""


def open_keyrings(cfg: Config) -> Keyrings:
    return Keyrings.open(cfg.keyring_dir)


def committee_key(rings: Keyrings, cfg: Config) -> Key | None:
    """The committee's own key (the newest, after a replacement), if it has one."""
    return rings.committee.secret_key(cfg.committee.conduct_address)


def members_named(cfg: Config, key: Key) -> list[str]:
    return [a for a in key.addresses if cfg.is_member(a)]


def _place(cfg: Config, key: Key, sender: str | None) -> Added:
    """Where one key may go; ``sender``: the member adding it by mail (None: the
    administrator, from the command line)."""
    named = members_named(cfg, key)
    ours = {cfg.committee.conduct_address, cfg.committee.committee_address}
    if ours & set(key.addresses):
        return Added(key, "", refused="it carries the committee's own address; the "
                     "committee's key is made by `mailflow keys generate`")
    if len(named) > 1:
        return Added(key, "", refused=f"it names several members ({', '.join(named)}); "
                     "a key may stand for one member only")
    if sender is not None:
        if named != [sender.lower()]:
            return Added(key, "", refused=f"it does not carry your address {sender} as a "
                         "user ID" if not named else f"it is {named[0]}'s key, not yours")
        if not key.usable():
            return Added(key, "", refused="it cannot be used to encrypt (expired, revoked "
                         "or without an encryption subkey)")
    return Added(key, COMMITTEE if named else CORRESPONDENTS, named[0] if named else None)


def add_keys(rings: Keyrings, cfg: Config, data: bytes, sender: str | None = None
             ) -> list[Added]:
    """Import the public keys in ``data`` where they belong (see :func:`_place`)."""
    with rings.scratch() as scratch:
        scratch.import_keys(data)  # raises OpenPGPError on a secret key or no key
        results = [_place(cfg, key, sender) for key in scratch.all_keys()]
        if not results:
            raise OpenPGPError("no usable OpenPGP public key found (no valid user ID)")
        for added in results:
            if added.ring:
                ring = rings.committee if added.ring == COMMITTEE else rings.correspondents
                ring.import_keys(scratch.export(added.key.fingerprint, armor=False))
    return results


def add_reporter_key(rings: Keyrings, data: bytes, sender: str) -> str | None:
    """Keep a key a reporter sent with their encrypted mail, for the replies to them:
    the fingerprint of the newest usable one carrying their address, if any.  Such a
    key goes to the correspondents' keyring only, so it can never speak for a member."""
    if not data:
        return None
    with rings.scratch() as scratch:
        try:
            scratch.import_keys(data)
        except OpenPGPError:
            return None  # a broken or secret key: the reply goes without it
        theirs = scratch.key_for(sender)
        if theirs is None:
            return None
        rings.correspondents.import_keys(scratch.export(theirs.fingerprint, armor=False))
    return theirs.fingerprint


def expiry_warnings(rings: Keyrings | None, cfg: Config, member: str, now: datetime
                    ) -> list[str]:
    """What a member's digest says of keys running out: theirs, from WARN_BEFORE before
    it expires until WARN_BEFORE after; and, to the chair, the committee's own."""
    if rings is None:
        return []
    warnings = []
    current = rings.committee.key_for(member, now)
    if current is not None and current.expires and current.expires - now <= WARN_BEFORE:
        warnings.append(f"Your OpenPGP key {current.fingerprint} expires on "
                        f"{current.expires:%Y-%m-%d}: extend it (or make a new one) and send "
                        "it with #key before then.")
    elif current is None:
        lapsed = [k for k in rings.committee.all_keys() if member in k.addresses and k.expires
                  and not k.secret and timedelta(0) <= now - k.expires <= WARN_BEFORE]
        if lapsed:
            key = max(lapsed, key=lambda k: k.expires or now)
            then = ("you get a notice instead of each mail"
                    if cfg.committee.encryption_policy(member) == "required"
                    else "mail to you is no longer encrypted")
            warnings.append(f"Your OpenPGP key {key.fingerprint} expired on "
                            f"{key.expires:%Y-%m-%d}, so {then}: send a new one with #key.")
    own = committee_key(rings, cfg) if cfg.is_chair(member) else None
    if own is not None and own.expires and own.expires - now <= WARN_BEFORE:
        when = ("expired on {:%Y-%m-%d}, so reporters cannot encrypt to it" if own.expires <= now
                else "expires on {:%Y-%m-%d}").format(own.expires)
        warnings.append(f"The committee's key {own.fingerprint} {when}: make a new one "
                        "(`mailflow keys generate --replace`) and publish it (`mailflow keys "
                        "export`).")
    return warnings


def committee_fingerprint(svc: Services) -> str | None:
    """The committee key's fingerprint in groups, for the acknowledgements (None without one;
    a deployment that never made a key never has its keyrings opened for this)."""
    rings = svc.pgp_in_use()
    key = committee_key(rings, svc.cfg) if rings else None
    return grouped(key.fingerprint) if key else None


def grouped(fingerprint: str) -> str:
    """A fingerprint as people compare it (and GnuPG shows it): groups of four."""
    groups = [fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4)]
    return " ".join(groups[:5]) + "  " + " ".join(groups[5:])


def reporter_key(rings: Keyrings, case: dict[str, Any], address: str
                 ) -> tuple[Keyring, Key] | None:
    """The key to encrypt to a reporter who wrote encrypted, and the keyring holding
    it: the one they sent on this case, else one the administrator imported, else one
    sent on another case."""
    sent = rings.correspondents.get(case.get("reporter_key") or "")
    if sent is not None and sent.usable() and address.lower() in sent.addresses:
        return rings.correspondents, sent
    for ring in (rings.committee, rings.correspondents):
        key = ring.key_for(address)
        if key is not None:
            return ring, key
    return None


def seal_for_reporter(svc: Services, case: dict[str, Any], address: str, out: Outgoing,
                      outer_subject: str) -> Outgoing | None:
    """``out`` encrypted to the reporter when their case arrived encrypted and there is
    a key for them; ``out`` itself when the case did not; None when it did and there
    is no key that works (the caller says so instead of sending the content in clear)."""
    if not case.get("encrypted"):
        return out
    found = reporter_key(svc.pgp(), case, address)
    if found is None:
        return None
    ring, key = found
    try:
        return seal(ring, out, [key.fingerprint], outer_subject)
    except OpenPGPError:
        return None  # expired since it was listed, say: as if there were no key


def key_to_use(svc: Services, member: str) -> str | None:
    """The fingerprint mail to ``member`` is encrypted to, by their policy: None for
    "never", or when they have no usable key."""
    rings = svc.pgp_in_use()
    if rings is None or svc.cfg.committee.encryption_policy(member) == "never":
        return None
    key = member_key(rings, member)
    return key.fingerprint if key else None


def member_key(rings: Keyrings, member: str) -> Key | None:
    """The key mail to ``member`` is encrypted to, if they have a usable one."""
    return rings.committee.key_for(member)


@command("key", needs_case=False,
         summary="add your OpenPGP public key, attached to the mail (a .asc file) or pasted "
         "below: mail to you is then encrypted to it, and a mail you sign with it proves "
         "it is yours.  Only a key carrying your own address is taken.  It takes effect at "
         "once, even if another command of the same mail fails",
         usage="#key   (your public key attached, or pasted below)",
         example="#key\n-----BEGIN PGP PUBLIC KEY BLOCK-----\n...")
def _key(inv: Invocation) -> str:
    data = attached_keys(inv.ctx.raw)
    if not data:
        raise CommandError("no public key found: attach it (a .asc file) or paste it below "
                           "the #key line")
    try:
        added = add_keys(inv.svc.pgp(), inv.cfg, data, sender=inv.actor)
    except OpenPGPError as e:
        raise CommandError(str(e)) from None
    taken = [a for a in added if a.ring]
    refused = "; ".join(f"{a.key.fingerprint} refused: {a.refused}" for a in added if a.refused)
    if not taken:
        raise CommandError(refused)
    for a in taken:
        inv.log("key added", fingerprint=a.key.fingerprint)
    said = ", ".join(f"{a.key.fingerprint} ({_until(a.key)})" for a in taken)
    return f"key {said} added: mail to you is encrypted to it" + (f"; {refused}" if refused
                                                                  else "")


def _until(key: Key) -> str:
    return f"expires {key.expires:%Y-%m-%d}" if key.expires else "does not expire"
