"""The committee's workflow by email, end to end: real SMTP in, a capturing relay out,
members acting only by replying to the mail they received."""

from __future__ import annotations

import re
from pathlib import Path

from casekit import ORIGINATOR, REPORTER, Case, draft_ids, open_case, start_server

from mailflow import store
from mailflow.archive import search
from mailflow.testing import (
    BOARD,
    CHAIR,
    M1,
    M2,
    Captured,
    CaptureRelay,
    MailflowServer,
    make_mail,
    wait_until,
)

MEDIATOR, OTHER_MEDIATOR = "mia@mediators.test", "otto@mediators.test"
DELEGATE = "olga@events.test"


def mail_to(relay: CaptureRelay, rcpt: str, subject_has: str = "", after: int = 0
            ) -> list[Captured]:
    with relay.lock:
        return [c for c in relay.received[after:]
                if rcpt in c.rcpts and subject_has in (c.msg["Subject"] or "")]


def count(relay: CaptureRelay) -> int:
    with relay.lock:
        return len(relay.received)


def words(text: str) -> str:
    return " ".join(text.split())


def record(server: MailflowServer, case_id: str, column: str):
    return server.query(f"SELECT {column} FROM case_record WHERE case_id = ?", (case_id,))[0][0]


def test_a_case_from_report_to_enactment_by_member_mail_only(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        t = case.command(M1, "I read the log; this is a pattern.\n\n"
                             "#what Sam called Rita's patch garbage and told her to leave\n"
                             "#channel #general\n"
                             f"#originator Sam Sharp <{ORIGINATOR}>\n"
                             "#affected Rita Moreno\n"
                             "#violation yes\n#ongoing no\n#safety no\n"
                             "#propose private reprimand: for the insults in #general\n")
        assert "All commands were applied." in t
        assert "proposal #1: a private reprimand (for the insults in #general); waiting for " \
               f"{CHAIR}, {M2}" in t
        t = case.command(CHAIR, "#call yesterday the reporter\n"
                                "Rita confirmed the messages of Monday.\n"
                                "She wants the insults to stop, nothing public.\n#end\n"
                                "#vote agree\n")
        assert "call summary #1 filed" in t and f"waiting for {M2}" in t
        # A member's words reach the reporter only by #reply, once the chair confirms.
        t = case.command(M1, "#reply\nCould you tell us which day it was?\n#end")
        case.confirm(int(re.search(r"\(draft (\d+)\)", t).group(1)))
        asked = relay.wait_for(lambda c: c.rcpts == [REPORTER] and "About your report" in
                               c.msg["Subject"], what="the reply to the reporter")[0]
        assert "Could you tell us which day it was?" in asked.body()
        assert M1 not in asked.raw.decode()
        # Before consensus there is nothing to consult on or enact.
        assert "Error: the committee has not agreed" in case.command(CHAIR, "#consult")
        t = case.command(M2, "#vote agree")
        assert "consensus reached" in t
        relay.wait_for(lambda c: c.rcpts == [M1] and "Consensus reached" in c.msg["Subject"],
                       what="consensus notice")
        assert record(server, case.id, "response") == "private-reprimand"

        # #enact is refused until the reporter was told, and the telling was sent.
        t = case.command(CHAIR, "#enact")
        assert "Error: the reporter has not been told the agreed response yet" in t
        t = case.command(CHAIR, "#consult")
        draft = int(re.search(r"\(draft (\d+)\)", t).group(1))
        assert "Error: the consultation of the reporter" in case.command(CHAIR, "#enact")
        assert f"draft {draft} sent to the reporter" in case.confirm(draft)
        consultation = relay.wait_for(
            lambda c: c.rcpts == [REPORTER] and "What we intend" in c.msg["Subject"],
            what="the consultation")[0]
        assert "a private reprimand (for the insults in #general)" in consultation.body()

        # The reporter's answer is filed as feedback and reaches the members.
        server.send(make_mail(REPORTER, consultation.msg["Reply-To"],
                              "Re: " + consultation.msg["Subject"], "Fine with me, thanks."),
                    REPORTER, [consultation.msg["Reply-To"]])
        relay.wait_for(lambda c: c.rcpts == [M2] and "Fine with me" in c.body(),
                       what="feedback relayed")
        assert server.query("SELECT kind, text FROM notes WHERE case_id = ? AND kind = "
                            "'feedback'", (case.id,)) == [("feedback", "Fine with me, thanks.")]

        t = case.command(CHAIR, "#enact reprimand mailed by the chair")
        assert "enacted: a private reprimand" in t
        t = case.command(M1, "#status")
        assert "Still undetermined" not in t
        for line in ("What happened:        Sam called Rita's patch garbage",
                     "Violation:            yes", f"Originator(s):        Sam Sharp <{ORIGINATOR}>",
                     "Required response:    a private reprimand", "agree    m2@example.org",
                     "Reporter consulted: draft", "Enacted:"):
            assert line in t, line
        assert t.index("call of") < t.index("feedback, filed by")  # records in order

        # The case view shows the record, the votes and the call; search finds the call.
        shown = server.cli("case", "show", case.id).stdout.decode()
        assert "Rita confirmed the messages of Monday." in shown
        assert shown.index("agree    chair@example.org") < shown.index("Calls and notes")
        db = store.connect(server.archive / "mailflow.db")
        hits = search.run(db, "kind:call confirmed")["results"]
        db.close()
        assert [(h["case"], h["kind"]) for h in hits] == [(case.id, "call")]
        # Nothing any member wrote reached the reporter but the confirmed draft.
        to_reporter = [c.msg["Subject"] for c in relay.to(REPORTER)]
        assert len(to_reporter) == 3 and "received your report" in to_reporter[0]


def test_objection_blocks_and_a_recused_member_neither_counts_nor_hears(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        case.command(M1, "#propose public reminder: of the expected tone")
        case.command(CHAIR, "#vote agree")
        t = case.command(M2, "#vote object too soft")
        assert f"blocked: {M2} object(s)" in t
        assert server.query("SELECT status, deadlocked_at IS NOT NULL FROM proposals") == \
               [("open", 1)]
        # A new proposal does not restart the deadlock clock.
        since = server.query("SELECT deadlocked_at FROM proposals")[0][0]
        case.command(M1, "#propose private reprimand")
        assert server.query("SELECT status, deadlocked_at FROM proposals ORDER BY id") == \
               [("superseded", since), ("open", since)]
        case.command(CHAIR, "#vote agree")
        case.command(M2, "#vote object still too soft")

        before = count(relay)
        t = case.command(M2, "#recuse I found out I work with the originator")
        assert f"{M2} is recused" in t
        # Without the recused member's objection, everyone deciding agreed.
        assert server.query("SELECT status FROM proposals ORDER BY id DESC LIMIT 1") == \
               [("passed",)]
        relay.wait_for(lambda c: c.rcpts == [CHAIR] and "Consensus" in c.msg["Subject"],
                       what="consensus after the recusal")
        # Nothing further of the case reaches them: not the reporter's mail, not the
        # members' posts, not notices.  Their own mail on it is refused with a neutral
        # answer (the one a case that does not exist gets), and not relayed.
        server.send(make_mail(REPORTER, "conduct@example.org", f"Re: [coc #{case.id}] more",
                              "One more thing."), REPORTER, ["conduct@example.org"])
        relay.wait_for(lambda c: c.rcpts == [M1] and "One more thing." in c.body(),
                       what="reporter's mail relayed")
        case.command(CHAIR, "#status")
        copy = mail_to(relay, M2)[-1].msg
        server.send(make_mail(M2, copy["Reply-To"], "Re: " + copy["Subject"],
                              "Late-vote\r\n#vote agree"), M2, [copy["Reply-To"]])
        [answer] = relay.wait_for(lambda c: c.rcpts == [M2] and "not accepted" in
                                  c.msg["Subject"], what="the neutral answer")
        assert case.id not in answer.body() and "recused" not in answer.body()
        assert [c for c in mail_to(relay, M2, after=before)
                if "Transcript" not in c.msg["Subject"] and c is not answer] == []
        assert not [c for c in relay.received if "Late-vote" in c.body()]


def test_members_named_in_reports_are_recused_before_the_relay(tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port,
                            extra=f'[committee.aliases]\n"{M1}" = ["Max Muster", "maxm"]\n')
    server.start()
    try:
        # Named by alias: m1 never receives the report; the chair is told.
        server.send(make_mail(REPORTER, "conduct@example.org", "About maxm",
                              "maxm keeps mocking me in the chat."),
                    REPORTER, ["conduct@example.org"])
        relay.wait_for(lambda c: c.rcpts == [M2], what="relay to m2")
        notice = relay.wait_for(lambda c: c.rcpts == [CHAIR] and f"{M1} recused" in
                                c.msg["Subject"], what="the chair is told")[0]
        assert '"maxm"' in notice.body()
        server.processed(1)
        assert not [c for c in relay.to(M1)]

        # Named by address, the chair: the others are asked for a substitute chair.
        server.send(make_mail(REPORTER, "conduct@example.org", "The chair",
                              f"The chair ({CHAIR}) shouted at me."),
                    REPORTER, ["conduct@example.org"])
        asked = relay.wait_for(lambda c: c.rcpts == [M2] and "substitute" in c.msg["Subject"],
                               what="substitute chair needed")[0]
        second = asked.msg["X-Mailflow-Case"]
        assert not [c for c in relay.to(CHAIR) if second in (c.msg["Subject"] or "")]
        case = Case(server, relay, second)
        t = case.command(M2, "#status")
        assert "Chair:     none" in t
        t = case.command(M2, f"#chair {M1}")
        assert f"{M1} chairs this case" in t
        assert f"Chair:     {M1}" in case.command(M1, "#status")

        # Everyone named: the case goes to the board, and no member receives it.
        server.quiet()
        before = count(relay)
        server.send(make_mail(REPORTER, "conduct@example.org", "All of them",
                              f"{CHAIR}, {M1} and {M2} all ignored me."),
                    REPORTER, ["conduct@example.org"])
        escalation = relay.wait_for(lambda c: c.rcpts == [BOARD], what="board escalation")[0]
        assert "Every committee member is recused" in escalation.msg["Subject"]
        assert REPORTER not in escalation.raw.decode()
        relay.wait_for(lambda c: c.rcpts == [REPORTER] and c.msg["X-Mailflow-Case"] ==
                       escalation.msg["X-Mailflow-Case"], what="acknowledgement")
        server.processed(3)
        assert sorted(c.rcpts[0] for c in relay.received[before:]) == [BOARD, REPORTER]
        third = escalation.msg["X-Mailflow-Case"]
        assert server.query("SELECT status FROM cases WHERE id = ?", (third,)) == [("board",)]
    finally:
        server.stop()


def test_severe_path_drafts_both_notices_and_blocks_closing_until_signed_off(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        t = case.command(M1, f"#originator {ORIGINATOR}\n#severe forum, chat: "
                             "threatened to hurt another contributor after the meetup\n")
        assert "interim disconnection of 1 originator(s) from forum, chat recorded, until " \
               "the committee's review of the case" in t
        # The instruction to the moderators, then the notices to the reporter and the
        # originator, which the chair confirms in that order.
        notices = [int(n) for n in re.findall(r"\(draft (\d+)\)", t)]
        assert len(notices) == 3 and "sign-off item #1 opened" in t
        assert server.query("SELECT person, scope, ends_at FROM bans") == \
               [(ORIGINATOR, "forum,chat", None)]
        relay.wait_for(lambda c: c.rcpts == [M2] and "fast path used" in c.msg["Subject"],
                       what="the members are told")

        t = case.command(CHAIR, "#close")
        assert "Error: the case cannot close yet: the clear-and-severe fast path is not " \
               "signed off yet" in t
        # `mailflow case show` tells what #close does: every close check, in a process
        # that never applied a command (the checks used to register only when the
        # command modules had been imported).
        blockers = server.cli_json("case", "show", case.id)["file"]["close_blockers"]
        assert blockers == ["the clear-and-severe fast path is not signed off yet (#signoff)",
                            "the officers' report has not been sent (#report, then the "
                            "chair's #confirm)"]
        assert f"draft {notices[0]} sent" in case.confirm(*notices)
        to_reporter = relay.wait_for(lambda c: c.rcpts == [REPORTER] and "disconnected" in
                                     c.msg["Subject"], what="notice to the reporter")[0]
        assert "disconnected from forum, chat" in words(to_reporter.body())
        to_originator = relay.wait_for(lambda c: c.rcpts == [ORIGINATOR],
                                       what="notice to the originator")[0]
        body = words(to_originator.body())
        assert "threatened to hurt another contributor after the meetup" in body
        assert "disconnected you from forum, chat" in body
        assert "you have the right to ask for a review" in body
        review = re.search(r"Write to (conduct\+\S+@example\.org)", body).group(1)
        assert REPORTER not in to_originator.raw.decode()

        case.command(M1, "#signoff")
        t = case.command(M2, "#signoff agree the threat was explicit")
        assert f"waiting for {CHAIR}" in t
        assert "consensus reached" in case.command(CHAIR, "#signoff")
        assert "fast path" not in case.command(CHAIR, "#close")
        assert server.cli_json("case", "show", case.id)["file"]["close_blockers"] == [
            "the officers' report has not been sent (#report, then the chair's #confirm)"]

        # The rest of the way to closing: the record, a response, the officers' report.
        case.command(M1, "#what threats of violence after the meetup\n#channel forum, chat\n"
                         "#violation yes\n#affected Rita Moreno\n#ongoing no\n#safety yes\n"
                         "#propose permanent ban")
        case.command(M2, "#vote agree")
        case.command(CHAIR, "#vote agree")
        case.confirm(*draft_ids(case.command(CHAIR, "#report")))
        assert "case closed" in case.command(CHAIR, "#close")

        # The originator asks for a review: the case reopens as a grievance.
        server.send(make_mail(ORIGINATOR, review, "Review please", "This is unfair."),
                    ORIGINATOR, [review])
        relay.wait_for(lambda c: c.rcpts == [M1] and "Review requested" in c.msg["Subject"],
                       what="grievance notice")
        assert server.query("SELECT status, kind FROM cases") == [("open", "grievance")]


def _answer(server: MailflowServer, sender: str, request: Captured, choice: str, text: str = ""):
    address = re.search(rf"to {choice}[^:\n]*:\s+(\S+)", request.body()).group(1)
    server.send(make_mail(sender, address, "Re: " + request.msg["Subject"], text or choice),
                sender, [address])


def test_mediation_consent_by_reply_tokens(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        t = case.command(M1, f"#originator {ORIGINATOR}\n#mediate Mia Mediator <{MEDIATOR}>")
        drafts = [int(n) for n in re.findall(r"drafts ([\d, ]+)\)", t)[0].split(",")]
        case.confirm(*drafts)
        asked = {who: relay.wait_for(lambda c, who=who: c.rcpts == [who] and
                                     "mediation" in c.msg["Subject"], what=f"ask {who}")[0]
                 for who in (REPORTER, ORIGINATOR)}
        assert MEDIATOR in asked[REPORTER].body()
        # Each request has its own addresses: the reporter's do not answer for the originator.
        assert re.search(r"to agree:\s+(\S+)", asked[REPORTER].body()).group(1) != \
               re.search(r"to agree:\s+(\S+)", asked[ORIGINATOR].body()).group(1)

        _answer(server, REPORTER, asked[REPORTER], "agree")
        _answer(server, ORIGINATOR, asked[ORIGINATOR], "propose",
                f"I would rather talk with Otto <{OTHER_MEDIATOR}>.")
        notice = relay.wait_for(lambda c: c.rcpts == [CHAIR] and "counter-proposed" in
                                c.msg["Subject"], what="counter-proposal notice")[0]
        assert OTHER_MEDIATOR in notice.body()
        t = case.command(M2, "#status")
        assert "reporter    rita.moreno@people.test: agree" in t
        assert f"originator  {ORIGINATOR}: propose - I would rather talk with Otto" in t

        before = count(relay)
        t = case.command(M1, f"#mediate Otto <{OTHER_MEDIATOR}>")
        drafts = [int(n) for n in re.findall(r"drafts ([\d, ]+)\)", t)[0].split(",")]
        case.confirm(*drafts)
        first, asked = asked, {
            who: relay.wait_for(lambda c, who=who: c in relay.received[before:] and
                                c.rcpts == [who] and "mediation" in c.msg["Subject"],
                                what=f"ask {who} again")[0]
            for who in (REPORTER, ORIGINATOR)}
        # An answer sent to an address of the earlier proposal does not count.
        _answer(server, ORIGINATOR, first[ORIGINATOR], "agree", "Fine, Mia then.")
        relay.wait_for(lambda c: c.rcpts == [M1] and "Fine, Mia then." in c.body(),
                       what="the stale answer relayed")
        assert server.query("SELECT count(*) FROM consents WHERE answer IS NOT NULL AND "
                            "mediation_id = (SELECT max(id) FROM mediations)")[0][0] == 0
        _answer(server, REPORTER, asked[REPORTER], "agree")
        _answer(server, ORIGINATOR, asked[ORIGINATOR], "agree")
        settled = relay.wait_for(lambda c: c.rcpts == [M2] and "Mediation: settled" in
                                 c.msg["Subject"], what="settled")[0]
        assert "should complete by" in settled.body()
        status, target, opened = server.query(
            "SELECT status, target_date, date(proposed_at) FROM mediations ORDER BY id DESC")[0]
        assert status == "settled"
        assert server.query("SELECT julianday(?) - julianday(?)", (target, opened))[0][0] == 14
        assert server.query("SELECT address FROM people WHERE role = 'mediator'") == \
               [(OTHER_MEDIATOR,)]


def test_event_report_opens_then_joins_a_case(tmp_path: Path, relay):
    server = MailflowServer(tmp_path, relay.port)
    server.config.write_text(server.config.read_text().replace(
        "[committee]\n", f'[committee]\ndelegates = ["{DELEGATE}"]\n', 1))
    server.start()
    try:
        form = ("Event: ITK Hackathon Lyon\nDate: 3 May, room B\n"
                f"Person(s) whose behaviour was reported:\nSam Sharp <{ORIGINATOR}>\n"
                "Person(s) affected:\nAda\n"
                "What happened:\nSam shouted at Ada during the demo.\n"
                "Action you took:\nAsked Sam to leave the room; he did.\n")
        server.send(make_mail(DELEGATE, "conduct@example.org", "Incident at the hackathon", form),
                    DELEGATE, ["conduct@example.org"])
        relayed = relay.wait_for(lambda c: c.rcpts == [M1], what="event report relayed")[0]
        case_id = relayed.msg["X-Mailflow-Case"]
        assert "event incident report from delegate" in relayed.body()
        assert server.query("SELECT kind FROM cases") == [("event",)]
        assert set(server.query("SELECT role, address, name FROM people")) == {
            ("delegate", DELEGATE, ""), ("originator", ORIGINATOR, "Sam Sharp"),
            ("affected", "", "Ada")}
        assert record(server, case_id, "channel") == "ITK Hackathon Lyon"

        # A second form naming the case joins it.
        server.send(make_mail(DELEGATE, "conduct@example.org", "Follow-up",
                              f"Case: {case_id}\nEvent: ITK Hackathon Lyon\n"
                              "Action you took:\nSam apologised to Ada the next morning.\n"),
                    DELEGATE, ["conduct@example.org"])
        wait_until(lambda: len(server.query("SELECT id FROM notes")) == 2, what="second summary")
        assert server.query("SELECT count(*) FROM cases")[0][0] == 1
        summaries = [r[0] for r in server.query("SELECT text FROM notes ORDER BY id")]
        assert "Asked Sam to leave" in summaries[0] and "apologised" in summaries[1]
    finally:
        server.stop()
