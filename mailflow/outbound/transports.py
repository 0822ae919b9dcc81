"""Where delivered mail goes: the configured relay, or a Maildir when there is none."""

from __future__ import annotations

import contextlib
import os
import smtplib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mailflow.config import Config, split_hostport
from mailflow.outbound.body import CHUNK, Body, dot_stuffed


@dataclass
class Result:
    ok: bool
    permanent: bool = False
    error: str = ""


class Transport(Protocol):
    def deliver(self, envelope_from: str, rcpts: list[str], body: Body) -> dict[str, Result]: ...

    def close(self) -> None: ...


class SMTPRelay:
    """Sends through the configured relay, keeping one connection per delivery pass."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.host, self.port = split_hostport(cfg.outbound.relay or "")
        self.conn: smtplib.SMTP | None = None

    def _password(self) -> str | None:
        o = self.cfg.outbound
        if o.password_env:
            return os.environ.get(o.password_env)
        if o.password_file:
            return self.cfg.resolve(o.password_file).read_text().strip()
        return None

    def _connect(self) -> smtplib.SMTP:
        if self.conn is None:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.cfg.outbound.timeout,
                                local_hostname=self.cfg.intake.hostname)
            if self.cfg.outbound.starttls:
                ca = self.cfg.outbound.ca_file
                conn.starttls(context=ssl.create_default_context(
                    cafile=str(self.cfg.resolve(ca)) if ca else None))
            if self.cfg.outbound.username:
                conn.login(self.cfg.outbound.username, self._password() or "")
            self.conn = conn
        return self.conn

    def deliver(self, envelope_from: str, rcpts: list[str], body: Body) -> dict[str, Result]:
        try:
            refused = send(self._connect(), envelope_from, rcpts, body)
        except smtplib.SMTPRecipientsRefused as e:
            refused = e.recipients
        except smtplib.SMTPResponseException as e:
            self.close()
            permanent = 500 <= e.smtp_code < 600
            return {r: Result(False, permanent, f"{e.smtp_code} {e.smtp_error!r}") for r in rcpts}
        except (OSError, smtplib.SMTPException) as e:
            self.close()
            return {r: Result(False, False, f"relay unreachable: {e}") for r in rcpts}
        results = {}
        for r in rcpts:
            if r in refused:
                code, text = refused[r]
                results[r] = Result(False, 500 <= code < 600, f"{code} {text!r}")
            else:
                results[r] = Result(True)
        return results

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self.conn.quit()
            self.conn = None


def send(conn: smtplib.SMTP, envelope_from: str, rcpts: list[str], body: Body
         ) -> dict[str, tuple[int, bytes]]:
    """``smtplib.sendmail``, streaming the message: sendmail holds it whole, and two
    copies more (dot-stuffed, terminated).  Returns the recipients refused."""
    conn.ehlo_or_helo_if_needed()
    code, text = conn.mail(envelope_from)
    if code != 250:
        conn.rset()
        raise smtplib.SMTPSenderRefused(code, text, envelope_from)
    refused = {}
    for rcpt in rcpts:
        code, text = conn.rcpt(rcpt)
        if code not in (250, 251):
            refused[rcpt] = (code, text)
    if len(refused) == len(rcpts):
        conn.rset()
        raise smtplib.SMTPRecipientsRefused(refused)
    code, text = conn.docmd("DATA")
    if code != 354:
        conn.rset()
        raise smtplib.SMTPDataError(code, text)
    # Whole writes of up to a chunk, the end marker in the last: one write per small
    # message, as sendmail makes (small writes wait for the peer's delayed ACK).
    pending = bytearray()
    for chunk in dot_stuffed(body.chunks()):
        pending += chunk
        if len(pending) >= CHUNK:
            conn.send(bytes(pending[:-2]))
            del pending[:-2]  # the last two bytes say whether the text ends a line
    conn.send(bytes(pending) + (b".\r\n" if pending.endswith(b"\r\n") else b"\r\n.\r\n"))
    code, text = conn.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, text)
    return refused


class MaildirOutbox:
    """No relay configured: each message becomes a file in a Maildir (tmp → new, fsynced)."""

    def __init__(self, path: Path):
        self.path = path
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)

    def deliver(self, envelope_from: str, rcpts: list[str], body: Body) -> dict[str, Result]:
        name = f"{time.time():.6f}.{uuid.uuid4().hex}.{socket.gethostname()}"
        envelope = (f"Return-Path: <{envelope_from}>\r\n"
                    f"X-Mailflow-Envelope-To: {', '.join(rcpts)}\r\n").encode()
        tmp = self.path / "tmp" / name
        with open(tmp, "wb") as f:
            f.write(envelope)
            for chunk in body.chunks():
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path / "new" / name)
        dirfd = os.open(self.path / "new", os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        return {r: Result(True) for r in rcpts}

    def close(self) -> None:
        pass


def transport_for(cfg: Config) -> Transport:
    return SMTPRelay(cfg) if cfg.outbound.relay else MaildirOutbox(cfg.outbox_dir)
