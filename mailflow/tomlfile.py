"""TOML files as mailflow reads them (``mailflow.toml``, ``rules/*.toml``): parsed by
tomllib when the file changed since it was last read, else taken from the cache of
:mod:`mailflow.filecache`.  Importing tomllib and parsing the configuration and the
rules were a fifth of a read command's start (bench/README.md); tomllib is imported
only when a file must be parsed.
"""

from __future__ import annotations

import os
import sys
from datetime import date, datetime, time

from mailflow import filecache

TYPE_CHECKING = False  # typing's, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

FORMAT = 1  # raised whenever what an entry holds changes
# TOML's dates and times, which marshal cannot keep: each is kept as a tuple (which
# tomllib never returns) of this tag, its type's name and its ISO 8601 text.
TAG = "\0toml"
TIMES: dict[str, type[date] | type[time]] = {"date": date, "datetime": datetime, "time": time}


class TOMLError(ValueError):
    """Not valid TOML; the message says where and why."""


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's tables.  Reading it raises OSError or UnicodeDecodeError as
    ``open`` does, and TOMLError for what is not TOML."""
    name = os.path.abspath(path)
    seen = filecache.identity(name)  # before the file is read: see filecache
    key = (FORMAT, sys.version_info[:2], seen)
    entry = filecache.entry("toml", name)
    if seen is not None:
        kept = filecache.read(entry, key)
        if kept is not None:
            return _walk(kept, _restored)
    import tomllib

    with open(name, encoding="utf-8") as f:
        text = f.read()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TOMLError(str(e)) from None
    if seen is not None:
        filecache.write(entry, key, _walk(data, _kept))
    return data


def _walk(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``value`` with ``leaf`` applied to everything in it but tables and arrays."""
    if isinstance(value, dict):
        return {k: _walk(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, leaf) for v in value]
    return leaf(value)


def _kept(value: Any) -> Any:
    if isinstance(value, date | time):  # datetime is a date
        return (TAG, type(value).__name__, value.isoformat())
    return value


def _restored(value: Any) -> Any:
    if isinstance(value, tuple) and value[:1] == (TAG,):
        return TIMES[value[1]].fromisoformat(value[2])
    return value
