"""Which configuration file mailflow reads: ``--config FILE``, else
``$MAILFLOW_CONFIG``, else ``./mailflow.toml``, else none (the embedded defaults).

On ``os`` alone, so that ``mailflow ingest`` finds the file without loading the
configuration's modules (:mod:`mailflow.intake.pipeconfig`).
"""

from __future__ import annotations

import os

DEFAULT_FILE = "mailflow.toml"


def find(explicit: str | None) -> str | None:
    """The file's path, or None for the embedded defaults."""
    if explicit:
        return explicit
    env = os.environ.get("MAILFLOW_CONFIG")
    if env:
        return env
    local = os.path.join(os.getcwd(), DEFAULT_FILE)
    return local if os.path.exists(local) else None
