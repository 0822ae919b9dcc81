"""Processing after intake: a chain of handlers, one job each, run per spooled message.

Restartable by construction: each message's handlers run inside one savepoint of
one transaction that also marks the spool row done, so a crash either loses the
whole step (and it runs again) or none of it.  Attempts are counted *before* the
work, in their own commit, so a message that crashes the process every time is
still counted and ends in quarantine instead of looping forever.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from multiprocessing.synchronize import Event

from mailflow import store, timestamps
from mailflow.case.notices import sealed_in_batches
from mailflow.config import Config
from mailflow.mail.parse import Parsed, parse
from mailflow.pipeline import outcome
from mailflow.pipeline.context import Context, Services
from mailflow.store import audit
from mailflow.store.sqlite import Database
from mailflow.wakeups import Doorbell

log = logging.getLogger("mailflow.pipeline")
BATCH = 64
BATCH_SECONDS = 0.1
SQLITE_INT_MAX = 2 ** 63 - 1


def run_chain(ctx: Context) -> None:
    """The handlers of :data:`mailflow.app.HANDLERS`, in order (imported history: those
    of ``HISTORY_HANDLERS``)."""
    parts = ctx.svc.parts
    for handler in parts.history_handlers if ctx.quiet else parts.handlers:
        handler(ctx)


def settled_up_to(db: Database) -> int:
    """The spool id up to which every message has been processed (or quarantined)."""
    return db.execute("SELECT coalesce(max(spool_id), 0) FROM spool_state").fetchone()[0]


def _claim(db: Database, batch: int, last: int | None = None
           ) -> list[tuple[int, int]]:
    """Pick the next batch and count the attempt before doing any work.

    New mail is everything in the spool above the highest id ever claimed (ids commit
    in order, so nothing can appear below it later).  A message already tried (an
    error, or a crash, last time) runs alone, so a poison message cannot drag its
    neighbours into quarantine with it.
    """
    with store.transaction(db):
        retry = db.execute("SELECT spool_id, attempts FROM spool_state WHERE state = 'new' "
                           "ORDER BY spool_id LIMIT 1").fetchone()
        if retry:
            claimed = [(retry[0], retry[1] + 1)]
            db.execute("UPDATE spool_state SET attempts = ? WHERE spool_id = ?",
                       [claimed[0][1], claimed[0][0]])
        else:
            upto = SQLITE_INT_MAX if last is None else last
            ids = [r[0] for r in db.execute("SELECT id FROM spool WHERE id > ? AND id <= ? "
                                            "ORDER BY id LIMIT ?",
                                            [settled_up_to(db), upto, batch])]
            claimed = [(i, 1) for i in ids]
            db.conn.executemany("INSERT INTO spool_state (spool_id, attempts) VALUES (?, ?)",
                                claimed)
    return claimed


def process_pending(db: Database, svc: Services, batch: int = BATCH,
                    seconds: float = BATCH_SECONDS, parsed: Mapping[int, Parsed] | None = None,
                    last: int | None = None) -> int:
    """Process one batch, of new mail up to spool id ``last``; returns how many spool
    rows it settled.  ``parsed``: messages already parsed elsewhere, by spool id (the
    import parses in a second process, which commits the next chunk meanwhile).

    The transaction holds the write lock, so a batch commits after at most ``seconds``
    of work; what it claimed but did not reach is unclaimed again.  (``mailflow
    import`` takes larger batches: it is the only writer while it runs, and each
    commit costs the search index a merge.)"""
    claimed = _claim(db, batch, last)
    if not claimed:
        return 0
    done = 0
    with store.transaction(db), sealed_in_batches(db, svc):
        started = timestamps.monotonic()
        for spool_id, attempts in claimed:
            if done and timestamps.monotonic() - started > seconds:
                break
            _process_one(db, svc, spool_id, attempts, (parsed or {}).get(spool_id))
            done += 1
        db.conn.executemany("DELETE FROM spool_state WHERE spool_id = ?",
                            [(c[0],) for c in claimed[done:]])
    return done


def _process_one(db: Database, svc: Services, spool_id: int, attempts: int,
                 parsed: Parsed | None) -> None:
    waiting = len(svc.sealing or [])  # members' copies of the batch still to encrypt
    try:
        with store.savepoint(db, "message"):
            # Read at its turn, not at the claim: a batch claims more than its time
            # allows, and the rest is unclaimed again.
            envelope_from, rcpts, raw, source = db.execute(
                "SELECT envelope_from, rcpts, raw, source FROM spool WHERE id = ?",
                [spool_id]).fetchone()
            ctx = Context(db, svc, spool_id, envelope_from, json.loads(rcpts), raw,
                          parsed if parsed is not None else parse(raw))
            ctx.quiet = source == "import"
            queued_after = outcome.last_outbound(db)
            run_chain(ctx)
            db.execute("UPDATE spool_state SET state='done', processed_at=?, last_error=NULL "
                       "WHERE spool_id=?", [timestamps.stamp(), spool_id])
            if not ctx.quiet:  # an import reports its own summary
                log.info("%s", outcome.line(ctx, queued_after))
    except Exception as e:
        if svc.sealing is not None:
            del svc.sealing[waiting:]  # this message's copies go with its savepoint
        error = f"{type(e).__name__}: {e}"
        log.exception("processing spool message %s failed (attempt %s)", spool_id, attempts)
        state = "quarantined" if attempts >= svc.cfg.intake.max_attempts else "new"
        db.execute("UPDATE spool_state SET state=?, last_error=? WHERE spool_id=?",
                   [state, error, spool_id])
        if state == "quarantined":
            audit.append(db, "mailflow", "quarantined", None, spool_id=spool_id,
                         error=audit.fingerprint(db, error))


def quarantine_stragglers(db: Database, cfg: Config) -> int:
    """Messages whose attempts ran out in crashes (no error recorded) go to quarantine."""
    with store.transaction(db):
        rows = db.execute("SELECT spool_id FROM spool_state WHERE state='new' AND attempts >= ?",
                          [cfg.intake.max_attempts]).fetchall()
        for (spool_id,) in rows:
            db.execute("UPDATE spool_state SET state='quarantined', last_error=coalesce("
                       "last_error, 'the process stopped while handling it') WHERE spool_id=?",
                       [spool_id])
            audit.append(db, "mailflow", "quarantined", None, spool_id=spool_id,
                         error="crashed-repeatedly")
    return len(rows)


def release(db: Database, spool_id: int) -> bool:
    """Send a quarantined message through the pipeline again (after a fix)."""
    with store.transaction(db):
        cur = db.execute("UPDATE spool_state SET state='new', attempts=0 WHERE spool_id=? "
                         "AND state='quarantined'", [spool_id])
        if cur.rowcount:
            audit.append(db, "admin", "released from quarantine", None, spool_id=spool_id)
    return bool(cur.rowcount)


def drain(db: Database, svc: Services, lock_timeout: float = 30.0) -> int:
    """Process until nothing is pending; returns the number of rows settled.
    TimeoutError if another pipeline (``mailflow serve``) holds the lock that long."""
    with store.exclusive(svc.cfg.archive_dir / "pipeline.lock", timeout=lock_timeout):
        quarantine_stragglers(db, svc.cfg)
        total = 0
        while n := process_pending(db, svc):
            total += n
    return total


def run_forever(svc: Services, stop: Event, wake: Doorbell, on_output: Callable[[], None],
                on_progress: Callable[[int], None]) -> None:
    """The pipeline stage of ``mailflow serve``: runs whenever intake commits, and every
    second as a backstop (for mail committed by ``mailflow ingest`` or the poller).
    ``on_progress`` hears :func:`settled_up_to` after each batch (for flow control)."""
    cfg = svc.cfg
    db = store.connect(cfg.db_path)
    with store.exclusive(cfg.archive_dir / "pipeline.lock"):
        quarantine_stragglers(db, cfg)
        while not stop.is_set():
            wake.clear()
            try:
                on_progress(settled_up_to(db))
                while not stop.is_set() and process_pending(db, svc):
                    on_output()
                    on_progress(settled_up_to(db))
            except Exception:
                log.exception("pipeline pass failed; retrying shortly")
            wake.wait(timeout=1.0)
