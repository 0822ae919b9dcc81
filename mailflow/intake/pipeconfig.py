"""What ``mailflow ingest`` needs of the configuration (where the archive is, the size
limit, how long to wait for the spool's write lock), kept in a cache so that an MTA's
pipe transport, which starts mailflow for every message, does not load the whole
configuration each time: tomllib and the configuration's modules were a third of
each message's start (bench/README.md).

The cache works as Python's own bytecode cache does.  It records what its values were
made from: the configuration file (device, inode, size, modification and change
times), the code that reads it (mailflow's version and ``config.py``), and what a
relative or ``~`` path depends on (the working directory and ``$HOME``).  It is used
only while all of these are unchanged.  Otherwise the configuration is loaded and
checked in full, as every other command loads it, and the cache is written anew, so
it never holds what a full load would refuse.

It lives in the user's cache directory (``$XDG_CACHE_HOME/mailflow``, else
``~/.cache/mailflow``), one file per configuration file, mode 0600, and is read only
when it belongs to this user and nobody else may write it.  Where it cannot be
written, ingest loads the configuration every time: slower, never wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os

import mailflow
from mailflow import configfile
from mailflow.store import private

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
    key = _key(path)
    cache = cache_file(path)
    if key is not None:
        found = _read(cache, key)
        if found is not None:
            return found
    from mailflow import config

    cfg = config.load(path)
    settings = PipeConfig(str(cfg.db_path), cfg.intake.max_size, cfg.intake.commit_timeout)
    if key is not None:
        _write(cache, key, settings)
    return settings


def cache_file(config_path: str | None) -> str:
    """Where the cache of ``config_path`` (None: the embedded defaults) is kept."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, or relative: which the XDG rules say to ignore
        base = os.path.join(os.path.expanduser("~"), ".cache")
    name = os.path.abspath(config_path) if config_path else "<embedded defaults>"
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(base, "mailflow", f"ingest-{digest}")


def _key(config_path: str | None) -> tuple | None:
    """What the settings depend on; None when the file cannot be examined (the full
    load then says why)."""
    try:
        code = os.stat(CONFIG_CODE)
        if config_path is None:
            source: tuple | None = None
        else:
            st = os.stat(config_path)
            source = (os.path.abspath(config_path), st.st_dev, st.st_ino, st.st_size,
                      st.st_mtime_ns, st.st_ctime_ns)
    except OSError:
        return None
    return (FORMAT, mailflow.__version__, code.st_size, code.st_mtime_ns, source,
            os.getcwd(), os.environ.get("HOME"))


def _read(cache: str, key: tuple) -> PipeConfig | None:
    try:
        fd = os.open(cache, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None  # somebody else's, or others could have written it
        try:
            stored, values = marshal.load(f)
            return PipeConfig(*values) if stored == key else None
        except (EOFError, ValueError, TypeError):  # cut short, or not ours
            return None


def _write(cache: str, key: tuple, settings: PipeConfig) -> None:
    """Replace the cache at once (another ingest may be reading it); give up quietly
    when the directory cannot be written."""
    temporary = f"{cache}.{os.getpid()}"
    try:
        private.create_dir(os.path.dirname(cache))
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "wb") as f:
            marshal.dump((key, settings.values()), f)
        os.replace(temporary, cache)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
