"""The sources ``mailflow import`` reads: an mbox file, a Maildir, a directory of
``.eml`` files or one message; and the Date of each message, to take them oldest first."""

from __future__ import annotations

import mailbox
import re
from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from pathlib import Path

HEAD_BYTES = 16384


DATE = re.compile(rb"^date:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


HEADER_END = re.compile(rb"\r?\n\r?\n")


class SourceError(Exception):
    """A problem with the source, phrased for the administrator."""


@dataclass
class Item:
    """One message of the source: a file of its own, or a message in an mbox."""
    name: str                          # for messages to the administrator
    path: Path | None = None
    box: mailbox.mbox | None = None
    key: str | None = None

    def head(self) -> bytes:
        """Enough of the start to find the Date."""
        if self.path:
            with open(self.path, "rb") as f:
                return f.read(HEAD_BYTES)
        assert self.box is not None and self.key is not None
        return self.box.get_file(self.key).read(HEAD_BYTES)

    def source(self) -> Path | bytes:
        """What :func:`take_in` reads: the file, where it is; else the message's bytes."""
        if self.path:
            return self.path
        assert self.box is not None and self.key is not None
        return self.box.get_bytes(self.key)


def _files(paths: list[Path]) -> list[Item]:
    return [Item(str(p), path=p) for p in paths]


def open_source(path: Path) -> tuple[str, list[Item]]:
    """(what kind of source, its messages in source order)."""
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "cur").is_dir() or (path / "new").is_dir():
            files = [p for sub in ("cur", "new") if (path / sub).is_dir()
                     for p in sorted((path / sub).iterdir()) if p.is_file()]
            return "Maildir", _files(files)
        files = sorted(p for p in path.rglob("*.eml") if p.is_file())
        if not files:
            raise SourceError(f"{path}: no .eml files here, and not a Maildir (no cur/ or new/)")
        return "directory of .eml files", _files(files)
    with open(path, "rb") as f:
        start = f.read(5)
    if start != b"From ":
        return "message", _files([path])
    box = mailbox.mbox(str(path), create=False)
    return "mbox", [Item(f"{path} message {n + 1}", box=box, key=key)
                    for n, key in enumerate(box.keys())]


def header_block(data: bytes) -> bytes:
    """The header block of a message (all of it, if no blank line ends it)."""
    split = HEADER_END.search(data)
    return data[: split.start()] if split else data


def _date_key(head: bytes) -> float | None:
    """The Date header as seconds since the epoch (a sort key)."""
    match = DATE.search(header_block(head))
    parts = parsedate_tz(match.group(1).decode("ascii", "replace")) if match else None
    try:
        return mktime_tz(parts) if parts else None
    except (ValueError, OverflowError):
        return None


def date_keys(items: list[Item]) -> list[float | str | None]:
    """Each message's Date as a sort key (None: no readable Date; a str: why the
    message could not be read)."""
    keys: list[float | str | None] = []
    for item in items:
        try:
            keys.append(_date_key(item.head()))
        except OSError as e:
            keys.append(f"{item.name}: {e.strerror or e}")
    return keys
