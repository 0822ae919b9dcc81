"""``mailflow serve``: the listener, and one process for each stage behind it.

Like Postfix's daemons, the stages are separate processes (intake → pipeline →
outbound): a stage busy rendering and composing mail never makes the listener wait
for the interpreter, and each stage uses a core of its own.  The stages wake each
other through events and also poll, so a lost wake-up only costs a second.  They die
with the listener, however it dies, so there is never a second pipeline at work.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import uvloop

from mailflow import app, store
from mailflow.clocks import scheduler
from mailflow.config import Config
from mailflow.intake.listener import IntakeHandler, protocol_factory
from mailflow.intake.spool import GroupCommit
from mailflow.wakeups import Doorbell, Wakeups

log = logging.getLogger("mailflow.serve")
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
LOW_NICENESS = 10
SUPERVISE_EVERY = 0.5  # seconds between looks at the stages
STEADY_AFTER = 30.0    # a stage that ran this long before exiting is started again at once
RESTART_MAX = 60.0
# Stages start afresh (spawn), not as copies of the listener with its loop and sockets.
SPAWN = mp.get_context("spawn")


def become_stage(name: str) -> None:
    """Ask Linux to kill this process when the listener dies (even by SIGKILL), and to
    show it as ``mf-<stage>`` in ps and top."""
    # Linux only; elsewhere a stage outlives a listener killed by SIGKILL (the pipeline
    # lock still keeps a second pipeline from starting).
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        libc.prctl(PR_SET_NAME, f"mf-{name}".encode()[:15])


def yield_to_listener(priority: str) -> None:
    """Accepting mail comes first: when the cores are busy, a burst is taken in at full
    speed (up to the flow control's backlog) and processed just after.  SCHED_IDLE
    rather than a nice value: a niced stage can keep the CPU for a while when the
    listener wakes, an idle one gives it up at once, and an SMTP session waits for the
    listener four times a message."""
    if priority == "normal":
        return
    if priority == "idle" and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):  # a sandbox may forbid it: then nice
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
    os.nice(LOW_NICENESS)


def _run_stage(name: str, target: Callable[[Config, Wakeups], None], cfg: Config, sig: Wakeups,
               parent: int) -> None:
    become_stage(name)
    if os.getppid() != parent:  # the listener died before we got here
        return
    yield_to_listener(cfg.intake.stage_priority)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the listener decides when we stop
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s {name} %(name)s %(levelname)s %(message)s")
    target(cfg, sig)


def describe(cfg: Config) -> str:
    out = f"relay {cfg.outbound.relay}" if cfg.outbound.relay else f"Maildir {cfg.outbox_dir}"
    imap = cfg.intake.imap
    polling = (f", polling IMAP {imap.user}@{imap.host}:{imap.effective_port}/{imap.folder}"
               if imap else "")
    return (f"listening on {cfg.intake.listen} ({cfg.intake.protocol}){polling}, "
            f"archive {cfg.archive_dir}, outbound to {out}")


@dataclass
class Stage:
    name: str
    target: Callable[[Config, Wakeups], None]
    proc: BaseProcess | None = None
    started_at: float = 0.0
    backoff: float = 0.0          # how long to wait before starting it again
    restart_at: float | None = None


class Master:
    """Starts the stages and, as Postfix's master does, starts again any that exits:
    at once if it had run a while, else after a pause doubling up to a minute, so a
    stage that cannot start does not spin."""

    def __init__(self, cfg: Config, sig: Wakeups, wanted: list[tuple[str, Callable]]):
        self.cfg, self.sig = cfg, sig
        self.stages = [Stage(name, target) for name, target in wanted]
        for stage in self.stages:
            self._start(stage)

    def _start(self, stage: Stage) -> None:
        stage.proc = SPAWN.Process(
            target=_run_stage, args=(stage.name, stage.target, self.cfg, self.sig, os.getpid()),
            name=f"mailflow-{stage.name}", daemon=True)
        stage.proc.start()
        stage.started_at, stage.restart_at = time.monotonic(), None

    async def supervise(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_EVERY)
            now = time.monotonic()
            for stage in self.stages:
                assert stage.proc
                if stage.proc.is_alive():
                    continue
                if stage.restart_at is None:
                    steady = now - stage.started_at > STEADY_AFTER
                    stage.backoff = 0.0 if steady else min(max(2 * stage.backoff, 1.0),
                                                           RESTART_MAX)
                    stage.restart_at = now + stage.backoff
                    log.error("stage %s exited (code %s); starting it again in %.0f s",
                              stage.name, stage.proc.exitcode, stage.backoff)
                if now >= stage.restart_at:
                    self._start(stage)

    def stop(self) -> None:
        self.sig.stop.set()
        self.sig.pipeline.set()
        self.sig.outbound.set()
        for stage in self.stages:
            assert stage.proc
            stage.proc.join(timeout=10)
            if stage.proc.is_alive():
                stage.proc.kill()


def serve(cfg: Config) -> None:
    store.open_db(cfg.db_path).close()  # migrate once, before any stage starts
    # Alarms that fell due while mailflow was down fire (late) before it takes mail.
    scheduler.catch_up(app.services(cfg))
    sig = Wakeups(SPAWN.Event(), Doorbell(), Doorbell(), SPAWN.Value("q", 0, lock=False))
    master = Master(cfg, sig, app.stages(cfg))
    spool = GroupCommit(cfg.db_path, cfg.intake.commit_timeout, on_commit=sig.pipeline.set)

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        protocol_factory(cfg, IntakeHandler(cfg, spool, settled=lambda: sig.settled.value)),
        cfg.intake.host, cfg.intake.port))
    finished = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, finished.set)
    log.info("mailflow %s", describe(cfg))
    supervising = loop.create_task(master.supervise())
    try:
        loop.run_until_complete(finished.wait())
    finally:
        supervising.cancel()
        server.close()
        loop.run_until_complete(server.wait_closed())
        spool.close()
        master.stop()
        loop.close()
        log.info("mailflow stopped")
