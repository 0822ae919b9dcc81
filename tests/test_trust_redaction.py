"""Redaction matches on normalised text, over real SMTP: a draft that would name the
reporter to someone outside the committee is refused however the name is spelled:
an RFC 2047 encoded word in the Subject, NFD letters, a zero-width space, a soft
hyphen, a name wrapped over a line, the unaccented lower-case spelling, full-width
letters, look-alike letters of another script."""

from __future__ import annotations

from casekit import ORIGINATOR, Case, draft_ids, start_server

from mailflow.testing import M1, make_mail

REPORTER, NAME = "zoe.liddell@people.test", "Zoë Liddell"
DRAFT = f"""#originator Sam Sharp <{ORIGINATOR}>
#send private-reprimand to=originator
behaviour: On 3 May in #general you called another contributor's patch "garbage".
impact: Newcomers read that thread.
change: Criticise code, not people.
consequences: A further incident may lead to a temporary ban.
#end
"""
CLEAN = "Dear Sam,\n\nPlease keep to the Code of Conduct.\n"
SPELLINGS = {
    "an encoded word in the Subject": "Subject: =?utf-8?q?About_Zo=C3=AB_Liddell?=\n" + CLEAN,
    "a split encoded word": "Subject: =?utf-8?q?About_Zo?= =?utf-8?q?=C3=AB_Liddell?=\n" + CLEAN,
    "NFD letters": CLEAN + "Zoe\u0308 Liddell told us.\n",
    "a zero-width space": CLEAN + "Zo\u200bë Liddell told us.\n",
    "a soft hyphen": CLEAN + "Zoë Lid\u00addell told us.\n",
    "a name wrapped over a line": CLEAN + "As Zoë\nLiddell told us.\n",
    "the unaccented lower-case spelling": CLEAN + "as zoe liddell told us.\n",
    "full-width letters": CLEAN + "As ＺＯＥ ＬＩＤＤＥＬＬ told us.\n",
    "Cyrillic look-alikes": CLEAN + "As Zое Liddеll told us.\n",
    "the address in capitals": CLEAN + "Write to ZOE.LIDDELL@PEOPLE.TEST.\n",
    "the surname alone": CLEAN + "Ms Lіddell told us.\n",
}


def test_redaction_refuses_every_spelling_of_the_reporters_name(tmp_path, relay):
    server = start_server(tmp_path, relay)
    try:
        server.send(make_mail(REPORTER, "conduct@example.org", "Insults",
                              "Sam Sharp called my patch garbage.", name=NAME),
                    REPORTER, ["conduct@example.org"])
        ack = relay.wait_for(lambda c: REPORTER in c.rcpts, what="the acknowledgement")[0]
        case = Case(server, relay, ack.msg["X-Mailflow-Case"])
        [draft] = draft_ids(case.command(M1, DRAFT))
        for what, text in SPELLINGS.items():
            transcript = case.command(M1, f"#edit {draft}\n{text}#end")
            assert "refused: the text names people whose identity is protected" in transcript, \
                what
            assert "Nothing in this message was applied." in transcript, what
        accepted = case.command(M1, f"#edit {draft}\n{CLEAN}#end")
        assert f"draft {draft} replaced by draft" in accepted
        assert not relay.to(ORIGINATOR)
    finally:
        server.stop()
