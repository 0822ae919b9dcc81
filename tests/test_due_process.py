"""Due process, over real SMTP: a delegate is a delegate and the reporter the reporter
whatever order the mail comes in; mediation consent given another way is recorded
with who recorded it, and a plain answer is offered, never guessed; a withheld
acknowledgement is flagged; transcript subjects stay plain; the exported dossier
reads as a document."""

from __future__ import annotations

import re

import pytest
from casekit import ORIGINATOR, REPORTER, WITNESS, Case, open_case, start_server

from mailflow.testing import CHAIR, M1, M2, CaptureRelay, MailflowServer, make_mail

DELEGATE = "olga@events.test"
CONDUCT = "conduct@example.org"
MEDIATOR = "mia@mediators.test"


def reply_draft(t: str) -> int:
    """The draft a #reply filed."""
    return int(re.search(r"\(draft (\d+)\)", t).group(1))


def words(text: str) -> str:
    return " ".join(text.split())


def people(server: MailflowServer, case_id: str) -> set[tuple[str, str]]:
    return set(server.query("SELECT role, address FROM people WHERE case_id = ? AND role IN "
                            "('reporter', 'delegate', 'originator')", (case_id,)))


def with_delegate(server: MailflowServer) -> MailflowServer:
    server.config.write_text(server.config.read_text().replace(
        "[committee]\n", f'[committee]\ndelegates = ["{DELEGATE}"]\n', 1))
    return server


def form(case_id: str = "") -> str:
    return ((f"Case: {case_id}\n" if case_id else "") +
            f"Event: ITK Hackathon Lyon\nReporter: Rita Moreno <{REPORTER}>\n"
            f"Person(s) whose behaviour was reported:\nSam Sharp <{ORIGINATOR}>\n"
            "What happened:\nSam shouted at Rita during the demo.\n"
            "Action you took:\nAsked Sam to leave the room.\n")


def test_a_delegate_writing_first_is_the_delegate_and_the_reporter_hears_alone(tmp_path, relay):
    server = with_delegate(MailflowServer(tmp_path, relay.port)).start()
    try:
        server.send(make_mail(DELEGATE, CONDUCT, "Incident at the hackathon",
                              "Something happened at our event; the form follows."),
                    DELEGATE, [CONDUCT])
        ack = relay.wait_for(lambda c: c.rcpts == [DELEGATE], what="acknowledgement")[0]
        case = Case(server, relay, ack.msg["X-Mailflow-Case"])
        assert people(server, case.id) == {("delegate", DELEGATE)}
        server.send(make_mail(DELEGATE, CONDUCT, "The form", form(case.id)), DELEGATE, [CONDUCT])
        relay.wait_for(lambda c: c.rcpts == [M1] and "The form" in c.body(), what="form")
        assert people(server, case.id) == {("delegate", DELEGATE), ("reporter", REPORTER),
                                           ("originator", ORIGINATOR)}
        case.confirm(reply_draft(case.command(M1, "#reply\nWe have your report.\n#end")))
        told = relay.wait_for(lambda c: c.mail_from == CONDUCT and "About your report" in
                              (c.msg["Subject"] or ""), what="reply to the reporter")
        server.processed(4)
        assert [c.rcpts for c in told] == [[REPORTER]]
        assert [c.msg["Subject"] for c in relay.to(DELEGATE)] == [ack.msg["Subject"]]
    finally:
        server.stop()


def test_a_delegate_once_taken_for_the_reporter_is_put_right_by_their_form(tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port).start()
    try:
        # Before the organiser was named a delegate, their mail made them the reporter.
        server.send(make_mail(DELEGATE, CONDUCT, "Incident", "Something happened."),
                    DELEGATE, [CONDUCT])
        ack = relay.wait_for(lambda c: c.rcpts == [DELEGATE], what="acknowledgement")[0]
        case_id = ack.msg["X-Mailflow-Case"]
        assert people(server, case_id) == {("reporter", DELEGATE)}
    finally:
        server.stop()
    with with_delegate(server).start():
        server.send(make_mail(DELEGATE, CONDUCT, "The form", form(case_id)), DELEGATE, [CONDUCT])
        copy = relay.wait_for(lambda c: c.rcpts == [M2] and "The form" in c.body(),
                              what="the form relayed")[0]
        assert f"{DELEGATE} is the event's delegate, not its reporter" in words(copy.body())
        assert people(server, case_id) == {("delegate", DELEGATE), ("reporter", REPORTER),
                                           ("originator", ORIGINATOR)}


