"""Members' replies from the mail clients they use, through the real server over SMTP.

Each reply of the corpus (tests/fixtures/replies/) goes to ``mailflow serve`` as a member's
answer to a case: only the commands the member wrote apply (never the '#violation no'
and '#close' each one quotes), the transcript echoes exactly those, and the other
members' copy shows the new text with the quote left out.  Then the attacks: quoted
commands under an Outlook header, hashtags in quotes and signatures, typos, commands
written below the quote, and a reporter's reply relayed without the acknowledgement it
quotes.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid

import pytest
from casekit import REPORTER, Case, open_case, start_server
from fixturekit import FIXTURES, load

from mailflow.testing import (
    CHAIR,
    M1,
    M2,
    Captured,
    CaptureRelay,
    MailflowServer,
    free_port,
    make_mail,
    wait_until,
)

EXPECTED = tomllib.loads((FIXTURES / "replies" / "expected.toml").read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[MailflowServer, CaptureRelay]]:
    """One server for the module: each test opens a case of its own on it."""
    relay = CaptureRelay(free_port())
    relay.start()
    server = start_server(tmp_path_factory.mktemp("clients"), relay)
    try:
        yield server, relay
    finally:
        server.stop()
        relay.stop()


def new_case(world: tuple[MailflowServer, CaptureRelay], who: str) -> Case:
    """A case of its own, reported from its own address (acknowledgements are limited
    per sender)."""
    server, relay = world
    return open_case(server, relay, reporter=f"rita.{who}@people.test")


def as_reply(raw: bytes, copy: Captured, case_id: str) -> bytes:
    """A corpus reply re-addressed to the copy it answers, as the member's client would
    have sent it: To the copy's Reply-To, threaded under it, the case's own tag.  The
    body is sent byte for byte."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    text = head.decode()
    original = copy.msg
    values = {"To": original["Reply-To"], "In-Reply-To": original["Message-ID"],
              "References": original["Message-ID"], "Message-ID": make_msgid(domain="client.test")}
    for name, value in values.items():
        text = re.sub(rf"(?mi)^{name}:.*$", lambda _m, n=name, v=value: f"{n}: {v}", text,
                      count=1)
    text = re.sub(r"(?mi)^(Subject:.*#)\d{4}-\d{4}", lambda m: m.group(1) + case_id, text)
    return text.encode() + sep + body


def reply(case: Case, member: str, raw: bytes, transcript: bool = True) -> str:
    """Send ``raw`` as ``member``'s answer to their copy; the transcript, if one comes."""
    copy = case.copy_for(member)
    before = len(case.transcripts(member))
    before_processed = case.server.query("SELECT count(*) FROM spool_state "
                                         "WHERE state != 'new'")[0][0]
    case.server.send(as_reply(raw, copy, case.id), member, [copy.msg["Reply-To"]])
    case.server.processed(before_processed + 1)
    if not transcript:
        return ""
    wait_until(lambda: len(case.transcripts(member)) > before, what=f"transcript for {member}")
    return case.transcripts(member)[before].body().replace("\r\n", "\n")


def record(case: Case) -> dict:
    row = case.server.query("SELECT violation, ongoing, safety, what_happened, channel "
                            "FROM case_record WHERE case_id = ?", (case.id,))
    keys = ("violation", "ongoing", "safety", "what", "channel")
    return dict(zip(keys, row[0], strict=True)) if row else dict.fromkeys(keys)


def copies_to(case: Case, member: str, sender_name: str) -> list[Captured]:
    with case.relay.lock:
        return [c for c in case.relay.received if c.rcpts == [member]
                and case.id in (c.msg["Subject"] or "") and sender_name in (c.msg["From"] or "")]


def next_copy(case: Case, member: str, sender_name: str, before: int = 0) -> str:
    """The body of the copy number ``before`` (from 0) of a sender's mail to a member."""
    wait_until(lambda: len(copies_to(case, member, sender_name)) > before,
               what=f"{member}'s copy of {sender_name}'s mail")
    return copies_to(case, member, sender_name)[before].body()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_client_applies_only_what_the_member_wrote(world, name):
    case = new_case(world, name)
    expected = EXPECTED[name]
    t = reply(case, M1, load("replies", name))

    echoed = re.findall(r"^> (.*)\n(.*)$", t, re.MULTILINE)
    assert [line for line, _ in echoed] == expected["commands"]
    assert all(not result.startswith(("Error", "not run", "undone")) for _, result in echoed)
    assert t.rstrip().endswith("All commands were applied.")
    assert "#violation no" not in t and "#close" not in t and "#general was" not in t

    state = record(case)
    if "#violation yes" in expected["commands"]:
        assert state["violation"] == "yes"   # never 'no', though every reply quotes it
    what = [c for c in expected["commands"] if c.startswith("#what ")]
    if what:  # a command the client wrapped is read whole
        assert state["what"] == what[0].removeprefix("#what ")

    copy = next_copy(case, M2, "Ada Lovelace")
    first_line = expected["new"].strip("\n").split("\n")[0]
    assert first_line in copy and "#violation no" not in copy
    assert "quoted text left out" in copy and "its commands were applied" in copy


