"""``mailflow serve``: the listener on the main thread's event loop, and one thread
for each stage behind it (intake writer → pipeline → outbound)."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from . import store
from .config import Config
from .intake import IntakeWriter
from .listener import IntakeHandler, protocol_factory
from .outbound import OutboundWorker
from .pipeline import PipelineWorker

log = logging.getLogger("mailflow.serve")


def describe(cfg: Config) -> str:
    out = f"relay {cfg.outbound.relay}" if cfg.outbound.relay else f"Maildir {cfg.outbox_dir}"
    return (f"listening on {cfg.intake.listen} ({cfg.intake.protocol}), archive {cfg.archive_dir}, "
            f"outbound to {out}")


def serve(cfg: Config) -> None:
    store.open_db(cfg.db_path).close()  # migrate once, before any worker starts
    stop = threading.Event()
    outbound = OutboundWorker(cfg, stop)
    pipeline = PipelineWorker(cfg, stop, on_output=outbound.wake.set)
    writer = IntakeWriter(cfg.db_path, cfg.intake.commit_timeout, on_commit=pipeline.wake.set)
    workers: list[threading.Thread] = [writer, pipeline, outbound]
    for worker in workers:
        worker.start()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = IntakeHandler(cfg, writer)
    server = loop.run_until_complete(
        loop.create_server(protocol_factory(cfg, handler), cfg.intake.host, cfg.intake.port)
    )
    finished = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, finished.set)
    log.info("mailflow %s", describe(cfg))
    try:
        loop.run_until_complete(finished.wait())
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        writer.stop()
        writer.join(timeout=10)
        stop.set()
        pipeline.wake.set()
        outbound.wake.set()
        for worker in (pipeline, outbound):
            worker.join(timeout=10)
        loop.close()
        log.info("mailflow stopped")
