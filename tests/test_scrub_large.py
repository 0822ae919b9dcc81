"""Token addresses in large mail (a video as evidence): found without parsing the
message whole, wherever they stand, and rewritten; mail without one is passed on as
it came, not copied (bench/memory.py measures what that spares)."""

from __future__ import annotations

import base64
import os
from email import message_from_bytes

from mailflow.mail.scrub import CHUNK, REMOVED, scrub_message
from mailflow.testing import make_mail

TOKEN = b"committee+m1.2027-01-31.Zx9QkT4aLrP0@example.org"


def large_report(video: bytes, to: bytes = b"conduct@example.org") -> bytes:
    head = make_mail("m1@example.org", to.decode(), "Evidence", "x")
    head = head[: head.index(b"Content-Type:")]
    blob = base64.encodebytes(video).replace(b"\n", b"\r\n")
    return (head + b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe recording.\r\n"
            b"--b1\r\nContent-Type: video/mp4\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"clip.mp4\"\r\n\r\n"
            + blob + b"\r\n--b1--\r\n")


def video_part(raw: bytes) -> bytes:
    msg = message_from_bytes(raw)
    return next(p for p in msg.walk() if p.get_filename() == "clip.mp4")


def test_a_large_message_without_a_token_is_passed_on_as_it_came():
    raw = large_report(os.urandom(1_500_000))
    assert scrub_message(raw) is raw


def test_a_token_in_the_header_of_a_large_message_is_rewritten_and_the_video_kept():
    video = os.urandom(1_500_000)
    raw = large_report(video, to=TOKEN)
    out = scrub_message(raw)
    assert TOKEN not in out and b"committee@example.org" in out
    assert video_part(out).get_payload(decode=True) == video


def test_a_token_split_between_two_chunks_of_a_large_body_is_found():
    video = bytearray(os.urandom(1_500_000))
    blob = base64.encodebytes(bytes(video)).replace(b"\n", b"\r\n")
    # The first chunk read holds this many base64 characters, which decode to this many
    # bytes: the token starts ten bytes before them, so it spans the two chunks.
    first = blob[:CHUNK]
    decoded = (len(first) - first.count(b"\r") - first.count(b"\n")) // 4 * 3
    at = decoded - 10
    video[at:at + len(TOKEN)] = TOKEN
    raw = large_report(bytes(video))
    assert TOKEN not in raw  # only its base64 is there
    out = scrub_message(raw)
    # A binary file holding a token cannot be rewritten: it is replaced by a note.
    assert out != raw and REMOVED.strip().encode() in out
    assert base64.b64encode(TOKEN[:30]) not in out.replace(b"\r\n", b"")
