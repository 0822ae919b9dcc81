"""Where the shipped templates and rules are: the repository's top level when run
from a checkout or an editable install, inside the package when installed as a wheel."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def builtin(name: str) -> Path:
    """``templates`` or ``rules``."""
    for candidate in (_HERE / "_data" / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mailflow's {name}/ directory is missing from the installation")
