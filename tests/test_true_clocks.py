"""Clocks and digests say only what is true: a clock that has been met is closed and
not listed, the report-back of an urgent case is an explicit one, a review request
arms the clock to tell the reporter, and every command a digest names works when a
member sends it."""

from __future__ import annotations

import re

import pytest
from casekit import ORIGINATOR, Case, start_server
from clockkit import REPORTER, Archive, draft_id

from mailflow.clocks import alarms
from mailflow.testing import CHAIR, M1, M2, MEMBERS, make_mail

DELEGATE = "olga@events.test"
FORM = ("Event: ITK Hackathon Lyon\nReporter: Rita <rita@people.test>\n"
        "What happened:\nSam shouted at Ada.\nAction you took:\nAsked Sam to leave.\n")


@pytest.fixture
def archive(tmp_path, monkeypatch) -> Archive:
    a = Archive(tmp_path, monkeypatch, committee=f'delegates = ["{DELEGATE}"]\n'
                                                 'moderators = ["mods@example.org"]')
    a.at("2026-11-24T10:00:00Z")
    return a


def listed(archive: Archive, case: str) -> list[str]:
    return [d["clock"] for d in alarms.deadlines(archive.db, archive.svc.rules)
            if d["case_id"] == case]


def test_a_call_with_the_reporter_meets_the_receipt_clock(archive):
    case = archive.report()
    assert listed(archive, case) == ["receipt", "resolution"]
    # A call with someone else is not personal contact with the reporter.
    archive.member(M1, case, "#call today the moderators\nThey saw the messages.\n#end")
    assert listed(archive, case) == ["receipt", "resolution"]
    archive.member(M1, case, "#call today the reporter\nRita confirmed; she is safe.\n#end")
    assert listed(archive, case) == ["resolution"]
    [receipt] = archive.alarms(case_id=case, clock="receipt")
    assert (receipt["state"], receipt["outcome"]) == ("disarmed",
                                                      "the reporter was written to or called")


def test_the_event_report_clock_waits_for_the_form_not_for_any_mail(archive):
    archive.deliver(make_mail(DELEGATE, "conduct@example.org", "Incident at the hackathon",
                              "Something happened at our event; details follow."),
                    DELEGATE, ["conduct@example.org"])
    case = archive.db.execute("SELECT id FROM cases").fetchone()[0]
    assert "event-report" in listed(archive, case)
    archive.deliver(make_mail(DELEGATE, "conduct@example.org", f"Re: [coc #{case}] Incident",
                              "Still collecting the details."), DELEGATE, ["conduct@example.org"])
    assert "event-report" in listed(archive, case)
    archive.deliver(make_mail(DELEGATE, "conduct@example.org", f"Re: [coc #{case}] Incident",
                              FORM), DELEGATE, ["conduct@example.org"])
    assert "event-report" not in listed(archive, case)
    assert archive.alarms(case_id=case, clock="event-report")[0]["outcome"] == \
        "the event incident report form arrived"


def test_a_review_request_arms_the_clock_to_tell_the_reporter(archive):
    case = archive.report()
    archive.member(M1, case, f"#originator Sam <{ORIGINATOR}>")
    review = f"conduct+{archive.svc.signer.sign(case, 'review')}@example.org"
    archive.deliver(make_mail(ORIGINATOR, review, "Review please", "This is unfair."),
                    ORIGINATOR, [review])
    [clock] = archive.alarms(case_id=case, clock="review-request")
    assert clock["state"] == "pending" and clock["due_at"] == "2026-11-25T17:00:00Z"
    notice = [r for r in archive.sent("notice") if "Review requested" in r["subject"]]
    assert "#send review-requested to=reporter" in notice[0]["body"]
    # More mail on the review under way arms no second clock.
    archive.deliver(make_mail(ORIGINATOR, review, "Re: Review please", "And another thing."),
                    ORIGINATOR, [review])
    assert len(archive.alarms(case_id=case, clock="review-request")) == 1
    t = archive.member(M1, case, "#send review-requested to=reporter\n#end")
    assert "review-request" in listed(archive, case)    # drafted is not told
    archive.confirm(case, draft_id(t))
    told = [r for r in archive.sent("response") if r["rcpt"] == REPORTER][-1]
    assert "asked the" in told["body"] and ORIGINATOR not in told["body"]
    assert "review-request" not in listed(archive, case)


def test_an_untold_review_request_reminds_the_committee(archive):
    case = archive.report()
    archive.member(M1, case, f"#originator Sam <{ORIGINATOR}>")
    review = f"conduct+{archive.svc.signer.sign(case, 'review')}@example.org"
    archive.deliver(make_mail(ORIGINATOR, review, "Review", "Unfair."), ORIGINATOR, [review])
    archive.at("2026-11-25T17:00:00Z")
    archive.tick()
    reminders = [r for r in archive.sent("alarm") if "review-request" in r["subject"]]
    assert sorted(r["rcpt"] for r in reminders) == sorted(MEMBERS)
    assert "Tell the reporter that the originator asked for a review" in reminders[0]["body"]


