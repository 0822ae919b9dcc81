"""The documentation keeps up with the code: the README, `mailflow help`, `mailflow
parts` and the registry (mailflow/app.py) name the same handlers, the same #commands
and the same subcommands, and every subcommand and #command documents itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from mailflow import app
from mailflow.cli import parser as cli

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def mailflow(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "mailflow", *args], capture_output=True,
                          cwd=REPO, check=True, timeout=60).stdout.decode()


def test_the_readme_lists_the_handlers_in_the_order_they_run():
    listed = re.findall(r"^\d+\. `([\w.]+)`", section("How mail flows"), re.M)
    running = [f"{h.__module__.rpartition('.')[2]}.{h.__name__}" for h in app.HANDLERS]
    assert listed == running
    parts = json.loads(mailflow("parts", "--json"))
    assert [h["name"] for h in parts["handlers"]] == running
    assert all(h["does"] for h in parts["handlers"]), "a handler without a docstring"


def test_the_readme_and_mailflow_help_name_every_command_and_no_other():
    known = set(app.COMMANDS)
    documented = set(re.findall(r"`#([a-z][a-z-]*)", section("The committee's work, by mail")))
    assert documented - {"end"} == known
    text = mailflow("help")
    for word, spec in app.COMMANDS.items():
        assert spec.usage.splitlines()[0] in text, word
        assert spec.summary and spec.example, word


def test_every_subcommand_is_in_the_readme_and_documents_itself():
    table = section("The mailflow command")
    for func in cli.COMMANDS:
        spec = cli.spec(func)
        assert f"`mailflow {spec.name}" in table, spec.name
        assert func.__doc__ and spec.summary, spec.name
        assert spec.name.split()[0] in mailflow("--help")


def test_the_design_briefs_cli_is_all_there():
    names = {cli.spec(f).name for f in cli.COMMANDS}
    for name in ("init", "serve", "ingest", "poll", "import", "cases", "case show", "search",
                 "report", "bans", "deadlines", "audit verify", "check", "demo", "queue"):
        assert name in names, name
