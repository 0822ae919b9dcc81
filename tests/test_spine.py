"""The spine end to end: real SMTP in, real SMTP out."""

from __future__ import annotations

from mailflow.testing import BOARD, CHAIR, M1, M2, make_mail

REPORTER = "reporter@people.test"


def test_report_is_acknowledged_once_and_reaches_every_member(server, relay):
    server.send(make_mail(REPORTER, "conduct@example.org", "Harassment in #general",
                          "Someone keeps insulting me.", name="Rita Reporter"),
                REPORTER, ["conduct@example.org"])
    acks = relay.wait_for(lambda c: REPORTER in c.rcpts, what="acknowledgement")
    relayed = relay.wait_for(lambda c: c.rcpts[0] in (CHAIR, M1, M2), count=3, what="relay")
    ack = acks[0].msg
    # From the null sender, as RFC 3834 advises (outbound.acknowledgement_sender).
    assert acks[0].mail_from == "<>"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert "[coc #" in ack["Subject"]
    case_id = ack["X-Mailflow-Case"]
    assert case_id in acks[0].body() and BOARD in acks[0].body()
    assert sorted(c.rcpts[0] for c in relayed) == sorted([CHAIR, M1, M2])
    for c in relayed:
        assert f"[coc #{case_id}]" in c.msg["Subject"]
        assert c.msg["List-Id"] and c.msg["Reply-To"].startswith("committee+")
        assert "Someone keeps insulting me." in c.body()
        # The subject line names nobody: a code name, not the reporter's words.
        assert "Harassment" not in c.msg["Subject"]
    cases = server.cli_json("cases")
    assert [c["id"] for c in cases] == [case_id]
    assert cases[0]["reporter"] == REPORTER


def test_member_command_by_reply_token_gets_a_transcript(server, relay):
    server.send(make_mail(REPORTER, "conduct@example.org", "Report", "Text."),
                REPORTER, ["conduct@example.org"])
    copy = relay.wait_for(lambda c: c.rcpts == [M1], what="relay to m1")[0].msg
    reply_to = copy["Reply-To"]
    server.send(make_mail(M1, reply_to, "Re: " + copy["Subject"], "#help\n"), M1, [reply_to])
    transcript = relay.wait_for(lambda c: c.rcpts == [M1] and "Transcript" in c.msg["Subject"],
                                what="transcript")[0]
    assert "> #help" in transcript.body() and "All commands were applied." in transcript.body()
    # The reply itself reached the other members, never the reporter.
    relay.wait_for(lambda c: c.rcpts == [M2] and "Re:" in c.msg["Subject"], what="member reply")
    assert not [c for c in relay.to(REPORTER) if "Re:" in (c.msg["Subject"] or "")]
