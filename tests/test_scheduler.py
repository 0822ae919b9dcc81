"""The scheduler of `mailflow serve` and `mailflow tick`, end to end: real SMTP in and
out, time moved by restarting the server (or running tick) with a later
MAILFLOW_FAKE_NOW.  Shipped rules: UTC, business days Monday to Friday, 09:00-17:00."""

from __future__ import annotations

from casekit import Case

from mailflow.testing import (
    CHAIR,
    M1,
    M2,
    MEMBERS,
    Captured,
    CaptureRelay,
    MailflowServer,
    make_mail,
)

REPORTER = "rita@people.test"
CONDUCT = "conduct@example.org"
OFFICERS = "officers@example.org"
T0 = "2026-11-24T10:00:00Z"                 # Tuesday
RECEIPT_DUE = "2026-11-25T17:00:00Z"        # the next business day's close (after 24 hours)


def start(tmp_path, relay: CaptureRelay, now: str = T0) -> MailflowServer:
    return MailflowServer(tmp_path, relay.port, env={"MAILFLOW_FAKE_NOW": now}).start()


def restart(server: MailflowServer, now: str) -> None:
    server.stop()
    server.env["MAILFLOW_FAKE_NOW"] = now
    server.start()


def report(server: MailflowServer, relay: CaptureRelay, body: str = "He insulted me.") -> Case:
    server.send(make_mail(REPORTER, CONDUCT, "Insults", body), REPORTER, [CONDUCT])
    ack = relay.wait_for(lambda c: REPORTER in c.rcpts, what="acknowledgement")[-1]
    case = Case(server, relay, ack.msg["X-Mailflow-Case"])
    relay.wait_for(lambda c: c.rcpts == [M2] and case.id in c.msg["Subject"], what="relay")
    return case


def subjects(relay: CaptureRelay, text: str) -> list[Captured]:
    with relay.lock:
        return [c for c in relay.received if text in (c.msg["Subject"] or "")]


def test_a_restart_before_and_after_the_due_time_fires_the_alarm_exactly_once(tmp_path, relay):
    with start(tmp_path, relay) as server:
        case = report(server, relay)
        restart(server, "2026-11-25T16:00:00Z")          # before it is due
        [receipt] = [d for d in server.cli_json("deadlines") if d["clock"] == "receipt"]
        assert (receipt["case_id"], receipt["due_at"]) == (case.id, RECEIPT_DUE)
        assert not subjects(relay, "Reminder: receipt")

        restart(server, "2026-11-27T12:00:00Z")          # it fell due while we were down
        late = relay.wait_for(lambda c: "Late reminder: receipt" in c.msg["Subject"], count=3,
                              what="late reminders")
        assert sorted(c.rcpts[0] for c in late) == sorted(MEMBERS)
        assert "This reminder is late" in late[0].body()

        restart(server, "2026-11-28T12:00:00Z")          # and again, after
        assert server.query("SELECT state, late FROM alarms WHERE clock = 'receipt'") == \
            [("fired", 1)]
        assert server.query("SELECT count(*) FROM outbound WHERE kind = 'alarm' AND "
                            "subject LIKE '%receipt%'") == [(3,)]
        assert server.query("SELECT count(*) FROM audit WHERE action = 'alarm fired: receipt'"
                            ) == [(1,)]
        shown = server.cli("case", "show", case.id).stdout.decode()
        assert "receipt: due 2026-11-25T17:00:00Z, fired 2026-11-27T12:00:00Z LATE" in shown


def test_tick_fires_an_alarm_at_its_due_time_and_not_before(tmp_path, relay):
    server = start(tmp_path, relay)
    report(server, relay)
    server.stop()
    server.cli("tick", "--now", "2026-11-25T16:59:59Z")
    assert not subjects(relay, "receipt")
    server.cli("tick", "--now", RECEIPT_DUE)
    reminders = subjects(relay, "Reminder: receipt")
    assert sorted(c.rcpts[0] for c in reminders) == sorted(MEMBERS)
    assert "late" not in reminders[0].body()
    server.cli("tick", "--now", "2026-11-25T17:05:00Z")
    assert len(subjects(relay, "receipt")) == 3


def test_an_unconfirmed_status_update_is_not_sent(tmp_path, relay):
    with start(tmp_path, relay) as server:
        case = report(server, relay)
        restart(server, "2026-12-01T10:00:00Z")          # a week without a resolution
        draft = relay.wait_for(lambda c: c.rcpts == [CHAIR] and "to confirm: An update" in
                               c.msg["Subject"], what="the status update for the chair")[0]
        assert "An update on your report" in draft.body() and "2026-12-08" in draft.body()
        assert [c.msg["Subject"] for c in relay.to(REPORTER)] == \
            [relay.to(REPORTER)[0].msg["Subject"]]       # the acknowledgement only
        transcript = case.command(CHAIR, "#timeline 2026-12-15", reply_to=draft)
        new_draft = int(transcript.split("#confirm ")[-1].split()[0])
        assert len(relay.to(REPORTER)) == 1
        assert any(d["clock"] == "resolution" and d["due_at"] == "2026-12-15T17:00:00Z"
                   for d in server.cli_json("deadlines"))
        case.confirm(new_draft)
        update = relay.wait_for(lambda c: c.rcpts == [REPORTER] and "An update" in
                                c.msg["Subject"], what="the confirmed update")[0]
        assert "by 2026-12-15" in update.body()


def test_a_deadlock_of_over_a_week_reaches_the_officers_with_the_votes(tmp_path, relay):
    with start(tmp_path, relay) as server:
        case = report(server, relay)
        case.command(CHAIR, f"#propose private reprimand: for the insults to {REPORTER}")
        case.command(M1, "#vote object a reprimand is too harsh for a first time")
        case.command(M2, "#vote agree")
    server.cli("tick", "--now", "2026-11-30T10:00:00Z")
    assert not relay.to(OFFICERS)
    server.cli("tick", "--now", "2026-12-01T10:00:00Z")           # a week after the objection
    [escalation] = relay.to(OFFICERS)
    body = escalation.body()
    assert "Deadlock for the officers" in escalation.msg["Subject"]
    assert "a private reprimand (for the insults to [the reporter" in body
    assert f"{M1:<32} object: a reprimand is too harsh for a first time" in body
    assert f"{CHAIR:<32} agree" in body and f"{M2:<32} agree" in body
    assert REPORTER not in escalation.raw.decode() and "rita" not in body
    copies = subjects(relay, "Sent to the officers")
    assert sorted(c.rcpts[0] for c in copies) == sorted(MEMBERS)
    # Replies from the officers come back into the case.
    assert escalation.msg["Reply-To"].startswith("conduct+")
