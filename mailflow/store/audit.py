"""The tamper-evident log of every state change and every mail in or out.

Entries hold ids, actions and hashes, never mail text or people's names: a detail is a
number, a flag, or a short string without spaces (an id, a template's name, a
member's address); text is recorded as its :func:`fingerprint`.  So a purge, which
keeps the log, leaves nothing of a case's words in it, and :func:`append` refuses a
detail that looks like prose.

The chain is keyed: each entry's hash is an HMAC (key in ``audit.key`` beside the
database, 0600) over the entry and the hash before it, so someone who can write the
database but lacks the key cannot edit an entry and compute the chain again.  Its head
is anchored outside the database: after each transaction that added entries, the
newest entry's id and hash are appended to ``audit.anchor`` (beside the database), and
the chair's daily digest names them too.  Removing the newest entries, or rewriting the
chain with the key, no longer matches the anchor.

Entries written before the chain was keyed (a plain SHA-256, without the ``k1:``
prefix) still verify, as the start of the chain.
"""

from __future__ import annotations

# hashlib and hmac are imported where the chain is written or checked: they load
# OpenSSL, and the read commands, which import this module with the ones that act,
# never need them (bench/README.md).
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailflow import timestamps
from mailflow.store.secret import load_secret
from mailflow.store.sqlite import Database

if TYPE_CHECKING:
    import hmac

GENESIS = "0" * 64
FIELDS = ("at", "actor", "action", "case_id", "proof", "detail", "prev_hash")
KEYED = "k1:"
# What a detail or an actor may be: ids, codes, addresses, dates; no spaces, no prose.
PLAIN = re.compile(r"^[\w.:@+\-/<>]{0,100}$")


class AuditContent(ValueError):
    """A detail that would put text into the audit log: a bug in the caller."""


def _main_file(db: Database) -> Path:
    # Asked for every entry: the connection keeps the answer.
    path: Path | None = getattr(db, "audit_main_file", None)
    if path is None:
        row = next(r for r in db.execute("PRAGMA database_list") if r[1] == "main")
        if not row[2]:
            raise ValueError("the audit log needs a database file (its key lives beside it)")
        path = db.audit_main_file = Path(row[2])  # type: ignore[attr-defined]
    return path


def key_path(db: Database) -> Path:
    return _main_file(db).with_name("audit.key")


def anchor_path(db: Database) -> Path:
    return _main_file(db).with_name("audit.anchor")


@cache
def _keyed(path: Path) -> hmac.HMAC:
    """The HMAC with the key at ``path`` loaded; each entry hashes with a copy of it."""
    import hashlib
    import hmac

    return hmac.new(load_secret(path), digestmod=hashlib.sha256)


def _mac(db: Database, payload: str) -> str:
    keyed = _keyed(key_path(db)).copy()
    keyed.update(payload.encode())
    return keyed.hexdigest()


def fingerprint(db: Database, text: str) -> str:
    """A keyed hash of ``text``, for the log: it tells whether two texts were the same
    and nothing of what they said."""
    return "h:" + _mac(db, "text:" + text)[:20]


