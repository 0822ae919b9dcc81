"""The one source of "now", so that clocks can be tested without sleeping.

``MAILFLOW_FAKE_NOW`` (ISO 8601) pins the time for a whole process, which is how the
tests drive a real ``mailflow`` subprocess through a week in a second.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

# Real time for waiting and timeouts, which no fake clock should stretch.
monotonic = time.monotonic
sleep = time.sleep


STAMP = "%Y-%m-%dT%H:%M:%SZ"
FAKE_NOW = "MAILFLOW_FAKE_NOW"


def now() -> datetime:
    fake = os.environ.get(FAKE_NOW)
    if fake:
        return parse(fake)
    return datetime.now(UTC)


def stamp(when: datetime | None = None) -> str:
    """A sortable UTC timestamp for the database."""
    if when is None and not os.environ.get(FAKE_NOW):
        return time.strftime(STAMP, time.gmtime())  # several times a message: the quick way
    return (when or now()).astimezone(UTC).strftime(STAMP)


def parse(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
