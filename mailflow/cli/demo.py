"""``mailflow demo``: one whole case, played on loopback, in a temporary archive.

A real ``mailflow serve`` listens on a free local port and sends through a capturing
SMTP server of the demo's own; the demo mails it as a reporter and as the three
members would (each member replying to the Reply-To of the last mail they got, which
is how they prove who they are), prints every mail exchanged, and ends with the case
record.  Nothing leaves the machine.
"""

from __future__ import annotations

import email
import logging
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from email.message import Message
from email.utils import formataddr, make_msgid
from pathlib import Path

from aiosmtpd.controller import Controller

from mailflow import app, config, store
from mailflow.archive import views

DOMAIN = "example.org"
CHAIR, M1, M2 = f"chair@{DOMAIN}", f"m1@{DOMAIN}", f"m2@{DOMAIN}"
REPORTER, ORIGINATOR = "rita@people.example", "sam@people.example"
WAIT = 30.0
BODY_LINES = 45

CONFIG = """\
[committee]
name = "Demo Code of Conduct Committee"
domain = "{domain}"
chair = "{chair}"
members = ["{chair}", "{m1}", "{m2}"]
officers = ["officers@{domain}"]
board = ["board@{domain}"]

[intake]
listen = "127.0.0.1:{listen}"

[outbound]
relay = "127.0.0.1:{relay}"
retry_initial = 0.2
retry_max = 1.0

[storage]
path = "{archive}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Outside:
    """The rest of the world: an SMTP server keeping every mail mailflow sends."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mails: list[Message] = []
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:
        msg = email.message_from_bytes(envelope.original_content)
        msg["X-Demo-Rcpt"] = ", ".join(envelope.rcpt_tos)
        with self.lock:
            self.mails.append(msg)
        return "250 OK"

    def wait(self, what: str, test: Callable[[Message], bool], seen: int) -> Message:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with self.lock:
                hit = next((m for m in self.mails[seen:] if test(m)), None)
            if hit is not None:
                return hit
            time.sleep(0.05)
        raise RuntimeError(f"the demo waited {WAIT:.0f}s for {what} in vain")


def _rcpt(msg: Message) -> str:
    return msg["X-Demo-Rcpt"] or ""


