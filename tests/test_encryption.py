"""OpenPGP end to end, over real SMTP with real GnuPG: encrypted reports become
searchable cases, mail that cannot be decrypted is kept and shown, members' keys are
added by #key."""

from __future__ import annotations

import email
import json
import re
import sqlite3
from collections.abc import Iterator
from email.policy import compat32

import pytest
from casekit import Case
from pgpkit import GnuPG, Person, mime_mail, pgp_mime

from mailflow.case.keys import grouped
from mailflow.testing import M1, M2, CaptureRelay, MailflowServer, make_mail

REPORTER = "ada@example.net"
INNER = (b'Content-Type: text/plain; charset=UTF-8; protected-headers="v1"\r\n'
         b"Subject: Sam keeps messaging me after I said stop\r\n"
         b"Content-Transfer-Encoding: 8bit\r\n\r\n"
         b"Sam sent me forty private messages on the forum after I asked him to stop.\r\n"
         b"Ada\r\n")


@pytest.fixture
def keyed_server(gnupg_homes: GnuPG, relay: CaptureRelay) -> Iterator[MailflowServer]:
    """A server whose committee has its own key (its archive under a short path, for
    gpg-agent's socket); the server's agent is stopped with the others."""
    server = gnupg_homes.server(relay.port)
    server.cli("keys", "generate")
    server.start()
    yield server
    server.stop()


def opened(person: Person, mail) -> email.message.Message:
    """What ``person``'s own GnuPG reads in a PGP/MIME mail they received."""
    part = mail.msg.get_payload()[1].get_payload().encode()
    result = person.decrypt(part)
    assert result.ok, result.stderr
    return email.message_from_bytes(result.data, policy=compat32)


def committee_key(server: MailflowServer) -> bytes:
    return server.cli("keys", "export").stdout


def reporter(gnupg_homes: GnuPG, server: MailflowServer) -> Person:
    ada = gnupg_homes.person("Ada", REPORTER)
    ada.learn(committee_key(server))
    return ada


def test_an_encrypted_report_becomes_a_searchable_case(gnupg_homes, keyed_server, relay):
    server = keyed_server
    ada = reporter(gnupg_homes, server)
    fingerprint = server.cli_json("keys")["committee_key"]
    ctype, body = pgp_mime(ada.encrypt(INNER, fingerprint))
    raw = mime_mail(REPORTER, "conduct@example.org", "...", ctype, body, name="Ada")
    server.send(raw, REPORTER, ["conduct@example.org"])
    ack = relay.wait_for(lambda c: REPORTER in c.rcpts, what="acknowledgement")[0]
    case_id = ack.msg["X-Mailflow-Case"]
    copy = relay.wait_for(lambda c: c.rcpts == [M1], what="the committee's copy")[0]
    assert "forty private messages" in copy.body()
    # No key of Ada's: the answer is in clear, so it does not repeat her subject.
    assert "Sam" not in ack.raw.decode() and "no OpenPGP key for you" in ack.body()
    assert grouped(fingerprint) in ack.body()
    # Searched, filed and shown as clear text; the case says how it came.
    hits = server.cli_json("search", "forty private messages")
    assert {h["case"] for h in hits["results"]} == {case_id}
    case = server.cli_json("case", "show", case_id)
    assert case["encrypted"] == 1
    assert case["messages"][0]["subject"] == "Sam keeps messaging me after I said stop"
    assert "arrived encrypted" in case["messages"][0]["flags"]
    assert "arrived encrypted" in server.cli("case", "show", case_id).stdout.decode()
    # The spool keeps the bytes as received; the archive rebuilt from it reads as clear.
    assert server.query("SELECT raw FROM spool WHERE id = 1")[0][0] == raw
    server.stop()
    server.cli("reindex", "--quiet")
    assert {h["case"] for h in server.cli_json("search", "forty private messages")["results"]} \
        == {case_id}