def test_a_delegate_forwarding_a_report_makes_its_author_the_reporter(tmp_path, relay):
    server = with_delegate(MailflowServer(tmp_path, relay.port)).start()
    try:
        body = ("Forwarding what Rita sent me at the event.\n\n---------- Forwarded message "
                f"---------\nFrom: Rita Moreno <{REPORTER}>\nDate: Mon, 23 Nov 2026\n"
                f"Subject: Sam at the hackathon\nTo: {DELEGATE}\n\nSam shouted at me.\n")
        server.send(make_mail(DELEGATE, CONDUCT, "Fwd: Sam at the hackathon", body),
                    DELEGATE, [CONDUCT])
        copy = relay.wait_for(lambda c: c.rcpts == [M1] and "Sam shouted" in c.body(),
                              what="the forward relayed")[0]
        assert "It was forwarded to the committee (delegate above); the original author is " \
            "the reporter" in words(copy.body())
        assert people(server, copy.msg["X-Mailflow-Case"]) == {("reporter", REPORTER),
                                                               ("delegate", DELEGATE)}
    finally:
        server.stop()


def test_the_reporter_writing_first_stays_the_reporter(tmp_path, relay):
    server = with_delegate(MailflowServer(tmp_path, relay.port)).start()
    try:
        case = open_case(server, relay)
        server.send(make_mail(DELEGATE, CONDUCT, "Form", form(case.id)), DELEGATE, [CONDUCT])
        relay.wait_for(lambda c: c.rcpts == [M1] and "Form" in c.body(), what="form")
        assert people(server, case.id) == {("reporter", REPORTER), ("delegate", DELEGATE),
                                           ("originator", ORIGINATOR)}
    finally:
        server.stop()


def _mediation(server: MailflowServer, relay: CaptureRelay) -> tuple[Case, dict]:
    case = open_case(server, relay)
    t = case.command(M1, f"#originator Sam Sharp <{ORIGINATOR}>\n#witness Kim Lo <{WITNESS}>\n"
                         f"#mediate Mia Mediator <{MEDIATOR}>")
    case.confirm(*[int(n) for n in re.findall(r"drafts ([\d, ]+)\)", t)[0].split(",")])
    asked = {who: relay.wait_for(lambda c, who=who: c.rcpts == [who] and "mediation" in
                                 c.msg["Subject"], what=f"ask {who}")[0]
             for who in (REPORTER, ORIGINATOR)}
    return case, asked


def _reply(server: MailflowServer, sender: str, to: str, subject: str, text: str) -> None:
    server.send(make_mail(sender, to, "Re: " + subject, text), sender, [to])


