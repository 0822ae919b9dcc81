"""Durable intake: raw bytes committed to the spool before anyone hears "250".

Every way in (SMTP/LMTP, pipe, IMAP, import) ends in :func:`commit_rows`.  The
listener goes through :class:`GroupCommit`, which commits the messages of concurrent
sessions in one transaction (one fsync for many messages) and only then answers each
of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr
from pathlib import Path

import sqlite_utils

from mailflow import store, timestamps
from mailflow.mail.tokens import split_address

log = logging.getLogger("mailflow.intake")

HEADER_END = re.compile(rb"\r?\n\r?\n")
MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


@dataclass
class Envelope:
    source: str
    envelope_from: str | None
    rcpts: list[str]


def dedupe_key(raw: bytes, sha256: str) -> str:
    """The same message twice makes one record: the same Message-ID with the same body
    (whatever Received lines or line endings were added on the way), or the same bytes.
    A different body under a reused Message-ID is kept: it may be a different report.
    ``sha256``: the hex digest of ``raw``, the key when there is no Message-ID."""
    split = HEADER_END.search(raw)
    head, body = (raw[: split.start()], raw[split.end():]) if split else (raw, b"")
    match = MESSAGE_ID.search(head)
    if match:
        mid = re.sub(rb"\s+", b"", match.group(1))
        if mid:
            body_hash = hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest()
            return "mid:" + hashlib.sha256(mid + b"\0" + body_hash.encode()).hexdigest()
    return "raw:" + sha256


# One statement per message: a duplicate bumps its first copy's count instead.
INSERT = ("INSERT INTO spool (received_at, source, envelope_from, rcpts, size, sha256,"
          " dedupe_key, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
          " ON CONFLICT (dedupe_key) DO UPDATE SET duplicates = duplicates + 1"
          " RETURNING id, duplicates")


def spool_row(raw: bytes, env: Envelope) -> tuple:
    """The spool columns of one message (hashed before the commit, not inside it)."""
    sha256 = hashlib.sha256(raw).hexdigest()
    return (timestamps.stamp(), env.source, env.envelope_from, json.dumps(env.rcpts), len(raw),
            sha256, dedupe_key(raw, sha256), raw)


def commit_rows(db: sqlite_utils.Database, rows: Iterable[tuple], timeout: float | None = None
                ) -> list[tuple[int, bool]]:
    """Commit prepared :func:`spool_row` rows in one transaction; for each, (spool id,
    was a duplicate).  ``timeout``: how long to wait for the write lock, if not the
    connection's busy timeout."""
    with store.transaction(db, timeout):
        return [(spool_id, seen > 0) for spool_id, seen in
                (db.execute(INSERT, row).fetchone() for row in rows)]


def commit_many(db: sqlite_utils.Database, items: Iterable[tuple[bytes, Envelope]]
                ) -> list[tuple[int, bool]]:
    return commit_rows(db, [spool_row(raw, env) for raw, env in items])


def commit_one(db_path: Path, raw: bytes, env: Envelope, timeout: float = 10.0) -> tuple[int, bool]:
    """Open, commit one message durably, close: for ``mailflow ingest`` and the poller."""
    db = store.connect_spool(db_path, timeout=timeout)
    try:
        return commit_many(db, [(raw, env)])[0]
    finally:
        db.close()


class GroupCommit:
    """The listener's way into the spool: group commit on the event loop.

    Messages whose data ends in the same turn of the loop are committed together, at
    the end of that turn, in one transaction: one fsync answers them all.  The loop
    waits for that fsync (a fraction of a millisecond; a handoff to a thread and back
    cost more than the wait), but never for the write lock: if someone else holds it
    (``mailflow ingest``, the poller, an import), the batch waits for it on a thread
    of its own, up to ``timeout``, while the loop goes on.  Only the loop's thread
    calls :meth:`commit`."""

    def __init__(self, db_path: Path, timeout: float, on_commit: Callable[[], None]):
        self.timeout = timeout
        self.on_commit = on_commit
        # No busy timeout of its own: store.begin() waits for the lock in short steps.
        self.db = store.connect_spool(db_path, timeout=0)
        self.waiting: list[tuple[tuple, asyncio.Future]] = []
        self.busy = False  # a flush is scheduled, or a batch waits for the lock
        self.lock_waiter = ThreadPoolExecutor(1, thread_name_prefix="intake-commit")

    async def commit(self, raw: bytes, env: Envelope) -> tuple[int, bool]:
        """(spool id, was a duplicate), once the message is on disk."""
        loop = asyncio.get_running_loop()
        result = loop.create_future()
        self.waiting.append((spool_row(raw, env), result))
        if not self.busy:
            self.busy = True
            loop.call_soon(self._flush)
        return await result

    def _flush(self) -> None:
        batch, self.waiting = self.waiting, []
        rows = [row for row, _ in batch]
        outcome: list[tuple[int, bool]] | BaseException
        try:
            outcome = commit_rows(self.db, rows, timeout=0)
        except store.Busy:
            waited = asyncio.get_running_loop().run_in_executor(
                self.lock_waiter, commit_rows, self.db, rows, self.timeout)
            waited.add_done_callback(
                lambda done: self._settle(batch, done.exception() or done.result()))
            return
        except Exception as e:
            outcome = e
        self._settle(batch, outcome)

    def _settle(self, batch: list[tuple[tuple, asyncio.Future]],
                outcome: list[tuple[int, bool]] | BaseException) -> None:
        """Answer the batch's sessions, then start on what arrived meanwhile."""
        if isinstance(outcome, BaseException):
            log.error("intake commit of %d message(s) failed: %s", len(batch), outcome)
        else:
            self.on_commit()
        for i, (_, result) in enumerate(batch):
            if result.cancelled():  # the session went away; what it sent is kept all the same
                continue
            if isinstance(outcome, BaseException):
                result.set_exception(outcome)
            else:
                result.set_result(outcome[i])
        self.busy = bool(self.waiting)
        if self.busy:
            asyncio.get_running_loop().call_soon(self._flush)

    def close(self) -> None:
        self.lock_waiter.shutdown(wait=True)
        self.db.close()


# Where the envelope recipients of delivered mail show up, most precise first.
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc")


def envelope_from_headers(raw: bytes, domain: str, source: str) -> Envelope:
    """For mail taken from a mailbox, what SMTP would have told us: Return-Path as the
    sender (None if absent), and our own addresses among the delivery and address
    headers as the recipients."""
    try:
        head = BytesHeaderParser().parsebytes(raw)
        return_path = head.get("Return-Path")
        sender = None
        if return_path is not None:
            text = str(return_path).strip()
            sender = "" if text == "<>" else (parseaddr(text)[1] or None)
        rcpts: list[str] = []
        for name in RECIPIENT_HEADERS:
            for _, addr in getaddresses([str(v) for v in head.get_all(name) or []]):
                if split_address(addr, domain) and addr.lower() not in map(str.lower, rcpts):
                    rcpts.append(addr)
    except Exception as e:
        # A message we cannot read the headers of is still a report: take it, and
        # let threading fall back to its own parse.
        log.warning("unreadable envelope headers (%s); taking the message without them", e)
        return Envelope(source, None, [])
    return Envelope(source, sender, rcpts)
