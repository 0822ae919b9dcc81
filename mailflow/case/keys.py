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

from mailflow.config import Config
from mailflow.mail.gpgoutput import Key
from mailflow.mail.openpgp import COMMITTEE, CORRESPONDENTS, Keyrings, OpenPGPError


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


def member_key(rings: Keyrings, member: str) -> Key | None:
    """The key mail to ``member`` is encrypted to, if they have a usable one."""
    return rings.committee.key_for(member)
