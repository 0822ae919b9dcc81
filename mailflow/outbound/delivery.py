"""Outbound mail: composed safely, queued durably, delivered with retries.

A message is queued in the same transaction as the change that caused it, so a
crash can neither lose it nor queue it twice.  Delivery is at-least-once: a crash
between the relay's 250 and our bookkeeping resends (as every MTA does).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from multiprocessing.synchronize import Event

import sqlite_utils

from mailflow import store, timestamps
from mailflow.config import Config
from mailflow.outbound.queue import next_due
from mailflow.outbound.transports import Result, Transport, transport_for
from mailflow.store import audit
from mailflow.wakeups import Doorbell

log = logging.getLogger("mailflow.outbound")


RECORD_EVERY, RECORD_SECONDS, RECORD_MAX = 20, 0.05, 200
# The next recipients to send to, in sending order (acknowledgements first), read from
# the index of queued recipients: without statistics SQLite would rather sort them all.
QUEUE_SQL = ("SELECT outbound_id, rcpt FROM outbound_rcpt INDEXED BY outbound_rcpt_queue "
             "WHERE state = 'queued' AND next_attempt_at <= ? {} "
             "ORDER BY priority, outbound_id LIMIT ?")
DUE_SQL = QUEUE_SQL.format("")
# Acknowledgements queued after a pass began (above the newest message it took).
NEW_ACKS_SQL = QUEUE_SQL.format("AND priority = 0 AND outbound_id > ?")
# One delivery pass takes at most this much mail into memory.
PASS_MESSAGES, PASS_BYTES = 400, 64 * 1024 * 1024


def backoff(cfg: Config, attempts: int) -> float:
    return min(cfg.outbound.retry_initial * (2 ** max(attempts - 1, 0)), cfg.outbound.retry_max)


def deliver_once(db: sqlite_utils.Database, cfg: Config) -> int:
    """One pass over one session: for the one-shot commands (process, tick)."""
    transport = transport_for(cfg)
    try:
        return deliver_due(db, cfg, [transport])
    finally:
        transport.close()


def deliver_due(db: sqlite_utils.Database, cfg: Config, transports: Sequence[Transport],
                new_mail: Callable[[], bool] | None = None) -> int:
    """One pass over the queue, over as many parallel sessions as there are transports
    (left open for the next pass); returns how many recipients were delivered.

    Acknowledgements go first: a reporter is waiting for one, and a committee copy can
    wait a second.  So when ``new_mail()`` says mail was queued during the pass, the
    acknowledgements among it join the pass at once, ahead of the committee copies
    still to send, instead of waiting for the next pass."""
    now = timestamps.now()
    due: dict[int, list[str]] = {}
    for out_id, rcpt in db.execute(DUE_SQL, [timestamps.stamp(now), PASS_MESSAGES * 4]):
        if out_id not in due and len(due) == PASS_MESSAGES:
            break
        due.setdefault(out_id, []).append(rcpt)
    if not due:
        return 0
    # Sessions take messages from `work`, which this thread keeps a few messages ahead
    # of them (reading each message only when it is about to go) until the pass is
    # over: everything sent, or PASS_BYTES read.  Then one None each.
    work: queue.SimpleQueue = queue.SimpleQueue()
    results: queue.SimpleQueue = queue.SimpleQueue()
    n_sessions = min(len(transports), len(due))
    upcoming = collections.deque(due.items())
    newest, joined = max(due), 0
    size = 0
    feeding = True

    def feed() -> None:
        nonlocal size, feeding, newest, joined
        while feeding and work.qsize() < 2 * n_sessions:
            if new_mail and joined < PASS_MESSAGES and new_mail():
                acks: dict[int, list[str]] = {}
                for out_id, rcpt in db.execute(NEW_ACKS_SQL, [timestamps.stamp(), newest,
                                                              PASS_MESSAGES - joined]):
                    acks.setdefault(out_id, []).append(rcpt)
                if acks:
                    newest, joined = max(acks), joined + len(acks)
                    upcoming.extendleft(reversed(acks.items()))
            if not upcoming or size > PASS_BYTES:
                feeding = False
                for _ in range(n_sessions):
                    work.put(None)
                return
            out_id, rcpts = upcoming.popleft()
            case_id, created, envelope_from, raw = db.execute(
                "SELECT case_id, created_at, envelope_from, raw FROM outbound WHERE id = ?",
                [out_id]).fetchone()
            expired = (now - timestamps.parse(created)).total_seconds() > cfg.outbound.give_up_after
            work.put((out_id, case_id, envelope_from, rcpts, raw, expired))
            size += len(raw)

    def session(transport: Transport) -> None:
        try:
            while (item := work.get()) is not None:
                out_id, case_id, envelope_from, rcpts, raw, expired = item
                results.put((out_id, case_id, transport.deliver(envelope_from, rcpts, raw),
                             expired))
        finally:
            results.put(None)

    feed()
    sessions = [threading.Thread(target=session, args=(t,), daemon=True)
                for t in transports[:n_sessions]]
    for t in sessions:
        t.start()
    # Bookkeeping in short transactions (the write lock is what others wait for), often
    # enough that a crash resends little: delivery is at-least-once, as in any MTA, and
    # the window is RECORD_EVERY messages or RECORD_SECONDS, or up to RECORD_MAX while
    # the pipeline holds the write lock: this thread feeds the sessions, and must not
    # stop to wait for the lock while they run dry.
    delivered, running, pending = 0, len(sessions), []
    last_flush = timestamps.monotonic()

    def flush(wait: bool = False) -> None:
        nonlocal delivered, last_flush
        if pending:
            try:
                with store.transaction(db, timeout=None if wait else 0):
                    for out_id, case_id, outcome, expired in pending:
                        for rcpt, res in outcome.items():
                            delivered += _record(db, cfg, out_id, case_id, rcpt, res,
                                                 expired, now)
            except store.Busy:
                if wait:
                    raise
                return  # taken: try again with the next results
            pending.clear()
        last_flush = timestamps.monotonic()

    while running:
        try:
            item = results.get(timeout=RECORD_SECONDS)
        except queue.Empty:
            flush()
            continue
        feed()
        if item is None:
            running -= 1
        else:
            pending.append(item)
        if len(pending) >= RECORD_EVERY or timestamps.monotonic() - last_flush > RECORD_SECONDS:
            flush(wait=len(pending) >= RECORD_MAX)
    flush(wait=True)
    return delivered


def _record(db, cfg, out_id, case_id, rcpt, res: Result, expired: bool, now) -> int:
    if res.ok:
        db.execute(
            "UPDATE outbound_rcpt SET state='sent', sent_at=?, attempts=attempts+1, last_error=NULL"
            " WHERE outbound_id=? AND rcpt=?", [timestamps.stamp(now), out_id, rcpt])
        return 1
    attempts = db.execute("SELECT attempts FROM outbound_rcpt WHERE outbound_id=? AND rcpt=?",
                          [out_id, rcpt]).fetchone()[0] + 1
    if res.permanent or expired:
        db.execute("UPDATE outbound_rcpt SET state='failed', attempts=?, last_error=? "
                   "WHERE outbound_id=? AND rcpt=?", [attempts, res.error, out_id, rcpt])
        audit.append(db, "mailflow", "delivery failed", case_id, to=rcpt, error=res.error)
        log.error("delivery of outbound %s to %s failed for good: %s", out_id, rcpt, res.error)
    else:
        retry_at = now + timedelta(seconds=backoff(cfg, attempts))
        db.execute("UPDATE outbound_rcpt SET attempts=?, last_error=?, next_attempt_at=? "
                   "WHERE outbound_id=? AND rcpt=?",
                   [attempts, res.error, timestamps.stamp(retry_at), out_id, rcpt])
        log.warning("delivery of outbound %s to %s deferred: %s", out_id, rcpt, res.error)
    return 0


def run_forever(cfg: Config, stop: Event, wake: Doorbell) -> None:
    """The delivery stage of ``mailflow serve``: delivers whenever new mail is queued
    or a retry falls due."""
    db = store.connect(cfg.db_path)
    transports = [transport_for(cfg) for _ in range(cfg.outbound.connections)]

    def new_mail() -> bool:
        rang = wake.wait(0)
        if rang:
            wake.clear()  # before looking, so that nothing queued later goes unseen
        return rang

    while not stop.is_set():
        wake.clear()
        try:
            deliver_due(db, cfg, transports, new_mail)
            wait = next_due(db)
        except Exception:
            log.exception("outbound pass failed; retrying shortly")
            wait = 5.0
        if wait == 0:
            continue  # mail queued during the pass: the next pass starts now
        for transport in transports:  # nothing to send now: do not keep sessions idle
            transport.close()
        wake.wait(timeout=min(5.0 if wait is None else wait, 5.0))
