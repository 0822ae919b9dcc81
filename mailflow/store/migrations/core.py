"""The core tables: the processing state of the spool, cases, people, messages, the
outbound queue and the audit log."""

from __future__ import annotations

import json
import re
import sqlite3


def core_tables(db: sqlite3.Connection) -> None:
    _spool_state(db)
    _cases(db)
    _people(db)
    _messages(db)
    _outbound(db)
    _outbound_rcpt(db)
    _audit(db)


def _spool_state(db: sqlite3.Connection) -> None:
    # Processing state of each spooled message; the spool itself is spool.db.
    db.execute("""
        CREATE TABLE spool_state (
            spool_id INTEGER PRIMARY KEY,
            state TEXT NOT NULL DEFAULT 'new',  -- new, done, quarantined
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            processed_at TEXT
        )""")
    db.execute("CREATE INDEX spool_state_state ON spool_state(state, spool_id)")


def _cases(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE cases (
            id TEXT PRIMARY KEY,             -- YYYY-NNNN
            year INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'open',
            kind TEXT NOT NULL DEFAULT 'report',
            subject TEXT,
            codename TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            acknowledged_at TEXT,
            urgent INTEGER NOT NULL DEFAULT 0,
            UNIQUE(year, seq)
        )""")


def _people(db: sqlite3.Connection) -> None:
    # Everyone a case concerns, by role: reporter, originator, affected, witness,
    # mediator, delegate, forwarder.
    db.execute("""
        CREATE TABLE people (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES cases(id),
            role TEXT NOT NULL,
            address TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL DEFAULT '',
            added_at TEXT NOT NULL,
            UNIQUE(case_id, role, address, name)
        )""")
    db.execute("CREATE INDEX people_address ON people(address)")


def _messages(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            spool_id INTEGER UNIQUE,         -- spool.id in spool.db
            case_id TEXT REFERENCES cases(id),
            kind TEXT NOT NULL,              -- report, reply, member, held, bounce, forward
            received_at TEXT NOT NULL,
            envelope_from TEXT,
            from_addr TEXT,
            from_name TEXT,
            to_addrs TEXT,                   -- JSON
            cc_addrs TEXT,                   -- JSON
            subject TEXT,
            date TEXT,
            message_id TEXT,
            in_reply_to TEXT,
            refs TEXT,                       -- JSON
            body_text TEXT,
            new_text TEXT,
            quoted_text TEXT,
            attachments TEXT,                -- JSON [{name, type, size}]
            defects TEXT,                    -- JSON
            flags TEXT                       -- JSON: held, auto, ambiguous-thread ...
        )""")
    db.execute("CREATE INDEX messages_case ON messages(case_id, id)")
    db.execute("CREATE INDEX messages_mid ON messages(message_id)")


def _outbound(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE outbound (
            id INTEGER PRIMARY KEY,
            case_id TEXT REFERENCES cases(id),
            kind TEXT NOT NULL,              -- ack, relay, transcript, notice ...
            created_at TEXT NOT NULL,
            message_id TEXT NOT NULL,
            envelope_from TEXT NOT NULL,     -- '' is the null sender
            subject TEXT,
            raw BLOB NOT NULL
        )""")
    db.execute("CREATE INDEX outbound_case ON outbound(case_id, id)")
    db.execute("CREATE INDEX outbound_mid ON outbound(message_id)")


def _outbound_rcpt(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE outbound_rcpt (
            id INTEGER PRIMARY KEY,
            outbound_id INTEGER NOT NULL REFERENCES outbound(id),
            rcpt TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued',   -- queued, sent, failed
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            sent_at TEXT
        )""")
    db.execute("CREATE INDEX outbound_rcpt_due ON outbound_rcpt(state, next_attempt_at)")
    db.execute("CREATE INDEX outbound_rcpt_addr ON outbound_rcpt(rcpt)")


def _audit(db: sqlite3.Connection) -> None:
    # Append-only, hash-chained record of every state change and every mail in or out.
    db.execute("""
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            case_id TEXT,
            proof TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX audit_case ON audit(case_id, id)")


OUTBOUND_TEXT = ("from_name", "from_addr", "to_addrs", "cc_addrs", "new_text", "quoted_text")


def outbound_text(db: sqlite3.Connection) -> None:
    """Outgoing mail keeps the fields the archive indexes, as ``messages`` does, filled
    when it is queued instead of parsed back from the bytes by the index; existing
    rows are parsed once here, except relayed copies of received mail (indexed as that
    mail)."""
    for column in OUTBOUND_TEXT:
        db.execute(f"ALTER TABLE outbound ADD COLUMN {column} TEXT")
    ids = [r[0] for r in db.execute("SELECT id FROM outbound WHERE kind != 'relay'")]
    for out_id in ids:  # one message in memory at a time
        raw = db.execute("SELECT raw FROM outbound WHERE id = ?", [out_id]).fetchone()[0]
        columns = _outbound_columns(raw)
        db.execute(f"UPDATE outbound SET {', '.join(c + ' = ?' for c in OUTBOUND_TEXT)} "
                   "WHERE id = ?", [*(columns[c] for c in OUTBOUND_TEXT), out_id])


# What mailflow itself composed at the time: one text/plain part, quotes after "> " or
# an "On ... wrote:" line.  Frozen here, as that step read it.
_QUOTE = re.compile(r"^(>|On .{0,200}wrote:\s*$)", re.MULTILINE)


def _outbound_columns(raw: bytes) -> dict[str, str | None]:
    # Imported here: every command opens the database, and only this old step reads mail.
    from email import message_from_bytes, policy
    from email.utils import getaddresses

    msg = message_from_bytes(raw, policy=policy.default)
    body = msg.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    split = _QUOTE.search(text)
    new, quoted = (text[:split.start()], text[split.start():]) if split else (text, "")
    sender = getaddresses([str(msg.get("From", ""))])
    return {"from_name": sender[0][0] if sender else "",
            "from_addr": sender[0][1].lower() if sender else None,
            "to_addrs": json.dumps([a.lower() for _, a in getaddresses([str(msg.get("To", ""))])
                                    if a]),
            "cc_addrs": json.dumps([a.lower() for _, a in getaddresses([str(msg.get("Cc", ""))])
                                    if a]),
            "new_text": new.rstrip(), "quoted_text": quoted.rstrip("\n")}


def outbound_rcpt_index(db: sqlite3.Connection) -> None:
    """Delivery records each recipient by (message, address); with only the address
    indexed, that read every copy a member had ever been sent."""
    db.execute("CREATE INDEX outbound_rcpt_message ON outbound_rcpt(outbound_id, rcpt)")


def outbound_queue_order(db: sqlite3.Connection) -> None:
    """A delivery pass reads the queue in the order it sends, acknowledgements first
    (priority 0), from an index of queued recipients alone: it used to sort every
    queued recipient to pick its next few hundred."""
    db.execute("ALTER TABLE outbound_rcpt ADD COLUMN priority INTEGER NOT NULL DEFAULT 1")
    db.execute("UPDATE outbound_rcpt SET priority = 0 WHERE outbound_id IN "
               "(SELECT id FROM outbound WHERE kind = 'ack')")
    db.execute("CREATE INDEX outbound_rcpt_queue ON outbound_rcpt(priority, outbound_id) "
               "WHERE state = 'queued'")


MIGRATIONS = [
    ("0001_core_tables", core_tables),
    ("0002_outbound_text", outbound_text),
    ("0003_outbound_rcpt_index", outbound_rcpt_index),
    ("0004_outbound_queue_order", outbound_queue_order),
]
