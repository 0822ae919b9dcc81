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
import errno
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import uvloop

from mailflow import app, logs, store
from mailflow.archive.status import SERVE_LOCK, SERVE_PID
from mailflow.cli.options import Failed
from mailflow.cli.sysexits import EX_CONFIG
from mailflow.clocks import scheduler
from mailflow.config import Config, ConfigError
from mailflow.intake.groupcommit import GroupCommit
from mailflow.intake.listener import IntakeHandler, protocol_factory
from mailflow.store import private
from mailflow.wakeups import Doorbell, Wakeups

log = logging.getLogger("mailflow.serve")
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
LOW_NICENESS = 10
SUPERVISE_EVERY = 0.5  # seconds between looks at the stages
STEADY_AFTER = 30.0    # a stage that ran this long before exiting is started again at once
RESTART_MAX = 60.0
STOP_WAIT = 10        # seconds a stage may take to finish its work when asked to stop
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
               parent: int, log_settings: logs.Settings) -> None:
    become_stage(name)
    if os.getppid() != parent:  # the listener died before we got here
        return
    yield_to_listener(cfg.intake.stage_priority)
    # The listener decides when we stop (SIGTERM to the whole group, as systemd sends
    # it, must not cut a batch short), and reloads by starting us again.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    logs.setup(log_settings, f"mf-{name}")
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

    def __init__(self, cfg: Config, sig: Wakeups, log_settings: logs.Settings):
        self.cfg, self.sig, self.log_settings = cfg, sig, log_settings
        self.stages: list[Stage] = []
        self.reload_with: Callable[[], Config] | None = None  # set by SIGHUP
        self._start_all()

    def _start_all(self) -> None:
        self.stages = [Stage(name, target) for name, target in app.stages(self.cfg)]
        for stage in self.stages:
            self._start(stage)

    def _start(self, stage: Stage) -> None:
        stage.proc = SPAWN.Process(
            target=_run_stage, args=(stage.name, stage.target, self.cfg, self.sig, os.getpid(),
                                     self.log_settings),
            name=f"mailflow-{stage.name}", daemon=True)
        stage.proc.start()
        stage.started_at, stage.restart_at = time.monotonic(), None

    def reload(self, load: Callable[[], Config]) -> Config | None:
        """Read and check the configuration, rules and templates again; if they are
        sound, stop the stages (each finishes what it is doing) and start them with
        it.  If not, log why and go on as before.  Returns the new configuration."""
        try:
            cfg = load()
        except ConfigError as e:
            for line in str(e).splitlines():
                log.error("reload refused, the running configuration stays: %s", line)
            return None
        self.stop()
        self.sig.stop.clear()
        self.cfg = cfg
        self._start_all()
        log.info("reloaded %s: %s", cfg.source, describe(cfg))
        return cfg

    async def supervise(self, on_reload: Callable[[Config], None]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SUPERVISE_EVERY)
            if self.reload_with is not None:
                load, self.reload_with = self.reload_with, None
                # Off the loop: stopping the stages takes a while, and mail keeps coming.
                cfg = await loop.run_in_executor(None, self.reload, load)
                if cfg is not None:
                    on_reload(cfg)
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
        """Ask every stage to stop after what it is doing, wait for it (each holds its
        work in transactions, so even a kill after the wait loses nothing)."""
        self.sig.stop.set()
        self.sig.pipeline.set()
        self.sig.outbound.set()
        for stage in self.stages:
            assert stage.proc
            stage.proc.join(timeout=STOP_WAIT)
            if stage.proc.is_alive():
                log.warning("stage %s did not stop within %d s; killed", stage.name, STOP_WAIT)
                stage.proc.kill()
                stage.proc.join()


def listen(loop: asyncio.AbstractEventLoop, cfg: Config, handler: IntakeHandler
           ) -> asyncio.AbstractServer:
    try:
        return loop.run_until_complete(loop.create_server(
            protocol_factory(handler), cfg.intake.host, cfg.intake.port))
    except OSError as e:
        why = ("the port is in use (another mailflow serve, or another program?)"
               if e.errno == errno.EADDRINUSE else e.strerror or str(e))
        raise Failed(f"cannot listen on {cfg.intake.listen}: {why}", EX_CONFIG) from None


def serve(cfg: Config, log_settings: logs.Settings, load: Callable[[], Config]) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads (``load`` reads and checks the
    configuration, rules and templates again)."""
    cfg.archive_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.ExitStack() as running:
        try:
            running.enter_context(store.exclusive(cfg.archive_dir / SERVE_LOCK, timeout=0))
        except TimeoutError:
            raise Failed(f"another mailflow serve is running on {cfg.archive_dir} "
                         f"(it holds {SERVE_LOCK})", EX_CONFIG) from None
        (cfg.archive_dir / SERVE_PID).write_text(f"{os.getpid()}\n")
        _serve(cfg, log_settings, load)


def _serve(cfg: Config, log_settings: logs.Settings, load: Callable[[], Config]) -> None:
    store.open_db(cfg.db_path).close()  # migrate once, before any stage starts
    private.secure(cfg.archive_dir)  # what an older version or a restore left readable
    sig = Wakeups(SPAWN.Event(), Doorbell(), Doorbell(), SPAWN.Value("q", 0, lock=False))
    spool = GroupCommit(cfg.db_path, cfg.intake.commit_timeout, on_commit=sig.pipeline.set)
    handler = IntakeHandler(cfg, spool, settled=lambda: sig.settled.value)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = listen(loop, cfg, handler)  # before anything starts: a port in use stops us here
    # Alarms that fell due while mailflow was down fire (late) before it takes mail.
    scheduler.catch_up(app.services(cfg))
    master = Master(cfg, sig, log_settings)
    finished = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, finished.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: setattr(master, "reload_with", load))
    log.info("mailflow %s", describe(cfg))
    supervising = loop.create_task(master.supervise(lambda new: on_reload(handler, cfg, new)))
    try:
        loop.run_until_complete(finished.wait())
    finally:
        log.info("mailflow stopping: finishing what was accepted")
        supervising.cancel()
        server.close()  # no new sessions; messages being committed are still answered
        loop.run_until_complete(handler.drained(STOP_WAIT))
        loop.run_until_complete(server.wait_closed())
        spool.close()  # after the last commit in flight is answered
        master.stop()
        loop.close()
        log.info("mailflow stopped")


def on_reload(handler: IntakeHandler, old: Config, new: Config) -> None:
    """The listener takes the new configuration too, except where it listens."""
    handler.cfg = new
    if (new.intake.listen, new.intake.protocol) != (old.intake.listen, old.intake.protocol):
        log.warning("intake.listen and intake.protocol take effect at the next start; still "
                    "listening on %s (%s)", old.intake.listen, old.intake.protocol)