def outlook_reply(new_text: str) -> bytes:
    """An Outlook (plain text) reply: the original under a From/Sent block, no '>'."""
    body = (f"{new_text}\r\n\r\nFrom: Kim Park via Test Conduct Committee "
            "<committee@example.org>\r\nSent: Tuesday, November 24, 2026 10:02 AM\r\n"
            "To: Test Conduct Committee <committee@example.org>\r\nSubject: Re: [coc "
            "#2026-0001] case\r\n\r\n#violation no\r\n#close\r\n#general was noisy\r\n")
    return make_mail(M1, "committee@example.org", "RE: [coc #2026-0001] case", body,
                     name="Ada Lovelace")


def test_a_quoted_command_under_an_outlook_header_never_applies(world):
    case = new_case(world, "outlook")
    t = reply(case, M1, outlook_reply("Not sure yet; still reading.\r\n#ongoing no"))
    assert "> #ongoing no" in t and "#violation" not in t and "#close" not in t
    assert record(case)["violation"] is None and record(case)["ongoing"] == "no"
    # Quoted commands alone: nothing applies and nothing needs a transcript.
    reply(case, M1, outlook_reply("I agree with Kim."), transcript=False)
    assert record(case)["violation"] is None
    assert len(case.transcripts(M1)) == 1


def test_hashtags_in_quote_or_signature_do_not_refuse_the_mail(world):
    case = new_case(world, "hashtags")
    body = ("#violation yes\r\n\r\n-- \r\nAda Lovelace\r\n#conduct-team on the chat\r\n\r\n"
            "On Tue, Nov 24, 2026 at 10:02 AM Kim Park <kim@example.org> wrote:\r\n"
            "> #general is where it happened\r\n> #violaton no\r\n")
    t = reply(case, M1, make_mail(M1, "x", "Re: [coc #2026-0001] case", body))
    assert t.count("> ") == 1 and "> #violation yes\nviolation: yes" in t
    assert "#general" not in t and "#conduct-team" not in t and "#violaton" not in t
    assert record(case)["violation"] == "yes"


def test_a_hashtag_in_new_text_is_echoed_and_a_typo_refuses(world):
    case = new_case(world, "typo")
    t = reply(case, M1, make_mail(M1, "x", "Re: [coc #2026-0001] case",
                                  "#violation yes\r\n#general is where it happened\r\n"))
    assert "> #general is where it happened\nnot a command: ignored" in t
    assert "All commands were applied." in t and record(case)["violation"] == "yes"

    t = reply(case, M1, make_mail(M1, "x", "Re: [coc #2026-0001] case",
                                  "#ongoing no\r\n#violaton no\r\n"))
    assert "unknown command #violaton: did you mean #violation?" in t
    assert "> #ongoing no\nnot run" in t and "Nothing in this message was applied." in t
    assert record(case)["violation"] == "yes" and record(case)["ongoing"] is None


def test_a_command_written_below_the_quote_applies_and_gets_a_transcript(world):
    case = new_case(world, "below")
    body = ("On 24/11/2026 10:02, Kim Park wrote:\r\n> #violation no\r\n> #close\r\n\r\n"
            "#violation yes\r\n#what Sam called the patch garbage and told Rita to leave\r\n"
            "\r\nSent from my iPhone\r\n")
    t = reply(case, CHAIR, make_mail(CHAIR, "x", "Re: [coc #2026-0001] case", body))
    assert "> #violation yes\nviolation: yes" in t and "#close" not in t
    assert record(case)["violation"] == "yes"
    assert record(case)["what"] == "Sam called the patch garbage and told Rita to leave"
    copy = next_copy(case, M2, "chair@example.org")
    assert "#violation yes" in copy and "Sent from my iPhone" not in copy


def test_a_reporter_reply_is_relayed_without_the_acknowledgement_it_quotes(world):
    server, relay = world
    case = open_case(server, relay)  # REPORTER, whose name the copy's people list shows
    ack = relay.wait_for(lambda c: REPORTER in c.rcpts and case.id in (c.msg["Subject"] or ""),
                         what="acknowledgement")[0]
    ack_text = ack.body().replace("\r\n", "\n").strip()
    quoted = "\n".join("> " + line if line else ">" for line in ack_text.split("\n"))
    mail = EmailMessage()  # Thunderbird's "forward as attachment" beside a reply
    mail["From"], mail["To"] = REPORTER, ack.msg["Reply-To"]
    mail["Subject"], mail["Message-ID"] = "Re: " + ack.msg["Subject"], make_msgid()
    mail.set_content("One more thing: he wrote to me privately as well, attached.\n\n"
                     f"On 24/11/2026 10:00, Conduct wrote:\n{quoted}\n")
    evidence = EmailMessage()
    evidence["From"], evidence["To"] = "Sam Sharp <sam.sharp@people.test>", REPORTER
    evidence["Subject"] = "your patch"
    evidence.set_content("Nobody wants you here.\n")
    mail.add_attachment(evidence)
    before = len(copies_to(case, M2, "Conduct report"))
    server.send(mail.as_bytes(policy=SMTP), REPORTER, [ack.msg["Reply-To"]])
    copy = next_copy(case, M2, "Conduct report", before)
    assert "he wrote to me privately as well" in copy
    assert "Nobody wants you here." in copy and "Sam Sharp <sam.sharp@people.test>" in copy
    assert "quoted text left out" in copy
    distinctive = max(ack_text.split("\n"), key=len)
    assert distinctive not in copy
