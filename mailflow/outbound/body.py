"""A queued message as delivery streams it: its own bytes, then (for a committee copy
of a report with attachments) the original straight from the spool, then its end.

A 23 MB report copied to three members is read from disk a megabyte at a time, never
held whole: not by the pipeline that queues the copies, not by the sessions that
send them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from mailflow.mail.compose import crlf

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Body:
    head: bytes
    spool: str | None = None       # spool.db, when an original is attached
    spool_id: int | None = None
    tail: bytes = b""

    def chunks(self) -> Iterator[bytes]:
        """The message, line ends as CRLF throughout."""
        yield self.head
        if self.spool is not None and self.spool_id is not None:
            yield from crlf_chunks(original(self.spool, self.spool_id))
        yield self.tail


def original(spool: str, spool_id: int) -> Iterator[bytes]:
    """The raw bytes of a spooled message, a chunk at a time."""
    # A connection of the session's own: sessions run on threads of their own.
    conn = sqlite3.connect(f"file:{quote(str(spool))}?mode=ro", uri=True)
    try:
        with conn.blobopen("spool", "raw", spool_id, readonly=True) as blob:
            while chunk := blob.read(CHUNK):
                yield chunk
    finally:
        conn.close()


def crlf_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Bare LFs as CRLF, across chunk boundaries (a CR ending a chunk waits for the next)."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        data, carry = (data[:-1], b"\r") if data.endswith(b"\r") else (data, b"")
        yield crlf(data)
    if carry:
        yield carry


def dot_stuffed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """SMTP's DATA transparency (RFC 5321 4.5.2) for CRLF text: a line that starts with
    a dot gets another."""
    line_start = True
    for chunk in chunks:
        if not chunk:
            continue
        if line_start and chunk.startswith(b"."):
            chunk = b"." + chunk
        line_start = chunk.endswith(b"\r\n")
        yield chunk.replace(b"\r\n.", b"\r\n..")
