"""The search index: FTS5 over everything archived, kept by triggers.

What is indexed (one row of ``search_docs`` and of the FTS5 table ``search_fts`` each,
under the same rowid; ``ref`` names the record):

- every archived mail, ``message:<messages.id>`` (kinds report, forward, reply, member,
  held, bounce), with the new text and the quoted text in separate columns (the text of
  a mail forwarded as an attachment is searched with the new text);
- every mail sent, ``outbound:<outbound.id>`` (kind ``sent``), except the per-member
  copies of relayed mail, whose original is already indexed;
- each case's own fields (subject, code name, status, kind), ``case:<case id>``;
- whatever other modules hand to :func:`index_record`: call summaries, notes, drafts,
  case fields set by commands.

The first three are kept by triggers on their tables, so any insert, update or delete
anywhere updates the index in the same transaction: search never lags.  (The triggers
queue the rows in ``search_queue``; :func:`before_commit` indexes the queue just before
the transaction commits, see there why.)  Other records are indexed by calling, inside
the transaction that stores them::

    fulltext.index_record(db, ref=f"call:{call_id}", kind="call", case_id=case_id,
                          author=member, subject="Call with the reporter", body=text)

``ref`` is ``<kind>:<your id>``; indexing a ref again replaces the earlier text.

The index is derived data: :func:`ensure` rebuilds it from its sources whenever
:data:`VERSION` (the definition below) changed, so its changes need no migration.
The query side is :mod:`mailflow.archive.search`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from mailflow import timestamps
from mailflow.store.sqlite import Database

# Bump when SOURCES, the columns or the triggers change: the index is then rebuilt.
VERSION = 4
# The kinds of records the index knows (the query language's kind:).
KINDS = ("report", "forward", "reply", "member", "held", "bounce", "call", "note", "draft",
         "sent", "case")
# The columns of search_fts.
COLUMNS = ("sender", "rcpt", "subject", "body", "quoted", "addr")


# An address becomes one token, so that from:a@x.org cannot match b.a@x.org.
_ADDR_ESCAPES = (("q", "q71"), ("@", "q40"), (".", "q2e"), ("-", "q2d"), ("_", "q5f"),
                 ("+", "q2b"))


def addr_token(role: str, address: str) -> str:
    """``f`` (sender) or ``t`` (recipient) + the address, escaped to letters and digits."""
    out = address.strip().lower()
    for char, escape in _ADDR_ESCAPES:
        out = out.replace(char, escape)
    return role + out


def _addr_token_sql(role: str, expr: str) -> str:
    for char, escape in _ADDR_ESCAPES:
        expr = f"replace({expr}, '{char}', '{escape}')"
    return f"'{role}' || lower({expr})"


def _json_tokens_sql(role: str, column: str) -> str:
    return (f"SELECT {_addr_token_sql(role, 'value')} AS tok FROM json_each(CASE WHEN "
            f"json_valid({column}) THEN {column} ELSE '[]' END)")


# Each source: the documents a row makes, as SQL over the row (alias {r}).  The triggers
# and `rebuild` are generated from these, so the two cannot drift apart.
# Mail, received (messages) or sent (outbound), has the same indexed columns.
MAIL_FTS = {
    "sender": "trim(coalesce({r}.from_name, '') || ' ' || coalesce({r}.from_addr, ''))",
    "rcpt": "trim(coalesce({r}.to_addrs, '') || ' ' || coalesce({r}.cc_addrs, ''))",
    "subject": "coalesce({r}.subject, '')",
    "body": "coalesce({r}.new_text, '')",
    "quoted": "coalesce({r}.quoted_text, '')",
    "addr": ("trim(coalesce(" + _addr_token_sql("f", "{r}.from_addr") + ", '') || ' ' ||"
             " coalesce((SELECT group_concat(tok, ' ') FROM ("
             + _json_tokens_sql("t", "{r}.to_addrs") + " UNION ALL "
             + _json_tokens_sql("t", "{r}.cc_addrs") + ")), ''))"),
}


MAIL_WATCH = ("case_id, kind, from_name, from_addr, to_addrs, cc_addrs, subject, new_text, "
              "quoted_text")


SOURCES: dict[str, dict[str, Any]] = {
    "messages": {
        "prefix": "message",
        "when": "1",
        "doc": {"kind": "{r}.kind", "case_id": "{r}.case_id",
                "at": "coalesce({r}.date, {r}.received_at)"},
        # A mail forwarded as an attachment is part of what its carrier says.
        "fts": {**MAIL_FTS, "body": "trim(coalesce({r}.new_text, '') || char(10) || "
                                    "coalesce({r}.forwarded_text, ''))"},
        "watch": MAIL_WATCH + ", forwarded_text, date, received_at",
    },
    "outbound": {
        "prefix": "outbound",
        # Relayed copies, which repeat an indexed message, are queued without text.
        "when": "{r}.new_text IS NOT NULL",
        "doc": {"kind": "'sent'", "case_id": "{r}.case_id", "at": "{r}.created_at"},
        "fts": MAIL_FTS,
        "watch": MAIL_WATCH + ", created_at",
    },
    "search_records": {
        "prefix": None,  # the row carries its own ref
        "when": "1",
        "doc": {"kind": "{r}.kind", "case_id": "{r}.case_id", "at": "{r}.at"},
        "fts": {
            "sender": "{r}.author",
            "rcpt": "''",
            "subject": "{r}.subject",
            "body": "{r}.body",
            "quoted": "''",
            "addr": ("CASE WHEN instr({r}.author, '@') THEN "
                     + _addr_token_sql("f", "{r}.author") + " ELSE '' END"),
        },
        "watch": "kind, case_id, at, author, subject, body",
    },
}


def _ref_sql(table: str, r: str) -> str:
    prefix = SOURCES[table]["prefix"]
    return f"{r}.ref" if prefix is None else f"'{prefix}:' || {r}.id"


def _doc_insert_sql(table: str, r: str) -> str:
    src = SOURCES[table]
    doc = {k: v.format(r=r) for k, v in src["doc"].items()}
    return (f"INSERT INTO search_docs (ref, kind, case_id, at) SELECT {_ref_sql(table, r)}, "
            f"{doc['kind']}, {doc['case_id']}, {doc['at']}")


def _queue_insert_sql(table: str, r: str) -> str:
    return (f"INSERT INTO search_queue (doc_id, source, src_rowid) SELECT d.id, '{table}', "
            f"{r}.rowid FROM search_docs d WHERE d.ref = {_ref_sql(table, r)}")


def _triggers(table: str) -> list[str]:
    when = SOURCES[table]["when"].format(r="NEW")
    ref = _ref_sql(table, "OLD")
    doc = f"(SELECT id FROM search_docs WHERE ref = {ref})"
    unindex = (f"DELETE FROM search_fts WHERE rowid = {doc}; DELETE FROM search_queue WHERE "
               f"doc_id = {doc}; DELETE FROM search_docs WHERE ref = {ref};")
    index = f"{_doc_insert_sql(table, 'NEW')} WHERE {when}; {_queue_insert_sql(table, 'NEW')};"
    return [
        f"CREATE TRIGGER search_{table}_ai AFTER INSERT ON {table} BEGIN {index} END",
        f"CREATE TRIGGER search_{table}_ad AFTER DELETE ON {table} BEGIN {unindex} END",
        f"CREATE TRIGGER search_{table}_au AFTER UPDATE OF {SOURCES[table]['watch']} ON {table} "
        f"BEGIN {unindex} {index} END",
    ]


# A case's own fields are a record like any other, kept by triggers on cases.
CASE_RECORD = ("INSERT INTO search_records (ref, kind, case_id, at, author, subject, body) "
               "SELECT 'case:' || {r}.id, 'case', {r}.id, {r}.opened_at, '', "
               "coalesce({r}.subject, ''), {r}.id || ' ' || {r}.codename || ' ' || {r}.status "
               "|| ' ' || {r}.kind")


CASE_TRIGGERS = [
    f"CREATE TRIGGER search_cases_ai AFTER INSERT ON cases BEGIN {CASE_RECORD.format(r='NEW')};"
    " END",
    "CREATE TRIGGER search_cases_ad AFTER DELETE ON cases BEGIN "
    "DELETE FROM search_records WHERE ref = 'case:' || OLD.id; END",
    "CREATE TRIGGER search_cases_au AFTER UPDATE OF subject, codename, status, kind ON cases "
    "BEGIN DELETE FROM search_records WHERE ref = 'case:' || OLD.id; "
    f"{CASE_RECORD.format(r='NEW')}; END",
]


def _create_index_tables(db: Database) -> None:
    db.execute("""
        CREATE TABLE search_docs (
            id INTEGER PRIMARY KEY,          -- the rowid in search_fts
            ref TEXT NOT NULL UNIQUE,        -- message:12, outbound:3, case:2026-0001, call:7
            kind TEXT NOT NULL,
            case_id TEXT,
            at TEXT NOT NULL                 -- the record's date (a mail's Date header)
        )""")
    db.execute("CREATE INDEX search_docs_at ON search_docs(at)")
    db.execute("CREATE INDEX search_docs_case ON search_docs(case_id, at)")
    db.execute("CREATE INDEX search_docs_kind ON search_docs(kind, at)")
    db.execute(f"CREATE VIRTUAL TABLE search_fts USING fts5({', '.join(COLUMNS)}, "
               "tokenize = 'porter unicode61 remove_diacritics 2')")
    _create_queue(db)


def _create_queue(db: Database) -> None:
    # Which row to index, not its text: the text is read once, when the queue is indexed.
    db.execute("CREATE TABLE search_queue (doc_id INTEGER PRIMARY KEY, source TEXT NOT NULL, "
               "src_rowid INTEGER NOT NULL)")


def before_commit(db: Database) -> None:
    """Index what this transaction queued, in one statement per source table.

    The triggers queue documents instead of writing to search_fts: SQLite opens a
    savepoint for every write statement, and FTS5 writes out what it has pending at
    each one, so a document indexed in the middle of a transaction became a tiny
    segment of its own, to be merged again and again (half the cost of an import).
    Run by :func:`store.transaction` before it commits, so search still never lags.
    """
    try:
        queued = db.execute("SELECT 1 FROM search_queue LIMIT 1").fetchone()
    except sqlite3.OperationalError:
        return  # the index is not built yet (ensure() runs on open)
    if queued:
        for table, src in SOURCES.items():
            fts = [src["fts"][c].format(r="r") for c in COLUMNS]
            db.execute(f"INSERT INTO search_fts (rowid, {', '.join(COLUMNS)}) SELECT q.doc_id, "
                       f"{', '.join(fts)} FROM search_queue q JOIN {table} r ON r.rowid = "
                       f"q.src_rowid WHERE q.source = '{table}' ORDER BY q.doc_id")
        db.execute("DELETE FROM search_queue")


def _create_triggers(db: Database) -> None:
    for table in SOURCES:
        for sql in _triggers(table):
            db.execute(sql)
    for sql in CASE_TRIGGERS:
        db.execute(sql)


def drop_triggers(db: Database) -> None:
    names = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'search\\_%' "
        "ESCAPE '\\'")]
    for name in names:
        db.execute(f"DROP TRIGGER {name}")


def index_record(db: Database, *, ref: str, kind: str, case_id: str | None,
                 body: str, at: str | None = None, author: str = "", subject: str = "") -> None:
    """Index (or re-index) a record; call inside the transaction that stores it."""
    # Here, not at the top: the scrubber loads the email package, and every command
    # opens the store; the read commands never index.
    from mailflow.mail.scrub import scrub_text

    if kind not in KINDS:
        raise ValueError(f"unknown search kind {kind!r}")
    db.execute(
        "INSERT INTO search_records (ref, kind, case_id, at, author, subject, body) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(ref) DO UPDATE SET kind = excluded.kind, "
        "case_id = excluded.case_id, at = excluded.at, author = excluded.author, "
        "subject = excluded.subject, body = excluded.body",
        [ref, kind, case_id, at or timestamps.stamp(), author.lower() if "@" in author else author,
         scrub_text(subject), scrub_text(body)])  # a draft's reply address is no search hit


def _fill(db: Database) -> None:
    for table, src in SOURCES.items():
        where = src["when"].format(r="r")
        db.execute(f"{_doc_insert_sql(table, 'r')} FROM {table} r WHERE {where} ORDER BY r.rowid")
        fts = [src["fts"][c].format(r="r") for c in COLUMNS]
        db.execute(f"INSERT INTO search_fts (rowid, {', '.join(COLUMNS)}) SELECT d.id, "
                   f"{', '.join(fts)} FROM {table} r JOIN search_docs d ON d.ref = "
                   f"{_ref_sql(table, 'r')} WHERE {where}")


def rebuild_index(db: Database) -> int:
    """Drop and rebuild ``search_docs`` and ``search_fts`` (inside the caller's
    transaction); returns the number of documents."""
    drop_triggers(db)
    db.execute("DROP TABLE IF EXISTS search_fts")
    db.execute("DROP TABLE IF EXISTS search_docs")
    db.execute("DROP TABLE IF EXISTS search_queue")
    db.execute("DELETE FROM search_records WHERE ref LIKE 'case:%'")
    db.execute(CASE_RECORD.format(r="c") + " FROM cases c ORDER BY c.rowid")
    _create_index_tables(db)
    _fill(db)
    _create_triggers(db)
    db.execute("INSERT INTO search_fts (search_fts) VALUES ('optimize')")
    return db.execute("SELECT count(*) FROM search_docs").fetchone()[0]



def ensure(db: Database,
           transaction: Callable[[Database], AbstractContextManager[Any]]) -> None:
    """Build the index if it is missing or was built by another :data:`VERSION`."""
    db.execute("CREATE TABLE IF NOT EXISTS search_index_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM search_index_version").fetchone()
    if row and row[0] == VERSION:
        return
    with transaction(db):
        row = db.execute("SELECT version FROM search_index_version").fetchone()
        if row and row[0] == VERSION:
            return  # another process built it meanwhile
        rebuild_index(db)
        db.execute("DELETE FROM search_index_version")
        db.execute("INSERT INTO search_index_version VALUES (?)", [VERSION])
