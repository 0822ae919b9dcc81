"""Tokens stay with their member, over real SMTP: a member's signed reply address never
reaches anyone else (not in a header or an attached part of the copies to the others,
not in search results, not in an export), and a leaked token alone cannot send mail as
the chair: #confirm needs the per-draft code that only the chair's draft mail holds."""

from __future__ import annotations

import json
import mailbox
import re
from email import message_from_bytes
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from casekit import ORIGINATOR, REPORTER, draft_ids, open_case, start_server

from mailflow.mail.decode import header_text
from mailflow.testing import CHAIR, M1, M2, Captured, make_mail, wait_until

TOKEN = re.compile(r"(?:conduct|committee)\+([a-z0-9.\-]+)@", re.IGNORECASE)
PEOPLE = f"#originator Sam Sharp <{ORIGINATOR}>\n"
REPRIMAND = """#send private-reprimand to=originator
behaviour: On 3 May in #general you called another contributor's patch "garbage".
impact: Newcomers read that thread; one stopped contributing.
change: Criticise code, not people.
consequences: A further incident may lead to a temporary ban.
#end
"""


def decoded(raw: bytes) -> bytes:
    """Every part of a mail, decoded."""
    parts = [p.get_payload(decode=True) for p in message_from_bytes(raw).walk()]
    return b"\n".join(p for p in parts if isinstance(p, bytes))


def tokens_in(raw: bytes) -> set[str]:
    """Every token in a mail: its headers (decoded) and every part (decoded), nested
    messages included, and the raw bytes as they are."""
    found = set(TOKEN.findall(raw.decode("utf-8", "replace")))
    for part in message_from_bytes(raw).walk():
        for _, value in part.items():
            found |= set(TOKEN.findall(header_text(value)))
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            found |= set(TOKEN.findall(payload.decode("utf-8", "replace")))
    return {t.lower() for t in found}


def own_token(mail: Captured) -> str:
    return TOKEN.search(mail.msg["Reply-To"]).group(1).lower()


def member_reply_with_attachments(member: str, to: str, subject: str) -> bytes:
    """What a mail client sends when a member answers with a chat log and an earlier
    mail attached: the plain and HTML text quote the copy (and its token address), the
    forwarded mail was addressed to the token too."""
    quote = (f"On Tue, 24 Nov 2026 at 10:00, Test Conduct Committee <{to}> wrote:\n"
             "> New report\n")
    text = f"Chatlogcanary: the log is attached.\n\n{quote}"
    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText(text, "plain", "utf-8"))
    alternative.attach(MIMEText(f'<p>Chatlogcanary: the log is attached.</p><blockquote>'
                                f'<a href="mailto:{to}">{to}</a> wrote</blockquote>',
                                "html", "utf-8"))
    earlier = MIMEText(f"My earlier note. Reply to {to} to reach me.\n", "plain", "utf-8")
    earlier["From"], earlier["To"], earlier["Subject"] = member, to, "Earlier note"
    msg = MIMEMultipart("mixed")
    msg["From"], msg["To"], msg["Subject"] = member, to, subject
    msg["Message-ID"] = "<attach-1@members.test>"
    msg["Date"] = "Tue, 24 Nov 2026 10:05:00 +0000"
    msg.attach(alternative)
    msg.attach(MIMEApplication(b"%PDF-1.4 chat log", "pdf", Name="chat.pdf"))
    msg.attach(MIMEMessage(earlier))
    return msg.as_bytes().replace(b"\n", b"\r\n")


