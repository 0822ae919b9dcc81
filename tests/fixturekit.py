"""Raw mail fixtures (``tests/fixtures/<kind>/*.eml``), as the world's software writes
them.  A fixture may hold placeholders ``@@NAME@@`` for what only the running test
knows (the Message-ID of an acknowledgement, its return path ...)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def names(kind: str) -> list[str]:
    return sorted(p.stem for p in (FIXTURES / kind).glob("*.eml"))


def load(kind: str, name: str, **placeholders: str) -> bytes:
    raw = (FIXTURES / kind / f"{name}.eml").read_bytes()
    for key, value in placeholders.items():
        raw = raw.replace(f"@@{key.upper()}@@".encode(), value.encode())
    assert b"@@" not in raw, f"{kind}/{name}: a placeholder is left"
    # Lines end in CRLF on the wire; smtplib sends bytes as they are.
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
