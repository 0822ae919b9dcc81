"""Suspected spam is held: kept, listed, never answered, never copied, no clocks, until
the chair releases or discards it.  The verdicts are the trusted MTA's (SpamAssassin,
rspamd, Authentication-Results), as tests/fixtures/spam has them, over real SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from casekit import Case
from fixturekit import load

from mailflow.testing import CHAIR, M1, M2, CaptureRelay, MailflowServer, make_mail, wait_until

CONDUCT = "conduct@example.org"
TRUSTED = '[security]\ntrusted_authserv_id = "mx.example.org"\n'
HELD_SHAPES = ["spamassassin-forged-sender", "rspamd-result", "rspamd-x-spam", "dmarc-fail",
               "forged-no-above-yes"]


def start(tmp: Path, relay: CaptureRelay, extra: str = TRUSTED, env=None) -> MailflowServer:
    return MailflowServer(tmp, relay.port, extra=extra, env=env).start()


def send(server: MailflowServer, shape: str, sender: str) -> None:
    server.send(load("spam", shape), sender, [CONDUCT])


def genuine_case(server: MailflowServer, relay: CaptureRelay) -> Case:
    reporter = "rita@people.test"
    server.send(make_mail(reporter, CONDUCT, "Insults", "He insulted me."), reporter, [CONDUCT])
    ack = relay.wait_for(lambda c: c.rcpts == [reporter], what="ack")[0]
    return Case(server, relay, ack.msg["X-Mailflow-Case"])


def test_spam_is_held_never_answered_copied_or_clocked(tmp_path, relay):
    with start(tmp_path, relay) as server:
        case = genuine_case(server, relay)
        send(server, "spamassassin-forged-sender", "security@bank.test")
        server.processed(2)
        # Only the genuine report is a case, with its clocks; the spam has neither.
        assert [c["id"] for c in server.cli_json("cases")] == [case.id]
        assert server.query("SELECT DISTINCT case_id FROM alarms WHERE case_id IS NOT NULL"
                            ) == [(case.id,)]
        held = server.cli_json("held")
        assert [(h["reason"], h["from_addr"]) for h in held] == [("spam", "security@bank.test")]
        assert {"X-Spam-Flag: YES", "dmarc=fail (trusted Authentication-Results)"} <= set(
            held[0]["detail"])
        # Kept and searchable, for the committee.
        found = server.cli_json("search", "kind:held", "verify")
        assert [r["kind"] for r in found["results"]] == ["held"]
        server.processed(2)
        wait_until(lambda: server.query("SELECT count(*) FROM outbound_rcpt WHERE state = "
                                        "'queued'") == [(0,)], what="the queue to drain")
    # Nothing went to the forged sender, and the committee got only the genuine report.
    assert relay.to("security@bank.test") == []
    assert not [c for c in relay.received if "verify your account" in c.raw.decode()]


@pytest.mark.parametrize("shape", HELD_SHAPES)
def test_each_verdict_shape_holds(tmp_path, relay, shape):
    with start(tmp_path, relay) as server:
        send(server, shape, "sender@bulk.test")
        server.processed(1)
        assert [h["reason"] for h in server.cli_json("held")] == ["spam"]
        assert server.cli_json("cases") == []


def test_a_score_under_the_threshold_is_not_held_and_rules_set_the_threshold(tmp_path, relay):
    first, second, rules = (tmp_path / d for d in ("first", "second", "rules"))
    for d in (first, second, rules):
        d.mkdir()
    with start(first, relay) as server:
        send(server, "spamassassin-score", "offers@shop.test")         # score 4.2 of 5.0
        send(server, "rspamd-x-spam", "news@coins.test")
        server.processed(2)
        assert [h["from_addr"] for h in server.cli_json("held")] == ["news@coins.test"]
    # A deployment's rules/spam.toml: a lower score, and rspamd's headers not counted.
    (rules / "spam.toml").write_text("[spamassassin]\nscore = 4.0\n[rspamd]\nheaders = []\n")
    with start(second, relay, TRUSTED + f'[paths]\nrules = "{rules}"\n') as server:
        send(server, "spamassassin-score", "offers@shop.test")
        send(server, "rspamd-x-spam", "news@coins.test")
        server.processed(2)
        assert [h["from_addr"] for h in server.cli_json("held")] == ["offers@shop.test"]


def test_verdicts_count_only_from_the_trusted_mta(tmp_path, relay):
    untrusted, trusted = tmp_path / "untrusted", tmp_path / "trusted"
    untrusted.mkdir()
    trusted.mkdir()
    # Without one, nothing is held (anyone can write X-Spam-Flag), and check says so.
    with start(untrusted, relay, extra="") as server:
        # (check also refuses the harness's example.org names: it exits 78.)
        assert "no spam verdicts to use" in server.cli("check", check=False).stdout.decode()
        send(server, "spamassassin-forged-sender", "security@bank.test")
        server.processed(1)
        assert server.cli_json("held") == [] and len(server.cli_json("cases")) == 1
    behind_mta = MailflowServer(trusted, relay.port, extra=TRUSTED)
    out = behind_mta.cli("check", check=False).stdout.decode()
    assert "is a placeholder" in out and "no spam verdicts" not in out


def test_a_dmarc_fail_from_another_authserv_id_holds_nothing(tmp_path, relay):
    raw = load("spam", "dmarc-fail").replace(b"Authentication-Results: mx.example.org;",
                                             b"Authentication-Results: mx.forger.test;")
    with start(tmp_path, relay) as server:
        server.send(raw, "ceo@example.net", [CONDUCT])
        server.processed(1)
        assert server.cli_json("held") == [] and len(server.cli_json("cases")) == 1


@contextmanager
def held_beside_a_case(tmp: Path, relay: CaptureRelay, shape: str, sender: str
                       ) -> Iterator[tuple[MailflowServer, Case, int]]:
    """A server with one genuine case (whose copies members reply to) and one message
    held as spam: (server, case, held id)."""
    with start(tmp, relay) as server:
        case = genuine_case(server, relay)
        send(server, shape, sender)
        server.processed(2)
        yield server, case, server.cli_json("held")[0]["id"]


def test_the_chair_releases_held_mail_by_mail_and_it_becomes_a_case(tmp_path, relay):
    with held_beside_a_case(tmp_path, relay, "spamassassin-forged-sender",
                            "security@bank.test") as (server, case, held_id):
        listing = case.command(M1, "#held")
        assert f"{held_id}" in listing and "security@bank.test" in listing
        refused = case.command(M1, f"#release {held_id}")
        assert "only the chair may use #release" in refused
        done = case.command(CHAIR, f"#release {held_id}")
        assert f"released held message {held_id}" in done
        ack = relay.wait_for(lambda c: c.rcpts == ["security@bank.test"], what="the ack")[0]
        new_case = ack.msg["X-Mailflow-Case"]
        for member in (CHAIR, M1, M2):
            relay.wait_for(lambda c, m=member: c.rcpts == [m] and new_case in c.msg["Subject"]
                           and "New report" in c.msg["Subject"], what=f"copy to {member}")
        assert server.query("SELECT count(*) FROM alarms WHERE case_id = ?", (new_case,))[0][0]
        # The MTA said the sender was forged: the acknowledgement repeats none of it.
        assert "verify your account" not in ack.body() and "Bank Security" not in ack.body()
        assert server.cli_json("held") == []
        assert [h["state"] for h in server.cli_json("held", "--all")] == ["released"]
        audit = [r[0] for r in server.query("SELECT action FROM audit ORDER BY id")]
        assert "held: spam" in audit and "held mail released" in audit


def test_the_chair_discards_held_mail_it_stays_archived(tmp_path, relay):
    with held_beside_a_case(tmp_path, relay, "rspamd-result",
                            "winner@lottery.test") as (server, case, held_id):
        assert "only the chair may use #discard-held" in case.command(
            M2, f"#discard-held {held_id}")
        out = server.cli("held", "--discard", str(held_id)).stdout.decode()
        assert f"discarded held message {held_id}" in out
        assert server.cli_json("held") == []
        assert server.query("SELECT kind FROM messages WHERE from_addr = "
                            "'winner@lottery.test'") == [("held",)]
        assert server.query("SELECT actor FROM audit WHERE action = 'held mail discarded'") == [
            ("admin",)]
        again = server.cli("held", "--release", str(held_id), check=False)
        assert again.returncode != 0 and b"already discarded" in again.stderr


def test_held_mail_naming_a_member_is_never_shown_to_them(tmp_path, relay):
    env = {"MAILFLOW_FAKE_NOW": "2026-11-24T10:00:00Z"}
    raw = load("spam", "rspamd-result").replace(b"Claim your prize today.",
                                                b"Claim your prize today, says m1@example.org.")
    with start(tmp_path, relay, env=env) as server:
        case = genuine_case(server, relay)
        server.send(raw, "winner@lottery.test", [CONDUCT])
        server.processed(2)
        assert "nothing is held" in case.command(M1, "#held")
        assert "winner@lottery.test" in case.command(CHAIR, "#held")
        # Nor does #search show it to them.
        assert "winner@lottery.test" not in case.command(M1, "#search prize")
        assert "winner@lottery.test" in case.command(CHAIR, "#search prize")
    server.cli("tick", "--now", "2026-11-25T08:00:00Z")
    digests = {c.rcpts[0]: c.body() for c in relay.received if "Digest" in c.msg["Subject"]}
    assert "winner@lottery.test" in digests[CHAIR] and "winner@lottery.test" in digests[M2]
    assert "winner@lottery.test" not in digests[M1] and "held" not in digests[M1].lower()


def test_the_acknowledgement_repeats_the_sender_only_when_the_mta_verified_them(
        tmp_path, relay):
    with start(tmp_path, relay) as server:
        server.send(load("spam", "genuine-spf-pass"), "ada@people.test", [CONDUCT])
        server.send(load("spam", "forged-authentication-results"), "sam@people.test", [CONDUCT])
        verified = relay.wait_for(lambda c: c.rcpts == ["ada@people.test"], what="ack")[0]
        forged = relay.wait_for(lambda c: c.rcpts == ["sam@people.test"], what="ack")[0]
    assert "Dear Ada Lovelace" in verified.body()
    assert "Insults in the walrus channel" in verified.body()
    # Only a lower, forgeable Authentication-Results said "pass": nothing is repeated.
    assert "evil.test" not in forged.raw.decode() and "Click" not in forged.raw.decode()


def test_discarded_held_mail_is_purged_after_retention_like_a_closed_case(tmp_path, relay):
    with start(tmp_path, relay, env={"MAILFLOW_FAKE_NOW": "2026-11-24T10:00:00Z"}) as server:
        send(server, "rspamd-result", "winner@lottery.test")
        server.processed(1)
        held_id = server.cli_json("held")[0]["id"]
        server.cli("held", "--discard", str(held_id))
    within = server.cli_json("purge", "--before", "2031-01-01")
    assert within["cases"] == [] and server.cli_json("held", "--all") != []
    server.env["MAILFLOW_FAKE_NOW"] = "2032-12-01T00:00:00Z"   # past five years
    done = server.cli_json("purge", "--before", "2032-12-01")
    assert [(o["case_id"], o["action"]) for o in done["cases"]] == [("held mail", "purged")]
    assert server.cli_json("held", "--all") == []
    assert server.query("SELECT count(*) FROM messages") == [(0,)]
    assert server.query("SELECT count(*) FROM spool") == [(0,)]
