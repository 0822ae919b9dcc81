"""A Web Key Directory (draft-koch-openpgp-webkey-service) for the committee's key,
so that a reporter's mail client finds it from the address alone.

The tree holds both layouts, so one directory serves either way: the direct method
(``https://DOMAIN/.well-known/openpgpkey/hu/HASH``) and the advanced one
(``https://openpgpkey.DOMAIN/.well-known/openpgpkey/DOMAIN/hu/HASH``).  HASH is the
SHA-1 of the lower-cased local part in z-base-32; the file is the binary key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


def zbase32(data: bytes) -> str:
    """z-base-32 (RFC 6189 4.5.2 alphabet), 5 bits a character, most significant first."""
    bits = int.from_bytes(data, "big")
    count = len(data) * 8
    chars = []
    for shift in range(count - 5, -5, -5):
        chars.append(ZBASE32[(bits >> shift if shift >= 0 else bits << -shift) & 31])
    return "".join(chars)


def local_part_hash(address: str) -> str:
    """The WKD name of an address's key: only ASCII letters are lower-cased."""
    local = address.rpartition("@")[0]
    lowered = "".join(c.lower() if c.isascii() else c for c in local)
    return zbase32(hashlib.sha1(lowered.encode("utf-8")).digest())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)  # published: the web server reads it
    tmp.replace(path)


def write_tree(root: Path, address: str, key: bytes) -> list[Path]:
    """Publish ``key`` (binary) for ``address`` under ``root``; the files written."""
    domain = address.rpartition("@")[2].lower()
    name = local_part_hash(address)
    base = root / ".well-known" / "openpgpkey"
    written = []
    for layout in (base, base / domain):  # direct, advanced
        _write(layout / "hu" / name, key)
        _write(layout / "policy", b"")
        written += [layout / "hu" / name, layout / "policy"]
    return written
