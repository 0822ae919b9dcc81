"""Headers that cannot be used safely degrade, they never block: a bad Message-ID is
replaced by one derived from the bytes, a bad In-Reply-To or References is ignored for
threading, a subject or name that would break a header of ours is cleaned in it.  Every
shape of tests/fixtures/headers becomes a case over real SMTP; nothing is quarantined."""

from __future__ import annotations

import pytest
from casekit import Case
from fixturekit import load, names

from mailflow.mail.compose import HeaderInjection, check_header
from mailflow.mail.msgids import MAX_REFERENCES, referenced, usable
from mailflow.testing import CHAIR, M1, MailflowServer, make_mail, wait_until

CONDUCT = "conduct@example.org"
SHAPES = names("headers")
# Shapes whose Message-ID is unusable, so the message goes by a derived one.
DERIVED = [s for s in SHAPES if s.startswith("message-id-") and s != "message-id-nul"]


def test_every_malformed_header_shape_becomes_a_case_and_nothing_is_quarantined(server, relay):
    for n, shape in enumerate(SHAPES, 1):
        server.send(load("headers", shape), f"reporter{n}@people.test", [CONDUCT])
    server.processed(len(SHAPES))
    assert server.cli_json("quarantine") == []
    assert server.query("SELECT count(*) FROM spool_state WHERE state = 'done'") == [
        (len(SHAPES),)]
    assert len(server.cli_json("cases")) == len(SHAPES)
    # Every reporter is acknowledged, and nothing they wrote breaks our headers.
    acks = relay.wait_for(lambda c: c.rcpts[0].startswith("reporter"), count=len(SHAPES),
                          what="every acknowledgement")
    for ack in acks:
        for name in ("In-Reply-To", "References", "Subject"):
            check_header(name, str(ack.msg[name] or ""))
    copies = relay.wait_for(lambda c: c.rcpts == [M1], count=len(SHAPES), what="the copies")
    assert not [c for c in copies if "%0d" in c.raw.decode("utf-8", "replace").lower()
                .split("\r\n\r\n")[0]]
    ids = dict(server.query("SELECT subject, message_id FROM messages"))
    derived = {s: m for s, m in ids.items() if m.endswith("@derived.mailflow.invalid")}
    assert sorted(s.rpartition(": ")[2] for s in derived) == sorted(DERIVED), ids
    defects = " ".join(r[0] for r in server.query("SELECT defects FROM messages"))
    assert "unusable In-Reply-To ignored" in defects and "unusable References ignored" in defects


def test_a_reply_naming_a_bad_and_a_good_reference_threads_by_the_good_one(server, relay):
    server.send(load("headers", "message-id-urlencoded-crlf"), "reporter1@people.test",
                [CONDUCT])
    ack = relay.wait_for(lambda c: c.rcpts == ["reporter1@people.test"], what="ack")[0]
    # The acknowledgement refers to the report by its derived id ...
    assert "derived.mailflow.invalid" in ack.msg["In-Reply-To"]
    refs = f"<bad%0d%0aBcc:x@evil.test> {ack.msg['Message-ID']}"
    server.send(make_mail("reporter1@people.test", CONDUCT, "more", "And another thing.",
                          headers={"References": refs}), "reporter1@people.test", [CONDUCT])
    server.processed(2)
    # ... and a reply threads by what is usable in its References.
    assert server.query("SELECT kind FROM messages ORDER BY id") == [("report",), ("reply",)]
    assert server.cli_json("quarantine") == []


def test_a_member_command_mail_with_broken_headers_gets_its_transcript(server, relay):
    server.send(make_mail("rita@people.test", CONDUCT, "Insults", "He insulted me."),
                "rita@people.test", [CONDUCT])
    ack = relay.wait_for(lambda c: c.rcpts == ["rita@people.test"], what="ack")[0]
    case = Case(server, relay, ack.msg["X-Mailflow-Case"])
    copy = case.copy_for(M1).msg
    server.send(make_mail(M1, copy["Reply-To"], "Re: x%0d%0aBcc: victim@evil.test",
                          "#note checked the logs\r\n",
                          message_id="<note%0d%0a@example.org>",
                          headers={"In-Reply-To": "<=?utf-8?q?=0a?=@evil.test>"}),
                M1, [copy["Reply-To"]])
    transcript = relay.wait_for(lambda c: c.rcpts == [M1] and "Transcript" in c.msg["Subject"],
                                what="the transcript")[0]
    assert "%0d" not in transcript.msg["Subject"].lower()
    assert "All commands were applied" in transcript.body()
    assert server.cli_json("quarantine") == []


def test_with_original_subjects_a_subject_that_would_break_the_copy_is_cleaned(tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port).start()
    try:
        text = server.config.read_text()
        server.stop()
        server.config.write_text(text.replace("[committee]\n", '[committee]\nsubject = '
                                              '"original"\n', 1))
        server.start()
        raw = load("headers", "subject-encoded-vertical-tab")
        server.send(raw, "reporter@people.test", [CONDUCT])
        copy = relay.wait_for(lambda c: c.rcpts == [CHAIR], what="the chair's copy")[0]
        check_header("Subject", copy.msg["Subject"])
        assert "Help" in copy.msg["Subject"] and "victim@evil.test" in copy.msg["Subject"]
        wait_until(lambda: server.query("SELECT count(*) FROM spool_state WHERE state = "
                                        "'done'") == [(1,)], what="done")
    finally:
        server.stop()


@pytest.mark.parametrize("value", [
    "a%0d%0ab@x", "a%0A@x", "=?utf-8?q?=0a?=@x", "a b@x", "a\x0b@x", "ü@x", "a<b@x",
    "no-at-sign", "", "x" * 251 + "@x", "a\u2028@x",
])
def test_unusable_ids_are_refused(value):
    assert not usable(value)


def test_usable_ids_are_kept_as_real_clients_write_them():
    for value in ("CAKx+9=a_b-c@mail.gmail.com", "20261124.abc$1@mx.example.org",
                  "AM0PR01MB1234.eurprd01.prod.exchangelabs.com@outlook.com"):
        assert usable(value), value
        check_header("In-Reply-To", f"<{value}>")


def test_references_keep_the_usable_ids_and_the_newest_of_a_long_chain():
    ids, defect = referenced(["<a@x> <b%0a@x> <c@x>"], "References")
    assert ids == ["a@x", "c@x"] and defect == "unusable References ignored for threading"
    ids, defect = referenced(["<a@x> <b@x"], "In-Reply-To")
    assert ids == [] and defect
    chain = " ".join(f"<r{i}@x>" for i in range(3 * MAX_REFERENCES))
    ids, defect = referenced([chain], "References")
    assert len(ids) == MAX_REFERENCES and ids[-1] == f"r{3 * MAX_REFERENCES - 1}@x"
    assert defect is None


def test_check_header_is_what_usable_ids_must_pass():
    # The same rule both ways: an id that our headers would refuse is never used.
    with pytest.raises(HeaderInjection):
        check_header("In-Reply-To", "<a%0d%0a@x>")
