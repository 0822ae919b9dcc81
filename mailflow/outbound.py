"""Outbound mail: composed safely, queued durably, delivered with retries.

A message is queued in the same transaction as the change that caused it, so a
crash can neither lose it nor queue it twice.  Delivery is at-least-once: a crash
between the relay's 250 and our bookkeeping resends (as every MTA does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Protocol

import sqlite_utils

from . import audit, clock, store
from .config import Config, split_hostport

log = logging.getLogger("mailflow.outbound")

# Header values may carry no line breaks, literal or encoded (RFC 2047 can hide one).
FORBIDDEN_IN_HEADERS = ("\r", "\n", "\x00", "%0a", "%0d", "=0a", "=0d", "\u2028", "\u2029")


class HeaderInjection(ValueError):
    pass


def check_header(name: str, value: str) -> str:
    lowered = value.lower()
    for bad in FORBIDDEN_IN_HEADERS:
        if bad in lowered:
            raise HeaderInjection(f"refused: a line break in the {name} header ({value[:60]!r})")
    return value


def new_message_id(cfg: Config) -> str:
    return f"<{uuid.uuid4().hex}@{cfg.committee.domain}>"


def compose(
    cfg: Config,
    *,
    from_: tuple[str, str],
    to: Iterable[str],
    subject: str,
    body: str,
    cc: Iterable[str] = (),
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: Iterable[str] = (),
    headers: dict[str, str] | None = None,
    attach: bytes | None = None,
) -> EmailMessage:
    """A message ready to queue.  Every header value is checked for line breaks."""
    msg = EmailMessage(policy=policy.SMTP)
    fields: list[tuple[str, str]] = [
        ("From", formataddr(from_)),
        ("To", ", ".join(to)),
        ("Subject", subject),
        ("Date", format_datetime(clock.now())),
        ("Message-ID", new_message_id(cfg)),
    ]
    cc = list(cc)
    if cc:
        fields.append(("Cc", ", ".join(cc)))
    if reply_to:
        fields.append(("Reply-To", reply_to))
    if in_reply_to:
        fields.append(("In-Reply-To", f"<{in_reply_to}>"))
    refs = [r for r in references if r]
    if refs:
        fields.append(("References", " ".join(f"<{r}>" for r in refs)))
    fields.extend((headers or {}).items())
    for name, value in fields:
        msg[name] = check_header(name, value)
    msg.set_content(body)
    if attach is not None:
        msg.add_attachment(attach, maintype="message", subtype="rfc822",
                           filename="original.eml")
    return msg


def enqueue(
    db: sqlite_utils.Database,
    msg: EmailMessage,
    *,
    kind: str,
    rcpts: Iterable[str],
    envelope_from: str = "",
    case_id: str | None = None,
) -> int:
    """Queue a message for delivery; call inside the caller's transaction."""
    rcpts = sorted({r.lower() for r in rcpts})
    if not rcpts:
        raise ValueError("a message needs at least one recipient")
    now = clock.stamp()
    cur = db.execute(
        "INSERT INTO outbound (case_id, kind, created_at, message_id, envelope_from, subject, raw)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [case_id, kind, now, msg["Message-ID"].strip("<>"), envelope_from, msg["Subject"],
         msg.as_bytes()],
    )
    out_id = cur.lastrowid
    db.conn.executemany(
        "INSERT INTO outbound_rcpt (outbound_id, rcpt, next_attempt_at) VALUES (?, ?, ?)",
        [(out_id, r, now) for r in rcpts],
    )
    audit.append(db, "mailflow", f"queued {kind}", case_id, to=rcpts, message_id=msg["Message-ID"])
    return out_id


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
                conn.starttls(context=ssl.create_default_context())
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


def backoff(cfg: Config, attempts: int) -> float:
    return min(cfg.outbound.retry_initial * (2 ** max(attempts - 1, 0)), cfg.outbound.retry_max)


