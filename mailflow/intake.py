"""Durable intake: raw bytes committed to the spool before anyone hears "250".

Every way in (SMTP/LMTP, pipe, IMAP, import) ends in :func:`commit`.  The listener
goes through :class:`IntakeWriter`, which commits the messages of concurrent sessions
in one transaction (group commit: one fsync for many messages) and only then answers
each of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from . import clock, store

log = logging.getLogger("mailflow.intake")

HEADER_END = re.compile(rb"\r?\n\r?\n")
MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
GROUP_MAX = 256


@dataclass
class Envelope:
    source: str
    envelope_from: str | None
    rcpts: list[str]


def dedupe_key(raw: bytes) -> str:
    """The same message twice makes one record: the same Message-ID with the same body
    (whatever Received lines or line endings were added on the way), or the same bytes.
    A different body under a reused Message-ID is kept: it may be a different report."""
    split = HEADER_END.search(raw)
    head, body = (raw[: split.start()], raw[split.end():]) if split else (raw, b"")
    match = MESSAGE_ID.search(head)
    if match:
        mid = re.sub(rb"\s+", b"", match.group(1))
        if mid:
            body_hash = hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest()
            return "mid:" + hashlib.sha256(mid + b"\0" + body_hash.encode()).hexdigest()
    return "raw:" + hashlib.sha256(raw).hexdigest()


def commit(db: sqlite_utils.Database, raw: bytes, env: Envelope) -> tuple[int, bool]:
    """Insert into the spool inside the caller's transaction; (spool id, was a duplicate)."""
    key = dedupe_key(raw)
    row = db.execute("SELECT id FROM spool WHERE dedupe_key = ?", [key]).fetchone()
    if row:
        db.execute("UPDATE spool SET duplicates = duplicates + 1 WHERE id = ?", [row[0]])
        return row[0], True
    cur = db.execute(
        "INSERT INTO spool (received_at, source, envelope_from, rcpts, size, sha256, dedupe_key,"
        " raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [clock.stamp(), env.source, env.envelope_from, json.dumps(env.rcpts), len(raw),
         hashlib.sha256(raw).hexdigest(), key, raw],
    )
    return cur.lastrowid, False


def commit_one(db_path: Path, raw: bytes, env: Envelope, timeout: float = 10.0) -> tuple[int, bool]:
    """Open, commit one message durably, close: for ``mailflow ingest`` and the poller."""
    db = store.connect_spool(db_path, timeout=timeout)
    try:
        with store.transaction(db):
            return commit(db, raw, env)
    finally:
        db.close()


def commit_many(db: sqlite_utils.Database, items: Iterable[tuple[bytes, Envelope]]
                ) -> list[tuple[int, bool]]:
    with store.transaction(db):
        return [commit(db, raw, env) for raw, env in items]


class IntakeWriter(threading.Thread):
    """One thread owns the spool's write side; sessions wait on futures."""

    def __init__(self, db_path: Path, timeout: float, on_commit: Callable[[], None]):
        super().__init__(name="intake-writer", daemon=True)
        self.db_path = db_path
        self.timeout = timeout
        self.on_commit = on_commit
        self.pending: queue.Queue[tuple[bytes, Envelope, Future] | None] = queue.Queue()

    def submit(self, raw: bytes, env: Envelope) -> Future:
        fut: Future = Future()
        self.pending.put((raw, env, fut))
        return fut

    def stop(self) -> None:
        self.pending.put(None)

    def run(self) -> None:
        db = store.connect_spool(self.db_path, timeout=self.timeout)
        stopping = False
        while not stopping:
            first = self.pending.get()
            batch = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < GROUP_MAX:
                try:
                    item = self.pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            if batch:
                self._commit(db, batch)
        db.close()

    def _commit(self, db: sqlite_utils.Database, batch: list) -> None:
        try:
            results = commit_many(db, [(raw, env) for raw, env, _ in batch])
        except Exception as e:
            log.error("intake commit of %d message(s) failed: %s", len(batch), e)
            for _, _, fut in batch:
                fut.set_exception(e)
            return
        for (_, _, fut), result in zip(batch, results, strict=True):
            fut.set_result(result)
        self.on_commit()
