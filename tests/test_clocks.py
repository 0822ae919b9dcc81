"""The clocks of the guidelines: business time in the committee's zone, and each
alarm firing at its due time, once, doing what rules/clocks.toml says.

In process against a real archive (real intake, pipeline, commands and scheduler);
the time is MAILFLOW_FAKE_NOW, so nothing sleeps."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from clockkit import REPORTER, Archive, draft_id, stamp

from mailflow import rules, store, timestamps
from mailflow.case import mediation
from mailflow.clocks import alarms, scheduler
from mailflow.clocks.policy import ACTIONS, Duration, Policy, problems
from mailflow.config import Config
from mailflow.testing import CHAIR, M1, M2, MEMBERS, make_mail

SHIPPED = rules.load(Config())["clocks"]
BERLIN_RULES = 'timezone = "Europe/Berlin"\n'


def policy(**overrides) -> Policy:
    return Policy.from_rules({"clocks": {**SHIPPED, **overrides}})


BERLIN = policy(timezone="Europe/Berlin")
RECEIPT = BERLIN.clock("receipt").after


def at(text: str):
    return timestamps.parse(text)


# -- business time ------------------------------------------------------------------

def test_receipt_over_a_weekend_waits_for_the_next_business_day():
    # Friday 18:00 in Berlin: 24 hours end on Saturday, so Monday's close counts.
    assert BERLIN.due(at("2026-11-27T17:00Z"), RECEIPT) == at("2026-11-30T16:00Z")


def test_receipt_on_a_weekday_is_whichever_is_later_of_24_hours_and_the_next_business_day():
    # Monday 10:00: the next business day closes (Tuesday 17:00) after 24 hours.
    assert BERLIN.due(at("2026-11-23T09:00Z"), RECEIPT) == at("2026-11-24T16:00Z")
    # Monday 19:00: 24 hours (Tuesday 19:00) end after Tuesday's close.
    assert BERLIN.due(at("2026-11-23T18:00Z"), RECEIPT) == at("2026-11-24T18:00Z")


def test_the_time_zone_decides_which_day_it_is():
    # Thursday 23:30 UTC is already Friday 00:30 in Berlin.
    start = at("2026-11-26T23:30Z")
    assert policy(timezone="UTC").due(start, RECEIPT) == at("2026-11-27T23:30Z")
    assert BERLIN.due(start, RECEIPT) == at("2026-11-30T16:00Z")


def test_holidays_are_not_business_days():
    with_holiday = policy(timezone="Europe/Berlin", holidays=[date(2026, 11, 30)])
    assert with_holiday.due(at("2026-11-27T17:00Z"), RECEIPT) == at("2026-12-01T16:00Z")


def test_business_hours_and_local_weeks():
    eight_hours = (Duration.parse("8 business hours"),)
    # Friday 15:00: two hours on Friday, six on Monday from 09:00.
    assert BERLIN.due(at("2026-11-27T14:00Z"), eight_hours) == at("2026-11-30T14:00Z")
    # A week is the same local time a week later, across the switch to summer time.
    week = (Duration.parse("1 week"),)
    assert BERLIN.due(at("2026-03-25T09:00Z"), week) == at("2026-04-01T08:00Z")


def test_check_names_every_bad_clock_rule():
    found = "\n".join(problems({"clocks": {
        "timezone": "Mars/Olympus", "holidays": ["someday"], "business_hours": ["17:00", "09:00"],
        "clocks": {"x": {"after": "soon", "do": ["shout"], "ends_when": ["never"]}}}}))
    for key in ("timezone", "holidays", "business_hours", "clocks.x.after", "clocks.x.do",
                "clocks.x.ends_when"):
        assert f"rules/clocks.toml: {key}:" in found
    assert problems({"clocks": SHIPPED}) == []


# -- alarms ---------------------------------------------------------------------------

@pytest.fixture
def archive(tmp_path, monkeypatch) -> Archive:
    # Moderators, so that the fast path has someone to instruct.
    a = Archive(tmp_path, monkeypatch, BERLIN_RULES, committee='moderators = ["mods@example.org"]')
    a.at("2026-11-27T17:00:00Z")          # Friday 18:00 in Berlin
    return a


# Each clock, started the way it is in use, and what it does when due.
STARTED = {
    "receipt": ("", "He insulted me.", "reminded the committee; flagged the case"),
    "resolution": ("", "He insulted me.", "drafted status update #1 (projected 2026-12-11)"),
    "acted-alone": ("", "He will hurt me.", "reminded the committee"),
    "deadlock": (f"{CHAIR}:#propose private reprimand\n{M1}:#vote object too harsh",
                 "He insulted me.", "sent the deadlock to the officers"),
    "signoff": (f"{CHAIR}:#originator Sam <sam@people.test>\n"
                f"{CHAIR}:#severe all: threatened to hurt someone", "He insulted me.",
                "reminded the committee; flagged the case"),
    "ban-end": (f"{CHAIR}:#originator Sam <sam@people.test>\n"
                f"{CHAIR}:#ban originator scope=all until=2026-12-20 insults", "He insulted me.",
                "reminded the chair"),
}


@pytest.mark.parametrize("name", sorted(STARTED))
def test_each_clock_fires_at_its_due_time_doing_what_the_rules_say(archive, name):
    commands, body, outcome = STARTED[name]
    case = archive.report(body)
    for line in filter(None, commands.split("\n")):
        member, text = line.split(":", 1)
        assert "All commands were applied" in archive.member(member, case, text)
    [alarm] = archive.alarms(case_id=case, clock=name)
    due = timestamps.parse(alarm["due_at"])
    archive.at(timestamps.stamp(due - timedelta(seconds=1)))
    archive.tick()
    assert archive.alarms(id=alarm["id"])[0]["state"] == "pending"
    archive.at(alarm["due_at"])
    archive.tick()
    fired = archive.alarms(id=alarm["id"])[0]
    assert (fired["state"], fired["late"]) == ("fired", 0)
    assert fired["outcome"].startswith(outcome)
    [entry] = archive.audit(f"alarm fired: {name}")
    assert entry["case_id"] == case and entry["detail"]["due"] == alarm["due_at"]


def test_receipt_alarm_fires_at_its_due_time_once(archive):
    case = archive.report()
    assert archive.due(case, "receipt") == "2026-11-30T16:00:00Z"
    archive.at("2026-11-30T15:59:59Z")
    assert archive.tick() == 0
    archive.at("2026-11-30T16:00:00Z")
    assert archive.tick() == 1
    reminders = archive.sent("alarm")
    assert sorted(r["rcpt"] for r in reminders) == sorted(MEMBERS)
    assert "Reminder: receipt" in reminders[0]["subject"] and case in reminders[0]["subject"]
    assert "Contact the reporter personally" in reminders[0]["body"]
    assert "Mon 2026-11-30 17:00 CET" in reminders[0]["body"]
    assert "late" not in reminders[0]["body"]
    assert [a["action"] for a in archive.audit("alarm fired: receipt")] == ["alarm fired: receipt"]
    assert "clock ran out: receipt" in archive.db.execute(
        "SELECT group_concat(flag) FROM case_flags WHERE case_id = ?", [case]).fetchone()[0]
    assert archive.tick() == 0 and len(archive.sent("alarm")) == 3


def test_receipt_clock_closes_when_a_member_wrote_to_the_reporter(archive):
    case = archive.report()
    transcript = archive.member(M1, case, "#reply\nThank you, we are on it.\n#end")
    assert [d["clock"] for d in alarms.deadlines(archive.db, archive.svc.rules)
            if d["case_id"] == case] == ["receipt", "resolution"]
    archive.confirm(case, draft_id(transcript))
    # Met by the mail that confirmed the reply: closed at once, not when it falls due.
    alarm = archive.alarms(case_id=case, clock="receipt")[0]
    assert (alarm["state"], alarm["outcome"]) == ("disarmed",
                                                  "the reporter was written to or called")
    assert [d["clock"] for d in alarms.deadlines(archive.db, archive.svc.rules)
            if d["case_id"] == case] == ["resolution"]
    archive.at("2026-11-30T16:00:00Z")
    assert archive.tick() == 0
    assert archive.sent("alarm") == []


def test_rules_decide_when_and_what(tmp_path, monkeypatch):
    archive = Archive(tmp_path, monkeypatch, BERLIN_RULES + (
        '[clocks.receipt]\nafter = "2 hours"\ndo = ["remind-chair"]\n'))
    archive.at("2026-11-27T17:00:00Z")
    case = archive.report()
    archive.at("2026-11-27T19:00:00Z")
    assert archive.tick() == 1
    assert [r["rcpt"] for r in archive.sent("alarm")] == [CHAIR]
    assert archive.db.execute("SELECT count(*) FROM case_flags WHERE case_id = ?",
                              [case]).fetchone()[0] == 0


def test_resolution_drafts_the_status_update_and_sends_nothing_unconfirmed(archive):
    case = archive.report()
    archive.at("2026-12-04T17:00:00Z")      # a week later
    archive.tick()
    drafts = list(archive.db.query("SELECT * FROM drafts WHERE case_id = ?", [case]))
    assert [(d["template"], d["state"]) for d in drafts] == [("status-update", "pending")]
    assert "by 2026-12-11" in drafts[0]["body"]
    to_chair = archive.sent("draft")
    assert [r["rcpt"] for r in to_chair] == [CHAIR] and f"#confirm {drafts[0]['id']}" in \
        to_chair[0]["body"]
    assert [r["kind"] for r in archive.sent() if r["rcpt"] == REPORTER] == ["ack"]
    # The clock runs out again at the projected date.
    assert archive.due(case, "resolution") == "2026-12-11T17:00:00Z"


def test_timeline_sets_the_projected_date_and_the_chair_confirms_the_update(archive):
    case = archive.report()
    transcript = archive.member(CHAIR, case, "#timeline 2026-12-21")
    assert "All commands were applied" in transcript
    assert archive.due(case, "resolution") == "2026-12-21T16:00:00Z"   # 17:00 CET
    draft = draft_id(transcript)
    assert [r["kind"] for r in archive.sent() if r["rcpt"] == REPORTER] == ["ack"]
    archive.confirm(case, draft)
    update = [r for r in archive.sent() if r["rcpt"] == REPORTER][-1]
    assert "2026-12-21" in update["body"] and "An update on your report" in update["subject"]
    assert "not in the future" in archive.member(CHAIR, case, "#timeline 2026-11-01")
    # A new date withdraws the unsent update with the old one.
    first = draft_id(archive.member(CHAIR, case, "#timeline 2026-12-28"))
    second = draft_id(archive.member(CHAIR, case, "#timeline 2027-01-08"))
    states = dict(archive.db.execute("SELECT id, state FROM drafts").fetchall())
    assert (states[draft], states[first], states[second]) == ("sent", "discarded", "pending")


def test_signoff_and_ban_clocks_start_with_the_fast_path(archive):
    case = archive.report()
    archive.member(CHAIR, case, "#originator Sam <sam@people.test>\n"
                                "#severe all: threatened to hurt the reporter")
    signoff = archive.alarms(case_id=case, clock="signoff")[0]
    assert signoff["due_at"] == stamp("2026-11-30T17:00Z")            # three days
    assert archive.alarms(case_id=case, clock="ban-review")[0]["due_at"] == \
        stamp("2027-11-26T17:00Z")                                     # 52 weeks
    archive.at("2026-11-30T17:00:00Z")
    archive.tick()
    assert {r["rcpt"] for r in archive.sent("alarm") if "signoff" in r["subject"]} == \
        set(MEMBERS)
    # Signed off: the repeated reminder is closed at once instead of firing again.
    for member in MEMBERS:
        archive.member(member, case, "#signoff agree")
    closed = archive.alarms(case_id=case, clock="signoff")[-1]
    assert (closed["state"], closed["outcome"]) == ("disarmed", "the proposal was decided")
    archive.at("2026-12-07T17:00:00Z")
    archive.tick()
    assert len([r for r in archive.sent("alarm") if "signoff" in r["subject"]]) == 3


def test_an_urgent_case_starts_the_acted_alone_clock_until_someone_reports_back(archive):
    case = archive.report("He says he will kill me, he is still here at the venue.")
    assert archive.due(case, "acted-alone") == "2026-11-28T17:00:00Z"
    archive.at("2026-11-28T09:00:00Z")
    # Neither a remark on the list nor a refused command is the report-back.
    archive.member(M2, case, "Anyone on this? I am travelling.")
    assert "Error" in archive.member(M2, case, "#acted")
    assert archive.alarms(case_id=case, clock="acted-alone")[0]["state"] == "pending"
    archive.member(M2, case, "#acted I called the venue security; he was escorted out at "
                             "21:10 and banned from the venue.\n#end")
    alarm = archive.alarms(case_id=case, clock="acted-alone")[0]
    assert (alarm["state"], alarm["outcome"]) == ("disarmed",
                                                  "a member reported back (#acted or #call)")
    note = archive.db.execute("SELECT kind, author, text FROM notes").fetchone()
    assert note[:2] == ("acted", M2) and "escorted out at 21:10" in note[2]


def test_safety_yes_starts_the_urgent_clocks_once(archive):
    case = archive.report()
    assert archive.alarms(case_id=case, clock="acted-alone") == []
    archive.member(M1, case, "#safety yes")
    archive.member(M1, case, "#ongoing yes")
    [alarm] = archive.alarms(case_id=case, clock="acted-alone")
    assert alarm["due_at"] == "2026-11-28T17:00:00Z"


def test_an_event_delegate_who_only_sent_a_note_is_reminded_to_the_chair(tmp_path, monkeypatch):
    delegate = "organiser@events.test"
    archive = Archive(tmp_path, monkeypatch, BERLIN_RULES,
                      committee=f'delegates = ["{delegate}"]')
    archive.at("2026-11-24T10:00:00Z")
    case = archive.report("Incident at the hackathon, full report follows.", sender=delegate)
    assert archive.alarms(case_id=case, clock="event-report")[0]["ref"] == delegate
    archive.at("2026-11-25T10:00:00Z")
    archive.tick()
    assert [r["rcpt"] for r in archive.sent("alarm")] == [CHAIR]
    assert "event delegate" in archive.sent("alarm")[0]["body"]


def test_a_settled_mediation_runs_to_its_target_date(archive):
    case = archive.report()
    archive.member(CHAIR, case, "#originator Sam <sam@people.test>\n"
                                "#mediate Mia <mia@mediators.test>")
    for party in (REPORTER, "sam@people.test"):
        to = mediation.answer_address(archive.svc, case, 1, party, "agree")
        archive.deliver(make_mail(party, to, "Re: mediation", "Yes, I agree."), party, [to])
    # Settled on Friday 27 November: two weeks to complete, by the end of that day.
    assert archive.due(case, "mediation") == "2026-12-11T16:00:00Z"


def test_a_date_means_by_the_end_of_that_day(archive):
    case = archive.report()
    with store.transaction(archive.db):
        alarms.arm(archive.db, archive.svc.rules, case, "mediation", ref="7",
                   due_at=date(2026, 12, 11))
    assert archive.due(case, "mediation") == "2026-12-11T16:00:00Z"


def test_a_late_alarm_fires_once_saying_so_whoever_runs_the_scheduler(archive):
    case = archive.report()
    archive.at("2026-12-02T09:00:00Z")       # two days after receipt was due
    other = store.connect(archive.cfg.db_path)
    try:
        fired = archive.tick() + scheduler.run_due(other, archive.svc)
    finally:
        other.close()
    assert fired == 1
    alarm = archive.alarms(case_id=case, clock="receipt")[0]
    assert (alarm["state"], alarm["late"]) == ("fired", 1)
    body = archive.sent("alarm")[0]["body"]
    assert "Late reminder" in archive.sent("alarm")[0]["subject"]
    assert "This reminder is late" in body and "Mon 2026-11-30 17:00 CET" in body


def test_deadlines_list_every_open_clock_with_what_it_will_do(archive):
    case = archive.report()
    rows = alarms.deadlines(archive.db, archive.svc.rules)
    by_clock = {r["clock"]: r for r in rows}
    assert set(by_clock) == {"receipt", "resolution"}
    assert by_clock["receipt"]["due_local"] == "Mon 2026-11-30 17:00 CET"
    assert by_clock["receipt"]["case_id"] == case
    assert by_clock["resolution"]["will"] == [ACTIONS["draft-status-update"],
                                             ACTIONS["flag"]]
    assert "2026-11-30 17:00 CET" in alarms.format_deadlines(rows)


def test_a_cases_pending_alarms_are_read_by_its_index_not_every_pending_alarm(archive):
    # Every report reads its case's alarms; walking every pending alarm of the archive
    # cost 2 ms a report at 5,000 cases (bench/README.md).
    case = archive.report()
    archive.report(sender="someone-else@example.net")
    statements: list[str] = []
    archive.db.conn.set_trace_callback(statements.append)
    try:
        mine = alarms.pending(archive.db, case)
    finally:
        archive.db.conn.set_trace_callback(None)
    assert mine and {a["case_id"] for a in mine} == {case}
    plans = [" ".join(str(row[-1]) for row in archive.db.execute(f"EXPLAIN QUERY PLAN {sql}"))
             for sql in statements]  # the statements as run, their values in them
    assert plans and all("alarms_case" in plan for plan in plans), plans
