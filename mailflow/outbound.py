"""Outbound mail: composed safely, queued durably, delivered with retries.

A message is queued in the same transaction as the change that caused it, so a
crash can neither lose it nor queue it twice.  Delivery is at-least-once: a crash
between the relay's 250 and our bookkeeping resends (as every MTA does).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import quopri
import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.header import Header, decode_header
from email.utils import format_datetime, formataddr, getaddresses
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Protocol

import sqlite_utils

from . import audit, clock, store
from .config import Config, split_hostport
from .message import addresses, split_quoted
from .wakeup import Doorbell

log = logging.getLogger("mailflow.outbound")

# Header values may carry no line breaks, literal or encoded (RFC 2047 can hide one),
# nor any other character Python's str.splitlines() breaks lines at.
# Line breaks in any disguise: literal, Unicode line separators, URL-encoded.
LINE_BREAKS = ("\r", "\n", "\x00", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d",
               "\x1e", "\x85")
URL_ENCODED_BREAKS = ("%0a", "%0d")


RECORD_EVERY, RECORD_SECONDS, RECORD_MAX = 20, 0.05, 200
# The next recipients to send to, in sending order (acknowledgements first), read from
# the index of queued recipients: without statistics SQLite would rather sort them all.
QUEUE_SQL = ("SELECT outbound_id, rcpt FROM outbound_rcpt INDEXED BY outbound_rcpt_queue "
             "WHERE state = 'queued' AND next_attempt_at <= ? {} "
             "ORDER BY priority, outbound_id LIMIT ?")
DUE_SQL = QUEUE_SQL.format("")
# Acknowledgements queued after a pass began (above the newest message it took).
NEW_ACKS_SQL = QUEUE_SQL.format("AND priority = 0 AND outbound_id > ?")
# One delivery pass takes at most this much mail into memory.
PASS_MESSAGES, PASS_BYTES = 400, 64 * 1024 * 1024
ADDRESS_HEADERS = {"From", "To", "Cc", "Reply-To"}


class HeaderInjection(ValueError):
    pass


def _decoded_words(value: str) -> str:
    """The text of any RFC 2047 encoded words, where a line break can hide (=0A, base64)."""
    try:
        return "".join(chunk.decode(charset or "ascii", "replace") if isinstance(chunk, bytes)
                       else chunk for chunk, charset in decode_header(value))
    except Exception:  # undecodable: judged on its literal text alone
        return ""


def check_header(name: str, value: str) -> str:
    texts = [value, _decoded_words(value)] if "=?" in value else [value]
    for text in texts:
        if any(b in text for b in LINE_BREAKS) or any(
                b in text.lower() for b in URL_ENCODED_BREAKS):
            raise HeaderInjection(f"refused: a line break in the {name} header ({value[:60]!r})")
    return value


def new_message_id(cfg: Config) -> str:
    return f"<{uuid.uuid4().hex}@{cfg.committee.domain}>"


@dataclass
class Outgoing:
    """A composed message: its headers as given, its text, and its bytes on the wire."""

    headers: list[tuple[str, str]]
    text: str
    raw: bytes

    def __getitem__(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def as_bytes(self) -> bytes:
        return self.raw


def _encode_header(name: str, value: str) -> str:
    if name in ADDRESS_HEADERS:
        # formataddr encodes non-ASCII display names as RFC 2047 words.
        return value if value.isascii() else ", ".join(
            formataddr(pair) for pair in getaddresses([value]))
    if value.isascii() and len(name) + len(value) < 900:
        return value  # within SMTP's line limit as it is
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name=name).encode(linesep="\r\n")


def _text_part(body: str) -> bytes:
    text = body.replace("\r\n", "\n")
    if text.isascii() and all(len(line) <= 998 for line in text.split("\n")):
        cte, data = "7bit", text.encode()
    else:
        cte, data = "quoted-printable", quopri.encodestring(text.encode("utf-8"))
    return (b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n"
            + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


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
) -> Outgoing:
    """A message ready to queue.  Every header value is checked for line breaks.

    Written as bytes directly: the email package's header registry costs more than
    the rest of processing a report put together."""
    # Checked before formataddr, which would hide a line break inside an encoded word.
    fields: list[tuple[str, str]] = [
        ("From", formataddr((check_header("From", from_[0]), from_[1]))),
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
    fields.append(("MIME-Version", "1.0"))
    head = "".join(f"{name}: {_encode_header(name, check_header(name, value))}\r\n"
                   for name, value in fields).encode("ascii")
    if attach is None:
        return Outgoing(fields, body, head + _text_part(body))
    boundary = f"=_mailflow_{uuid.uuid4().hex}".encode()
    original = attach.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    raw = (head + b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n"
           + b"--" + boundary + b"\r\n" + _text_part(body) + b"\r\n"
           + b"--" + boundary + b"\r\nContent-Type: message/rfc822\r\n"
           + b"Content-Disposition: attachment; filename=\"original.eml\"\r\n"
           + b"Content-Transfer-Encoding: 8bit\r\n\r\n" + original + b"\r\n"
           + b"--" + boundary + b"--\r\n")
    return Outgoing(fields, body, raw)


def text_columns(msg: Outgoing) -> dict[str, str | None]:
    """The columns the archive indexes, read from what was composed, so that queueing
    a message never parses it back (that cost as much as composing it)."""
    sender = addresses([msg["From"] or ""])
    new_text, quoted_text = split_quoted(msg.text)
    return {"from_name": sender[0][0] if sender else "",
            "from_addr": sender[0][1] if sender else None,
            "to_addrs": json.dumps([a for _, a in addresses([msg["To"] or ""])]),
            "cc_addrs": json.dumps([a for _, a in addresses([msg["Cc"] or ""])]),
            "new_text": new_text, "quoted_text": quoted_text}


def enqueue(
    db: sqlite_utils.Database,
    msg: Outgoing,
    *,
    kind: str,
    rcpts: Iterable[str],
    envelope_from: str = "",
    case_id: str | None = None,
    searchable: bool = True,
) -> int:
    """Queue a message for delivery; call inside the caller's transaction.

    ``searchable``: the archive indexes it (its text columns are kept); False for a
    copy of a message that is indexed already."""
    rcpts = sorted({r.lower() for r in rcpts})
    if not rcpts:
        raise ValueError("a message needs at least one recipient")
    now = clock.stamp()
    columns = {"case_id": case_id, "kind": kind, "created_at": now,
               "message_id": msg["Message-ID"].strip("<>"), "envelope_from": envelope_from,
               "subject": msg["Subject"], "raw": msg.as_bytes(),
               **(text_columns(msg) if searchable else {})}
    cur = db.execute(f"INSERT INTO outbound ({', '.join(columns)}) VALUES "
                     f"({', '.join('?' * len(columns))})", list(columns.values()))
    out_id = cur.lastrowid
    # Acknowledgements go first: a reporter is waiting for one.
    priority = 0 if kind == "ack" else 1
    db.conn.executemany(
        "INSERT INTO outbound_rcpt (outbound_id, rcpt, next_attempt_at, priority) "
        "VALUES (?, ?, ?, ?)", [(out_id, r, now, priority) for r in rcpts],
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


def backoff(cfg: Config, attempts: int) -> float:
    return min(cfg.outbound.retry_initial * (2 ** max(attempts - 1, 0)), cfg.outbound.retry_max)


def deliver_once(db: sqlite_utils.Database, cfg: Config) -> int:
    """One pass over one session: for the one-shot commands (process, tick)."""
    transport = transport_for(cfg)
    try:
        return deliver_due(db, cfg, [transport])
    finally:
        transport.close()


def deliver_due(db: sqlite_utils.Database, cfg: Config, transports: Sequence[Transport],
                new_mail: Callable[[], bool] | None = None) -> int:
    """One pass over the queue, over as many parallel sessions as there are transports
    (left open for the next pass); returns how many recipients were delivered.

    Acknowledgements go first: a reporter is waiting for one, and a committee copy can
    wait a second.  So when ``new_mail()`` says mail was queued during the pass, the
    acknowledgements among it join the pass at once, ahead of the committee copies
    still to send, instead of waiting for the next pass."""
    now = clock.now()
    due: dict[int, list[str]] = {}
    for out_id, rcpt in db.execute(DUE_SQL, [clock.stamp(now), PASS_MESSAGES * 4]):
        if out_id not in due and len(due) == PASS_MESSAGES:
            break
        due.setdefault(out_id, []).append(rcpt)
    if not due:
        return 0
    # Sessions take messages from `work`, which this thread keeps a few messages ahead
    # of them (reading each message only when it is about to go) until the pass is
    # over: everything sent, or PASS_BYTES read.  Then one None each.
    work: queue.SimpleQueue = queue.SimpleQueue()
    results: queue.SimpleQueue = queue.SimpleQueue()
    n_sessions = min(len(transports), len(due))
    upcoming = collections.deque(due.items())
    newest, joined = max(due), 0
    size = 0
    feeding = True

    def feed() -> None:
        nonlocal size, feeding, newest, joined
        while feeding and work.qsize() < 2 * n_sessions:
            if new_mail and joined < PASS_MESSAGES and new_mail():
                acks: dict[int, list[str]] = {}
                for out_id, rcpt in db.execute(NEW_ACKS_SQL, [clock.stamp(), newest,
                                                              PASS_MESSAGES - joined]):
                    acks.setdefault(out_id, []).append(rcpt)
                if acks:
                    newest, joined = max(acks), joined + len(acks)
                    upcoming.extendleft(reversed(acks.items()))
            if not upcoming or size > PASS_BYTES:
                feeding = False
                for _ in range(n_sessions):
                    work.put(None)
                return
            out_id, rcpts = upcoming.popleft()
            case_id, created, envelope_from, raw = db.execute(
                "SELECT case_id, created_at, envelope_from, raw FROM outbound WHERE id = ?",
                [out_id]).fetchone()
            expired = (now - clock.parse(created)).total_seconds() > cfg.outbound.give_up_after
            work.put((out_id, case_id, envelope_from, rcpts, raw, expired))
            size += len(raw)

    def session(transport: Transport) -> None:
        try:
            while (item := work.get()) is not None:
                out_id, case_id, envelope_from, rcpts, raw, expired = item
                results.put((out_id, case_id, transport.deliver(envelope_from, rcpts, raw),
                             expired))
        finally:
            results.put(None)

    feed()
    sessions = [threading.Thread(target=session, args=(t,), daemon=True)
                for t in transports[:n_sessions]]
    for t in sessions:
        t.start()
    # Bookkeeping in short transactions (the write lock is what others wait for), often
    # enough that a crash resends little: delivery is at-least-once, as in any MTA, and
    # the window is RECORD_EVERY messages or RECORD_SECONDS, or up to RECORD_MAX while
    # the pipeline holds the write lock: this thread feeds the sessions, and must not
    # stop to wait for the lock while they run dry.
    delivered, running, pending = 0, len(sessions), []
    last_flush = clock.monotonic()

    def flush(wait: bool = False) -> None:
        nonlocal delivered, last_flush
        if pending:
            try:
                with store.transaction(db, timeout=None if wait else 0):
                    for out_id, case_id, outcome, expired in pending:
                        for rcpt, res in outcome.items():
                            delivered += _record(db, cfg, out_id, case_id, rcpt, res,
                                                 expired, now)
            except store.Busy:
                if wait:
                    raise
                return  # taken: try again with the next results
            pending.clear()
        last_flush = clock.monotonic()

    while running:
        try:
            item = results.get(timeout=RECORD_SECONDS)
        except queue.Empty:
            flush()
            continue
        feed()
        if item is None:
            running -= 1
        else:
            pending.append(item)
        if len(pending) >= RECORD_EVERY or clock.monotonic() - last_flush > RECORD_SECONDS:
            flush(wait=len(pending) >= RECORD_MAX)
    flush(wait=True)
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


def run_forever(cfg: Config, stop: Event, wake: Doorbell) -> None:
    """The delivery stage of ``mailflow serve``: delivers whenever new mail is queued
    or a retry falls due."""
    db = store.connect(cfg.db_path)
    transports = [transport_for(cfg) for _ in range(cfg.outbound.connections)]

    def new_mail() -> bool:
        rang = wake.wait(0)
        if rang:
            wake.clear()  # before looking, so that nothing queued later goes unseen
        return rang

    while not stop.is_set():
        wake.clear()
        try:
            deliver_due(db, cfg, transports, new_mail)
            wait = next_due(db)
        except Exception:
            log.exception("outbound pass failed; retrying shortly")
            wait = 5.0
        if wait == 0:
            continue  # mail queued during the pass: the next pass starts now
        for transport in transports:  # nothing to send now: do not keep sessions idle
            transport.close()
        wake.wait(timeout=min(5.0 if wait is None else wait, 5.0))