def test_a_members_token_reaches_no_other_member_by_any_route(tmp_path, relay):
    server = start_server(tmp_path, relay)
    try:
        case = open_case(server, relay)
        copy = case.copy_for(M1)
        m1_token = own_token(copy)
        subject = "Re: " + header_text(copy.msg["Subject"])
        server.send(member_reply_with_attachments(M1, header_text(copy.msg["Reply-To"]),
                                                  subject), M1, [copy.msg["Reply-To"]])
        copies = relay.wait_for(lambda c: "Chatlogcanary" in c.raw.decode("utf-8", "replace")
                                and c.rcpts != [M1], count=2, what="the others' copies")
        assert sorted(c.rcpts[0] for c in copies) == [CHAIR, M2]
        for c in copies:
            # The original goes along, attachments and all ...
            types = [p.get_content_type() for p in c.msg.walk()]
            assert "message/rfc822" in types and "application/pdf" in types
            # ... and the only token in it is the recipient's own reply address.
            assert tokens_in(c.raw) == {own_token(c)}, c.rcpts
            assert m1_token not in c.raw.decode("utf-8", "replace").lower()

        # Search results and exports do not carry it either.
        results = case.command(M2, "#search chatlogcanary")
        assert "chatlogcanary" in results.lower() and m1_token not in results.lower()
        for fmt in ("json", "html"):
            export = server.cli("case", "export", case.id, "--as", M2, "--format", fmt,
                                "-o", "-").stdout
            assert b"Chatlogcanary" in export, fmt
            assert tokens_in(export) == set(), fmt
        server.cli("case", "export", case.id, "--as", M2, "--format", "mbox",
                   "-o", str(tmp_path / "case.mbox"))
        mails = [m.as_bytes() for m in mailbox.mbox(str(tmp_path / "case.mbox"))]
        assert any(b"Chatlogcanary" in decoded(m) for m in mails)
        assert [m for m in mails if tokens_in(m)] == []
        found = server.cli_json("search", "chatlogcanary", "--as", M2)
        assert found["results"] and m1_token not in json.dumps(found).lower()
    finally:
        server.stop()


def draft_code(mail: Captured, draft: int) -> str:
    return re.search(rf"^#confirm {draft} ([a-z0-9]+)\s*$", mail.body(), re.M).group(1)


def send_as(server, member: str, to: str, subject: str, text: str) -> None:
    server.send(make_mail(member, to, subject, text.replace("\n", "\r\n")), member, [to])


def test_a_leaked_token_alone_cannot_send_mail_as_the_chair(tmp_path, relay):
    server = start_server(tmp_path, relay)
    try:
        case = open_case(server, relay)
        first, second = (draft_ids(case.command(M1, PEOPLE + REPRIMAND))[0],
                         draft_ids(case.command(M1, REPRIMAND))[0])
        first_mail, second_mail = case.draft_mail(first), case.draft_mail(second)
        code = draft_code(first_mail, first)
        assert draft_code(second_mail, second) != code

        # The chair's ordinary copy leaked: its token proves the chair, but without the
        # draft's code #confirm sends nothing, and the refusal echoes no secret.
        leaked = case.copy_for(CHAIR).msg
        chair_token = own_token(case.copy_for(CHAIR))
        subject = "Re: " + leaked["Subject"]
        for n, attempt in enumerate([f"#confirm {first}", f"#confirm {first} aaaaaaaaaaaa",
                                     f"#confirm {second} {code}"], start=1):
            before = len(case.transcripts(CHAIR))
            send_as(server, CHAIR, leaked["Reply-To"], subject, attempt)
            wait_until(lambda before=before: len(case.transcripts(CHAIR)) > before,
                       what=f"refusal {n}")
            refusal = case.transcripts(CHAIR)[before]
            body = refusal.body()
            assert "Nothing in this message was applied." in body, attempt
            assert "the code" in body and f"draft {attempt.split()[1]}" in body, body
            assert code not in body and draft_code(second_mail, second) not in body
            assert chair_token not in body.lower() and tokens_in(refusal.raw) == {
                own_token(refusal)}
        assert not relay.to(ORIGINATOR)

        # Another member holding the code is still not the chair.
        refused = case.command(M1, f"#confirm {first} {code}")
        assert "only the chair may use #confirm" in refused and not relay.to(ORIGINATOR)

        # The chair, with the code from the draft's mail, sends it.
        sent = case.confirm(first)
        assert f"draft {first} sent to the originator" in sent
        relay.wait_for(lambda c: ORIGINATOR in c.rcpts, what="the reprimand")
        assert server.query("SELECT state FROM drafts ORDER BY id") == [("sent",), ("pending",)]
        assert not relay.to(REPORTER)[1:], "only the acknowledgement went to the reporter"
    finally:
        server.stop()
