"""What ``mailflow ingest`` needs of the configuration (where the archive is, the size
limit, how long to wait for the spool's write lock), kept in the cache of
:mod:`mailflow.filecache` so that an MTA's pipe transport, which starts mailflow for
every message, does not load the whole configuration each time: its modules and
tomllib were a third of each message's start (bench/README.md).

The entry's key is what the settings depend on: the configuration file (its
identity), the code that reads it (mailflow's version and ``config.py``), and what a
relative or ``~`` path depends on (the working directory and ``$HOME``).  When any of
these changed, the configuration is loaded and checked in full, as every other
command loads it, and the entry written anew: it never holds what a full load would
refuse.
"""

from __future__ import annotations

import os

import mailflow
from mailflow import configfile, filecache

FORMAT = 1  # raised whenever what the cache holds changes
CONFIG_CODE = os.path.join(os.path.dirname(mailflow.__file__), "config.py")


class PipeConfig:
    """The settings of one ingest: ``db_path`` is mailflow.db's path (the spool is
    beside it)."""

    __slots__ = ("commit_timeout", "db_path", "max_size")

    def __init__(self, db_path: str, max_size: int, commit_timeout: float):
        self.db_path, self.max_size, self.commit_timeout = db_path, max_size, commit_timeout

    def values(self) -> tuple[str, int, float]:
        return self.db_path, self.max_size, self.commit_timeout


def load(explicit: str | None) -> PipeConfig:
    """The settings from the cache when it is current, else from a full load of the
    configuration (which raises ConfigError for a file that is missing or wrong)."""
    path = configfile.find(explicit)
    key = _key(path)  # before the file is read: see filecache
    entry = filecache.entry("ingest", os.path.abspath(path) if path else "defaults")
    if key is not None:
        found = filecache.read(entry, key)
        if found is not None:
            return PipeConfig(*found)
    from mailflow import config

    cfg = config.load(path)
    settings = PipeConfig(str(cfg.db_path), cfg.intake.max_size, cfg.intake.commit_timeout)
    if key is not None:
        filecache.write(entry, key, settings.values())
    return settings


def _key(config_path: str | None) -> tuple | None:
    """What the settings depend on; None when a file cannot be examined (the full load
    then says why)."""
    source = filecache.identity(config_path) if config_path else ("<embedded defaults>",)
    code = filecache.identity(CONFIG_CODE)
    if source is None or code is None:
        return None
    return FORMAT, mailflow.__version__, code, source, os.getcwd(), os.environ.get("HOME")
