"""A per-user cache of what mailflow makes from a file, so that a command started
often need not make it again: a TOML file parsed (:mod:`mailflow.tomlfile`), the
settings of ``mailflow ingest`` (:mod:`mailflow.intake.pipeconfig`).

It works as Python's own bytecode cache does.  Each entry holds its value with a key:
what the value was made from (for a file, its :func:`identity`: path, device, inode,
size, modification and change times).  A caller uses an entry only while the key it
computes now is the same; otherwise it makes the value anew and writes the entry
again.  The key is taken before the file is read, so a file changed while it is read
leaves an entry that never matches again; a file changed in the last two seconds gets
no entry at all (see :func:`identity`).

Entries live in ``$XDG_CACHE_HOME/mailflow`` (else ``~/.cache/mailflow``), the directory
0700 and each entry 0600, written whole by a rename.  An entry is read only when it
belongs to this user and nobody else may write it, and one that does not load is
ignored.  Where the directory cannot be written, every command makes its values anew:
slower, never wrong.  Values are what :mod:`marshal` stores, which needs no import.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import time

TYPE_CHECKING = False  # typing's, without importing typing: `mailflow ingest` starts faster
if TYPE_CHECKING:
    from typing import Any

SETTLED = 2.0  # seconds a file must have been unchanged for an entry to vouch for it


def directory() -> str:
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, or relative: which the XDG rules say to ignore
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mailflow")


def unusable() -> str | None:
    """Why this user's entries cannot be written, or None (the directory is made if
    need be, as writing an entry would)."""
    where = directory()
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
    except OSError as e:
        return f"{where}: {e.strerror or e}"
    return None if os.access(where, os.W_OK) else f"{where}: not writable"


def entry(kind: str, name: str) -> str:
    """The entry for ``kind`` (what is kept) of ``name`` (an absolute path, say), named
    after it (``/`` as ``%2F``, ``%`` as ``%25``).  A name longer than a file's name may
    be is cut: two such may share an entry, which only costs a remake, since the key
    tells them apart."""
    escaped = name.replace("%", "%25").replace("/", "%2F")
    return os.path.join(directory(), f"{kind}-{escaped}"[:200])


def identity(path: str) -> tuple[Any, ...] | None:
    """What tells this version of the file from any other; None if it cannot be seen,
    or changed less than :data:`SETTLED` seconds ago.  (A file's times have the
    granularity of the kernel's clock tick: a change in the same tick as the one an
    entry was made from, at the same size and inode, would look the same.  Once a
    file has been still for longer than a tick, any later change shows in its times;
    git treats its "racily clean" files so.)"""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if time.time() - st.st_mtime < SETTLED:
        return None
    return (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns)


def read(entry: str, key: tuple[Any, ...]) -> Any:
    """The value kept under ``key``, or None."""
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None  # somebody else's, or others could have written it
        try:
            stored, value = marshal.load(f)
        except (EOFError, ValueError, TypeError):  # cut short, or not an entry
            return None
    return value if stored == key else None


def write(entry: str, key: tuple[Any, ...], value: Any) -> None:
    """Keep ``value`` under ``key``, replacing the entry at once (another process may be
    reading it); give up quietly when it cannot be written or marshalled."""
    temporary = f"{entry}.{os.getpid()}"
    try:
        data = marshal.dumps((key, value))
        os.makedirs(os.path.dirname(entry), mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, entry)
    except (OSError, ValueError):
        with contextlib.suppress(OSError):
            os.unlink(temporary)
