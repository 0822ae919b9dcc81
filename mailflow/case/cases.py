"""Cases, the people on them, and the case record (what the committee determined)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from mailflow import timestamps
from mailflow.config import Config
from mailflow.store import audit
from mailflow.store.sqlite import Database

# Code names keep names out of subject lines and previews.
_ADJECTIVES = [
    "Amber", "Azure", "Birch", "Cedar", "Coral", "Dawn", "Ember", "Fern", "Granite", "Harbor",
    "Indigo", "Juniper", "Kestrel", "Linen", "Maple", "Meadow", "Nimbus", "Ochre", "Pebble",
    "Quartz", "Rowan", "Saffron", "Slate", "Tidal", "Umber", "Velvet", "Willow", "Zephyr",
]
_NOUNS = [
    "Badger", "Bison", "Crane", "Dolphin", "Falcon", "Fox", "Gannet", "Heron", "Ibis", "Jay",
    "Lark", "Lynx", "Marten", "Newt", "Otter", "Owl", "Plover", "Quail", "Raven", "Robin",
    "Seal", "Swift", "Tern", "Vole", "Wren",
]


# Statuses a case can be in.  "board": every member is recused, the board has it.
OPEN, CLOSED, BOARD = "open", "closed", "board"


def codename(case_id: str) -> str:
    import hashlib  # here: it loads OpenSSL, and only a new case needs it

    digest = hashlib.sha256(case_id.encode()).digest()
    return f"{_ADJECTIVES[digest[0] % len(_ADJECTIVES)]} {_NOUNS[digest[1] % len(_NOUNS)]}"


def case_tag(cfg: Config, case_id: str) -> str:
    return f"[{cfg.committee.tag} #{case_id}]"


def tag_pattern(cfg: Config) -> re.Pattern[str]:
    return re.compile(rf"\[{re.escape(cfg.committee.tag)} #(\d{{4}}-\d{{4,}})\]", re.IGNORECASE)


def open_case(db: Database, cfg: Config, subject: str, kind: str = "report",
              when: datetime | None = None, status: str = "open") -> str:
    """Open a case dated ``when`` (imported history: the mail's Date), else now."""
    now = when or timestamps.now()
    year = now.year
    seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM cases WHERE year = ?",
                     [year]).fetchone()[0]
    case_id = f"{year}-{seq:04d}"
    stamp = timestamps.stamp(now)
    db.execute(
        "INSERT INTO cases (id, year, seq, status, kind, subject, codename, opened_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [case_id, year, seq, status, kind, subject, codename(case_id), stamp, stamp],
    )
    audit.append(db, "mailflow", "case opened", case_id, kind=kind,
                 **({} if status == "open" else {"status": status}))
    return case_id


def exists(db: Database, case_id: str) -> bool:
    return db.execute("SELECT 1 FROM cases WHERE id = ?", [case_id]).fetchone() is not None


def get(db: Database, case_id: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM cases WHERE id = ?", [case_id]))
    return rows[0] if rows else None


def touch(db: Database, case_id: str) -> None:
    db.execute("UPDATE cases SET updated_at = ? WHERE id = ?", [timestamps.stamp(), case_id])


def add_person(db: Database, case_id: str, role: str, address: str = "",
               name: str = "", actor: str = "mailflow") -> bool:
    """Record someone's role on a case; False if they already had it."""
    cur = db.execute(
        "INSERT OR IGNORE INTO people (case_id, role, address, name, added_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [case_id, role, address.lower(), name, timestamps.stamp()],
    )
    if cur.rowcount:
        audit.append(db, actor, f"person added: {role}", case_id, person=cur.lastrowid)
    return bool(cur.rowcount)


def people(db: Database, case_id: str, role: str | None = None) -> list[dict]:
    sql = "SELECT role, address, name FROM people WHERE case_id = ?"
    args: list[Any] = [case_id]
    if role:
        sql += " AND role = ?"
        args.append(role)
    return list(db.query(sql + " ORDER BY id", args))


def person_text(p: dict[str, Any]) -> str:
    """A people row as mail shows it: ``Name <address>``, or whichever is known."""
    if p["name"] and p["address"]:
        return f"{p['name']} <{p['address']}>"
    return p["name"] or p["address"]


# Roles the committee's own members hold on a case; they make no one a party to it.
COMMITTEE_ROLES = ("recused", "acting-chair")


def is_on_case(db: Database, case_id: str, address: str) -> bool:
    """Whether ``address`` is one of the case's people (reporter, originator, ...); a
    member recused from it is not (their mail must not find its way in, nor tell them
    the case exists)."""
    return db.execute("SELECT 1 FROM people WHERE case_id = ? AND address = ? AND role "
                      f"NOT IN {COMMITTEE_ROLES!r}", [case_id, address.lower()]
                      ).fetchone() is not None


def reporters(db: Database, case_id: str) -> list[str]:
    return [p["address"] for p in people(db, case_id, "reporter") if p["address"]]


def recused(db: Database, case_id: str) -> set[str]:
    return {p["address"] for p in people(db, case_id, "recused")}


def active_members(db: Database, cfg: Config, case_id: str | None) -> list[str]:
    """Members who receive and decide this case: the roster less the recused."""
    members = [m.lower() for m in cfg.committee.members]
    if case_id is None:
        return members
    out = recused(db, case_id)
    return [m for m in members if m not in out]


def acting_chair(db: Database, cfg: Config, case_id: str | None) -> str | None:
    """The chair for this case: the latest substitute named with #chair, else the
    configured chair; whoever of them is recused is skipped.  None: every one of them
    is recused, and the members must name a substitute before chair mail can go out."""
    chair = cfg.committee.chair.lower()
    if case_id is None:
        return chair
    out = recused(db, case_id)
    subs = [p["address"] for p in people(db, case_id, "acting-chair")]
    return next((c for c in [*reversed(subs), chair] if c not in out), None)


def record(db: Database, case_id: str) -> dict[str, Any]:
    """The case's record (all undetermined before anything was recorded)."""
    rows = list(db.query("SELECT * FROM case_record WHERE case_id = ?", [case_id]))
    if rows:
        return rows[0]
    return {**dict.fromkeys(db.columns("case_record")), "case_id": case_id}


def update_record(db: Database, case_id: str, **fields: Any) -> None:
    """Set fields of the case record (``case_record``)."""
    db.execute("INSERT OR IGNORE INTO case_record (case_id, updated_at) VALUES (?, ?)",
               [case_id, timestamps.stamp()])
    names = ", ".join(f"{k} = ?" for k in fields)
    db.execute(f"UPDATE case_record SET {names}, updated_at = ? WHERE case_id = ?",
               [*fields.values(), timestamps.stamp(), case_id])
    touch(db, case_id)
