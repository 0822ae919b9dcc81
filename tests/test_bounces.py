"""Bounces are recognised by structure, matched to the mail mailflow sent, and shown to
the committee; everything else is a report, whoever sent it.  Over real SMTP: each
bounce shape of tests/fixtures/bounces comes back as the world's MTAs send it, from
the null sender."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import make_msgid
from pathlib import Path

import pytest
from fixturekit import load, names

from mailflow.testing import CHAIR, M1, M2, CaptureRelay, MailflowServer, make_mail

CONDUCT = "conduct@example.org"
COMMITTEE = "committee@example.org"
# Delivery failures; the delay notice is a test of its own.
FAILURE_SHAPES = [n for n in names("bounces") if n != "delayed-dsn"]


@pytest.fixture
def server(tmp_path: Path, relay: CaptureRelay) -> Iterator[MailflowServer]:
    """Acknowledgements from the case's return path, where their bounces come back."""
    with MailflowServer(tmp_path, relay.port, outbound_extra=RETURN_PATH).start() as s:
        yield s


RETURN_PATH = 'acknowledgement_sender = "return-path"'


def report(server: MailflowServer, relay: CaptureRelay, sender: str, subject: str = "A report"):
    """Send a report; (its acknowledgement, the case id)."""
    server.send(make_mail(sender, CONDUCT, subject, "Someone was rude to me in the chat."),
                sender, [CONDUCT])
    ack = relay.wait_for(lambda c: c.rcpts == [sender], what=f"ack to {sender}")[0]
    return ack, ack.msg["X-Mailflow-Case"]


def bounce_of(shape: str, ack, rcpt: str) -> bytes:
    return load("bounces", shape, rcpt=rcpt, return_path=ack.mail_from.strip("<>"),
                message_id=ack.msg["Message-ID"].strip("<>"), subject=ack.msg["Subject"])


def notices(relay: CaptureRelay, case_id: str) -> list:
    with relay.lock:
        return [c for c in relay.received if "Mail bounced" in (c.msg["Subject"] or "")
                and case_id in c.msg["Subject"]]


def ack_state(server: MailflowServer, case_id: str) -> list[tuple]:
    return server.query("SELECT r.state, r.last_error FROM outbound o JOIN outbound_rcpt r ON "
                        "r.outbound_id = o.id WHERE o.kind = 'ack' AND o.case_id = ?", (case_id,))


def test_by_default_acks_come_from_the_null_sender_and_a_bounce_to_conduct_is_matched(
        tmp_path, relay):
    with MailflowServer(tmp_path, relay.port).start() as server:
        ack, case_id = report(server, relay, "rita@people.test")
        assert ack.mail_from == "<>"  # RFC 3834: nothing can bounce back to it
        # A DSN that reaches conduct@ all the same (the reporter's MTA took the address
        # from the From header) is matched by the Message-ID it returns.
        dsn = load("bounces", "postfix-dsn", rcpt="rita@people.test", return_path=CONDUCT,
                   message_id=ack.msg["Message-ID"].strip("<>"), subject=ack.msg["Subject"])
        server.send(dsn, "", [CONDUCT])
        server.processed(2)
        assert ack_state(server, case_id)[0][0] == "failed"
        relay.wait_for(lambda c: c.rcpts == [M1] and "Mail bounced" in (c.msg["Subject"] or ""),
                       what="the committee is told")


def test_acknowledgements_go_out_from_a_return_path_that_bounces_can_reach(server, relay):
    ack, case_id = report(server, relay, "rita@people.test")
    path = ack.mail_from.strip("<>")
    # Not the null sender (a bounce of that is never sent), and not a plain address
    # either: the return path names the case and is signed.
    assert path.startswith("conduct+") and path.endswith("@example.org") and case_id in path
    assert ack.msg["Auto-Submitted"] == "auto-replied"


def test_every_bounce_shape_of_an_acknowledgement_marks_it_failed_and_tells_the_committee(
        server, relay):
    sent = {}
    for n, shape in enumerate(FAILURE_SHAPES):
        sent[shape] = report(server, relay, f"rita{n}@people.test")
    for n, shape in enumerate(FAILURE_SHAPES):
        ack, _ = sent[shape]
        path = ack.mail_from.strip("<>")
        server.send(bounce_of(shape, ack, f"rita{n}@people.test"), "", [path])
    server.processed(2 * len(FAILURE_SHAPES))
    for shape, (_, case_id) in sent.items():
        state = ack_state(server, case_id)
        assert state[0][0] == "failed" and state[0][1].startswith("bounced"), (shape, state)
        for member in (CHAIR, M1, M2):
            relay.wait_for(lambda c, m=member, case=case_id: c.rcpts == [m] and case in (
                c.msg["Subject"] or "") and "Mail bounced" in c.msg["Subject"],
                what=f"{shape}: notice to {member}")
        body = notices(relay, case_id)[0].body()
        assert "The acknowledgement to the reporter" in body and "bounced" in body, shape
    # Each bounce is filed on its case, visible in `mailflow case show`, and opened none.
    assert server.query("SELECT count(*) FROM cases")[0][0] == len(FAILURE_SHAPES)
    for shape, (_, case_id) in sent.items():
        kinds = [m["kind"] for m in server.cli_json("case", "show", case_id)["messages"]]
        assert kinds == ["report", "bounce"], (shape, kinds)
    assert server.cli_json("quarantine") == [] and server.cli_json("held") == []


