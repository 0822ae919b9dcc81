"""How the processes of ``mailflow serve`` wake each other.

A doorbell between processes: ringing never blocks the one who rings.

``multiprocessing.Event.set()`` waits until every waiter has woken, so the intake's
commit thread would wait for a busy (or lower-priority) pipeline after each commit.  A
non-blocking self-pipe costs one byte, and a full pipe already means "ring".
Same interface as an Event (``set``, ``wait``, ``clear``), so either can be passed.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
from dataclasses import dataclass
from multiprocessing.synchronize import Event


class Doorbell:
    def __init__(self) -> None:
        self._r, self._w = mp.Pipe(duplex=False)
        for conn in (self._r, self._w):
            os.set_blocking(conn.fileno(), False)

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._w.fileno(), b"\0")

    def wait(self, timeout: float | None = None) -> bool:
        return self._r.poll(timeout)

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._r.fileno(), 4096):
                pass


@dataclass
class Wakeups:
    """Cross-process events: stop everything, and wake a stage that has work; and
    the spool id the pipeline has processed up to, which the listener's flow control
    reads."""

    stop: Event
    pipeline: Doorbell
    outbound: Doorbell
    settled: ctypes.c_longlong
