"""Helpers for the tests of templated responses, sanctions and the final report: a
server whose committee has moderators, maintainers and a public venue, a reported
case, and members (the chair included) writing commands by replying to the copies
they received, as a mail client would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mailflow.testing import CHAIR, Captured, CaptureRelay, MailflowServer, make_mail, wait_until

REPORTER, REPORTER_NAME = "rita.moreno@people.test", "Rita Moreno"
ORIGINATOR = "sam.sharp@people.test"
AFFECTED = "ada.ng@people.test"
WITNESS, WITNESS_NAME = "kim.lo@people.test", "Kim Lo"
MODERATORS, MAINTAINERS = "mods@example.org", "maintainers@example.org"
PUBLIC, OFFICERS = "discuss@lists.example.org", "officers@example.org"
COMMITTEE_EXTRA = (f'moderators = ["{MODERATORS}"]\nmaintainers = ["{MAINTAINERS}"]\n'
                   f'public = ["{PUBLIC}"]\n')


def start_server(tmp: Path, relay: CaptureRelay, env: dict[str, str] | None = None,
                 extra: str = "") -> MailflowServer:
    server = MailflowServer(tmp, relay.port, env=env, extra=extra)
    text = server.config.read_text()
    server.config.write_text(text.replace("[committee]\n", "[committee]\n" + COMMITTEE_EXTRA, 1))
    return server.start()


@dataclass
class Case:
    server: MailflowServer
    relay: CaptureRelay
    id: str

    def copy_for(self, member: str) -> Captured:
        """The latest mail the member received on this case: what they reply to."""
        hits = self.relay.wait_for(
            lambda c: c.rcpts == [member] and self.id in (c.msg["Subject"] or ""),
            what=f"mail to {member} on {self.id}")
        return hits[-1]

    def command(self, member: str, text: str, reply_to: Captured | None = None) -> str:
        """Send ``text`` as a reply by ``member``; returns the transcript's body."""
        copy = (reply_to or self.copy_for(member)).msg
        before = len(self.transcripts(member))
        body = text.replace("\n", "\r\n")  # SMTP lines end in CRLF and stay short
        subject = copy["Subject"] if copy["Subject"].startswith("Re:") else "Re: " + copy["Subject"]
        self.server.send(make_mail(member, copy["Reply-To"], subject, body),
                         member, [copy["Reply-To"]])
        wait_until(lambda: len(self.transcripts(member)) > before,
                   what=f"transcript for {member}")
        return self.transcripts(member)[before].body()

    def transcripts(self, member: str) -> list[Captured]:
        with self.relay.lock:
            # A member's post replying to a transcript is relayed under its subject:
            # only mailflow's own answer (auto-replied) is a transcript.
            return [c for c in self.relay.received if c.rcpts == [member]
                    and "Transcript" in (c.msg["Subject"] or "") and self.id in c.msg["Subject"]
                    and c.msg["Auto-Submitted"] == "auto-replied"]

    def draft_mail(self, draft_id: int) -> Captured:
        return self.relay.wait_for(
            lambda c: c.rcpts == [CHAIR] and f"Draft {draft_id} to confirm" in
            (c.msg["Subject"] or ""), what=f"draft {draft_id} mailed to the chair")[0]

    def confirm_line(self, draft_id: int) -> str:
        """The line the draft's mail to the chair gives to send it: #confirm, its id
        and the draft's code."""
        body = self.draft_mail(draft_id).body()
        return re.search(rf"^#confirm {draft_id} [a-z0-9]+", body, re.MULTILINE).group(0)

    def confirm(self, *draft_ids: int) -> str:
        """The chair confirms by replying to the mail of the first draft with the
        #confirm line of each draft's mail."""
        text = "\n".join(self.confirm_line(d) for d in draft_ids)
        return self.command(CHAIR, text, reply_to=self.draft_mail(draft_ids[0]))


def open_case(server: MailflowServer, relay: CaptureRelay, body: str = "",
              reporter: str = REPORTER) -> Case:
    """A report by ``reporter`` (one address acknowledged at most 5 times an hour)."""
    body = body or (f"Hello, I am {REPORTER_NAME}. In #general, Sam Sharp called my patch "
                    "garbage and said people like me should leave. Kim Lo saw it too.")
    before = len(relay.to(reporter))
    server.send(make_mail(reporter, "conduct@example.org", "Insults in #general", body,
                          name=REPORTER_NAME), reporter, ["conduct@example.org"])
    ack = relay.wait_for(lambda c: reporter in c.rcpts, count=before + 1,
                         what="acknowledgement")[-1]
    return Case(server, relay, ack.msg["X-Mailflow-Case"])


def draft_ids(transcript: str) -> list[int]:
    return [int(n) for n in re.findall(r"\bdraft (\d+) \(", transcript)]


IDENTITIES = {REPORTER: (REPORTER, "rita.moreno", "Rita", "Moreno"),
              WITNESS: (WITNESS, "kim.lo", "Kim Lo")}


def leaks(mail: Captured) -> list[str]:
    """Any identity of the reporter or the witness in a mail's headers or text, unless
    the mail is addressed to that very person."""
    text = mail.raw.decode("utf-8", "replace") + mail.body()
    return [s for person, names in IDENTITIES.items() if person not in mail.rcpts
            for s in names if s in text]
