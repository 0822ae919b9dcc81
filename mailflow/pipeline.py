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
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils
from jinja2.sandbox import SandboxedEnvironment

from . import (
    acknowledge,
    archive,
    audit,
    auth,
    clock,
    commands,
    relay,
    render,
    rules,
    store,
    threads,
    tokens,
)
from .config import Config
from .message import Parsed, parse

log = logging.getLogger("mailflow.pipeline")
BATCH = 64


@dataclass
class Services:
    """What every handler may use; built once per process."""

    cfg: Config
    rules: dict[str, Any]
    signer: tokens.Signer
    templates: SandboxedEnvironment

    @classmethod
    def load(cls, cfg: Config) -> Services:
        commands.load()
        return cls(cfg, rules.load(cfg), tokens.Signer(tokens.load_secret(cfg.secret_path)),
                   render.environment(cfg))


@dataclass
class Context:
    """One message on its way through the chain."""

    db: sqlite_utils.Database
    svc: Services
    spool_id: int
    envelope_from: str | None
    rcpts: list[str]
    raw: bytes
    parsed: Parsed
    side: str = "conduct"            # conduct or committee
    token: str | None = None         # the plus-address token it was sent to
    kind: str = ""                   # report, reply, forward, member, held, bounce
    case_id: str | None = None
    new_case: bool = False
    message_row: int | None = None
    flags: list[str] = field(default_factory=list)
    # Set by authentication: the roster member proven to have sent this, and how.
    actor: str | None = None
    proof: str | None = None
    auth_failure: str | None = None

    @property
    def cfg(self) -> Config:
        return self.svc.cfg

    @property
    def sender(self) -> str | None:
        return self.parsed.from_addr


Handler = Callable[[Context], None]

# The chain, in order.  Each handler reads what the ones before it decided.
HANDLERS: list[Handler] = [
    threads.route,
    archive.file_message,
    auth.authenticate,
    commands.apply,
    acknowledge.acknowledge,
    relay.relay,
]


def run_chain(ctx: Context) -> None:
    for handler in HANDLERS:
        handler(ctx)


def _claim(db: sqlite_utils.Database) -> list[tuple]:
    """Pick the next batch and count the attempt before doing any work.

    A message already tried (a crash or an error last time) runs alone, so a
    poison message cannot drag its neighbours into quarantine with it.
    """
    with store.transaction(db):
        rows = db.execute(
            "SELECT id, envelope_from, rcpts, raw, attempts FROM spool WHERE state = 'new' "
            "ORDER BY id LIMIT ?", [BATCH]).fetchall()
        rows = rows[:1] if rows and rows[0][4] > 0 else [r for r in rows if r[4] == 0]
        db.conn.executemany("UPDATE spool SET attempts = attempts + 1 WHERE id = ?",
                            [(r[0],) for r in rows])
    return [(*r[:4], r[4] + 1) for r in rows]


def process_pending(db: sqlite_utils.Database, svc: Services) -> int:
    """Process one batch; returns how many spool rows it settled."""
    rows = _claim(db)
    if not rows:
        return 0
    with store.transaction(db):
        for spool_id, envelope_from, rcpts, raw, attempts in rows:
            _process_one(db, svc, spool_id, envelope_from, json.loads(rcpts), raw, attempts)
    return len(rows)


def _process_one(db, svc: Services, spool_id, envelope_from, rcpts, raw, attempts) -> None:
    try:
        with store.savepoint(db, "message"):
            ctx = Context(db, svc, spool_id, envelope_from, rcpts, raw, parse(raw))
            run_chain(ctx)
            db.execute("UPDATE spool SET state='done', processed_at=?, last_error=NULL "
                       "WHERE id=?", [clock.stamp(), spool_id])
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        log.exception("processing spool message %s failed (attempt %s)", spool_id, attempts)
        state = "quarantined" if attempts >= svc.cfg.intake.max_attempts else "new"
        db.execute("UPDATE spool SET state=?, last_error=? WHERE id=?", [state, error, spool_id])
        if state == "quarantined":
            audit.append(db, "mailflow", "quarantined", None, spool_id=spool_id, error=error)


def quarantine_stragglers(db: sqlite_utils.Database, cfg: Config) -> int:
    """Messages whose attempts ran out in crashes (no error recorded) go to quarantine."""
    with store.transaction(db):
        rows = db.execute("SELECT id FROM spool WHERE state='new' AND attempts >= ?",
                          [cfg.intake.max_attempts]).fetchall()
        for (spool_id,) in rows:
            db.execute("UPDATE spool SET state='quarantined', last_error=coalesce(last_error, "
                       "'the process stopped while handling it') WHERE id=?", [spool_id])
            audit.append(db, "mailflow", "quarantined", None, spool_id=spool_id,
                         error="crashed repeatedly")
    return len(rows)


def release(db: sqlite_utils.Database, spool_id: int) -> bool:
    """Send a quarantined message through the pipeline again (after a fix)."""
    with store.transaction(db):
        cur = db.execute("UPDATE spool SET state='new', attempts=0 WHERE id=? "
                         "AND state='quarantined'", [spool_id])
        if cur.rowcount:
            audit.append(db, "admin", "released from quarantine", None, spool_id=spool_id)
    return bool(cur.rowcount)


def drain(db: sqlite_utils.Database, svc: Services) -> int:
    """Process until nothing is pending; returns the number of rows settled."""
    quarantine_stragglers(db, svc.cfg)
    total = 0
    while n := process_pending(db, svc):
        total += n
    return total


class PipelineWorker(threading.Thread):
    """Runs the chain whenever intake commits, and every second as a backstop
    (for mail committed by ``mailflow ingest`` or the poller in another process)."""

    def __init__(self, cfg: Config, stop: threading.Event, on_output: Callable[[], None]):
        super().__init__(name="pipeline", daemon=True)
        self.cfg = cfg
        self.stop = stop
        self.on_output = on_output
        self.wake = threading.Event()

    def run(self) -> None:
        db = store.connect(self.cfg.db_path)
        svc = Services.load(self.cfg)
        quarantine_stragglers(db, self.cfg)
        while not self.stop.is_set():
            try:
                while process_pending(db, svc):
                    self.on_output()
            except Exception:
                log.exception("pipeline pass failed; retrying shortly")
            self.wake.wait(timeout=1.0)
            self.wake.clear()