def test_a_reporter_who_sends_their_key_gets_replies_encrypted_to_it(gnupg_homes,
                                                                     keyed_server, relay):
    server = keyed_server
    ada = reporter(gnupg_homes, server)
    fingerprint = server.cli_json("keys")["committee_key"]
    # Thunderbird attaches the sender's public key inside the encrypted part.
    inner = (b'Content-Type: multipart/mixed; boundary="in"; protected-headers="v1"\r\n'
             b"Subject: Threats after the meetup\r\n\r\n--in\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n\r\nHe threatened me.\r\n--in\r\n"
             b'Content-Type: application/pgp-keys; name="OpenPGP_0xADA.asc"\r\n'
             b'Content-Disposition: attachment; filename="OpenPGP_0xADA.asc"\r\n\r\n'
             + ada.public().replace(b"\n", b"\r\n") + b"\r\n--in--\r\n")
    ctype, body = pgp_mime(ada.encrypt(inner, fingerprint))
    server.send(mime_mail(REPORTER, "conduct@example.org", "...", ctype, body), REPORTER,
                ["conduct@example.org"])
    ack = relay.wait_for(lambda c: REPORTER in c.rcpts, what="acknowledgement")[0]
    assert ack.msg.get_content_type() == "multipart/encrypted"
    assert b"Threats" not in ack.raw and ack.msg["Subject"].endswith("We have received your report")
    opened = ada.decrypt(ack.msg.get_payload()[1].get_payload().encode())
    assert opened.ok and f"filed as case {ack.msg['X-Mailflow-Case']}".encode() in opened.data
    assert b"no OpenPGP key for you" not in opened.data
    assert grouped(fingerprint).encode() in opened.data
    # Her key is kept apart from the committee's: it proves nothing there.
    assert server.cli_json("keys")["correspondents_keys"] == 1
    assert all(k["fingerprint"] != ada.fingerprint for k in server.cli_json("keys")["keys"])
    # Years after the case closed, its purge takes her key too: it names her.
    server.stop()
    case_id = ack.msg["X-Mailflow-Case"]
    with sqlite3.connect(server.archive / "mailflow.db") as db:
        db.execute("UPDATE cases SET status = 'closed' WHERE id = ?", [case_id])
    server.env["MAILFLOW_FAKE_NOW"] = "2040-01-01T00:00:00Z"
    purged = json.loads(server.cli("purge", "--before", "2039-01-01", "--json").stdout)
    assert purged["cases"][0]["action"] == "purged"
    assert "1 reporter's key" in purged["cases"][0]["why"]
    assert server.cli_json("keys")["correspondents_keys"] == 0
    assert server.query("SELECT reporter_key, subject FROM cases") == [(None, None)]


def test_a_response_the_chair_confirms_goes_encrypted_to_the_reporter(gnupg_homes,
                                                                      keyed_server, relay):
    server = keyed_server
    ada = reporter(gnupg_homes, server)
    inner = (b'Content-Type: multipart/mixed; boundary="in"; protected-headers="v1"\r\n'
             b"Subject: Threats after the meetup\r\n\r\n--in\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n\r\nHe threatened me.\r\n--in\r\n"
             b'Content-Type: application/pgp-keys\r\n\r\n'
             + ada.public().replace(b"\n", b"\r\n") + b"\r\n--in--\r\n")
    ctype, body = pgp_mime(ada.encrypt(inner, server.cli_json("keys")["committee_key"]))
    server.send(mime_mail(REPORTER, "conduct@example.org", "...", ctype, body), REPORTER,
                ["conduct@example.org"])
    ack = relay.wait_for(lambda c: REPORTER in c.rcpts, what="acknowledgement")[0]
    case = Case(server, relay, ack.msg["X-Mailflow-Case"])
    transcript = case.command(M1, "#reply\nCould you tell us when it happened?\n#end")
    case.confirm(int(re.search(r"\(draft (\d+)\)", transcript).group(1)))
    reply = relay.wait_for(lambda c: c.rcpts == [REPORTER], count=2, what="the reply")[-1]
    assert reply.msg.get_content_type() == "multipart/encrypted"
    assert b"when it happened" not in reply.raw
    opened = ada.decrypt(reply.msg.get_payload()[1].get_payload().encode())
    assert opened.ok and b"Could you tell us when it happened?" in opened.data
    # Only to her: the archive keeps what was sent, in clear, for the committee.
    assert reply.rcpts == [REPORTER]
    sent = server.query("SELECT new_text FROM outbound WHERE kind = 'response'")
    assert ["Could you tell us when it happened?" in t for (t,) in sent] == [True]


