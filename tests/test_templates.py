"""Every templated response rendered for a realistic case and sent over SMTP: the right
recipients, and no identity of the reporter or the witness in what leaves; templates
overridden per deployment; `mailflow check` renders every template."""

from __future__ import annotations

from datetime import timedelta

from casekit import (
    AFFECTED,
    MODERATORS,
    ORIGINATOR,
    PUBLIC,
    REPORTER,
    WITNESS,
    WITNESS_NAME,
    draft_ids,
    leaks,
    open_case,
    start_server,
)

from mailflow import timestamps
from mailflow.testing import CHAIR, M1, M2

PEOPLE = (f"#originator Sam Sharp <{ORIGINATOR}>\n#affected Ada Ng <{AFFECTED}>\n"
          f"#witness {WITNESS_NAME} <{WITNESS}>\n#channel #general on the project chat\n")

# (template, role, fields): every template a member can #send.
SENDS = [
    ("information-request", "witness", "questions: What did you see in #general on 3 May?\n"
                                       "Do you still have the messages?"),
    ("status-update", "reporter", "projected: 2026-12-15\nprogress: We have heard from "
                                  "everyone involved."),
    ("outcome", "reporter", "outcome: The person received a private reprimand and a "
                            "temporary ban."),
    ("notice-to-reporter-severe", "reporter", ""),
    ("notice-to-originator-severe", "originator", "breach: You wrote that a contributor "
                                                  "\"should be hurt\": a personal threat."),
    ("public-reminder", "public", "behaviour: contributors' work was called garbage.\n"
                                  "why: Criticism of code is welcome; contempt drives people "
                                  "away."),
    ("private-reprimand", "originator", "behaviour: You called a patch garbage.\nimpact: A "
                                        "newcomer stopped contributing.\nchange: Criticise "
                                        "code, not people.\nconsequences: A temporary ban."),
    ("public-reprimand", "public", "person: @ssharp\nbehaviour: called a patch garbage.\n"
                                   "impact: That is contempt, not review.\nchange: Review "
                                   "code on its merits."),
    ("apology-request", "originator", "behaviour: Your messages of 3 May.\napology: a private "
                                      "apology to the person affected, through us\n"
                                      "conditions: It is a condition of your continued "
                                      "membership.\nrespond_by: 2026-12-10"),
    ("hiatus", "originator", "kind: mandatory\nuntil: 2026-12-31\nreason: The discussion "
                             "needs to cool down."),
    ("ban-notice", "originator", "conditions: A written commitment to the Code of Conduct."),
    ("leave-event", "originator", "event: the Lyon hackathon\nbehaviour: You shouted at "
                                  "another participant.\nrefund: There is no refund."),
    ("moderator-instruction", "moderators", "actions: Remove the account @ssharp from the "
                                            "forum and the chat today."),
    ("event-incident-report", "witness", "event: the Lyon hackathon"),
    ("review-acknowledgement", "originator", "answer_by: 2026-12-20"),
]
EXPECTED_RCPTS = {"reporter": [REPORTER], "witness": [WITNESS], "originator": [ORIGINATOR],
                  "public": [PUBLIC], "moderators": [MODERATORS]}


def test_every_template_renders_for_a_realistic_case_and_leaves_without_the_reporter(
        tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        until = (timestamps.now() + timedelta(days=90)).date().isoformat()
        case.command(M1, PEOPLE + f"#ban originator scope=forum,chat until={until} insults")
        sends = "".join(f"#send {t} to={role}\n{fields}\n#end\n" for t, role, fields in SENDS)
        transcript = case.command(M2, sends)
        assert "All commands were applied." in transcript, transcript
        ids = draft_ids(transcript)
        assert len(ids) == len(SENDS)
        assert "All commands were applied." in case.confirm(*ids)

        subjects = dict(server.query("SELECT id, subject FROM drafts"))
        for draft_id, (template, role, _) in zip(ids, SENDS, strict=True):
            sent = relay.wait_for(lambda c, s=subjects[draft_id]: c.msg["Subject"] == s
                                  and c.mail_from == "conduct@example.org", what=template)
            mail = next(c for c in sent if not set(c.rcpts) & {CHAIR, M1, M2})
            assert sorted(mail.rcpts) == sorted(EXPECTED_RCPTS[role]), template
            if template == "private-reprimand":  # the committee in copy: a copy each
                copies = relay.wait_for(lambda c, mid=mail.msg["Message-ID"], first=mail: c.msg[
                    "Message-ID"] == mid and c is not first, count=3, what="the copies")
                assert sorted(r for c in copies for r in c.rcpts) == [CHAIR, M1, M2]
            assert leaks(mail) == [], template
            assert "{{" not in mail.body() and "not yet determined" not in mail.body(), template
        ban = relay.wait_for(lambda c: "temporary ban from forum, chat" in c.msg["Subject"],
                             what="the ban notice")[0]
        assert f"until {until}" in ban.body() and "conduct+" in ban.body()


def test_a_deployment_overrides_a_template_and_check_renders_every_one(tmp_path, relay):
    own = tmp_path / "own-templates"
    own.mkdir()
    (own / "outcome.txt").write_text("Subject: {{ tag }} Our decision\n\n{{ greeting }}\n\n"
                                     "{{ outcome }}\n-- \n{{ committee.name }}\n")
    config_extra = f'[paths]\ntemplates = "{own}"\n'
    with start_server(tmp_path, relay, extra=config_extra) as server:
        # The overrides are sound (the harness's example.org names are what check refuses).
        out = server.cli("check", check=False).stdout.decode()
        assert "is a placeholder" in out and str(own) not in out
        case = open_case(server, relay)
        [draft] = draft_ids(case.command(M1, "#send outcome to=reporter\noutcome: We decided "
                                             "on a private reprimand.\n#end\n"))
        case.confirm(draft)
        mail = relay.wait_for(lambda c: c.mail_from == "conduct@example.org", what="outcome")[0]
        assert mail.msg["Subject"].endswith("Our decision")
        assert mail.body().startswith("Dear Rita Moreno,")

        # A broken override is named by `mailflow check`, file and problem.
        (own / "outcome.txt").write_text("Subject: {{ tag }}\nBcc: {{ outcome }}\n\nbody\n")
        (own / "hiatus.txt").write_text("Subject: x\n\n{% if %}\n")
        result = server.cli("check", check=False)
        out = result.stdout.decode()
        assert result.returncode == 78
        assert f"{own}/outcome.txt: template outcome: refused: a line break in the Subject" in out
        assert f"{own}/hiatus.txt: line 3:" in out
