"""The final report: every field the guidelines require, the reporter withheld, the
maintainers told of a ban in force, and no closing before the report was sent."""

from __future__ import annotations

import json
from datetime import timedelta

from casekit import (
    AFFECTED,
    MAINTAINERS,
    OFFICERS,
    ORIGINATOR,
    REPORTER,
    WITNESS,
    draft_ids,
    leaks,
    open_case,
    start_server,
)

from mailflow import timestamps
from mailflow.testing import CHAIR, M1, M2

LOG = "https://chat.example.org/general/2026-05-03 (the channel log)"
WHAT = "Sam Sharp called Rita Moreno's patch garbage and told her to leave"


def test_report_has_every_field_withholds_the_reporter_and_gates_closing(tmp_path, relay):
    server = start_server(tmp_path, relay)
    try:
        case = open_case(server, relay)
        until = (timestamps.now() + timedelta(days=90)).date().isoformat()
        case.command(M1, f"""#what {WHAT}
#channel #general on the project chat
#originator Sam Sharp <{ORIGINATOR}>
#affected Rita Moreno <{REPORTER}>
#affected Ada Ng <{AFFECTED}>
#witness Kim Lo <{WITNESS}>
#violation yes
#ongoing no
#safety no
#public-record {LOG}
#ban originator scope=forum,chat until={until} insults after an earlier warning
""")
        early = case.command(M1, "#report")
        assert "the report needs every determination first; still missing: required " \
               "response" in early
        closing = case.command(CHAIR, "#close")
        assert "the officers' report has not been sent" in closing

        case.command(M1, "#propose temporary ban: 90 days from the forum and the chat")
        case.command(M2, "#vote agree")
        case.command(CHAIR, "#vote agree")
        transcript = case.command(M1, "#report")
        report_id, notice_id = draft_ids(transcript)
        assert "(officers-report to the officers)" in transcript
        assert "(maintainers-notice to the maintainers)" in transcript
        printed = server.cli_json("report", case.id)
        assert printed["missing"] == []
        assert "still undetermined" not in server.cli("report", case.id).stderr.decode()
        assert "the report has not been sent" not in case.confirm(report_id, notice_id)

        [report] = relay.wait_for(lambda c: c.rcpts == [OFFICERS], what="the report")
        body = report.body().replace("\r\n", "\n")
        for field in (
            "1. Where it happened\n#general on the project chat",
            "2. What occurred\nSam Sharp called [the reporter]'s patch garbage and told her "
            "to leave",
            f"Publicly available record:\n  - {LOG}",
            "Code of Conduct violation:        yes",
            f"Originator(s):                    Sam Sharp <{ORIGINATOR}>",
            "Affected party(ies):              the reporter (identity withheld); "
            f"Ada Ng <{AFFECTED}>",
            "Threat to anyone's physical safety: no",
            "Ongoing situation:                no",
            "4. Agreed response\na temporary ban (90 days from the forum and the chat)",
            f"ban of {ORIGINATOR} from forum, chat, until {until} (current)",
        ):
            assert field in body, field
        assert leaks(report) == []
        # `mailflow report` prints exactly what was sent.
        assert printed["mails"][0]["body"].replace("\r\n", "\n") == body
        assert printed["mails"][0]["subject"] == report.msg["Subject"]

        [notice] = relay.wait_for(lambda c: c.rcpts == [MAINTAINERS], what="the notice")
        assert ORIGINATOR in notice.body() and f"until:   {until}" in notice.body()
        assert leaks(notice) == []

        assert "case closed" in case.command(CHAIR, "#close")
        status = json.loads(server.cli("cases", "--json").stdout)[0]["status"]
        assert status == "closed"
    finally:
        server.stop()