def test_a_report_that_cannot_be_decrypted_is_kept_and_shown_as_such(gnupg_homes,
                                                                    keyed_server, relay):
    server = keyed_server
    ada = gnupg_homes.person("Ada", REPORTER)
    elsewhere = gnupg_homes.person("Old key", "conduct@example.org")  # not the committee's
    ada.learn(elsewhere.public())
    ctype, body = pgp_mime(ada.encrypt(INNER, elsewhere.fingerprint))
    raw = mime_mail(REPORTER, "conduct@example.org", "Report", ctype, body)
    server.send(raw, REPORTER, ["conduct@example.org"])
    copy = relay.wait_for(lambda c: c.rcpts == [M2], what="the committee's copy")[0]
    assert "could not be decrypted: not encrypted to a key the committee holds" in copy.body()
    case_id = copy.msg["X-Mailflow-Case"]
    case = server.cli_json("case", "show", case_id)
    assert case["encrypted"] == 1 and "could not be decrypted" in \
        " ".join(case["messages"][0]["flags"])
    assert server.query("SELECT raw FROM spool WHERE id = 1")[0][0] == raw
    assert server.query("SELECT state FROM spool_state WHERE spool_id = 1")[0][0] == "done"
    ack = relay.wait_for(lambda c: REPORTER in c.rcpts, what="acknowledgement")[0]
    assert "We could not decrypt your message" in ack.body()


def test_a_member_adds_their_key_with_key(gnupg_homes, keyed_server, relay):
    server = keyed_server
    m1 = gnupg_homes.person("Em One", M1)
    server.send(make_mail("ada@example.net", "conduct@example.org", "Report", "Sam was rude."),
                "ada@example.net", ["conduct@example.org"])
    copy = relay.wait_for(lambda c: c.rcpts == [M1], what="the copy")[0].msg
    body = "#key\r\n\r\n" + m1.public().decode().replace("\n", "\r\n")
    before = len(relay.to(M1))
    server.send(make_mail(M1, copy["Reply-To"], "Re: " + copy["Subject"], body), M1,
                [copy["Reply-To"]])
    # The transcript is the first mail encrypted to the key it added.
    sealed = relay.wait_for(lambda c: c.rcpts == [M1], count=before + 1,
                            what="the transcript")[-1]
    assert sealed.msg.get_content_type() == "multipart/encrypted"
    assert "Transcript" not in sealed.msg["Subject"]
    inner = opened(m1, sealed)
    assert inner["Subject"].startswith("[coc #") and "Transcript" in inner["Subject"]
    transcript = inner.get_payload(decode=True).decode()
    assert f"key {m1.fingerprint}" in transcript and "added" in transcript
    keys = server.cli_json("keys")
    assert next(m for m in keys["members"] if m["member"] == M1)["key"] == m1.fingerprint
    # M2 sending M1's key: refused, and nothing changes.
    copy2 = relay.wait_for(lambda c: c.rcpts == [M2], what="the copy")[0].msg
    server.send(make_mail(M2, copy2["Reply-To"], "Re: " + copy2["Subject"], body), M2,
                [copy2["Reply-To"]])
    refused = relay.wait_for(lambda c: c.rcpts == [M2] and "Transcript" in c.msg["Subject"],
                             what="the transcript")[0].body()
    assert "m1@example.org's key, not yours" in refused
    assert next(m for m in server.cli_json("keys")["members"] if m["member"] == M2)["key"] \
        is None


