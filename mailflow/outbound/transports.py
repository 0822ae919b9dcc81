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


@dataclass
class Result:
    ok: bool
    permanent: bool = False
    error: str = ""


class Transport(Protocol):
    def deliver(self, envelope_from: str, rcpts: list[str], raw: bytes) -> dict[str, Result]: ...

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

    def deliver(self, envelope_from: str, rcpts: list[str], raw: bytes) -> dict[str, Result]:
        try:
            refused = self._connect().sendmail(envelope_from, rcpts, raw)
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


class MaildirOutbox:
    """No relay configured: each message becomes a file in a Maildir (tmp → new, fsynced)."""

    def __init__(self, path: Path):
        self.path = path
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)

    def deliver(self, envelope_from: str, rcpts: list[str], raw: bytes) -> dict[str, Result]:
        name = f"{time.time():.6f}.{uuid.uuid4().hex}.{socket.gethostname()}"
        envelope = (f"Return-Path: <{envelope_from}>\r\n"
                    f"X-Mailflow-Envelope-To: {', '.join(rcpts)}\r\n").encode()
        tmp = self.path / "tmp" / name
        with open(tmp, "wb") as f:
            f.write(envelope + raw)
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
