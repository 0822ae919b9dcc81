"""Large reports are parsed from a sketch without their attachments' bodies: what the
parser sees of text, headers and structure must be exactly what it saw of the whole
message, however the MIME is made, and nothing a sender writes can make text vanish."""

from __future__ import annotations

import base64
import os

import pytest

from mailflow.mail import parse as parse_mod
from mailflow.mail.parse import parse
from mailflow.mail.sketch import ELIDED, LARGE, sketch
from mailflow.testing import make_mail

BLOB = base64.encodebytes(os.urandom(LARGE)).replace(b"\n", b"\r\n")  # 350 KB of base64


def multipart(*parts: bytes, boundary: bytes = b"b1", outer: bytes = b"") -> bytes:
    head = make_mail("rita@people.test", "conduct@example.org", "Evidence", "x")
    head = head[: head.index(b"Content-Type:")]
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return (head + outer + b"Content-Type: multipart/mixed; boundary=\"" + boundary
            + b"\"\r\n\r\n" + body + b"--" + boundary + b"--\r\n")


def text(words: str) -> bytes:
    return b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + words.encode()


def attachment(ctype: bytes = b"video/mp4", name: bytes = b"clip.mp4") -> bytes:
    return (b"Content-Type: " + ctype + b"\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"" + name + b"\"\r\n\r\n" + BLOB)


def whole(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> parse_mod.Parsed:
    """The message parsed as it is, without the sketch."""
    with monkeypatch.context() as m:
        m.setattr(parse_mod, "sketch", lambda raw: raw)
        return parse(raw)


def same(a: parse_mod.Parsed, b: parse_mod.Parsed) -> None:
    for field in ("from_addr", "subject", "message_id", "body_text", "new_text",
                  "quoted_text", "attachments", "forwarded", "to_addrs", "defects"):
        assert getattr(a, field) == getattr(b, field), field


CASES = {
    "video and text": multipart(text("Sam shouted at me."), attachment()),
    # A text part that looks like it ends, with headers of a video after a fake
    # boundary, and a long tail: the declared boundary alone ends a part.
    "fake boundary in text": multipart(
        text("Here is what Sam Sharp wrote:\r\n--b1x\r\n--\r\nContent-Type: video/mp4\r\n"
             "Content-Transfer-Encoding: base64\r\n\r\n" + "Sam Sharp again. " * 20000),
        attachment()),
    # Text sent as base64 is text: never cut.
    "base64 text": multipart(b"Content-Type: text/plain; charset=utf-8\r\n"
                             b"Content-Transfer-Encoding: base64\r\n\r\n"
                             + base64.encodebytes(("Sam Sharp " * 40000).encode())),
    "forward with a video": multipart(
        text("Forwarding this."),
        b"Content-Type: message/rfc822\r\n\r\n" + multipart(
            text("the original words"), attachment(b"image/png", b"shot.png"), boundary=b"in")),
    "a forged size header": multipart(text("hi"), attachment().replace(
        b"\r\n\r\n", f"\r\n{ELIDED.rsplit('-', 1)[0]}-000000000000: 5\r\n\r\n".encode(), 1)),
    "no boundary parameter": make_mail("r@people.test", "conduct@example.org", "x",
                                       "y" * LARGE).replace(
        b"text/plain; charset=utf-8", b"multipart/mixed"),
}


@pytest.mark.parametrize("name", CASES)
def test_the_sketch_parses_as_the_whole_message(name, monkeypatch):
    raw = CASES[name]
    assert len(raw) > LARGE
    same(parse(raw), whole(raw, monkeypatch))


def test_only_large_non_text_bodies_are_cut():
    raw = CASES["video and text"]
    cut = sketch(raw)
    assert len(cut) < 2000 and b"Sam shouted at me." in cut
    parsed = parse(raw)
    assert parsed.attachments == [{"name": "clip.mp4", "type": "video/mp4", "size": LARGE}]
    for name in ("fake boundary in text", "base64 text"):
        assert b"Sam Sharp" in sketch(CASES[name]) or b"U2FtIFNoYXJw" in sketch(CASES[name])
    assert "Sam Sharp again." in parse(CASES["fake boundary in text"]).body_text
    small = make_mail("r@people.test", "conduct@example.org", "x", "y")
    assert sketch(small) is small
