"""What GnuPG answers, read: keys from its colon listings (``--with-colons``), and
verdicts from its status lines (``--status-fd``).  Nothing here runs GnuPG;
:mod:`mailflow.mail.openpgp` does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailflow import timestamps
from mailflow.mail.decode import addresses


@dataclass(frozen=True)
class Key:
    """A public key as mailflow uses it.

    ``addresses`` are those of its valid user IDs; ``expires`` is when it can no
    longer be encrypted to (the earlier of the primary key's end and its last
    encryption subkey's), None for never."""

    fingerprint: str
    uids: tuple[str, ...]
    addresses: tuple[str, ...]
    created: datetime
    expires: datetime | None
    revoked: bool
    can_encrypt: bool
    secret: bool = False

    @property
    def owner(self) -> str:
        return self.uids[0] if self.uids else ""

    def usable(self, at: datetime | None = None) -> bool:
        """Can mail be encrypted to it now (or at ``at``)?"""
        when = at or timestamps.now()
        return (self.can_encrypt and not self.revoked
                and (self.expires is None or self.expires > when))

    def as_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "owner": self.owner, "uids": list(self.uids),
                "addresses": list(self.addresses), "created": timestamps.stamp(self.created),
                "expires": timestamps.stamp(self.expires) if self.expires else None,
                "revoked": self.revoked, "usable": self.usable(), "secret": self.secret}


@dataclass(frozen=True)
class Signature:
    """What a signature proves.  ``status``: "good", "bad" (the data was changed or
    the signature forged), "unknown" (no key here to check it), "expired" (the key or
    the signature has expired), "revoked", or "none" (nothing was signed).
    ``fingerprint`` is the signer's primary key, when the key is here; ``signed_at``
    when the signature says it was made; ``sig_id`` names this very signature (GnuPG's
    SIG_ID), so that a copy of a signed mail can be told from a new one."""

    status: str
    fingerprint: str | None = None
    key_id: str | None = None
    signed_at: datetime | None = None
    sig_id: str | None = None

    @property
    def good(self) -> bool:
        return self.status == "good" and bool(self.fingerprint)


UNSIGNED = Signature("none")


@dataclass(frozen=True)
class Decrypted:
    """GnuPG's answer to an encrypted (or clearsigned) block: ``ok`` when the text is
    readable; ``error`` says why not."""

    ok: bool
    data: bytes
    signature: Signature
    error: str = ""


def statuses(stderr: str) -> list[tuple[str, list[str]]]:
    """GnuPG's machine-readable status lines ("[GNUPG:] KEYWORD args...")."""
    found = []
    for line in stderr.splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, *args = line[9:].split()
            found.append((keyword, args))
    return found


def signature_of(status: list[tuple[str, list[str]]]) -> Signature:
    """The verdict on the signatures GnuPG reported.  Any bad, expired or revoked
    signature spoils the lot, so that nothing weaker than good passes for good."""
    words = {k: a for k, a in status}

    def first(keyword: str) -> str | None:
        return next(iter(words.get(keyword) or []), None)

    for keyword, verdict in (("BADSIG", "bad"), ("EXPKEYSIG", "expired"),
                             ("EXPSIG", "expired"), ("REVKEYSIG", "revoked")):
        if keyword in words:
            return Signature(verdict, key_id=first(keyword))
    if "GOODSIG" in words and "VALIDSIG" in words:
        valid = words["VALIDSIG"]
        fingerprint = valid[9] if len(valid) > 9 else valid[0]
        made = valid[2] if len(valid) > 2 and valid[2].isdigit() else ""
        return Signature("good", fingerprint=fingerprint, key_id=first("GOODSIG"),
                         signed_at=_when(made),
                         sig_id=first("SIG_ID") or f"{fingerprint}:{made}")
    if "ERRSIG" in words or "NO_PUBKEY" in words:
        return Signature("unknown", key_id=first("ERRSIG") or first("NO_PUBKEY"))
    return UNSIGNED


def _when(epoch: str) -> datetime | None:
    return datetime.fromtimestamp(int(epoch), UTC) if epoch.strip() else None


def _unescape(text: str) -> str:
    """User IDs in colon listings escape some bytes as \\xNN."""
    raw = text.encode("utf-8", "surrogateescape")
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i:i + 2] == b"\\x" and i + 4 <= len(raw):
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def parse_listing(colons: str, secret: frozenset[str] = frozenset()) -> list[Key]:
    """Keys from ``gpg --with-colons`` output (``--list-keys`` or an import-show scan);
    ``secret``: the keygrips of the secret keys held."""
    keys: list[Key] = []
    current: dict[str, Any] | None = None

    def close() -> None:
        if current and current.get("fingerprint"):
            keys.append(_key(current, secret))

    for line in colons.splitlines():
        f = line.split(":")
        if f[0] == "pub":
            close()
            current = {"pub": f, "uids": [], "subs": [], "fingerprint": None, "grip": None}
        elif current is None:
            continue
        elif f[0] == "fpr" and current["fingerprint"] is None:
            current["fingerprint"] = f[9]
        elif f[0] == "grp" and current["grip"] is None:
            current["grip"] = f[9]
        elif f[0] == "uid":
            current["uids"].append((f[1], _unescape(f[9])))
        elif f[0] == "sub":
            current["subs"].append(f)
    close()
    return keys


def _key(record: dict[str, Any], secret: frozenset[str]) -> Key:
    pub = record["pub"]
    # A revoked ("r") or invalid user ID names nobody; an expired key's user IDs still
    # say whose it was (``usable`` is what keeps it from use).
    valid = [uid for validity, uid in record["uids"] if validity not in ("r", "i")]
    revoked = pub[1] == "r"
    expires = _when(pub[6])
    # Encryption subkeys that still work ("e" capability, not revoked or expired).
    enc = [s for s in record["subs"] if "e" in s[11] and s[1] not in ("r", "e", "i")]
    if "e" in pub[11] and pub[1] not in ("r", "e", "i"):
        enc.append(pub)
    ends = [_when(s[6]) for s in enc]
    if enc and None not in ends:
        last = max(e for e in ends if e is not None)
        expires = last if expires is None else min(expires, last)
    created = _when(pub[5]) or datetime.fromtimestamp(0, UTC)
    return Key(fingerprint=record["fingerprint"], uids=tuple(uid for _, uid in record["uids"]),
               addresses=tuple(dict.fromkeys(a for _, a in addresses(valid))),
               created=created, expires=expires, revoked=revoked,
               can_encrypt="E" in pub[11], secret=record["grip"] in secret)


def decrypt_error(status: list[tuple[str, list[str]]]) -> str:
    words = {k for k, _ in status}
    if "NO_SECKEY" in words and "DECRYPTION_OKAY" not in words:
        return "not encrypted to a key the committee holds"
    if "NODATA" in words:
        return "no OpenPGP data found"
    if "DECRYPTION_FAILED" in words:
        return "damaged or tampered with: it would not decrypt"
    return "GnuPG could not read it"
