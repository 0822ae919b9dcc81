"""The tamper-evident log: each entry's hash covers the previous entry's hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlite_utils

from mailflow import timestamps

GENESIS = "0" * 64
FIELDS = ("at", "actor", "action", "case_id", "proof", "detail", "prev_hash")


def _digest(entry: dict[str, Any]) -> str:
    canonical = json.dumps([entry[f] for f in FIELDS], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(
    db: sqlite_utils.Database,
    actor: str,
    action: str,
    case_id: str | None = None,
    proof: str = "",
    **detail: Any,
) -> None:
    """Add an entry; call inside the transaction that makes the change it records."""
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
    entry["hash"] = _digest(entry)
    db.execute(
        "INSERT INTO audit (at, actor, action, case_id, proof, detail, prev_hash, hash) "
        "VALUES (:at, :actor, :action, :case_id, :proof, :detail, :prev_hash, :hash)",
        entry,
    )


def verify(db: sqlite_utils.Database) -> tuple[int, int | None, str]:
    """(entries checked, id of the first broken entry or None, what is wrong)."""
    prev = GENESIS
    count = 0
    cursor = db.execute(f"SELECT id, {', '.join(FIELDS)}, hash FROM audit ORDER BY id")
    for row in cursor:
        entry = dict(zip(("id", *FIELDS, "hash"), row, strict=True))
        count += 1
        if entry["prev_hash"] != prev:
            return count, entry["id"], "does not follow the entry before it (removed or reordered)"
        if _digest(entry) != entry["hash"]:
            return count, entry["id"], "its content does not match its hash (edited)"
        prev = entry["hash"]
    return count, None, ""
