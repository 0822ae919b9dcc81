"""``mailflow demo``: one whole case, played on loopback, in a temporary archive.

A real ``mailflow serve`` listens on a free local port and sends through a capturing
SMTP server (both from :mod:`mailflow.testing`); the demo mails it as a reporter and
as the three members would (each member replying to the Reply-To of the last mail
they got, which is how they prove who they are), prints every mail exchanged, and
ends with the case record.  Nothing leaves the machine.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from email.message import Message
from email.utils import formataddr, make_msgid
from pathlib import Path

from mailflow import config, store
from mailflow.archive import views
from mailflow.testing import CHAIR, M1, M2, Captured, CaptureRelay, MailflowServer, free_port

REPORTER, ORIGINATOR = "rita@people.example", "sam@people.example"
BODY_LINES = 45


class Demo:
    def __init__(self, workdir: Path, out: Callable[[str], None]):
        self.out = out
        self.outside = CaptureRelay(free_port())
        self.server = MailflowServer(workdir, self.outside.port,
                                     name="Demo Code of Conduct Committee")
        self.seen = 0
        self.reply_to: dict[str, str] = {}     # member -> Reply-To of their latest mail
        self.step = 0

    def start(self) -> None:
        self.outside.start()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.outside.stop()

    # -- mail in and out ----------------------------------------------------------------
    def show(self, direction: str, msg: Message, body: str) -> None:
        lines = body.rstrip().splitlines()
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
        self.show(f"{sender} -> mailflow", msg, body)
        self.server.send(msg, sender, [to])

    def _remember_reply_to(self, mail: Captured) -> None:
        if mail.rcpts[0] in (CHAIR, M1, M2) and mail.msg["Reply-To"]:
            self.reply_to[mail.rcpts[0]] = mail.msg["Reply-To"]

    def expect(self, what: str, test: Callable[[Captured], bool], show: bool = True
               ) -> Captured:
        """The first mail since the last :meth:`settle` that passes ``test``."""
        seen = self.seen
        mail = self.outside.wait_for(lambda c: c in self.outside.received[seen:] and test(c),
                                     what=what)[0]
        self._remember_reply_to(mail)
        if show:
            self.show(f"mailflow -> {mail.rcpts[0]}", mail.msg, mail.body())
        return mail

    def settle(self) -> None:
        """Later waits look only at mail sent after this point."""
        time.sleep(0.3)
        with self.outside.lock:
            for mail in self.outside.received[self.seen:]:
                self._remember_reply_to(mail)
            self.seen = len(self.outside.received)

    def member(self, member: str, subject: str, body: str) -> Captured:
        """A member's reply with commands; returns the transcript."""
        self.send(member, "", self.reply_to[member], f"Re: {subject}", body)
        return self.expect(f"the transcript for {member}", lambda c: c.rcpts == [member]
                           and "Transcript" in (c.msg["Subject"] or ""))

    # -- the case -----------------------------------------------------------------------
    def play(self) -> str:
        case_id, subject = self.report()
        self.decide(subject)
        self.consult_and_enact(subject)
        return case_id

    def report(self) -> tuple[str, str]:
        self.narrate("Rita reports an incident to the conduct address.")
        self.send(REPORTER, "Rita Reporter", f"conduct@{self.domain}",
                  "Insults in the #dev chat",
                  "Hello,\n\nfor two days Sam (sam@people.example) has been calling me names "
                  "in the #dev chat\nwhenever I ask a question. I do not feel welcome "
                  "any more.\n\nRita\n")
        ack = self.expect("the acknowledgement", lambda c: c.rcpts == [REPORTER])
        copy = self.expect("the report on the committee list", lambda c: c.rcpts == [CHAIR])
        self.out(f"(the same went to {M1} and {M2}, each with their own Reply-To)\n")
        self.expect("m1's copy", lambda c: c.rcpts == [M1], show=False)
        self.expect("m2's copy", lambda c: c.rcpts == [M2], show=False)
        self.settle()
        return ack.msg["X-Mailflow-Case"], copy.msg["Subject"]

    def decide(self, subject: str) -> None:
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
        self.expect("the consensus notice", lambda c: "Consensus" in (c.msg["Subject"] or ""))
        self.settle()

    def consult_and_enact(self, subject: str) -> None:
        self.narrate("Before anything is enacted, the chair drafts the mail that tells Rita.")
        self.member(CHAIR, subject, "#consult\n")
        draft = self.expect("the draft to confirm", lambda c: c.rcpts == [CHAIR]
                            and "to confirm" in (c.msg["Subject"] or ""))
        confirm = next(line.strip() for line in draft.body().splitlines()
                       if line.startswith("#confirm "))
        self.settle()
        self.narrate("The chair confirms the draft with the line (and code) it came with: "
                     "only now does it leave the committee.")
        self.member(CHAIR, subject, f"{confirm}\n")
        consultation = self.expect("the consultation", lambda c: c.rcpts == [REPORTER]).msg
        self.settle()
        self.narrate("Rita answers; her reply is filed as feedback and reaches the members.")
        self.send(REPORTER, "Rita Reporter", consultation["Reply-To"],
                  f"Re: {consultation['Subject']}",
                  "Thank you, that sounds right to me.\n", in_reply_to=consultation)
        self.expect("Rita's feedback on the list", lambda c: c.rcpts == [CHAIR])
        self.settle()
        self.narrate("The chair enacts the response.")
        self.member(CHAIR, subject, "#enact private reprimand sent by the chair\n")
        self.settle()

    @property
    def domain(self) -> str:
        return CHAIR.split("@")[1]

    def record(self, case_id: str) -> str:
        cfg = config.load(str(self.server.config))
        db = store.open_db(cfg.db_path)
        try:
            case = views.case_detail(db, case_id, cfg)
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
            out(f"\nThe archive is kept in {workdir} (config: {demo.server.config}).")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0
