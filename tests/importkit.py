"""What a ``mailflow`` command loads, as ``python -X importtime`` reports it: for the
structural tests that hold commands to loading only what they use (the figures are
``bench/startup.py``'s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def imported(stderr: str | bytes) -> set[str]:
    """The modules named in ``-X importtime`` output."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    return {line.rsplit("|", 1)[1].strip() for line in text.splitlines()
            if line.startswith("import time:") and "|" in line}


def loaded(*args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
           ) -> set[str]:
    """The modules ``mailflow ARGS`` loads; the command must succeed."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "mailflow", *args],
                            cwd=cwd, input=stdin, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return imported(result.stderr)
