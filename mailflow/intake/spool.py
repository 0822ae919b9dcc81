"""Durable intake: raw bytes committed to the spool before anyone hears "250".

Every way in (SMTP/LMTP, pipe, IMAP, import) ends in :func:`commit_rows`.  The
listener goes through :class:`~mailflow.intake.groupcommit.GroupCommit`, which commits
the messages of concurrent sessions in one transaction (one fsync for many messages)
and only then answers each of them.  ``mailflow ingest`` (an MTA runs it for every
message) imports this module and :mod:`mailflow.store.sqlite`, little else.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sqlite3

from mailflow import timestamps
from mailflow.store.sqlite import Database, open_spool, transaction

TYPE_CHECKING = False  # typing's, without importing typing: `mailflow ingest` starts faster
if TYPE_CHECKING:
    from collections.abc import Iterable

    from mailflow.store.sqlite import Executes

HEADER_END = re.compile(rb"\r?\n\r?\n")
HASH_CHUNK = 1024 * 1024  # large bodies are hashed and written this much at a time
LARGE = 1024 * 1024
MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


class Envelope:
    """What the SMTP session (or the MTA's pipe) said: the source, sender and
    recipients.  (A plain class: a NamedTuple would have ``mailflow ingest`` import
    ``typing``, a dataclass ``inspect``.)"""

    __slots__ = ("envelope_from", "rcpts", "source")

    def __init__(self, source: str, envelope_from: str | None, rcpts: list[str]):
        self.source, self.envelope_from, self.rcpts = source, envelope_from, rcpts


def dedupe_key(raw: bytes, sha256: str) -> str:
    """The same message twice makes one record: the same Message-ID with the same body
    (whatever Received lines or line endings were added on the way), or the same bytes.
    A different body under a reused Message-ID is kept: it may be a different report.
    ``sha256``: the hex digest of ``raw``, the key when there is no Message-ID."""
    split = HEADER_END.search(raw)
    match = MESSAGE_ID.search(raw, 0, split.start() if split else len(raw))
    if match:
        mid = re.sub(rb"\s+", b"", match.group(1))
        if mid:
            body_hash = lf_digest(raw, split.end() if split else len(raw))
            return "mid:" + hashlib.sha256(mid + b"\0" + body_hash.encode()).hexdigest()
    return "raw:" + sha256


def lf_digest(raw: bytes, start: int) -> str:
    """The sha256 of ``raw[start:]`` with CRLF as LF, a chunk at a time: a 25 MB body
    is neither sliced nor rewritten whole (the listener would hold two more copies)."""
    digest, view, carry = hashlib.sha256(), memoryview(raw), b""
    for at in range(start, len(raw), HASH_CHUNK):
        chunk = carry + view[at:at + HASH_CHUNK].tobytes()
        chunk, carry = (chunk[:-1], b"\r") if chunk.endswith(b"\r") else (chunk, b"")
        digest.update(chunk.replace(b"\r\n", b"\n"))
    digest.update(carry)
    return digest.hexdigest()


@functools.cache
def _insert_sql(recipients: int, large: bool) -> str:
    """One statement per message: a duplicate bumps its first copy's count instead.
    SQLite writes the recipients' JSON (json_array), so that ``mailflow ingest`` need
    not load the json module; a large message's bytes are written afterwards into the
    zeroes its row holds."""
    rcpts = ", ".join("?" * recipients)
    return ("INSERT INTO spool (received_at, source, envelope_from, rcpts, size, sha256,"
            f" dedupe_key, raw) VALUES (?, ?, ?, json_array({rcpts}), ?, ?, ?,"
            f" {'zeroblob(?)' if large else '?'})"
            " ON CONFLICT (dedupe_key) DO UPDATE SET duplicates = duplicates + 1"
            " RETURNING id, duplicates")


def spool_row(raw: bytes, env: Envelope) -> tuple:
    """The spool columns of one message (hashed before the commit, not inside it); the
    recipients are a list, made JSON by the insert."""
    sha256 = hashlib.sha256(raw).hexdigest()
    return (timestamps.stamp(), env.source, env.envelope_from, env.rcpts, len(raw),
            sha256, dedupe_key(raw, sha256), raw)


def commit_rows(db: Executes, rows: Iterable[tuple], timeout: float | None = None
                ) -> list[tuple[int, bool]]:
    """Commit prepared :func:`spool_row` rows in one transaction; for each, (spool id,
    was a duplicate).  ``timeout``: how long to wait for the write lock, if not the
    connection's busy timeout."""
    with transaction(db, timeout):
        return [_insert(db, row) for row in rows]


def _insert(db: Executes, row: tuple) -> tuple[int, bool]:
    *head, rcpts, size, sha256, key, raw = row
    params = (*head, *rcpts, size, sha256, key)
    if len(raw) <= LARGE:
        spool_id, seen = db.execute(_insert_sql(len(rcpts), False), (*params, raw)).fetchone()
        return spool_id, seen > 0
    # A large message is written into its row a chunk at a time: bound as a parameter,
    # SQLite would take a copy of it whole.
    spool_id, seen = db.execute(_insert_sql(len(rcpts), True), (*params, len(raw))).fetchone()
    if not seen:
        conn = db.conn if isinstance(db, Database) else db  # or the connection itself
        assert isinstance(conn, sqlite3.Connection)
        view = memoryview(raw)
        with conn.blobopen("spool", "raw", spool_id) as blob:
            for at in range(0, len(raw), HASH_CHUNK):
                blob.write(view[at:at + HASH_CHUNK])
    return spool_id, seen > 0


def commit_many(db: Executes, items: Iterable[tuple[bytes, Envelope]]
                ) -> list[tuple[int, bool]]:
    return commit_rows(db, [spool_row(raw, env) for raw, env in items])


def commit_one(db_path: str | os.PathLike[str], raw: bytes, env: Envelope, timeout: float = 10.0
               ) -> tuple[int, bool]:
    """Open, commit one message durably, close: for ``mailflow ingest`` and the poller."""
    db = open_spool(db_path, timeout=timeout)
    try:
        return commit_many(db, [(raw, env)])[0]
    finally:
        db.close()
