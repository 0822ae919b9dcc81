"""The deployment's HMAC key (``secret.key``, or ``security.secret_file``): what signs
the tokens in addresses and keys the audit log's chain."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing's, without importing typing
if TYPE_CHECKING:
    from pathlib import Path


def load_secret(path: Path) -> bytes:
    """The key, created (mode 0600) on first use."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = os.urandom(32).hex().encode()  # as secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its key
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        return key