def test_a_plain_yes_is_offered_with_its_command_and_recorded_only_by_a_member(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case, asked = _mediation(server, relay)
        request = asked[REPORTER]
        _reply(server, REPORTER, request.msg["Reply-To"], request.msg["Subject"],
               "Yes, I agree to mediation with Mia.")
        copy = relay.wait_for(lambda c: c.rcpts == [M1] and "I agree to mediation" in c.body(),
                              what="the reply relayed")[0]
        body = words(copy.body())
        assert "this reads as the reporter agreeing to mediation with Mia Mediator" in body
        line = re.search(r"reply with: (#mediation-consent reporter agree: in their reply of "
                         r"\d{4}-\d\d-\d\d)", body).group(1)
        assert server.query("SELECT answer FROM consents WHERE party = ?", (REPORTER,)) == \
            [(None,)]
        # The member replies to that very copy with the offered line.
        t = case.command(M1, line, reply_to=copy)
        assert "recorded: the reporter answers agree on mediation #1" in t
        assert server.query("SELECT answer, recorded_by, how FROM consents WHERE party = ?",
                            (REPORTER,))[0][:2] == ("agree", M1)
        audit = server.query("SELECT actor, detail FROM audit WHERE action = "
                             "'mediation consent: agree'")
        assert audit[0][0] == M1 and f'"recorded_by": "{M1}"' in audit[0][1]

        # The originator agreed on the phone; the wrong candidate is refused.
        t = case.command(M2, "#mediation-consent originator agree Otto: by phone")
        assert "Error: the candidate asked about is Mia Mediator <mia@mediators.test>, not " \
               "'Otto'" in t
        t = case.command(M2, "#mediation-consent originator agree Mia: by phone with m2, "
                             "24 Nov")
        assert "the mediation is settled" in t
        assert f"(recorded by {M2}: by phone with m2, 24 Nov)" in case.command(CHAIR, "#status")
        relay.wait_for(lambda c: c.rcpts == [CHAIR] and "Mediation: settled" in
                       c.msg["Subject"], what="settled")


def test_an_unclear_or_outside_answer_is_not_offered(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case, asked = _mediation(server, relay)
        request = asked[ORIGINATOR]
        _reply(server, ORIGINATOR, request.msg["Reply-To"], request.msg["Subject"],
               "No problem, I agree in principle, but not with her.")
        unclear = relay.wait_for(lambda c: c.rcpts == [M1] and "in principle" in c.body(),
                                 what="unclear reply")[0]
        assert "does not clearly say yes or no" in words(unclear.body())
        assert "#mediation-consent" not in unclear.body()
        # Someone who was not asked cannot answer for a party by saying yes.
        _reply(server, WITNESS, CONDUCT, f"[coc #{case.id}] mediation", "Yes, I agree!")
        witness = relay.wait_for(lambda c: c.rcpts == [M1] and "Yes, I agree!" in c.body(),
                                 what="witness mail")[0]
        assert "mediation: " not in words(witness.body())
        assert server.query("SELECT count(*) FROM consents WHERE answer IS NOT NULL") == [(0,)]
        # A counter-proposal by address is offered as one.
        _reply(server, ORIGINATOR, request.msg["Reply-To"], request.msg["Subject"],
               "I would rather talk with otto@mediators.test.")
        counter = relay.wait_for(lambda c: c.rcpts == [M1] and "rather talk" in c.body(),
                                 what="counter-proposal")[0]
        assert "#mediation-consent originator propose otto@mediators.test:" in \
            words(counter.body())


def test_a_withheld_acknowledgement_is_flagged_on_the_copy_the_case_and_the_reminder(
        tmp_path, relay):
    server = start_server(tmp_path, relay, env={"MAILFLOW_FAKE_NOW": "2026-11-24T10:00:00Z"})
    try:
        server.send(make_mail(REPORTER, CONDUCT, "Harassment", "Please help.",
                              headers={"Auto-Submitted": "auto-forwarded"}),
                    REPORTER, [CONDUCT])
        copy = relay.wait_for(lambda c: c.rcpts == [M1] and "Please help." in c.body(),
                              what="copy")[0]
        assert "No acknowledgement was sent (Auto-Submitted: auto-forwarded): the reporter " \
               "has heard nothing from us" in words(copy.body())
        case_id = copy.msg["X-Mailflow-Case"]
        assert relay.to(REPORTER) == []
        flags = server.cli_json("case", "show", case_id)["file"]["flags"]
        assert "acknowledgement withheld: Auto-Submitted: auto-forwarded" in flags
        # Over the hourly limit, the sixth report of one sender is flagged likewise.
        for n in range(6):
            server.send(make_mail("flood@people.test", CONDUCT, f"Report {n}", f"Number {n}."),
                        "flood@people.test", [CONDUCT])
        sixth = relay.wait_for(lambda c: c.rcpts == [M1] and "Number 5." in c.body(),
                               what="sixth copy")[0]
        assert "No acknowledgement was sent (rate limit for flood@people.test)" in \
            words(sixth.body())
        assert len(relay.to("flood@people.test")) == 5
    finally:
        server.stop()
    server.cli("tick", "--now", "2026-11-25T17:00:00Z")
    reminder = relay.wait_for(lambda c: c.rcpts == [M1] and case_id in c.msg["Subject"] and
                              "Reminder: receipt" in c.msg["Subject"], what="reminder")[0]
    assert "The automatic acknowledgement was withheld: the reporter has heard nothing " \
           "from us yet" in words(reminder.body())


def test_transcript_subjects_stay_plain_however_deep_the_thread(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        codename = server.query("SELECT codename FROM cases")[0][0]
        expected = f"[coc #{case.id}] Transcript: New report: {codename}"
        case.command(M1, "#channel #general")
        first = case.transcripts(M1)[-1]
        assert first.msg["Subject"] == expected
        case.command(M1, "#violation yes", reply_to=first)    # Re: ... Transcript: Re: ...
        assert case.transcripts(M1)[-1].msg["Subject"] == expected
        case.confirm(reply_draft(case.command(M1, "#reply\nThank you.\n#end")))
        # The chair replied to "[coc #ID] Draft 1 to confirm: About your report".
        assert case.transcripts(CHAIR)[-1].msg["Subject"] == \
            f"[coc #{case.id}] Transcript: About your report"


def test_the_html_dossier_reads_as_a_document_in_order(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        case.command(M1, f"#originator Sam Sharp <{ORIGINATOR}>\n#violation yes\n"
                         "#propose private reprimand: for the insults")
        case.command(CHAIR, "#call today the reporter\nRita confirmed the messages.\n#end")
        case.command(M2, "#vote agree")
        case.command(CHAIR, "#vote agree")
        case.confirm(reply_draft(case.command(M1, "#reply\nWe are on it.\n#end")))
        html = server.cli("case", "export", case.id, "--format", "html", "-o", "-").stdout.decode()
    assert "<table" not in html and "<td" not in html and "{'" not in html
    for raw in ("case_record", "proposal_id", "outbound_rcpt", "spool_id"):
        assert raw not in html, raw
    text = re.sub(r"<[^>]+>", " ", html)
    text = words(text.replace("&lt;", "<").replace("&gt;", ">"))
    steps = [f"Rita Moreno <{REPORTER}>, the reporter, reported.",
             "mailflow acknowledged the report to",
             f"used #originator Sam Sharp <{ORIGINATOR}>",
             "proposed a private reprimand (for the insults) (proposal 1)",
             "summarised an off-list call", "Rita confirmed the messages.",
             "Proposal 1 passed by consensus",
             f"The committee sent “[coc #{case.id}] About your report” to {REPORTER}",
             "confirmed draft 1 (reply-to-reporter); it went to"]
    at = 0
    for step in steps:         # each after the one before
        found = text.find(step, at)
        assert found > 0, (step, text[at:at + 300])
        at = found
    assert "Where it stands" in text and "A violation of the Code of Conduct: yes." in text
    assert f"{CHAIR} agrees" in text and "The response agreed: a private reprimand (for the " \
        "insults)." in text


@pytest.mark.parametrize("reply, reading", [
    ("Yes, I agree to mediation with Mia.", ("agree", "")),
    ("I have no objection to mediation.", ("agree", "")),
    ("No, I do not want mediation.", ("decline", "")),
    ("I would rather not.", ("decline", "")),
    ("No problem, I agree in principle, but not with her.", None),   # hedged
    ("Yes if Mia is free on Tuesdays", None),                          # hedged
    ("Yes. No. I don't know.", None),                                  # both
    ("Let me think about it.", None),                                  # neither
    ("Fine, but with otto@mediators.test please", ("propose", "otto@mediators.test")),
    (f"Yes, {MEDIATOR} is fine", ("agree", "")),
])
def test_a_plain_answer_is_read_only_when_it_is_clear(reply, reading):
    from mailflow.case.mediation import read_plain_answer

    assert read_plain_answer(reply, MEDIATOR) == reading