def deliver_due(db: sqlite_utils.Database, cfg: Config, transport: Transport) -> int:
    """One pass over the queue; returns how many recipients were delivered."""
    now = clock.now()
    due = db.execute(
        "SELECT r.outbound_id, group_concat(r.rcpt, ' ') FROM outbound_rcpt r "
        "WHERE r.state = 'queued' AND r.next_attempt_at <= ? GROUP BY r.outbound_id "
        "ORDER BY r.outbound_id LIMIT 200",
        [clock.stamp(now)],
    ).fetchall()
    delivered = 0
    outcomes = []
    try:
        for out_id, rcpt_list in due:
            envelope_from, raw, case_id, created = db.execute(
                "SELECT envelope_from, raw, case_id, created_at FROM outbound WHERE id = ?",
                [out_id],
            ).fetchone()
            results = transport.deliver(envelope_from, rcpt_list.split(" "), raw)
            expired = (now - clock.parse(created)).total_seconds() > cfg.outbound.give_up_after
            outcomes.append((out_id, case_id, results, expired))
    finally:
        transport.close()
        # One short transaction for the whole pass: the write lock is what intake waits
        # for.  A crash before it resends this pass's mail: at-least-once, like any MTA.
        with store.transaction(db):
            for out_id, case_id, results, expired in outcomes:
                for rcpt, res in results.items():
                    delivered += _record(db, cfg, out_id, case_id, rcpt, res, expired, now)
    return delivered


def _record(db, cfg, out_id, case_id, rcpt, res: Result, expired: bool, now) -> int:
    if res.ok:
        db.execute(
            "UPDATE outbound_rcpt SET state='sent', sent_at=?, attempts=attempts+1, last_error=NULL"
            " WHERE outbound_id=? AND rcpt=?", [clock.stamp(now), out_id, rcpt])
        return 1
    attempts = db.execute("SELECT attempts FROM outbound_rcpt WHERE outbound_id=? AND rcpt=?",
                          [out_id, rcpt]).fetchone()[0] + 1
    if res.permanent or expired:
        db.execute("UPDATE outbound_rcpt SET state='failed', attempts=?, last_error=? "
                   "WHERE outbound_id=? AND rcpt=?", [attempts, res.error, out_id, rcpt])
        audit.append(db, "mailflow", "delivery failed", case_id, to=rcpt, error=res.error)
        log.error("delivery of outbound %s to %s failed for good: %s", out_id, rcpt, res.error)
    else:
        retry_at = now + timedelta(seconds=backoff(cfg, attempts))
        db.execute("UPDATE outbound_rcpt SET attempts=?, last_error=?, next_attempt_at=? "
                   "WHERE outbound_id=? AND rcpt=?",
                   [attempts, res.error, clock.stamp(retry_at), out_id, rcpt])
        log.warning("delivery of outbound %s to %s deferred: %s", out_id, rcpt, res.error)
    return 0


def next_due(db: sqlite_utils.Database) -> float | None:
    """Seconds until the next queued recipient is due (0 if one is due now)."""
    row = db.execute("SELECT min(next_attempt_at) FROM outbound_rcpt WHERE state='queued'"
                     ).fetchone()
    if not row or row[0] is None:
        return None
    return max((clock.parse(row[0]) - clock.now()).total_seconds(), 0.0)


def run_forever(cfg: Config, stop: Event, wake: Event) -> None:
    """The delivery stage of ``mailflow serve``: delivers whenever new mail is queued
    or a retry falls due."""
    db = store.connect(cfg.db_path)
    transport = transport_for(cfg)
    while not stop.is_set():
        wake.clear()
        try:
            deliver_due(db, cfg, transport)
            wait = next_due(db)
        except Exception:
            log.exception("outbound pass failed; retrying shortly")
            wait = 5.0
        wake.wait(timeout=min(5.0 if wait is None else wait, 5.0) or 0.05)
