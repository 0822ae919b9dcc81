"""A member's OpenPGP signature as proof of identity, over real SMTP with real GnuPG:
a good signature by the member's key proves them (``pgp`` in the audit log); a forged
or tampered signature, an unknown key, an expired key, a signature over part of the
mail, an old signature, one over another case and a replayed one prove nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pgpkit import GnuPG, Person, mime_mail, pgp_signed

from mailflow.testing import M1, CaptureRelay, MailflowServer, make_mail

COMMITTEE = "committee@example.org"


@dataclass
class Setup:
    server: MailflowServer
    relay: CaptureRelay
    m1: Person
    case_id: str
    subject: str

    def signed(self, person: Person, text: str, at: str | None = None) -> bytes:
        """A signed reply to the plain list address: no token, no DKIM, only the
        signature to prove who wrote it."""
        entity = (b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
                  + text.replace("\n", "\r\n").encode())
        ctype, body = pgp_signed(person, entity, at=at)
        return mime_mail(M1, COMMITTEE, self.subject, ctype, body)

    def send(self, raw: bytes) -> str:
        """Send as M1; the transcript M1 receives (accepted) or the refusal notice."""
        before = len(self.relay.to(M1))
        self.server.send(raw, M1, [COMMITTEE])
        return self.relay.wait_for(lambda c: c.rcpts == [M1], count=before + 1,
                                   what="an answer to M1")[-1].body()

    def record(self, field: str) -> str | None:
        return self.server.cli_json("case", "show", self.case_id)["file"]["record"].get(field)


@pytest.fixture
def setup(gnupg_homes: GnuPG, relay: CaptureRelay) -> Iterator[Setup]:
    server = gnupg_homes.server(relay.port, extra='[committee.encryption]\ndefault = "never"\n')
    tmp = server.tmp
    m1 = gnupg_homes.person("Em One", M1, at="20250101T000000")  # so it can sign in the past
    (tmp / "m1.asc").write_bytes(m1.public())
    server.cli("keys", "import", str(tmp / "m1.asc"))
    server.start()
    server.send(make_mail("rita@people.test", "conduct@example.org", "Insults",
                          "Sam insulted me in #general."), "rita@people.test",
                ["conduct@example.org"])
    copy = relay.wait_for(lambda c: c.rcpts == [M1], what="the copy")[0].msg
    yield Setup(server, relay, m1, copy["X-Mailflow-Case"], "Re: " + copy["Subject"])
    server.stop()


def quoting(case_id: str, command: str) -> str:
    """A reply as a mail client writes it: the command, then the copy quoted."""
    return f"{command}\n\nOn Tue, Committee wrote:\n> A new report has arrived.\n" \
           f"> Case:      {case_id}\n"


def test_a_good_signature_by_the_members_key_proves_them(setup):
    answer = setup.send(setup.signed(setup.m1, quoting(setup.case_id, "#violation yes")))
    assert "All commands were applied." in answer
    assert setup.server.query("SELECT proof FROM audit WHERE action = 'command #violation'"
                              ) == [("pgp",)]


def test_a_replayed_signed_mail_proves_nothing(setup):
    raw = setup.signed(setup.m1, quoting(setup.case_id, "#violation yes"))
    assert "All commands were applied." in setup.send(raw)
    # The same signed body again, under a new Message-ID (so not a duplicate delivery).
    again = raw.replace(b"Message-ID: <", b"Message-ID: <again.", 1)
    refused = setup.send(again)
    assert "already used on another mail (a replay)" in refused


@pytest.mark.parametrize("forgery", ["tampered", "unknown key", "expired key", "partial",
                                     "old signature", "another case"])
def test_forged_and_unusable_signatures_are_refused(setup, gnupg_homes, forgery):
    text = quoting(setup.case_id, "#violation yes")
    if forgery == "tampered":
        raw = setup.signed(setup.m1, text).replace(b"#violation yes", b"#violation no!")
        why = "its OpenPGP signature is bad"
    elif forgery == "unknown key":  # the attacker's own key, with M1's address on it
        raw = setup.signed(gnupg_homes.person("Em One", M1), text)
        why = "signed by a key the committee's keyring does not hold"
    elif forgery == "expired key":
        old = gnupg_homes.person("Em One", M1, expires="1y", at="20200101T000000")
        (gnupg_homes.root / "old.asc").write_bytes(old.public())
        setup.server.cli("keys", "import", str(gnupg_homes.root / "old.asc"))
        raw = setup.signed(old, text, at="20200601T000000")
        why = "signed by an expired key"
    elif forgery == "partial":  # a clearsigned line, and an unsigned command above it
        signed = setup.m1.clearsign(quoting(setup.case_id, "#note hello"))
        raw = make_mail(M1, COMMITTEE, setup.subject,
                        ("#violation yes\n\n" + signed).replace("\n", "\r\n"))
        why = "covers only part of it"
    elif forgery == "old signature":
        raw = setup.signed(setup.m1, text, at="20260101T000000")
        why = "not made in the last week"
    else:  # signed for another case, sent with this case's subject
        raw = setup.signed(setup.m1, quoting("2026-9999", "#violation yes"))
        why = f"does not name case {setup.case_id}"
    answer = setup.send(raw)
    assert "was not accepted as yours" in answer and why in answer
    assert setup.record("violation") in (None, "", "not yet determined")
    assert setup.server.query("SELECT count(*) FROM audit WHERE proof = 'pgp'") == [(0,)]