def test_the_digest_warns_of_a_key_running_out_thirty_days_before(gnupg_homes, relay):
    from datetime import timedelta

    from mailflow import timestamps
    server = gnupg_homes.server(relay.port)
    tmp = server.tmp
    server.cli("keys", "generate", "--expires", "40d")
    m1 = gnupg_homes.person("Em One", M1, expires="50d")
    (tmp / "m1.asc").write_bytes(m1.public())
    server.cli("keys", "import", str(tmp / "m1.asc"))
    expires = timestamps.parse(next(k["expires"] for k in server.cli_json("keys")["keys"]
                                    if k["fingerprint"] == m1.fingerprint))

    def digest_at(day) -> dict[str, str]:
        before = len(relay.received)
        server.cli("tick", "--now", f"{day:%Y-%m-%d}T08:00:00Z")
        mails = {c.rcpts[0]: c for c in relay.received[before:]}
        # M1's digest is encrypted to the key it warns of, while it works.
        return {to: opened(m1, c).get_payload(decode=True).decode()
                if c.msg.get_content_type() == "multipart/encrypted" else c.body()
                for to, c in mails.items()}

    assert digest_at(expires - timedelta(days=31)) == {}  # nothing due, nothing to warn of
    warned = digest_at(expires - timedelta(days=20))
    assert f"Your OpenPGP key {m1.fingerprint} expires on {expires:%Y-%m-%d}" in warned[M1]
    assert M2 not in warned  # no key, nothing due: no digest
    # The committee's key (40 days) is the chair's to renew, 30 days ahead.
    assert "The committee's key" in warned["chair@example.org"] and "expires on" in \
        warned["chair@example.org"]
    assert "The committee's key" not in warned[M1]
    lapsed = digest_at(expires + timedelta(days=3))
    assert f"{m1.fingerprint} expired on {expires:%Y-%m-%d}, so mail to you is no longer " \
           "encrypted" in lapsed[M1]
    assert "so reporters cannot encrypt to it" in lapsed["chair@example.org"]


def test_members_read_their_copies_with_their_own_keys_and_the_keyless_get_a_notice(
        gnupg_homes, relay):
    server = gnupg_homes.server(relay.port, extra=(
        '[committee.encryption]\ndefault = "required"\n"chair@example.org" = "never"\n'))
    tmp = server.tmp
    m1 = gnupg_homes.person("Em One", M1)
    (tmp / "m1.asc").write_bytes(m1.public())
    server.cli("keys", "import", str(tmp / "m1.asc"))
    server.start()
    try:
        server.send(make_mail("rita@people.test", "conduct@example.org",
                              "Sam Sharp insulted me", "Sam Sharp called me names in #general."),
                    "rita@people.test", ["conduct@example.org"])
        got = {to: relay.wait_for(lambda c, to=to: c.rcpts == [to], what=f"mail to {to}")[0]
               for to in (M1, M2, "chair@example.org")}
        server.quiet()  # everything it will send has been sent
    finally:
        server.stop()
    case_id = got[M1].msg["X-Mailflow-Case"]
    codename = server.cli_json("case", "show", case_id)["codename"]
    # M1: encrypted; outside only the tag and the code name; inside the copy.
    m1_copy = got[M1]
    assert m1_copy.msg.get_content_type() == "multipart/encrypted"
    assert m1_copy.msg["Subject"] == f"[coc #{case_id}] {codename}"
    assert b"Sam" not in m1_copy.raw and b"insult" not in m1_copy.raw
    inner = opened(m1, m1_copy)
    assert "Sam Sharp called me names in #general." in inner.get_payload(decode=True).decode()
    assert inner["Subject"].startswith(f"[coc #{case_id}] New report")
    assert m1_copy.msg["Reply-To"].startswith("committee+")  # replying still proves M1
    # M2 ("required", no key): the notice and nothing else, naming nothing of the case.
    to_m2 = relay.to(M2)
    assert len(to_m2) == 1
    notice = to_m2[0]
    assert "could not be encrypted" in notice.msg["Subject"]
    assert "#key" in notice.body() and "Sam" not in notice.raw.decode()
    assert "insult" not in notice.raw.decode().lower()
    # The chair ("never"): in clear.
    assert "Sam Sharp called me names" in got["chair@example.org"].body()
    sent = {(r["kind"], r["rcpts"]) for r in server.cli_json("case", "show", case_id)["sent"]}
    assert ("not-encrypted", M2) in sent and ("relay", M2) not in sent


