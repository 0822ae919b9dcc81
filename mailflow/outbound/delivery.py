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
from datetime import datetime, timedelta
from multiprocessing.synchronize import Event

from mailflow import store, timestamps
from mailflow.config import Config
from mailflow.outbound.body import Body
from mailflow.outbound.queue import next_due
from mailflow.outbound.transports import Result, Transport, transport_for
from mailflow.store import audit
from mailflow.store.sqlite import Database, spool_path
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


def deliver_once(db: Database, cfg: Config) -> int:
    """One pass over one session: for the one-shot commands (process, tick)."""
    transport = transport_for(cfg)
    try:
        return deliver_due(db, cfg, [transport])
    finally:
        transport.close()


def deliver_due(db: Database, cfg: Config, transports: Sequence[Transport],
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
    return DeliveryPass(db, cfg, now, due, len(transports), new_mail).run(transports)


Item = tuple[int, str | None, str, list[str], Body, bool]


class DeliveryPass:
    """The sessions take messages from ``work``, which this thread keeps a few messages
    ahead of them (reading each message only when it is about to go) until the pass is
    over: everything sent, or PASS_BYTES read; then one None each.  This thread also
    records what the sessions did."""

    def __init__(self, db: Database, cfg: Config, now: datetime,
                 due: dict[int, list[str]], sessions: int,
                 new_mail: Callable[[], bool] | None):
        self.db, self.cfg, self.now, self.new_mail = db, cfg, now, new_mail
        self.work: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self.results: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self.sessions = min(sessions, len(due))
        self.upcoming = collections.deque(due.items())
        self.newest, self.joined, self.size, self.feeding = max(due), 0, 0, True
        self.delivered = 0
        self.pending: list[tuple] = []
        self.last_flush = timestamps.monotonic()

    def _join_new_acks(self) -> None:
        if not (self.new_mail and self.joined < PASS_MESSAGES and self.new_mail()):
            return
        acks: dict[int, list[str]] = {}
        for out_id, rcpt in self.db.execute(NEW_ACKS_SQL, [
                timestamps.stamp(), self.newest, PASS_MESSAGES - self.joined]):
            acks.setdefault(out_id, []).append(rcpt)
        if acks:
            self.newest, self.joined = max(acks), self.joined + len(acks)
            self.upcoming.extendleft(reversed(acks.items()))

    def feed(self) -> None:
        while self.feeding and self.work.qsize() < 2 * self.sessions:
            self._join_new_acks()
            if not self.upcoming or self.size > PASS_BYTES:
                self.feeding = False
                for _ in range(self.sessions):
                    self.work.put(None)
                return
            out_id, rcpts = self.upcoming.popleft()
            case_id, created, envelope_from, raw, spool_id, tail = self.db.execute(
                "SELECT case_id, created_at, envelope_from, raw, attach_spool_id, raw_tail "
                "FROM outbound WHERE id = ?", [out_id]).fetchone()
            age = (self.now - timestamps.parse(created)).total_seconds()
            # An attached original is streamed from the spool by the session itself.
            body = Body(raw, spool_path(self.cfg.db_path) if spool_id else None, spool_id, tail)
            self.work.put((out_id, case_id, envelope_from, rcpts, body,
                           age > self.cfg.outbound.give_up_after))
            self.size += len(raw) + len(tail)

    def session(self, transport: Transport) -> None:
        try:
            while (item := self.work.get()) is not None:
                out_id, case_id, envelope_from, rcpts, body, expired = item
                self.results.put((out_id, case_id, transport.deliver(envelope_from, rcpts, body),
                                  expired))
        finally:
            self.results.put(None)

    def flush(self, wait: bool = False) -> None:
        """Record what was delivered, in a short transaction (the write lock is what
        others wait for); if it is taken, try again with the next results."""
        if self.pending:
            try:
                with store.transaction(self.db, timeout=None if wait else 0):
                    for out_id, case_id, outcome, expired in self.pending:
                        for rcpt, res in outcome.items():
                            self.delivered += _record(self.db, self.cfg, out_id, case_id,
                                                      rcpt, res, expired, self.now)
            except store.Busy:
                if wait:
                    raise
                return
            self.pending.clear()
        self.last_flush = timestamps.monotonic()

    def run(self, transports: Sequence[Transport]) -> int:
        """Bookkeeping often enough that a crash resends little: delivery is
        at-least-once, as in any MTA, and the window is RECORD_EVERY messages or
        RECORD_SECONDS, or up to RECORD_MAX while the pipeline holds the write lock:
        this thread feeds the sessions, and must not stop to wait for the lock while
        they run dry."""
        self.feed()
        threads = [threading.Thread(target=self.session, args=(t,), daemon=True)
                   for t in transports[:self.sessions]]
        for thread in threads:
            thread.start()
        running = len(threads)
        while running:
            try:
                item = self.results.get(timeout=RECORD_SECONDS)
            except queue.Empty:
                self.flush()
                continue
            self.feed()
            if item is None:
                running -= 1
            else:
                self.pending.append(item)
            if (len(self.pending) >= RECORD_EVERY
                    or timestamps.monotonic() - self.last_flush > RECORD_SECONDS):
                self.flush(wait=len(self.pending) >= RECORD_MAX)
        self.flush(wait=True)
        return self.delivered


def _record(db: Database, cfg: Config, out_id: int, case_id: str | None, rcpt: str,
            res: Result, expired: bool, now: datetime) -> int:
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
        audit.append(db, "mailflow", "delivery failed", case_id, outbound=out_id,
                     error=audit.fingerprint(db, res.error or ""))
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
