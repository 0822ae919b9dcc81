"""The command language over real SMTP: transcripts, errors, all-or-nothing, who may."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from casekit import ORIGINATOR, open_case, start_server

from mailflow import app
from mailflow.testing import CHAIR, M1, M2

REPO = Path(__file__).resolve().parent.parent


def applied(server, case_id: str) -> dict:
    rows = server.query("SELECT what_happened, channel, violation, ongoing, safety "
                        "FROM case_record WHERE case_id = ?", (case_id,))
    people = server.query("SELECT role, address, name FROM people WHERE case_id = ? AND role "
                          "NOT IN ('reporter') ORDER BY id", (case_id,))
    return {"record": rows, "people": people,
            "proposals": server.query("SELECT count(*) FROM proposals")[0][0],
            "notes": server.query("SELECT count(*) FROM notes")[0][0]}


def test_each_command_line_is_echoed_with_its_result(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        t = case.command(M1, "Some words first; they are not commands.\n\n"
                             "#what Sam called a patch garbage\n"
                             "#channel #general on the chat\n"
                             "#violation yes\n#ongoing no\n#safety no\n"
                             f"#originator Sam Sharp <{ORIGINATOR}>\n"
                             "#affected Ada\n#witness kim.lo@people.test\n"
                             "#remove witness kim.lo@people.test\n"
                             "#note\nThe moderators removed the posts.\n#end\n"
                             "#call 2026-01-05 Ada, the moderators\nAda is fine.\n#end\n"
                             "#propose no action: resolved publicly already\n"
                             "#end\n#violation no\n"
                             "> #close (quoted, never read)\n")
        expected = [
            ("#what Sam called a patch garbage", "recorded what happened"),
            ("#channel #general on the chat", "channel or event: #general on the chat"),
            ("#violation yes", "violation: yes"),
            ("#ongoing no", "ongoing: no"),
            ("#safety no", "threat to physical safety: no"),
            (f"#originator Sam Sharp <{ORIGINATOR}>", f"originator: Sam Sharp <{ORIGINATOR}>"),
            ("#affected Ada", "affected: Ada"),
            ("#witness kim.lo@people.test", "witness: kim.lo@people.test"),
            ("#remove witness kim.lo@people.test", "removed kim.lo@people.test as witness"),
            ("#note", "note #1 filed"),
            ("#call 2026-01-05 Ada, the moderators",
             "call summary #2 filed (call of 2026-01-05 with Ada, the moderators)"),
            ("#propose no action: resolved publicly already",
             "proposal #1: no further action (resolved publicly already); waiting for "
             f"{CHAIR}, {M2}"),
        ]
        lines = t.replace("\r\n", "\n")
        for line, result in expected:
            assert f"> {line}\n{result}\n" in lines, line
        assert lines.count("> ") == len(expected)  # nothing after #end, nothing quoted
        assert lines.rstrip().endswith("All commands were applied.")
        assert applied(server, case.id)["record"] == [
            ("Sam called a patch garbage", "#general on the chat", "yes", "no", "no")]

        t = case.command(M2, "#status")
        assert "Still undetermined:   required response" in t
        assert "#1 no further action (resolved publicly already): open" in t
        assert "call of 2026-01-05 with m1@example.org, Ada, the moderators" in t
        t = case.command(M2, "#help")
        assert "#vote [<proposal>] agree|object|abstain [comment]" in t and "e.g. #vote object" in t
        t = case.command(CHAIR, f"#chair {M2}\n#recuse I was on that call")
        assert f"> #chair {M2}\r\n{M2} chairs this case" in t
        assert f"{CHAIR} is recused (I was on that call)" in t


def test_errors_and_all_or_nothing(tmp_path, relay):
    with start_server(tmp_path, relay) as server:
        case = open_case(server, relay)
        before = applied(server, case.id)
        t = case.command(M1, "#violation yes\n#originator sam@x.test\n#propose reprimand\n"
                             "#safety no")
        assert "> #violation yes\r\nundone: violation: yes" in t
        assert "> #originator sam@x.test\r\nundone: originator: sam@x.test" in t
        assert "> #propose reprimand\r\nError: 'reprimand' is not on the menu of responses" in t
        assert "> #safety no\r\nnot run" in t
        assert "Nothing in this message was applied." in t
        assert applied(server, case.id) == before

        # Unknown words are errors too, and stop everything else.
        t = case.command(M1, "#violation yes\n#violaton no")
        assert "unknown command #violaton" in t and "> #violation yes\r\nnot run" in t
        assert applied(server, case.id) == before

        # Bad arguments, the wrong state, the wrong person.
        errors = {
            "#violation maybe": "#violation takes yes or no",
            "#vote agree": "there is no open proposal",
            "#reopen": "#reopen is not possible while the case is open",
            "#close": "only the chair may use #close",
            "#enact": "only the chair may use #enact",
            "#call someday Ada\nsummary\n#end": "'someday' is not a date",
            "#call today Ada\n#end": "the summary is empty",
            "#chair nobody@example.org": "nobody@example.org is not a committee member",
            "#signoff": "there is nothing to sign off",
            "#mediate Mia <mia@m.test>": "no originator with an address",
            "#severe all": "use #severe <channels or all>: <what qualified",
            "#severe all: threats": "record the originator first",
            "#remove originator nobody": "nobody recorded as originator matches",
        }
        for text, error in errors.items():
            t = case.command(M1, text)
            assert f"Error: {error}" in t, text
        assert applied(server, case.id) == before

        # The chair may close, once nothing blocks it.
        assert "Error: the case cannot close yet" in case.command(CHAIR, "#close done")


def test_mailflow_help_documents_every_command():
    out = subprocess.run([sys.executable, "-m", "mailflow", "help"], capture_output=True,
                         cwd=REPO, check=True, timeout=60).stdout.decode()
    for spec in app.COMMANDS.values():
        assert f"\n{spec.usage.splitlines()[0]}" in out, spec.word
        assert f"e.g. {spec.example.splitlines()[0]}" in out, spec.word
    assert "#close [why]   (chair, case open)" in out
    assert "Event incident reports" in out
