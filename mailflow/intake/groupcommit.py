"""The listener's way into the spool: group commit on the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mailflow import store
from mailflow.intake.spool import Envelope, commit_rows, spool_row

log = logging.getLogger("mailflow.intake")


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
        self.db = store.open_spool(db_path, timeout=0)
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
