"""The command line an administrator meets first: init, check, and the read side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from importkit import loaded

from mailflow.testing import make_mail


def mailflow(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailflow", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_init_writes_a_starter_config_whose_placeholders_check_refuses(tmp_path):
    result = mailflow("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "mailflow.toml"
    text = path.read_text()
    assert "[committee]" in text and "# relay" in text
    assert (tmp_path / "archive" / "mailflow.db").exists()
    # ./mailflow.toml is found without --config; the example.org names are refused.
    check = mailflow("check", cwd=tmp_path)
    assert check.returncode == 78
    assert f"{path}: committee.domain: example.org is a placeholder" in check.stdout
    assert f"{path}: committee.members: m1@example.org is a placeholder address" in check.stdout
    # With the committee's own names, and the MTA routing only mailflow's addresses
    # (members live in the conduct domain), it passes.
    path.write_text(text.replace("example.org", "conduct.rust-lang.test.org").replace(
        '# mta_routes = "addresses"', 'mta_routes = "addresses"'))
    check = mailflow("check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "valid" in check.stdout
    again = mailflow("init", cwd=tmp_path)
    assert again.returncode != 0 and "--force" in again.stderr


def test_check_names_the_file_the_key_and_the_problem(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[committee]\nchair = "nobody@example.org"\ncolour = "blue"\n')
    result = mailflow("--config", str(cfg), "check", cwd=tmp_path)
    assert result.returncode == 78
    assert f"{cfg}: committee.colour: unknown key" in result.stderr
    cfg.write_text('[committee]\nchair = "nobody@example.org"\n')
    result = mailflow("--config", str(cfg), "check", cwd=tmp_path)
    assert result.returncode == 78
    assert "committee.chair: nobody@example.org must also be in committee.members" in result.stderr
    cfg.write_text('[intake]\nmax_size = "big"\n')
    result = mailflow("--config", str(cfg), "check", cwd=tmp_path)
    assert "intake.max_size: expected int, got str" in result.stderr
    cfg.write_text('[intake]\nstage_priority = "high"\n')
    result = mailflow("--config", str(cfg), "check", cwd=tmp_path)
    assert "intake.stage_priority: must be one of idle, low, normal" in result.stderr


def test_check_names_a_broken_template_and_its_line(tmp_path):
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "acknowledgement.txt").write_text("Subject: hi\n\nline two\n{% if %}\n")
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[paths]\ntemplates = "{templates}"\n[storage]\npath = "{tmp_path}/a"\n')
    result = mailflow("--config", str(cfg), "check", cwd=tmp_path)
    assert result.returncode == 78
    assert f"{templates / 'acknowledgement.txt'}: line 4:" in result.stdout


def test_config_from_the_environment_variable(tmp_path):
    cfg = tmp_path / "env.toml"
    cfg.write_text('[committee]\nname = "From The Environment"\n[storage]\npath = "a"\n')
    env = {**__import__("os").environ, "MAILFLOW_CONFIG": str(cfg)}
    result = mailflow("cases", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0 and json.loads(result.stdout) == []
    assert (tmp_path / "a" / "mailflow.db").exists()  # relative to the config file


def test_case_show_lists_people_messages_and_what_was_sent(server, relay):
    sender = "reporter@people.test"
    server.send(make_mail(sender, "conduct@example.org", "Show me", "Details.", name="Rae"),
                sender, ["conduct@example.org"])
    relay.wait_for(lambda c: sender in c.rcpts, what="ack")
    case_id = server.cli_json("cases")[0]["id"]
    server.processed(1)
    case = server.cli_json("case", "show", case_id)
    assert case["people"][0] == {"role": "reporter", "address": sender, "name": "Rae"}
    assert [m["kind"] for m in case["messages"]] == ["report"]
    assert {s["kind"] for s in case["sent"]} >= {"ack", "relay"}
    text = server.cli("case", "show", case_id).stdout.decode()
    assert f"Case {case_id}" in text and "reporter" in text and "ack" in text
    missing = server.cli("case", "show", "1999-0001", check=False)
    assert missing.returncode != 0 and b"no case" in missing.stderr


# What the pipe and the read commands must never load: libraries only the pipeline, the
# listener or a template needs, and the registry, which imports every part.  Structural,
# so that a stray import at the top of a module cannot undo the start-up figures
# (bench/README.md) unnoticed; the figures themselves are the benchmark's.
PIPELINE_ONLY = ("jinja2", "dkim", "dns", "flufl", "selectolax", "imapclient", "aiosmtpd",
                 "uvloop", "gnupg", "mailflow.app", "mailflow.mail.parse",
                 "mailflow.pipeline.runner")


def test_the_pipe_and_the_read_commands_load_only_what_they_use(tmp_path):
    assert mailflow("init", cwd=tmp_path).returncode == 0
    config = str(tmp_path / "mailflow.toml")
    ingest = loaded("--config", config, "ingest", "--sender", "a@people.test",
                    "conduct@example.org", cwd=tmp_path,
                    stdin="From: a@people.test\r\nSubject: hi\r\n\r\nhello\r\n")
    assert "mailflow.intake.spool" in ingest  # the measure sees what was loaded
    assert ingest & {*PIPELINE_ONLY, "email", "logging", "asyncio", "mailflow.store.db"} == set()
    for command in (["cases"], ["deadlines"], ["search", "harassment"]):
        modules = loaded("--config", config, *command, cwd=tmp_path)
        assert "mailflow.store.db" in modules
        assert modules & set(PIPELINE_ONLY) == set(), command
