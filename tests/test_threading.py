"""Threading mail into cases, and when mailflow must not answer automatically."""

from __future__ import annotations

from email.utils import make_msgid

from mailflow.testing import BOARD, CHAIR, M1, M2, make_mail

REPORTER = "reporter@people.test"


def report(server, relay, sender=REPORTER, subject="A report", body="What happened.", **kw):
    raw = make_mail(sender, "conduct@example.org", subject, body, **kw)
    server.send(raw, sender, ["conduct@example.org"])
    return raw


def ack_for(relay, sender):
    return relay.wait_for(lambda c: sender in c.rcpts and c.mail_from == "<>",
                          what=f"ack to {sender}")[0].msg


def test_reporter_reply_with_only_in_reply_to_joins_the_case(server, relay):
    report(server, relay)
    ack = ack_for(relay, REPORTER)
    case_id = ack["X-Mailflow-Case"]
    # No tag in the subject, plain conduct@ address: only In-Reply-To names the case.
    server.send(make_mail(REPORTER, "conduct@example.org", "one more thing", "Also this.",
                          headers={"In-Reply-To": ack["Message-ID"]}),
                REPORTER, ["conduct@example.org"])
    server.processed(2)
    assert server.query("SELECT kind, case_id FROM messages ORDER BY id") == [
        ("report", case_id), ("reply", case_id)]
    relay.wait_for(lambda c: c.rcpts == [M1] and "Reporter wrote" in c.msg["Subject"],
                   what="reporter reply relayed")
    assert len(relay.to(REPORTER)) == 1  # one acknowledgement per case, not per mail


def test_reply_to_the_signed_case_address_joins_the_case(server, relay):
    report(server, relay)
    ack = ack_for(relay, REPORTER)
    server.send(make_mail(REPORTER, ack["Reply-To"], "more", "Screenshot follows."),
                REPORTER, [ack["Reply-To"]])
    server.processed(2)
    assert server.query("SELECT count(DISTINCT case_id) FROM messages")[0][0] == 1


def test_copied_tag_from_a_stranger_opens_a_new_case_not_a_wrong_one(server, relay):
    report(server, relay)
    case_id = ack_for(relay, REPORTER)["X-Mailflow-Case"]
    stranger = "stranger@elsewhere.test"
    server.send(make_mail(stranger, "conduct@example.org", f"Re: [coc #{case_id}] hi", "Hi."),
                stranger, ["conduct@example.org"])
    server.processed(2)
    rows = server.query("SELECT case_id, flags FROM messages ORDER BY id")
    assert rows[1][0] != case_id
    assert f"unverified-thread:{case_id}" in rows[1][1]


def test_forged_case_token_is_refused(server, relay):
    report(server, relay)
    case_id = ack_for(relay, REPORTER)["X-Mailflow-Case"]
    forged = f"conduct+{case_id}.aaaaaaaaaaaa@example.org"
    server.send(make_mail("x@elsewhere.test", forged, "guess", "Let me in."),
                "x@elsewhere.test", [forged])
    server.processed(2)
    rows = server.query("SELECT case_id, flags FROM messages ORDER BY id")
    assert rows[1][0] != case_id and "bad-token" in rows[1][1]


def test_keys_that_disagree_open_a_new_case(server, relay):
    report(server, relay, sender="a@people.test")
    report(server, relay, sender="b@people.test")
    first = ack_for(relay, "a@people.test")
    second = ack_for(relay, "b@people.test")
    # Subject tag of one case, In-Reply-To of the other.
    server.send(make_mail("a@people.test", "conduct@example.org",
                          f"Re: [coc #{first['X-Mailflow-Case']}]", "Which one?",
                          headers={"In-Reply-To": second["Message-ID"]}),
                "a@people.test", ["conduct@example.org"])
    server.processed(3)
    assert server.query("SELECT count(*) FROM cases")[0][0] == 3