def _body(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode("utf-8", "replace")
    return ""


class Demo:
    def __init__(self, workdir: Path, out: Callable[[str], None]):
        self.out = out
        self.outside = Outside()
        self.listen = free_port()
        self.archive = workdir / "archive"
        self.config_path = workdir / "mailflow.toml"
        self.config_path.write_text(CONFIG.format(
            domain=DOMAIN, chair=CHAIR, m1=M1, m2=M2, listen=self.listen,
            relay=self.outside.port, archive=self.archive))
        self.log = workdir / "serve.log"
        self.proc: subprocess.Popen | None = None
        self.seen = 0
        self.reply_to: dict[str, str] = {}     # member -> Reply-To of their latest mail
        self.step = 0

    # -- running the server -------------------------------------------------------------
    def start(self) -> None:
        self.outside.controller.start()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailflow", "--config", str(self.config_path), "serve"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mailflow serve stopped:\n" + self.log.read_text())
            try:
                socket.create_connection(("127.0.0.1", self.listen), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mailflow serve did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.outside.controller.stop()

    # -- mail in and out ----------------------------------------------------------------
    def show(self, direction: str, msg: Message) -> None:
        lines = _body(msg).rstrip().splitlines()
        more = len(lines) - BODY_LINES
        self.out(f"---- {direction} " + "-" * max(4, 72 - len(direction)))
        for name in ("From", "To", "Reply-To", "Subject"):
            if msg[name]:
                self.out(f"{name}: {msg[name]}")
        self.out("")
        self.out("\n".join(lines[:BODY_LINES]))
        if more > 0:
            self.out(f"[... {more} more lines]")
        self.out("")

    def narrate(self, text: str) -> None:
        self.step += 1
        self.out(f"\n==== {self.step}. {text}\n")

    def send(self, sender: str, name: str, to: str, subject: str, body: str,
             in_reply_to: Message | None = None) -> None:
        msg = Message()
        msg["From"] = formataddr((name, sender))
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain=sender.split("@")[1])
        if in_reply_to is not None and in_reply_to["Message-ID"]:
            msg["In-Reply-To"] = in_reply_to["Message-ID"]
        msg["Content-Type"] = "text/plain; charset=utf-8"
        msg.set_payload(body)
        self.show(f"{sender} -> mailflow", msg)
        with smtplib.SMTP("127.0.0.1", self.listen, timeout=WAIT) as s:
            s.sendmail(sender, [to], msg.as_bytes())

    def expect(self, what: str, test: Callable[[Message], bool], show: bool = True) -> Message:
        msg = self.outside.wait(what, test, self.seen)
        for member in (CHAIR, M1, M2):
            if _rcpt(msg) == member and msg["Reply-To"]:
                self.reply_to[member] = msg["Reply-To"]
        if show:
            self.show(f"mailflow -> {_rcpt(msg)}", msg)
        return msg

    def settle(self) -> None:
        """Later waits look only at mail sent after this point."""
        time.sleep(0.3)
        with self.outside.lock:
            for msg in self.outside.mails[self.seen:]:
                for member in (CHAIR, M1, M2):
                    if _rcpt(msg) == member and msg["Reply-To"]:
                        self.reply_to[member] = msg["Reply-To"]
            self.seen = len(self.outside.mails)

    def member(self, member: str, subject: str, body: str) -> Message:
        """A member's reply with commands; returns the transcript."""
        self.send(member, "", self.reply_to[member], f"Re: {subject}", body)
        transcript = self.expect(f"the transcript for {member}",
                                 lambda m: _rcpt(m) == member
                                 and "Transcript" in (m["Subject"] or ""))
        return transcript

    # -- the case -----------------------------------------------------------------------
    def play(self) -> str:
        self.narrate("Rita reports an incident to the conduct address.")
        self.send(REPORTER, "Rita Reporter", f"conduct@{DOMAIN}", "Insults in the #dev chat",
                  "Hello,\n\nfor two days Sam (sam@people.example) has been calling me names "
                  "in the #dev chat\nwhenever I ask a question. I do not feel welcome "
                  "any more.\n\nRita\n")
        ack = self.expect("the acknowledgement", lambda m: _rcpt(m) == REPORTER)
        case_id = ack["X-Mailflow-Case"]
        relayed = self.expect("the report on the committee list", lambda m: _rcpt(m) == CHAIR)
        self.out(f"(the same went to {M1} and {M2}, each with their own Reply-To)\n")
        self.expect("m1's copy", lambda m: _rcpt(m) == M1, show=False)
        self.expect("m2's copy", lambda m: _rcpt(m) == M2, show=False)
        subject = relayed["Subject"]
        self.settle()

        self.narrate("m1 records what the committee knows and proposes a response.")
        self.member(M1, subject,
                    "I read the chat log; this is a clear pattern.\n\n"
                    "#what Sam insulted Rita repeatedly when she asked questions\n"
                    "#channel #dev chat\n"
                    f"#originator Sam Example <{ORIGINATOR}>\n"
                    "#affected Rita Reporter\n"
                    "#violation yes\n#ongoing no\n#safety no\n"
                    "#propose private reprimand: for the insults in #dev\n")
        self.settle()

        self.narrate("The chair phoned Rita, files a summary of the call and agrees.")
        self.member(CHAIR, subject,
                    "#call today Rita\n"
                    "Rita confirmed the messages and would like the insults to stop;\n"
                    "she does not want Sam to know she reported it.\n#end\n"
                    "#vote agree\n")
        self.settle()

        self.narrate("m2 agrees too: consensus.")
        self.member(M2, subject, "#vote agree\n")
        self.expect("the consensus notice", lambda m: "Consensus" in (m["Subject"] or ""))
        self.settle()

        self.narrate("Before anything is enacted, the chair drafts the mail that tells Rita.")
        self.member(CHAIR, subject, "#consult\n")
        draft = self.expect("the draft to confirm", lambda m: _rcpt(m) == CHAIR
                            and "to confirm" in (m["Subject"] or ""))
        draft_id = next(line.split()[1] for line in _body(draft).splitlines()
                        if line.startswith("#confirm "))
        self.settle()

        self.narrate("The chair confirms the draft: only now does it leave the committee.")
        self.member(CHAIR, subject, f"#confirm {draft_id}\n")
        consultation = self.expect("the consultation", lambda m: _rcpt(m) == REPORTER)
        self.settle()

        self.narrate("Rita answers; her reply is filed as feedback and reaches the members.")
        self.send(REPORTER, "Rita Reporter", consultation["Reply-To"],
                  f"Re: {consultation['Subject']}",
                  "Thank you, that sounds right to me.\n", in_reply_to=consultation)
        self.expect("Rita's feedback on the list", lambda m: _rcpt(m) == CHAIR)
        self.settle()

        self.narrate("The chair enacts the response.")
        self.member(CHAIR, subject, "#enact private reprimand sent by the chair\n")
        self.settle()
        return case_id

    def record(self, case_id: str) -> str:
        cfg = config.load(str(self.config_path))
        db = store.open_db(cfg.db_path)
        try:
            case = views.case_detail(db, case_id, cfg, app.CLOSE_CHECKS)
            return views.format_case(case) if case else f"no case {case_id}"
        finally:
            db.close()


def run(keep: bool = False, out: Callable[[str], None] = print) -> int:
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # the capturing server's chatter
    workdir = Path(tempfile.mkdtemp(prefix="mailflow-demo-"))
    demo = Demo(workdir, out)
    try:
        demo.start()
        out("mailflow demo: a whole case on loopback, in a temporary archive.\n"
            f"Committee: {CHAIR} (chair), {M1}, {M2}.  Reporter: {REPORTER}.")
        case_id = demo.play()
        out(f"\n==== The case record (mailflow case show {case_id})\n")
        out(demo.record(case_id))
    finally:
        demo.stop()
        if keep:
            out(f"\nThe archive is kept in {workdir} (config: {demo.config_path}).")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
