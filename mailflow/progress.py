"""A progress line on stderr for long admin commands: count, rate and time left.

On a terminal it redraws one line; otherwise (a log, a test) it writes a line every
few seconds, so the output stays readable.
"""

from __future__ import annotations

import sys
from typing import TextIO

from mailflow import timestamps


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    def __init__(self, label: str, total: int | None, unit: str = "msg",
                 stream: TextIO | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else 5.0
        self.done = 0
        self.started = timestamps.monotonic()
        self.shown = self.started

    def line(self) -> str:
        elapsed = max(timestamps.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        if self.total:
            width = 24
            filled = int(width * min(self.done / self.total, 1.0))
            left = (self.total - self.done) / rate if rate else 0.0
            return (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                    f"{self.done}/{self.total} {rate:,.0f} {self.unit}/s "
                    f"ETA {_duration(left)}")
        return f"{self.label} {self.done} {rate:,.0f} {self.unit}/s"

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = timestamps.monotonic()
        if now - self.shown >= self.every:
            self.shown = now
            self._write(self.line())

    def _write(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> float:
        """Print the final line; returns the elapsed seconds."""
        elapsed = timestamps.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self._write(f"{self.label}: {self.done} {self.unit} in {_duration(elapsed)} "
                    f"({rate:,.0f} {self.unit}/s)")
        if self.tty:
            self.stream.write("\n")
        return elapsed
