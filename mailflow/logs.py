"""How mailflow logs: what a mail administrator can keep, and journald can read.

At INFO, one line per message processed (ids and what was done, never text,
subjects or reporters' addresses), starts and stops, and what went wrong.  ``-v``
adds mailflow's own debugging detail, still without mail content.  Only
``--debug-content`` lets aiosmtpd log the SMTP conversation, every line of every
message included, and the process says so loudly when it starts.

Under systemd (``JOURNAL_STREAM`` is set) a line carries no timestamp of its own and
starts with its syslog priority (``<6>``), which journald reads as the line's level;
``MAILFLOW_LOG_TIMESTAMPS=on`` or ``off`` decides otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import NamedTuple

CONTENT_LOGGER = "mail.log"  # aiosmtpd's: at DEBUG it logs every DATA line
SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                   logging.CRITICAL: 2}
CONTENT_WARNING = ("--debug-content: THIS LOG NOW HOLDS THE FULL TEXT OF EVERY MESSAGE, "
                   "reporters' addresses and words included. Use it only to debug, keep "
                   "the log private, and delete it afterwards.")


class Settings(NamedTuple):
    """What a process needs to log the same way as the command that started it (the
    stages of ``mailflow serve`` are processes of their own)."""

    verbose: bool = False
    content: bool = False
    journald: bool = False


def settings(verbose: bool = False, content: bool = False) -> Settings:
    chosen = os.environ.get("MAILFLOW_LOG_TIMESTAMPS", "").lower()
    journald = chosen in ("off", "no", "0") or (
        chosen not in ("on", "yes", "1") and bool(os.environ.get("JOURNAL_STREAM")))
    return Settings(verbose, content, journald)


class JournalFormatter(logging.Formatter):
    """``<priority>process logger: message``: journald stamps the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        priority = SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def setup(s: Settings, process: str = "mailflow") -> None:
    """Configure this process's logging; ``process`` names it in each line."""
    if s.journald:
        handler = logging.StreamHandler()
        handler.setFormatter(JournalFormatter(f"{process} %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s {process} %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if s.verbose or s.content else logging.INFO)
    # aiosmtpd logs each SMTP command at INFO (reporters' addresses) and, at DEBUG,
    # each line of each message: only --debug-content lets it through.
    logging.getLogger(CONTENT_LOGGER).setLevel(logging.DEBUG if s.content else logging.WARNING)
    if s.content:
        logging.getLogger("mailflow").warning(CONTENT_WARNING)


def digest(value: str | None) -> str:
    """A short hash of a value that must not be logged as it is (a Message-ID names its
    sender's domain and often the sender): the same value gives the same hash, so
    log lines can be matched with the MTA's or the sender's."""
    if not value:
        return "-"
    return hashlib.sha256(value.strip().encode("utf-8", "replace")).hexdigest()[:12]
