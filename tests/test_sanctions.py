"""The ban and warning registry: bans expire by their date and stay for review; the
third warning for a person, across cases, flags the case."""

from __future__ import annotations

import json
from datetime import timedelta

from casekit import ORIGINATOR, open_case, start_server

from mailflow import timestamps
from mailflow.testing import M1, M2

TROLL = "troll@people.test"


def test_a_ban_expires_by_its_date_and_stays_in_the_registry(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        today = timestamps.now().date()
        until = (today + timedelta(days=10)).isoformat()
        applied = case.command(M1, f"#originator Sam Sharp <{ORIGINATOR}>\n"
                                   f"#ban originator scope=Forum,chat until={until} insults\n"
                                   f"#ban {TROLL} scope=all until=permanent spam after warnings")
        assert f"ban 1 recorded: {ORIGINATOR} from forum, chat, {today} to {until}" in applied
        assert f"ban 2 recorded: {TROLL} from all community spaces" in applied
        refused = case.command(M2, "#ban originator scope=forum insults")
        assert "#ban needs until=" in refused
        refused = case.command(M2, f"#ban originator scope=forum until={today} insults")
        assert "the ban would end" in refused

        now = server.cli_json("bans")["bans"]
        assert [(b["person"], b["status"], b["case_id"]) for b in now] == [
            (ORIGINATOR, "current", case.id), (TROLL, "current", case.id)]
        assert now[0]["reason"] == "insults" and now[1]["end"] == "permanent"

        # Eleven days on, the temporary ban has expired by itself; nothing was deleted.
        later = (today + timedelta(days=11)).isoformat() + "T12:00:00Z"
        server.env["MAILFLOW_FAKE_NOW"] = later
        data = server.cli_json("bans")
        assert [(b["person"], b["status"]) for b in data["bans"]] == [
            (TROLL, "current"), (ORIGINATOR, "expired")]
        text = server.cli("bans").stdout.decode()
        current, past = text.split("Past bans:")
        assert TROLL in current and ORIGINATOR in past
        del server.env["MAILFLOW_FAKE_NOW"]

        # Lifting a ban early (after a review) keeps it, marked lifted.
        assert "ban 2 lifted" in case.command(M1, "#unban 2 review found it disproportionate")
        data = server.cli_json("bans")
        assert {b["person"]: b["status"] for b in data["bans"]}[TROLL] == "lifted"


def test_the_third_warning_across_cases_flags_the_case(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        results = []
        for n in range(3):
            case = open_case(server, relay, body=f"Report number {n}: Sam insulted me again.")
            results.append(case.command(M1, f"#originator Sam <{ORIGINATOR}>\n"
                                            f"#warn originator insults, report {n}"))
        assert f"warning 1 recorded for {ORIGINATOR}" in results[0]
        assert f"warning 2 recorded for {ORIGINATOR}" in results[1]
        assert "flagged" not in results[0] + results[1]
        assert (f"warning 3 recorded for {ORIGINATOR}. The case is flagged: three warnings: "
                "any action may be taken") in results[2]
        flags = server.query("SELECT case_id, flag FROM case_flags")
        assert flags == [(case.id, "three warnings: any action may be taken")]
        warnings = json.loads(server.cli("bans", "--json").stdout)["warnings"]
        assert warnings == [{"person": ORIGINATOR, "count": 3, "flagged": True,
                             "cases": warnings[0]["cases"]}]
        assert len(warnings[0]["cases"]) == 3
        assert "FLAGGED" in server.cli("bans").stdout.decode()
        # The members deciding the case are told.
        relay.wait_for(lambda c: c.rcpts == [M2] and "Three warnings: any action may be taken"
                       in c.msg["Subject"], what="the notice to the committee")
