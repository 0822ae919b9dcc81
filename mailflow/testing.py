"""One harness for driving a real mailflow, shipped with it (aiosmtpd's ``testing``
model): a capturing SMTP server as the outside world (:class:`CaptureRelay`), a real
``mailflow serve`` process on loopback (:class:`MailflowServer`), mail as a client
writes it (:func:`make_mail`), and bounded waiting (:func:`wait_until`).

Used by the tests, ``mailflow demo`` and the benchmarks.  Loopback only.
"""

from __future__ import annotations

import email
import json
import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.utils import formataddr, make_msgid
from pathlib import Path

from aiosmtpd.controller import Controller

CHAIR, M1, M2 = "chair@example.org", "m1@example.org", "m2@example.org"
MEMBERS = [CHAIR, M1, M2]
BOARD = "board@example.org"
WAIT = 15.0  # seconds any wait may take before the test fails


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float = WAIT, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


@dataclass
class Captured:
    mail_from: str
    rcpts: list[str]
    raw: bytes

    @property
    def msg(self) -> Message:
        return email.message_from_bytes(self.raw)

    def body(self) -> str:
        msg = self.msg
        for part in msg.walk():
            payload = part.get_payload(decode=True)
            if part.get_content_type() == "text/plain" and isinstance(payload, bytes):
                return payload.decode("utf-8", "replace")
        return ""


@dataclass
class CaptureRelay:
    """The outside world: every mail mailflow sends lands here."""

    port: int
    received: list[Captured] = field(default_factory=list)
    controller: Controller | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.received.append(Captured(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content))
        return "250 OK"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[Captured]:
        with self.lock:
            return [c for c in self.received if address in c.rcpts]

    def wait_for(self, predicate: Callable[[Captured], bool], count: int = 1,
                 what: str = "mail") -> list[Captured]:
        def found():
            with self.lock:
                hits = [c for c in self.received if predicate(c)]
            return hits if len(hits) >= count else None
        return wait_until(found, what=what)  # type: ignore[return-value]


def write_config(path: Path, *, listen_port: int, relay_port: int | None, archive: Path,
                 protocol: str = "smtp", extra: str = "", intake_extra: str = "",
                 name: str = "Test Conduct Committee", outbound_extra: str = "") -> Path:
    """A configuration for :data:`MEMBERS` at example.org, on loopback."""
    relay_line = f'relay = "127.0.0.1:{relay_port}"' if relay_port else ""
    path.write_text(f"""
[committee]
name = "{name}"
domain = "example.org"
chair = "{CHAIR}"
members = {json.dumps(MEMBERS)}
officers = ["officers@example.org"]
board = ["{BOARD}"]

[intake]
listen = "127.0.0.1:{listen_port}"
protocol = "{protocol}"
{"" if "commit_timeout" in intake_extra else "commit_timeout = 0.5"}
{intake_extra}

[outbound]
{relay_line}
retry_initial = 0.2
retry_max = 0.5
{outbound_extra}

[storage]
path = "{archive}"
{extra}
""")
    return path


class MailflowServer:
    """``mailflow serve`` as a real process, as an MTA would see it."""

    def __init__(self, tmp: Path, relay_port: int | None, protocol: str = "smtp",
                 extra: str = "", env: dict[str, str] | None = None, intake_extra: str = "",
                 name: str = "Test Conduct Committee", outbound_extra: str = "",
                 user: str | None = None, command: list[str] | None = None):
        self.tmp = tmp
        # A service user to run as (the tests run as root); how that user runs mailflow.
        self.user = user
        self.command = command or [sys.executable, "-m", "mailflow"]
        self.port = free_port()
        self.archive = tmp / "archive"
        self.config = write_config(tmp / "mailflow.toml", listen_port=self.port,
                                   relay_port=relay_port, archive=self.archive,
                                   protocol=protocol, extra=extra,
                                   intake_extra=intake_extra, name=name,
                                   outbound_extra=outbound_extra)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "serve.log"

    def start(self) -> MailflowServer:
        logf = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [*self.command, "--config", str(self.config), "serve"],
            stdout=logf, stderr=subprocess.STDOUT, env=self.env, cwd=self.tmp, user=self.user)
        def ready():
            assert self.proc and self.proc.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_until(ready, what="mailflow serve to listen")
        return self

    def __enter__(self) -> MailflowServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=WAIT)

    def send(self, raw: bytes | str | Message, mail_from: str, rcpts: list[str] | str
             ) -> dict:
        if isinstance(raw, Message):
            raw = raw.as_bytes()
        if isinstance(raw, str):
            raw = raw.encode()
        with self.smtp() as s:
            return s.sendmail(mail_from, rcpts, raw)

    def cli(self, *args: str, input: bytes | None = None, check: bool = True
            ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*self.command, "--config", str(self.config), *args],
            input=input, capture_output=True, env=self.env, cwd=self.tmp, timeout=60,
            user=self.user)
        if check and result.returncode != 0:
            raise AssertionError(f"mailflow {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout.decode()}\n{result.stderr.decode()}")
        return result

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "--json").stdout)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(self.archive / "mailflow.db", timeout=10)
        conn.execute("ATTACH DATABASE ? AS spooldb", [str(self.archive / "spool.db")])
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def quiet(self) -> None:
        """Wait until every spooled message is settled and every queued mail delivered:
        what is captured after this was caused by what the test does next."""
        def idle() -> bool:
            return self.query(
                "SELECT (SELECT count(*) FROM spooldb.spool) = (SELECT count(*) FROM "
                "spool_state WHERE state != 'new') AND NOT EXISTS (SELECT 1 FROM outbound_rcpt "
                "WHERE state = 'queued')")[0][0] == 1
        wait_until(idle, what="mailflow to have nothing left to do")

    def processed(self, count: int) -> None:
        """Wait until at least ``count`` spooled messages are settled."""
        wait_until(lambda: self.query("SELECT count(*) FROM spool_state WHERE state != 'new'")[0][0]
                   >= count, what=f"{count} message(s) processed")


def make_mail(sender: str, to: str, subject: str, body: str, *, message_id: str | None = None,
              headers: dict[str, str] | None = None, name: str = "") -> bytes:
    lines = [
        f"From: {formataddr((name, sender))}",
        f"To: {to}",
        f"Subject: {subject}",
        "Date: Tue, 24 Nov 2026 10:00:00 +0000",
        f"Message-ID: {message_id or make_msgid(domain='sender.test')}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()
