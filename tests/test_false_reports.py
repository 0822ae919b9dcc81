"""Abuse of the reporting process, over real SMTP: a report is found false only by
consensus, the reporter faces the menu of responses only then, and the committee's
copy of each new report shows the reporter's other cases, never one the member
reading it is recused from."""

from __future__ import annotations

import re

from casekit import ORIGINATOR, REPORTER, REPORTER_NAME, Case, open_case, start_server

from mailflow.testing import CHAIR, M1, M2, CaptureRelay, MailflowServer, make_mail

CONDUCT = "conduct@example.org"


def report(server: MailflowServer, relay: CaptureRelay, sender: str, subject: str,
           body: str = "He keeps insulting me in the chat.") -> Case:
    before = len(relay.to(sender))
    server.send(make_mail(sender, CONDUCT, subject, body), sender, [CONDUCT])
    ack = relay.wait_for(lambda c: c.rcpts == [sender], count=before + 1,
                         what=f"acknowledgement of {subject!r}")[-1]
    return Case(server, relay, ack.msg["X-Mailflow-Case"])


def copy_of(relay: CaptureRelay, member: str, case: Case):
    return relay.wait_for(lambda c: c.rcpts == [member] and case.id in c.msg["Subject"]
                          and "New report" in c.msg["Subject"], what=f"{member}'s copy")[0]


def test_the_reporter_faces_the_menu_only_once_consensus_found_the_report_false(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        case.command(M1, f"#originator Sam Sharp <{ORIGINATOR}>")
        # A member acting alone against the reporter is refused, however it is spelt.
        for attempt in ("#warn reporter retaliation", f"#warn {REPORTER.upper()} lying",
                        "#warn ｒｉｔａ.ｍｏｒｅｎｏ@people.test lying",
                        "#ban reporter scope=all until=permanent lying",
                        "#send private-reprimand to=reporter\nbehaviour: x\nimpact: x\n"
                        "change: x\nconsequences: x\n#end"):
            t = case.command(M1, attempt)
            assert "Error: the reporter faces a response only once the committee has found " \
                   "the report false or abusive" in t, attempt
        assert server.query("SELECT count(*) FROM warnings") == [(0,)]
        assert server.query("SELECT count(*) FROM bans") == [(0,)]
        assert "warning 1 recorded for sam.sharp" in case.command(M1, "#warn originator rude")

        # Two decisions open at once: #vote must say which.
        case.command(M1, "#propose no action: nothing happened")
        t = case.command(M1, "#false-report the chat log shows no such messages; the reporter "
                             "was muted by Sam the day before")
        proposal = int(re.search(r"proposal #(\d+): finding the report false", t).group(1))
        assert f"#vote {proposal} agree" in t and f"waiting for {CHAIR}, {M2}" in t
        t = case.command(M2, "#vote agree")
        assert "Error: more than one proposal is open: say which" in t
        assert f"#vote {proposal} agree (finding the report false or abusive" in t
        assert f"agree on proposal #{proposal}" in case.command(M2, f"#vote {proposal} agree")
        assert "Error" in case.command(M1, "#warn reporter still not decided")
        t = case.command(CHAIR, f"#vote {proposal} agree")
        assert "consensus reached" in t
        notice = relay.wait_for(lambda c: c.rcpts == [M2] and "Consensus reached" in
                                c.msg["Subject"] and "false or abusive" in c.body(),
                                what="the finding")[0]
        assert "the menu of responses now applies to the reporter" in " ".join(
            notice.body().split())

        # Now the reporter can be warned and banned like anyone found in violation.
        assert f"warning 1 recorded for {REPORTER}" in case.command(
            M1, "#warn reporter a false report to get Sam banned")
        t = case.command(M1, "#ban reporter scope=chat until=2027-06-01 false report")
        assert f"recorded: {REPORTER} from chat" in t
        assert "Error" not in case.command(M1, "#send private-reprimand to=reporter\n"
                                               "behaviour: a false report\nimpact: Sam was "
                                               "questioned\nchange: report in good faith\n"
                                               "consequences: a ban\n#end")
        status = case.command(M2, "#status")
        assert "false or abusive report: the menu of responses applies to the reporter" in status
        assert f"#{proposal} finding the report false or abusive (the chat log shows no such " \
               "messages" in status


def test_each_new_report_shows_the_reporters_other_cases_but_not_across_a_recusal(
        tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        first = open_case(server, relay)
        first.command(M1, "#recuse the reporter is my flatmate")
        second = report(server, relay, REPORTER, "The forum thread")
        second.command(CHAIR, "#false-report nothing of the kind happened")
        second.command(M1, "#vote agree")
        second.command(M2, "#vote agree")
        # Someone else reports the reporter: that case counts too, as originator.
        third = report(server, relay, "ada.ng@people.test", "Rita shouted at me")
        third.command(CHAIR, f"#originator {REPORTER_NAME} <{REPORTER}>\n#violation no")

        fourth = report(server, relay, REPORTER, "Again in the chat")
        chair = " ".join(copy_of(relay, CHAIR, fourth).body().split())
        assert "The reporter's other cases (3):" in chair
        assert f"{first.id} (" in chair
        assert f"{second.id} (" in chair and "as reporter: open, no response agreed; FOUND " \
               "A FALSE OR ABUSIVE REPORT" in chair
        assert f"{third.id} (" in chair and "as originator: open, no violation found" in chair
        # m1 is recused from the first case: not its id, not in the count.
        m1 = " ".join(copy_of(relay, M1, fourth).body().split())
        assert "The reporter's other cases (2):" in m1
        assert first.id not in m1 and second.id in m1 and third.id in m1
        # A reply on the case is not a new report: no history on it.
        server.send(make_mail(REPORTER, CONDUCT, f"Re: [coc #{fourth.id}] more", "Also this."),
                    REPORTER, [CONDUCT])
        reply = relay.wait_for(lambda c: c.rcpts == [CHAIR] and "Also this." in c.body(),
                               what="the reply relayed")[0]
        assert "other cases" not in reply.body()