def test_deadlines_leave_out_a_clock_met_since_the_scheduler_last_looked(archive):
    case = archive.report()
    archive.member(M1, case, f"#originator Sam <{ORIGINATOR}>\n"
                             "#ban originator scope=chat until=2026-12-20 insults")
    assert {"ban-end", "ban-review"} <= set(listed(archive, case))
    # The ban ends by the clock alone; no mail, no scheduler pass: the review of a ban
    # that has ended is moot, the reminder of its end is not.
    archive.at("2026-12-21T09:00:00Z")
    assert "ban-review" not in listed(archive, case) and "ban-end" in listed(archive, case)
    archive.tick()
    [review] = archive.alarms(case_id=case, clock="ban-review")
    assert (review["state"], review["outcome"]) == ("disarmed", "the ban has ended")


DIGEST_TIME = "2026-11-25T08:00:00Z"
COMMAND = re.compile(r"^\s+reply to the case's mail with: (.+?)   \(or: .+\)$", re.M)


def test_every_command_a_digest_names_works(tmp_path, relay):
    server = start_server(tmp_path, relay, env={"MAILFLOW_FAKE_NOW": "2026-11-24T10:00:00Z"})
    reporter = "rita@people.test"
    try:
        server.send(make_mail(reporter, "conduct@example.org", "Threats", "He threatened me."),
                    reporter, ["conduct@example.org"])
        ack = relay.wait_for(lambda c: c.rcpts == [reporter], what="ack")[0]
        case = Case(server, relay, ack.msg["X-Mailflow-Case"])
        case.command(M1, f"#originator Sam <{ORIGINATOR}>\n#severe chat: threats of violence\n"
                         "#propose permanent ban\n#false-report the logs show otherwise")
    finally:
        server.stop()
    server.cli("tick", "--now", DIGEST_TIME)
    digests = {c.rcpts[0]: c.body().replace("\r\n", "\n") for c in relay.received
               if "Digest for" in c.msg["Subject"]}
    assert sorted(digests) == sorted(MEMBERS)
    commands = {m: COMMAND.findall(text) for m, text in digests.items()}
    assert commands[M2] == ["#signoff agree", "#vote 2 agree", "#vote 3 agree"]
    assert commands[CHAIR][:3] == ["#signoff agree", "#vote 2 agree", "#vote 3 agree"]
    # The chair's digest carries each draft's #confirm code, as the draft's mail does.
    assert [c.rsplit(" ", 1)[0] for c in commands[CHAIR][3:]] == [
        "#confirm 1", "#confirm 2", "#confirm 3"]
    assert [c for c in commands[CHAIR][3:] if c in digests[M2]] == []
    assert "after the instruction to the moderators above" in digests[CHAIR]
    # m1 proposed both: proposing is agreeing, only the sign-off waits for them.
    assert commands[M1] == ["#signoff agree"]

    server.env["MAILFLOW_FAKE_NOW"] = DIGEST_TIME
    server.start()
    try:
        for member, lines in commands.items():
            for line in lines:
                t = case.command(member, line)
                assert "All commands were applied" in t, (member, line, t)
    finally:
        server.stop()
    assert server.query("SELECT state FROM drafts ORDER BY id") == [("sent",)] * 3
    assert server.query("SELECT kind, status FROM proposals ORDER BY id") == [
        ("signoff", "passed"), ("response", "passed"), ("false-report", "passed")]


def test_a_digest_does_not_ask_for_what_was_done(archive):
    contacted, waiting = archive.report(), archive.report(subject="Other")
    t = archive.member(M1, contacted, "#reply\nWe have your report.\n#end\n"
                                      "#propose private reprimand")
    archive.confirm(contacted, draft_id(t))
    archive.tick()                          # arms the digest for 08:00 tomorrow
    archive.at("2026-11-25T08:00:00Z")
    archive.tick()
    body = next(d["body"] for d in archive.sent("digest") if d["rcpt"] == M2)
    mine, other = body.split(waiting)[0], body.split(waiting)[1]
    assert contacted in mine and "your vote on proposal 1" in mine
    assert "Contact the reporter personally" not in mine
    assert "Contact the reporter personally" in other


def test_every_command_a_reminder_or_digest_mentions_exists():
    from mailflow import app, rules
    from mailflow.config import Config
    from mailflow.resources import builtin

    texts = [c["about"] for c in rules.load(Config())["clocks"]["clocks"].values()]
    texts += [(builtin("templates") / f"{n}.txt").read_text() for n in ("alarm", "digest")]
    named = {w.lower() for t in texts for w in re.findall(r"#([a-z][a-z-]*)", t)}
    assert named and named - {"end"} <= set(app.COMMANDS), named - set(app.COMMANDS)
