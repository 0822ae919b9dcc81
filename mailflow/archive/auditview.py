"""The audit log's entries with their words put back, for the case's dossier.

The log holds ids, actions and fingerprints (:mod:`mailflow.store.audit`); the words
and names they stand for live in the case's own tables (the mail a command came in,
the proposal, the person, the ban), which a purge removes.  :func:`detail` looks them
up, so the dossier's narrative reads "m1 used #originator Sam <sam@...>" while the case
exists, and nothing of it is left in the log once the case is purged.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mailflow.store.sqlite import Database


def _one(db: Database, sql: str, arg: Any) -> tuple | None:
    return db.execute(sql, [arg]).fetchone() if arg is not None else None


def _command_args(db: Database, word: str, spool_id: Any) -> str:
    row = _one(db, "SELECT new_text FROM messages WHERE spool_id = ?", spool_id)
    line = re.search(rf"^[ \t]*#{re.escape(word)}\b[ \t]*(.*)$", row[0] or "", re.M) \
        if row else None
    return line.group(1).strip() if line else ""


def detail(db: Database, action: str, d: dict[str, Any]) -> dict[str, Any]:
    """An entry's detail with the words its ids stand for, where the case still has them."""
    d = dict(d)
    if m := re.match(r"command #(\S+)", action):
        d["args"] = _command_args(db, m.group(1), d.get("spool_id"))
    elif m := re.match(r"proposal (\d+) \(", action):
        row = _one(db, "SELECT detail FROM proposals WHERE id = ?", int(m.group(1)))
        d["detail"] = row[0] if row else ""
    elif action.startswith("person added") and (
            row := _one(db, "SELECT name, address FROM people WHERE id = ?", d.get("person"))):
        d.update(name=row[0], address=row[1])
    elif action == "ban recorded" and (
            row := _one(db, "SELECT person, scope FROM bans WHERE id = ?", d.get("ban"))):
        d.update(person=row[0], scope=row[1])
    elif action == "warning recorded" and (
            row := _one(db, "SELECT person FROM warnings WHERE id = ?", d.get("warning"))):
        d["person"] = row[0]
    elif action == "draft sent" and (
            row := _one(db, "SELECT recipients FROM drafts WHERE id = ?", d.get("draft"))):
        d["to"] = json.loads(row[0])
    elif action.startswith("alarm ") and (
            row := _one(db, "SELECT outcome FROM alarms WHERE id = ?", d.get("alarm"))):
        d["outcome"] = row[0]
    return d
