"""Forwards arrive whole: attached (message/rfc822, base64-encoded or not, a .eml file of
any type) or inline as Gmail, Apple Mail, Thunderbird and Outlook write them.  The
committee's copy carries the forwarded report in full, its text is searchable, and a
board member's (or committee member's) forward names the original author as reporter."""

from __future__ import annotations

import sqlite3

import pytest
from fixturekit import load, names

from mailflow.testing import BOARD, M1, make_mail

CONDUCT = "conduct@example.org"
ATTACHED = {"attached-rfc822", "attached-rfc822-base64", "eml-attachment"}
# The words only the forwarded text has, and its author.
ORIGINAL = {"attached": ("the walrus account", "victim@people.test", "walrus"),
            "inline": ("the walrus meetup", "olu@people.test", "walrus"),
            "german": ("des Walross-Treffens", "olu@people.test", "Walross")}


def expected(shape: str) -> tuple[str, str, str]:
    return ORIGINAL["attached" if shape in ATTACHED else
                    "german" if "german" in shape else "inline"]


@pytest.mark.parametrize("shape", names("forwards"))
def test_a_board_forward_reaches_the_committee_whole_searchable_and_names_the_author(
        server, relay, shape):
    words, author, word = expected(shape)
    server.send(load("forwards", shape), BOARD, [CONDUCT])
    server.processed(1)
    case = server.cli_json("cases")[0]
    assert case["reporter"] == author
    people = {(p["role"], p["address"]) for p in server.cli_json("case", "show", case["id"])[
        "people"]}
    assert people == {("reporter", author), ("forwarder", BOARD)}
    copy = relay.wait_for(lambda c: c.rcpts == [M1] and case["id"] in c.msg["Subject"],
                          what="the committee's copy")[0]
    body = copy.body()
    assert words in body and author in body, body
    found = server.cli_json("search", word)["results"]
    assert [r["case"] for r in found if r["kind"] == "forward"] == [case["id"]], found


def test_an_attached_forward_with_attachments_goes_to_the_committee_with_the_original(
        server, relay):
    server.send(load("forwards", "attached-rfc822"), BOARD, [CONDUCT])
    copy = relay.wait_for(lambda c: c.rcpts == [M1] and "Forwarded report" in c.msg["Subject"],
                          what="the committee's copy")[0]
    # The original goes along, with the forwarded mail and its screenshot inside it.
    parts = [(p.get_content_type(), p.get_filename()) for p in copy.msg.walk()]
    assert ("message/rfc822", "original.eml") in parts
    assert ("image/png", "screenshot.png") in parts
    assert "Attached: screenshot.png (image/png, 70 bytes)" in copy.body()


def test_a_committee_member_forwarding_a_report_is_the_forwarder_not_the_reporter(
        server, relay):
    raw = load("forwards", "gmail-inline").replace(b"board@example.org", M1.encode())
    server.send(raw, M1, [CONDUCT])
    server.processed(1)
    assert server.cli_json("cases")[0]["reporter"] == "olu@people.test"


def test_a_forward_from_anyone_else_keeps_its_sender_as_reporter_and_its_text(server, relay):
    raw = load("forwards", "attached-rfc822").replace(
        b"From: Board Member <board@example.org>", b"From: A Friend <friend@people.test>")
    server.send(raw, "friend@people.test", [CONDUCT])
    server.processed(1)
    case = server.cli_json("cases")[0]
    assert case["reporter"] == "friend@people.test"
    assert server.cli_json("search", "walrus")["results"][0]["case"] == case["id"]


def test_reindex_gives_mail_archived_before_forwards_were_read_its_forwarded_text(
        server, relay):
    server.send(load("forwards", "eml-attachment"), BOARD, [CONDUCT])
    server.processed(1)
    server.stop()

    def forwards() -> list[str]:
        return [r["ref"] for r in server.cli_json("search", "walrus")["results"]
                if r["kind"] == "forward"]

    assert forwards() == ["message:1"]
    # As mail archived before the forwarded_text column has it: empty.
    with sqlite3.connect(server.archive / "mailflow.db") as db:
        db.execute("UPDATE messages SET forwarded_text = NULL")
    assert forwards() == []
    server.cli("reindex", "-q")
    assert forwards() == ["message:1"]


def test_a_reply_quoting_an_outlook_header_block_is_not_a_forward(server, relay):
    body = ("Thanks, that helps.\n\n________________________________\nFrom: Test Conduct "
            "Committee <conduct@example.org>\nSent: Tuesday, November 24, 2026 10:00 AM\n"
            "To: rita@people.test\nSubject: We have received your report\n\nThank you.\n")
    server.send(make_mail("rita@people.test", CONDUCT, "RE: We have received your report",
                          body), "rita@people.test", [CONDUCT])
    server.processed(1)
    assert server.cli_json("cases")[0]["reporter"] == "rita@people.test"
