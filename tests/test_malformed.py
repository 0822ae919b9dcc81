"""Hostile and broken mail is accepted, archived and threaded; nothing crashes."""

from __future__ import annotations

import pytest

from mailflow.mail.decode import addresses, strict_from
from mailflow.mail.parse import parse
from mailflow.testing import make_mail

REPORTER = "reporter@people.test"

BROKEN = {
    "missing MIME boundary": (
        b"From: a@people.test\r\nTo: conduct@example.org\r\nSubject: no boundary\r\n"
        b"Message-ID: <nb@people.test>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=NEVERUSED\r\n\r\n"
        b"This body has no parts at all.\r\n"),
    "bad base64": (
        b"From: b@people.test\r\nTo: conduct@example.org\r\nSubject: bad b64\r\n"
        b"Message-ID: <b64@people.test>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"SGVsbG8g!!!not*base64===\r\nd29ybGQ\r\n"),
    "8-bit and encoded-word headers": (
        "From: =?utf-8?q?J=C3=B6rg?= <c@people.test>\r\nTo: conduct@example.org\r\n"
        "Subject: =?iso-8859-1?q?Beleidigung_im_Forum?= und Grüße\r\n"
        "Message-ID: <8bit@people.test>\r\n"
        "Content-Type: text/plain; charset=latin-1\r\n\r\n").encode() + "Straße\r\n".encode(
            "latin-1"),
    "NUL bytes": (
        b"From: d@people.test\r\nTo: conduct@example.org\r\nSubject: nul\x00here\r\n"
        b"Message-ID: <nul@people.test>\r\n\r\nbody with \x00 NUL\r\n"),
    "no Message-ID": (
        b"From: e@people.test\r\nTo: conduct@example.org\r\nSubject: no id\r\n\r\nhi\r\n"),
    "unknown charset and bad date": (
        b"From: f@people.test\r\nTo: conduct@example.org\r\nSubject: charset\r\n"
        b"Date: yesterday-ish\r\nMessage-ID: <cs@people.test>\r\n"
        b"Content-Type: text/plain; charset=x-klingon\r\n\r\nqapla\xff\r\n"),
    "no From at all": (
        b"To: conduct@example.org\r\nSubject: anonymous\r\nMessage-ID: <anon@people.test>"
        b"\r\n\r\nI prefer not to say who I am.\r\n"),
}


@pytest.mark.parametrize("raw", BROKEN.values(), ids=BROKEN.keys())
def test_parser_never_raises_and_keeps_the_text(raw):
    parsed = parse(raw)
    assert parsed.body_text or parsed.subject


def test_broken_mail_is_accepted_archived_and_threaded(server, relay):
    for i, raw in enumerate(BROKEN.values()):
        server.send(raw, f"sender{i}@people.test", ["conduct@example.org"])
    server.processed(len(BROKEN))
    done = server.query("SELECT count(*) FROM spool_state WHERE state = 'done'")[0][0]
    assert done == len(BROKEN)
    assert server.query("SELECT count(*) FROM cases")[0][0] == len(BROKEN)
    # The raw bytes are kept exactly as received.
    stored = {r[0] for r in server.query("SELECT raw FROM spool")}
    assert all(raw.replace(b"\r\n", b"\n") in {s.replace(b"\r\n", b"\n") for s in stored}
               for raw in BROKEN.values())
    subjects = {r[0] for r in server.query("SELECT subject FROM messages")}
    assert "Beleidigung im Forum und Grüße" in subjects
    defects = " ".join(r[0] for r in server.query("SELECT defects FROM messages"))
    assert "no Message-ID" in defects and "unparseable Date" in defects


def test_a_reply_to_a_case_opened_by_broken_mail_threads(server, relay):
    raw = BROKEN["no Message-ID"]
    server.send(raw, "e@people.test", ["conduct@example.org"])
    ack = relay.wait_for(lambda c: "e@people.test" in c.rcpts, what="ack")[0].msg
    server.send(make_mail("e@people.test", ack["Reply-To"], "more", "x"), "e@people.test",
                [ack["Reply-To"]])
    server.processed(2)
    assert server.query("SELECT count(DISTINCT case_id) FROM messages")[0][0] == 1


STRICT_FROM = {
    "two From headers": b"From: m1@example.org\r\nFrom: evil@x.test\r\n\r\n",
    "two addresses": b"From: m1@example.org, evil@x.test\r\n\r\n",
    "address in display name": b'From: "m1@example.org" <evil@x.test>\r\n\r\n',
    "encoded-word address": b"From: =?utf-8?q?m1=40example=2Eorg?= <evil@x.test>\r\n\r\n",
    "encoded word in the address": b"From: <=?utf-8?q?m1?=@example.org>\r\n\r\n",
    "no From": b"Subject: x\r\n\r\n",
}


@pytest.mark.parametrize("raw", STRICT_FROM.values(), ids=STRICT_FROM.keys())
def test_strict_from_refuses_ambiguous_senders(raw):
    addr, problem = strict_from(parse(raw).msg)
    assert addr is None and problem


def test_strict_from_accepts_a_plain_sender():
    assert strict_from(parse(b"From: Maria <M1@Example.org>\r\n\r\n").msg) == (
        "m1@example.org", "")


def _by_getaddresses(value: str) -> list[tuple[str, str]]:
    """What addresses() gave before its quick path: every value through getaddresses."""
    from email.utils import getaddresses

    from mailflow.mail.decode import ADDR_SPEC, header_text
    return [(header_text(n), a.strip().lower()) for n, a in getaddresses([value])
            if ADDR_SPEC.match(a.strip())]


PLAIN_FORMS = [f"{name} <{addr}>" if name else addr
               for name in ("", "Pat", "Pat Doe", "Reporter 12", "A B C")
               for addr in ("a@b.test", "First.Last@Mail.Example.org", "a+tag@x-y.org",
                            "A_B-c@d.eu")] + ["  Pat  <a@b.test>  ", "Pat\t<a@b.test>"]
ODD_FORMS = ['"Doe, Pat" <a@b.test>', "Pat (work) <a@b.test>", "a@b.test (Pat)",
             "=?utf-8?q?P=C3=A4t?= <a@b.test>", "Pat <a@b.test>, Sam <s@b.test>",
             "Pat\r\n <a@b.test>", "Team: a@b.test, c@d.test;", "<a@b.test>",
             "Pat <a.@b.test>", "Pat <a@b.test> Smith", "Pat.Doe <a@b.test>",
             "O'Brien <o@b.test>", "Pat <\"odd local\"@b.test>", "Pat <a@[127.0.0.1]>",
             "Pat <a@b.test", "Pat<a@b.test>", "Pat <a@b.test>>", ""]


@pytest.mark.parametrize("value", PLAIN_FORMS + ODD_FORMS)
def test_addresses_quick_path_reads_every_form_as_getaddresses_does(value):
    assert addresses([value]) == _by_getaddresses(value)


def test_addresses_quick_path_takes_the_plain_forms_and_nothing_odd():
    from mailflow.mail.decode import _PLAIN_ADDRESS
    assert all(_PLAIN_ADDRESS.fullmatch(v) for v in PLAIN_FORMS)
    taken = [v for v in ODD_FORMS if _PLAIN_ADDRESS.fullmatch(v)]
    assert taken == ["Pat<a@b.test>"]  # getaddresses reads it the same (the test above)