def test_automatic_and_bulk_mail_gets_no_acknowledgement(server, relay):
    report(server, relay, sender="vacation@people.test",
           headers={"Auto-Submitted": "auto-replied"})
    report(server, relay, sender="news@people.test", headers={"Precedence": "bulk"})
    report(server, relay, sender="list@people.test", headers={"List-Id": "<x.people.test>"})
    report(server, relay, sender="noreply@people.test")
    report(server, relay, sender="plain@people.test")
    ack_for(relay, "plain@people.test")
    server.processed(5)
    # All five are cases the committee sees; only the human gets an answer.
    assert server.query("SELECT count(*) FROM cases")[0][0] == 5
    acked = {c.rcpts[0] for c in relay.received if c.mail_from == "<>"}
    assert acked == {"plain@people.test"}
    reasons = [r[0] for r in server.query(
        "SELECT detail FROM audit WHERE action = 'no acknowledgement' ORDER BY id")]
    assert len(reasons) == 4 and "Auto-Submitted" in reasons[0] and "Precedence" in reasons[1]


def test_acknowledgements_are_rate_limited_per_sender(server, relay):
    for i in range(7):
        report(server, relay, sender="busy@people.test", subject=f"Report {i}")
    server.processed(7)
    assert server.query("SELECT count(*) FROM cases")[0][0] == 7
    relay.wait_for(lambda c: c.rcpts == ["busy@people.test"], count=5, what="5 acks")
    assert server.query("SELECT count(*) FROM outbound WHERE kind = 'ack'")[0][0] == 5


def test_board_forward_opens_a_case_for_the_original_author(server, relay):
    original = make_mail("victim@people.test", BOARD, "I don't trust the committee",
                         "Someone threatened me in the forum.", name="Vera Victim")
    forward = (
        f"From: Board Member <{BOARD}>\r\nTo: conduct@example.org\r\n"
        f"Subject: Fwd: I don't trust the committee\r\nMessage-ID: {make_msgid()}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XYZ\r\n\r\n"
        "--XYZ\r\nContent-Type: text/plain\r\n\r\nPlease handle this one.\r\n"
        "--XYZ\r\nContent-Type: message/rfc822\r\n\r\n"
    ).encode() + original + b"\r\n--XYZ--\r\n"
    server.send(forward, BOARD, ["conduct@example.org"])
    server.processed(1)
    case = server.cli_json("cases")[0]
    assert case["reporter"] == "victim@people.test"
    people = server.cli_json("case", "show", case["id"])["people"]
    assert {(p["role"], p["address"]) for p in people} == {
        ("reporter", "victim@people.test"), ("forwarder", BOARD)}
    relay.wait_for(lambda c: c.rcpts[0] in (CHAIR, M1, M2), count=3, what="relay")


def test_inline_forward_from_the_board_is_recognised(server, relay):
    body = ("FYI, see below.\n\n---------- Forwarded message ---------\n"
            "From: Olu Original <olu@people.test>\nDate: Mon, 23 Nov 2026\n"
            "Subject: harassment\nTo: board@example.org\n\nHe keeps messaging me.\n")
    server.send(make_mail(BOARD, "conduct@example.org", "Fwd: harassment", body),
                BOARD, ["conduct@example.org"])
    server.processed(1)
    assert server.cli_json("cases")[0]["reporter"] == "olu@people.test"


def test_non_member_mail_to_committee_is_held_not_relayed(server, relay):
    outsider = "outsider@elsewhere.test"
    server.send(make_mail(outsider, "committee@example.org", "let me join", "Hello list"),
                outsider, ["committee@example.org"])
    server.processed(1)
    assert server.query("SELECT kind, flags FROM messages") == [
        ("held", '["held (not-a-member) as #1"]')]
    assert [(h["reason"], h["envelope_from"]) for h in server.cli_json("held")] == [
        ("not-a-member", outsider)]
    assert relay.received == []
    # Someone who wrote to the wrong address: the chair releases it, and it is a report.
    server.cli("held", "--release", "1")
    ack = ack_for(relay, outsider)
    assert server.cli_json("cases")[0]["reporter"] == outsider
    assert server.query("SELECT kind, case_id FROM messages") == [
        ("report", ack["X-Mailflow-Case"])]