def _plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, bool | int | float):
        return
    if isinstance(value, str):
        if not PLAIN.match(value):
            raise AuditContent(f"audit: {where} holds text ({len(value)} characters); record "
                               "ids, or audit.fingerprint() of the text")
    elif isinstance(value, list | tuple):
        for item in value:
            _plain(item, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _plain(item, f"{where}.{key}")
    else:
        raise AuditContent(f"audit: {where} is a {type(value).__name__}")


def _canonical(entry: dict[str, Any]) -> str:
    return json.dumps([entry[f] for f in FIELDS], ensure_ascii=False, separators=(",", ":"))


def _legacy_digest(entry: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(_canonical(entry).encode()).hexdigest()


def append(
    db: Database,
    actor: str,
    action: str,
    case_id: str | None = None,
    proof: str = "",
    **detail: Any,
) -> None:
    """Add an entry; call inside the transaction that makes the change it records.
    ``actor``: a member's address, "mailflow", "admin" or a role ("sender")."""
    _plain(actor, "actor")
    _plain(detail, "detail")
    last = db.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    entry = {
        "at": timestamps.stamp(),
        "actor": actor,
        "action": action,
        "case_id": case_id,
        "proof": proof,
        "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str),
        "prev_hash": last[0] if last else GENESIS,
    }
    entry["hash"] = KEYED + _mac(db, _canonical(entry))
    db.execute(
        "INSERT INTO audit (at, actor, action, case_id, proof, detail, prev_hash, hash) "
        "VALUES (:at, :actor, :action, :case_id, :proof, :detail, :prev_hash, :hash)",
        entry,
    )
    db.audit_appended = True  # type: ignore[attr-defined]  # see anchor()


def anchor(db: Database) -> None:
    """After a commit that added entries: append the head to the anchor file."""
    if not getattr(db, "audit_appended", False):
        return
    db.audit_appended = False  # type: ignore[attr-defined]
    row = db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    if row:
        fd = os.open(anchor_path(db), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{row[0]} {row[1]} {timestamps.stamp()}\n".encode())
        finally:
            os.close(fd)


def forget_appended(db: Database) -> None:
    """After a rollback: what was appended is gone, there is nothing to anchor."""
    db.audit_appended = False  # type: ignore[attr-defined]


def head(db: Database) -> tuple[int, str] | None:
    """The newest entry's (id, hash), for the chair's digest."""
    row = db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else None


def _last_anchor(db: Database) -> tuple[int, str] | None:
    try:
        with open(anchor_path(db), "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = f.read().decode("ascii", "replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            return int(parts[0]), parts[1]
    return None


def _chain(db: Database) -> tuple[int, int | None, str, bool]:
    """(entries, first broken id, why, whether any entry is keyed)."""
    import hmac

    prev, count, keyed = GENESIS, 0, False
    cursor = db.execute(f"SELECT id, {', '.join(FIELDS)}, hash FROM audit ORDER BY id")
    for row in cursor:
        entry = dict(zip(("id", *FIELDS, "hash"), row, strict=True))
        count += 1
        if entry["prev_hash"] != prev:
            return (count, entry["id"],
                    "does not follow the entry before it (removed or reordered)", keyed)
        if entry["hash"].startswith(KEYED):
            expected, keyed = KEYED + _mac(db, _canonical(entry)), True
        else:  # written before the chain was keyed: only ever at its start
            expected = "" if keyed else _legacy_digest(entry)
        if not hmac.compare_digest(expected, entry["hash"]):
            return count, entry["id"], "its content does not match its hash (edited)", keyed
        prev = entry["hash"]
    return count, None, "", keyed


def _anchored(db: Database, mark: tuple[int, str], where: str
              ) -> tuple[int | None, str]:
    row = db.execute("SELECT hash FROM audit WHERE id = ?", [mark[0]]).fetchone()
    if row is None:
        return mark[0], f"entry {mark[0]}, the head {where}, is missing (the log was truncated)"
    if not row[0].startswith(mark[1]):
        return mark[0], f"entry {mark[0]} is not the one {where} (the log was rewritten)"
    return None, ""


def verify(db: Database, head_mark: tuple[int, str] | None = None
           ) -> tuple[int, int | None, str]:
    """(entries checked, id of the first broken entry or None, what is wrong).
    ``head_mark``: (id, hash or its start) of a head recorded elsewhere (a digest)."""
    count, broken, why, keyed = _chain(db)
    if broken is not None:
        return count, broken, why
    last = _last_anchor(db)
    marks = [(head_mark, "given")] if head_mark else []
    marks += [(last, "in the anchor file")] if last else []
    for mark, where in marks:
        broken, why = _anchored(db, mark, where)
        if broken is not None:
            return count, broken, why
    newest = head(db)
    if last is None and keyed and newest:
        return count, newest[0], ("the anchor file audit.anchor is missing: nothing "
                                  "vouches that the newest entries are all there")
    return count, None, ""