def test_a_bounce_to_the_plain_conduct_address_is_matched_by_the_returned_message_id(
        server, relay):
    ack, case_id = report(server, relay, "rita@people.test")
    server.send(bounce_of("gmail-dsn", ack, "rita@people.test"), "", [CONDUCT])
    server.processed(2)
    assert ack_state(server, case_id)[0][0] == "failed"
    relay.wait_for(lambda c: c.rcpts == [M1] and "Mail bounced" in c.msg["Subject"],
                   what="notice")
    # The next digest shows it on the case too.
    server.stop()
    due = next(d["due_at"] for d in server.cli_json("deadlines") if d["clock"] == "digest")
    server.cli("tick", "--now", due)
    digest = relay.wait_for(lambda c: c.rcpts == [M1] and "Digest" in c.msg["Subject"],
                            what="the digest")[0]
    assert "bounced: ack to rita@people.test" in digest.body()


def test_a_delay_notice_is_filed_on_the_case_and_changes_nothing(server, relay):
    ack, case_id = report(server, relay, "rita@people.test")
    server.send(bounce_of("delayed-dsn", ack, "rita@people.test"), "", [ack.mail_from])
    server.processed(2)
    assert ack_state(server, case_id)[0][0] == "sent"
    rows = server.query("SELECT kind, case_id, flags FROM messages ORDER BY id")
    assert rows[1][:2] == ("bounce", case_id) and "delayed" in rows[1][2]
    assert notices(relay, case_id) == []


def test_a_bounce_of_a_committee_copy_names_the_member_it_did_not_reach(server, relay):
    _, case_id = report(server, relay, "rita@people.test")
    copy = relay.wait_for(lambda c: c.rcpts == [M2] and case_id in c.msg["Subject"],
                          what="copy to m2")[0]
    dsn = load("bounces", "postfix-dsn", rcpt=M2, return_path=COMMITTEE,
               message_id=copy.msg["Message-ID"].strip("<>"), subject=copy.msg["Subject"])
    server.send(dsn, "", [COMMITTEE])
    server.processed(2)
    state = server.query("SELECT r.rcpt, r.state FROM outbound o JOIN outbound_rcpt r ON "
                         "r.outbound_id = o.id WHERE o.kind = 'relay' ORDER BY r.rcpt")
    assert dict(state) == {CHAIR: "sent", M1: "sent", M2: "failed"}
    notice = relay.wait_for(lambda c: c.rcpts == [CHAIR] and "Mail bounced" in c.msg["Subject"],
                            what="notice")[0]
    assert f"The committee's copy ({M2}) bounced" in notice.body()


def test_a_bounce_of_mail_mailflow_never_sent_is_held_and_shown_not_a_case(server, relay):
    never = load("bounces", "postfix-dsn", rcpt="someone@people.test",
                 return_path=CONDUCT, message_id="spam-we-never-sent@bulk.test",
                 subject="Cheap pills")
    server.send(never, "", [CONDUCT])
    server.processed(1)
    assert server.query("SELECT count(*) FROM cases")[0][0] == 0
    assert server.query("SELECT kind, case_id FROM messages") == [("bounce", None)]
    held = server.cli_json("held")
    assert [(h["reason"], h["state"]) for h in held] == [("bounce", "held")]
    assert "someone@people.test" in held[0]["detail"][0]
    # `mailflow cases` says what is held, so the committee sees it there too.
    assert "1 message held" in server.cli("cases").stdout.decode()
    assert relay.received == []  # no answer to a bounce, ever


def test_reports_from_the_null_sender_or_a_postmaster_are_cases_answered_by_nobody(
        server, relay):
    # The null sender (RFC 5321's bounce address) and the names robots use decide
    # nothing: a report is a report.
    server.send(make_mail("postmaster@people.test", CONDUCT, "Abuse from your member",
                          "One of your members keeps harassing our staff."), "", [CONDUCT])
    server.send(make_mail("mailer-daemon@people.test", CONDUCT, "Help",
                          "I run the mail here and someone threatens me."),
                "postmaster@people.test", [CONDUCT])
    server.processed(2)
    assert [c["reporter"] for c in server.cli_json("cases")] == [
        "postmaster@people.test", "mailer-daemon@people.test"]
    copies = relay.wait_for(lambda c: c.rcpts == [M1], count=2, what="both copies")
    # Nobody is answered (RFC 3834), and the committee is told so.
    assert all("No acknowledgement was sent" in c.body() for c in copies)
    assert not [c for c in relay.received if c.rcpts[0].endswith("@people.test")]


def test_a_report_quoting_a_bounce_is_a_report(server, relay):
    pasted = load("bounces", "qmail", rcpt="friend@people.test", return_path="me@people.test",
                  message_id=make_msgid()[1:-1], subject="hi")
    body = ("My mail to the organiser bounced, so I write to you. This is what came back:\n\n"
            + pasted.decode())
    report(server, relay, "reporter@people.test", subject="He blocked my mail")
    server.send(make_mail("other@people.test", CONDUCT, "Bounced", body), "other@people.test",
                [CONDUCT])
    relay.wait_for(lambda c: c.rcpts == ["other@people.test"], what="ack of the second report")
    assert server.query("SELECT kind FROM messages ORDER BY id") == [("report",), ("report",)]
