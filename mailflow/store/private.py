"""The archive is private: its directory 0700 and every file in it 0600, whatever the
umask of whoever started mailflow.

Every mailflow process sets its umask to 077 on start (:func:`restrict`), so whatever it
creates (databases, and the WAL and shared-memory files SQLite makes beside them with
the database's own mode, keys, locks, the Maildir outbox) is private from the first
byte; :func:`secure` tightens what an older version or a hand-copied backup left
looser; ``mailflow check`` reports what is still looser (:func:`problems`).
"""

from __future__ import annotations

import _thread
import os
import stat

TYPE_CHECKING = False  # typing's, without importing typing: `mailflow ingest` starts faster
if TYPE_CHECKING:
    from pathlib import Path

DIR_MODE, FILE_MODE = 0o700, 0o600
# _thread, not threading: `mailflow ingest` starts faster without it (bench/startup.py).
_creating = _thread.allocate_lock()


def restrict() -> None:
    """Files this process creates are its user's alone."""
    os.umask(0o077)


def create_dir(path: str | os.PathLike[str]) -> None:
    """The directory, made (with its parents) and set to 0700."""
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    if stat.S_IMODE(os.stat(path).st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)


def create_file(path: str | os.PathLike[str]) -> None:
    """The file, made empty if it is not there, and set to 0600 before anything is
    written to it.

    An existing file is never opened here: closing any descriptor of a file drops every
    POSIX lock this process holds on it, so opening and closing a database that another
    connection of this process has open would strip that connection's locks, and the
    next connection to close would delete a WAL still being written (mail lost after
    "250")."""
    create_dir(os.path.dirname(os.path.abspath(path)))
    with _creating:  # no other thread connects to it between our create and our close
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            if stat.S_IMODE(os.stat(path).st_mode) & ~FILE_MODE:
                os.chmod(path, FILE_MODE)
            return
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
                os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)


def _wanted(path: Path) -> int:
    return DIR_MODE if path.is_dir() else FILE_MODE


def _tree(root: Path) -> list[Path]:
    return [root, *root.rglob("*")] if root.is_dir() else []


def secure(root: Path) -> None:
    """Tighten the modes of ``root`` and everything in it (links are left alone)."""
    for path in _tree(root):
        if path.is_symlink():
            continue
        try:
            if stat.S_IMODE(path.stat().st_mode) & ~_wanted(path):
                path.chmod(_wanted(path))
        except FileNotFoundError:  # removed meanwhile (a Maildir's tmp file)
            continue


def problems(root: Path) -> list[str]:
    """Each path under ``root`` that others could read or write, with its mode."""
    out = []
    for path in _tree(root):
        if path.is_symlink():
            continue
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & ~_wanted(path):
            out.append(f"{path}: mode {mode:04o}: others can read it; mailflow keeps the "
                       f"archive {DIR_MODE:04o} and its files {FILE_MODE:04o} "
                       f"(chmod -R go-rwx {root})")
    return out