def test_a_message_that_fails_sends_none_of_its_encrypted_mail(gnupg_homes, monkeypatch):
    """Copies wait for their batch to be sealed; a message whose handlers fail after
    queueing some (a transcript, say) takes them back with its savepoint."""
    from dataclasses import replace

    from mailflow import app, config, store
    from mailflow.intake.spool import Envelope, commit_one
    from mailflow.pipeline import runner
    from mailflow.testing import write_config

    tmp = gnupg_homes.root / "inproc"
    tmp.mkdir()
    cfg = config.load(str(write_config(tmp / "mailflow.toml", listen_port=2, relay_port=None,
                                       archive=tmp / "archive")))
    db = store.open_db(cfg.db_path)
    svc = app.services(cfg)
    gnupg_homes.homes += [cfg.keyring_dir / "committee", cfg.keyring_dir / "correspondents"]
    for member in (M1, M2, "chair@example.org"):
        person = gnupg_homes.person(member, member)
        svc.pgp().committee.import_keys(person.public())

    def broken(ctx):
        """Fails on the second report, after the copies of both were handed over."""
        if ctx.kind == "report" and "second" in ctx.parsed.subject:
            raise RuntimeError("a bug")

    svc.parts = replace(svc.parts, handlers=(*app.HANDLERS, broken))
    for n, subject in enumerate(("first report", "second report")):
        commit_one(cfg.db_path, make_mail(f"r{n}@people.test", "conduct@example.org", subject,
                                          "He was rude."),
                   Envelope("smtp", f"r{n}@people.test", ["conduct@example.org"]))
    runner.drain(db, svc)  # the second fails each time, until it is quarantined
    rows = db.execute("SELECT kind, case_id, raw FROM outbound").fetchall()
    cases = {case for _, case, _ in rows}
    assert len(cases) == 1  # the first report's mail only
    relays = [raw for kind, _, raw in rows if kind == "relay"]
    assert len(relays) == 3 and all(b"multipart/encrypted" in r for r in relays)
    assert db.execute("SELECT state FROM spool_state ORDER BY spool_id").fetchall() == [
        ("done",), ("quarantined",)]


def test_a_committee_without_keys_never_runs_gnupg(gnupg_homes, server, relay):
    """No key was ever made or imported: mail flows as before, GnuPG is not run (nor
    needed), and an encrypted report is kept and flagged as one nobody can read."""
    ada = gnupg_homes.person("Ada", REPORTER)
    elsewhere = gnupg_homes.person("Someone", "someone@example.net")
    ada.learn(elsewhere.public())
    ctype, body = pgp_mime(ada.encrypt(INNER, elsewhere.fingerprint))
    server.send(mime_mail(REPORTER, "conduct@example.org", "...", ctype, body), REPORTER,
                ["conduct@example.org"])
    copy = relay.wait_for(lambda c: c.rcpts == [M1], what="the copy")[0]
    assert "arrived encrypted, and the committee has no key to decrypt it" in copy.body()
    assert copy.msg.get_content_type() != "multipart/encrypted"
    assert not (server.archive / "keyring").exists()


SCREENSHOT = (b'Content-Type: multipart/mixed; boundary="att"\r\n\r\n--att\r\n'
              b"Content-Type: text/plain; charset=utf-8\r\n\r\nSee the screenshot.\r\n--att\r\n"
              b'Content-Type: image/png; name="chat.png"\r\n'
              b'Content-Disposition: attachment; filename="chat.png"\r\n'
              b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgoAAAANSUhEUg==\r\n--att--\r\n")


def test_the_original_with_its_attachments_goes_inside_and_decrypted(gnupg_homes, relay):
    """A keyed member's copy carries the attached original inside the encryption; a copy
    in clear of a report that came encrypted attaches it decrypted."""
    server = gnupg_homes.server(relay.port)
    server.cli("keys", "generate")
    m1 = gnupg_homes.person("Em One", M1)
    (server.tmp / "m1.asc").write_bytes(m1.public())
    server.cli("keys", "import", str(server.tmp / "m1.asc"))
    server.start()
    try:
        ada = reporter(gnupg_homes, server)
        ctype, body = pgp_mime(ada.encrypt(b"Subject: Screenshot\r\n" + SCREENSHOT,
                                           server.cli_json("keys")["committee_key"]))
        server.send(mime_mail(REPORTER, "conduct@example.org", "...", ctype, body), REPORTER,
                    ["conduct@example.org"])
        sealed = relay.wait_for(lambda c: c.rcpts == [M1], what="M1's copy")[0]
        clear = relay.wait_for(lambda c: c.rcpts == [M2], what="M2's copy")[0]
    finally:
        server.stop()
    inner = opened(m1, sealed)
    attached = [p for p in inner.walk() if p.get_content_type() == "message/rfc822"]
    assert attached and b"chat.png" in attached[0].as_bytes()
    assert b"iVBORw0KGgo" in clear.raw and b"BEGIN PGP MESSAGE" not in clear.raw
