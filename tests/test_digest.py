"""The daily digest: to each member, the open cases they are on with what is due,
overdue and waiting for them, never a case they are recused from.  End to end: a real
server takes the reports and commands, `mailflow tick` sends the digests."""

from __future__ import annotations

import json
import re
import sqlite3

from casekit import Case

from mailflow.testing import CHAIR, M1, M2, Captured, CaptureRelay, MailflowServer, make_mail

REPORTER = "rita@people.test"
CONDUCT = "conduct@example.org"
DIGEST_TIME = "2026-11-25T08:00:00Z"       # the first 08:00 (UTC) after the reports


def report(server: MailflowServer, relay: CaptureRelay, subject: str) -> Case:
    before = len(relay.to(REPORTER))
    server.send(make_mail(REPORTER, CONDUCT, subject, "He insulted me."), REPORTER, [CONDUCT])
    ack = relay.wait_for(lambda c: REPORTER in c.rcpts, count=before + 1,
                         what="acknowledgement")[-1]
    return Case(server, relay, ack.msg["X-Mailflow-Case"])


def digests(relay: CaptureRelay) -> dict[str, Captured]:
    with relay.lock:
        return {c.rcpts[0]: c for c in relay.received if "Digest for" in c.msg["Subject"]}


def test_each_member_gets_a_digest_of_their_cases_never_one_they_are_recused_from(
        tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port,
                            env={"MAILFLOW_FAKE_NOW": "2026-11-24T10:00:00Z"}).start()
    try:
        first = report(server, relay, "Insults in the chat")
        first.command(M1, "#recuse I know the reporter personally")
        second = report(server, relay, "Insults on the forum")
        second.command(CHAIR, "#propose private reprimand: for the insults")
    finally:
        server.stop()

    server.cli("tick", "--now", "2026-11-25T07:59:00Z")
    assert digests(relay) == {}
    server.cli("tick", "--now", DIGEST_TIME)
    got = digests(relay)
    assert sorted(got) == sorted([CHAIR, M1, M2])

    m1 = got[M1].body()
    assert first.id not in m1 and first.id not in got[M1].msg["Subject"]
    assert second.id in m1 and "1 open case" in got[M1].msg["Subject"]
    assert "waiting for you: your vote on proposal 1: a private reprimand" in m1
    assert "reply to the case's mail with: #vote 1 agree" in m1
    assert "due Wed 2026-11-25 17:00 UTC: Contact the reporter personally" in m1

    chair = got[CHAIR].body()
    assert first.id in chair and second.id in chair
    # The chair's digest anchors the audit log outside the archive.
    head = re.search(r"--head (\d+:k1:[0-9a-f]+)", chair).group(1)
    assert "--head" not in m1
    assert server.cli_json("audit", "verify", "--head", head)["ok"] is True
    assert "waiting for you: your vote" not in chair        # proposing is agreeing
    assert "waiting for you: your vote on proposal 1" in got[M2].body()

    # Once per digest time, however often the scheduler runs; the next one is armed.
    server.cli("tick", "--now", "2026-11-25T08:30:00Z")
    assert server.query("SELECT count(*) FROM outbound WHERE kind = 'digest'") == [(3,)]
    assert [d["due_at"] for d in server.cli_json("deadlines") if d["clock"] == "digest"] == \
        ["2026-11-26T08:00:00Z"]

    # Cut back (the anchor file too, as one who can edit the files would), the log no
    # longer has the head the chair's digest named.
    with sqlite3.connect(server.archive / "mailflow.db") as conn:
        conn.execute("DELETE FROM audit WHERE id >= ?", [int(head.split(":")[0])])
    (server.archive / "audit.anchor").unlink()
    broken = server.cli("audit", "verify", "--head", head, "--json", check=False)
    assert broken.returncode == 65 and "truncated" in json.loads(broken.stdout)["problem"]
