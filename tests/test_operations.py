"""Running mailflow as a mail administrator does: signals, one-line errors, status and
the queue, what the log holds, and `mailflow check` on a deployment's names."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from service import USER, mailflow_for, service_root

from mailflow.testing import (
    M1,
    WAIT,
    CaptureRelay,
    MailflowServer,
    free_port,
    make_mail,
    wait_until,
)

CONDUCT = "conduct@example.org"


def mailflow(*args: str, cwd: Path, user: str | None = None, command: list[str] | None = None,
             stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(command or [sys.executable, "-m", "mailflow"]), *args], cwd=cwd,
                          capture_output=True, timeout=60, user=user, input=stdin, env=env)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    err = result.stderr.decode()
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def report(n: int, body: str = "Someone was rude to me in the chat.") -> bytes:
    return make_mail(f"rita{n}@people.test", CONDUCT, f"Report {n}", body,
                     message_id=f"<report-{n}@people.test>")


# --- the command line -------------------------------------------------------------

def test_config_and_verbose_go_before_or_after_the_subcommand(server):
    server.send(report(1), "rita1@people.test", [CONDUCT])
    server.processed(1)
    base = [sys.executable, "-m", "mailflow"]
    cfg = str(server.config)
    for argv in (["--config", cfg, "cases", "--json"], ["cases", "--config", cfg, "--json"],
                 ["-v", "cases", "--json", "--config", cfg], ["cases", "--json", "-v",
                                                              f"--config={cfg}"]):
        result = subprocess.run([*base, *argv], capture_output=True, cwd=server.tmp, timeout=60)
        assert result.returncode == 0, (argv, result.stderr)
        assert len(json.loads(result.stdout)) == 1, argv
    # Without --config anywhere, ./mailflow.toml of an empty directory is not found:
    # the embedded defaults have no case.
    empty = server.tmp / "elsewhere"
    empty.mkdir()
    result = subprocess.run([*base, "cases", "--json"], capture_output=True, cwd=empty,
                            timeout=60)
    assert json.loads(result.stdout) == []


def write(path: Path, committee: str, intake: str = "") -> Path:
    path.write_text(f"[committee]\n{committee}\n[intake]\n{intake}\n[storage]\n"
                    f'path = "{path.parent / "archive"}"\n')
    return path


ROSTER = ('domain = "conduct.rust-lang.org"\nchair = "ada@rust-lang.org"\n'
          'officers = ["officers@rust-lang.org"]\nboard = ["board@rust-lang.org"]\n')


@pytest.mark.parametrize(("members", "routes", "refused"), [
    # mailflow's own addresses loop, whatever the MTA does.
    (["ada@rust-lang.org", "conduct@conduct.rust-lang.org"], "addresses",
     "conduct@conduct.rust-lang.org is mailflow's own address"),
    (["ada@rust-lang.org", "Committee+x@conduct.rust-lang.org"], "addresses",
     "Committee+x@conduct.rust-lang.org is mailflow's own address"),
    # A member in the conduct domain is lost when the MTA routes all of it to mailflow.
    (["ada@rust-lang.org", "sam@conduct.rust-lang.org"], "domain",
     "sam@conduct.rust-lang.org is in the conduct domain"),
    (["ada@rust-lang.org", "sam@conduct.rust-lang.org"], "addresses", None),
    (["ada@rust-lang.org", "sam@rust-lang.org"], "domain", None),
])
def test_check_refuses_member_addresses_that_route_back_to_mailflow(tmp_path, members, routes,
                                                                      refused):
    cfg = write(tmp_path / "m.toml", ROSTER + f"members = {json.dumps(members)}",
                f'mta_routes = "{routes}"')
    result = mailflow("--config", str(cfg), "check", cwd=tmp_path)
    out = result.stdout.decode()
    if refused:
        assert result.returncode == 78 and f"{cfg}: committee.members: {refused}" in out, out
    else:
        assert result.returncode == 0, out


def test_check_refuses_every_reserved_example_name(tmp_path):
    for domain in ("example.com", "lists.example.net", "conduct.test", "coc.example",
                   "mail.localhost"):
        cfg = write(tmp_path / "m.toml", ROSTER.replace("conduct.rust-lang.org", domain)
                    + 'members = ["ada@rust-lang.org", "kim@example.com"]')
        out = mailflow("--config", str(cfg), "check", cwd=tmp_path).stdout.decode()
        assert f"committee.domain: {domain} is a placeholder" in out
        assert "committee.members: kim@example.com is a placeholder address" in out


# --- one-line errors --------------------------------------------------------------

def test_a_port_in_use_is_one_line_and_nothing_starts(tmp_path, relay):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    server = MailflowServer(tmp_path, relay.port)
    server.config.write_text(server.config.read_text().replace(
        f"127.0.0.1:{server.port}", f"127.0.0.1:{taken.getsockname()[1]}"))
    try:
        result = mailflow("--config", str(server.config), "serve", cwd=tmp_path)
    finally:
        taken.close()
    assert result.returncode == 78
    assert "mailflow serve: cannot listen on 127.0.0.1:" in one_line_error(result)
    assert "the port is in use" in result.stderr.decode()


def test_a_second_server_and_process_refuse_while_serve_runs(server):
    result = mailflow("--config", str(server.config), "serve", cwd=server.tmp)
    assert result.returncode == 78
    assert "another mailflow serve is running on" in one_line_error(result)
    result = server.cli("process", check=False)
    assert result.returncode == 75
    assert ("mailflow process: mailflow serve is running on this archive"
            in one_line_error(result))


def test_an_unreadable_config_is_one_line(tmp_path):
    as_dir = tmp_path / "mailflow.toml"
    as_dir.mkdir()
    result = mailflow("--config", str(as_dir), "cases", cwd=tmp_path)
    assert result.returncode == 78
    assert f"{as_dir}: cannot read it:" in one_line_error(result)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_files_another_user_owns_are_one_line_errors():
    """The config and the archive of root, used by a service user that may not."""
    with service_root() as root:
        command = mailflow_for(USER, root)
        cfg = root / "mailflow.toml"
        cfg.write_text(f'[storage]\npath = "{root / "rootarchive"}"\n')
        result = mailflow("--config", str(cfg), "cases", cwd=root)  # as root: creates it
        assert result.returncode == 0, result.stderr
        # The archive is root's: its user cannot write it.
        result = mailflow("--config", str(cfg), "cases", cwd=root, user=USER, command=command)
        assert result.returncode == 78
        err = one_line_error(result)
        assert "cannot write it" in err or "permission denied" in err, err
        assert f"running as {USER}" in err
        result = mailflow("--config", str(cfg), "ingest", cwd=root, user=USER, command=command,
                          stdin=report(1))
        assert result.returncode == 75
        assert f"{root / 'rootarchive' / 'spool.db'}: cannot write it" in one_line_error(result)
        # A config it may not read.
        cfg.chmod(0o600)
        result = mailflow("--config", str(cfg), "cases", cwd=root, user=USER, command=command)
        assert result.returncode == 78
        assert f"{cfg}: cannot read it: Permission denied" in one_line_error(result)


# --- status and the queue ---------------------------------------------------------

def test_status_and_queue_flush_with_the_relay_down_and_back(tmp_path):
    relay_port = free_port()
    server = MailflowServer(tmp_path, relay_port)
    # Deferred mail waits an hour unless flushed.
    server.config.write_text(server.config.read_text().replace(
        "retry_initial = 0.2", "retry_initial = 3600").replace("retry_max = 0.5",
                                                               "retry_max = 3600"))
    with server.start():
        status = server.cli_json("status")
        assert status["serve"] == {"running": True, "pid": server.proc.pid}
        server.send(report(1), "rita1@people.test", [CONDUCT])
        server.processed(1)
        wait_until(lambda: server.cli_json("status")["outbound"]["deferred"] == 4,
                   what="the acknowledgement and three copies deferred")
        status = server.cli_json("status")
        assert status["spool_backlog"] == 0 and status["quarantined"] == 0
        assert status["outbound"]["due_now"] == 0
        assert "relay unreachable" in status["last_errors"]["delivery"]
        [(clock, due)] = server.query("SELECT clock, due_at FROM alarms WHERE state = "
                                      "'pending' ORDER BY due_at LIMIT 1")
        assert (status["next_clock"]["clock"], status["next_clock"]["due_at"]) == (clock, due)
        text = server.cli("status").stdout.decode()
        assert f"running (pid {server.proc.pid})" in text and "4 deferred" in text
        relay = CaptureRelay(relay_port)
        relay.start()
        try:
            out = server.cli("queue", "flush").stdout.decode()
            assert out.startswith("4 deferred recipient(s) due now")
            relay.wait_for(lambda c: True, count=4, what="the flushed mail")
            wait_until(lambda: server.cli_json("queue") == [], what="the queue to empty")
        finally:
            relay.stop()
    status = json.loads(mailflow("--config", str(server.config), "status", "--json",
                                 cwd=tmp_path).stdout)
    assert status["serve"] == {"running": False, "pid": None}


def test_queue_flush_without_a_server_delivers_itself(tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port)
    cfg = ["--config", str(server.config)]
    mailflow(*cfg, "ingest", "--sender", "rita1@people.test", CONDUCT, cwd=tmp_path,
             stdin=report(1))
    assert json.loads(mailflow(*cfg, "status", "--json", cwd=tmp_path).stdout)[
        "spool_backlog"] == 1
    relay.stop()
    result = mailflow(*cfg, "process", cwd=tmp_path)
    assert b"delivered to 0 recipient(s)" in result.stdout
    relay.start()
    result = mailflow(*cfg, "queue", "flush", cwd=tmp_path)
    assert b"delivered to 4 recipient(s)" in result.stdout, result.stdout


# --- what the log holds -----------------------------------------------------------

SECRET_WORDS = "zanzibar-quartz"


def send_and_log(tmp_path: Path, relay: CaptureRelay, flags: list[str],
                 env: dict[str, str] | None = None) -> str:
    server = MailflowServer(tmp_path, relay.port, env=env,
                            command=[sys.executable, "-m", "mailflow", *flags])
    with server.start():
        server.send(report(7, f"He wrote {SECRET_WORDS} on my door."), "rita7@people.test",
                    [CONDUCT])
        relay.wait_for(lambda c: c.rcpts == ["rita7@people.test"], what="ack")
        server.processed(1)
    return server.log.read_text()


@pytest.mark.parametrize("flags", [[], ["-v"]])
def test_the_log_has_one_line_per_message_and_no_content(tmp_path, relay, flags):
    log = send_and_log(tmp_path, relay, flags)
    lines = [line for line in log.splitlines() if "spool 1 " in line]
    assert len(lines) == 1, log
    assert re.search(r"mf-pipeline mailflow.pipeline INFO spool 1 mta-id - msgid "
                     r"[0-9a-f]{12} case \d{4}-\d{4} \(new\) report: acknowledged, "
                     r"copied to 3 member\(s\)$", lines[0]), lines[0]
    for secret in (SECRET_WORDS, "rita7", "Report 7", "report-7@"):
        assert secret not in log


def test_debug_content_logs_the_mail_and_says_so_loudly(tmp_path, relay):
    log = send_and_log(tmp_path, relay, ["--debug-content"])
    assert "THIS LOG NOW HOLDS THE FULL TEXT OF EVERY MESSAGE" in log.splitlines()[0]
    assert SECRET_WORDS in log


def test_under_systemd_lines_carry_a_priority_and_no_timestamp(tmp_path, relay):
    log = send_and_log(tmp_path, relay, [], env={"JOURNAL_STREAM": "8:12345"})
    lines = [line for line in log.splitlines() if line.strip()]
    assert any(line.startswith("<6>mf-pipeline mailflow.pipeline: spool 1 ") for line in lines)
    assert not [line for line in lines if re.match(r"\d{4}-\d\d-\d\d", line)], lines


# --- signals ----------------------------------------------------------------------

def test_sighup_reloads_a_sound_config_and_keeps_the_old_one_otherwise(server, relay):
    server.send(report(1), "rita1@people.test", [CONDUCT])
    relay.wait_for(lambda c: c.rcpts == ["rita1@people.test"], what="first ack")
    good = server.config.read_text()
    server.config.write_text(good.replace("Test Conduct Committee", "Renamed Committee"))
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded" in server.log.read_text(), what="the reload")
    server.send(report(2), "rita2@people.test", [CONDUCT])
    ack = relay.wait_for(lambda c: c.rcpts == ["rita2@people.test"], what="second ack")[0]
    assert "Renamed Committee" in ack.body()
    # A broken file: the log says why, and the running configuration stays.
    server.config.write_text(good.replace('chair = "chair@example.org"', 'chair = "nobody"'))
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in server.log.read_text(), what="the refusal")
    assert "committee.chair: 'nobody' is not an email address" in server.log.read_text()
    server.send(report(3), "rita3@people.test", [CONDUCT])
    ack = relay.wait_for(lambda c: c.rcpts == ["rita3@people.test"], what="third ack")[0]
    assert "Renamed Committee" in ack.body()
    assert server.proc.poll() is None


def test_sigterm_finishes_what_was_accepted_and_loses_nothing(tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port).start()
    accepted: list[int] = []
    lock = threading.Lock()

    def send(first: int) -> None:
        for n in range(first, first + 10):
            try:
                server.send(report(n), f"rita{n}@people.test", [CONDUCT])
            except (OSError, smtplib.SMTPException):
                return  # the listener closed: the sender's MTA keeps the rest
            with lock:
                accepted.append(n)

    senders = [threading.Thread(target=send, args=(k * 10,)) for k in range(3)]
    for t in senders:
        t.start()
    wait_until(lambda: len(accepted) >= 5, what="some mail accepted")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=WAIT) == 0
    for t in senders:
        t.join()
    log = server.log.read_text()
    assert "mailflow stopped" in log and "killed" not in log
    assert 5 <= len(accepted) < 30
    # Everything answered 250 was committed before the exit.
    assert server.query("SELECT count(*) FROM spool")[0][0] >= len(accepted)
    # Started again, it takes what the senders' MTAs send again (all that was not
    # answered 250) and processes each of the thirty reports once.
    with server.start():
        for n in sorted(set(range(30)) - set(accepted)):
            server.send(report(n), f"rita{n}@people.test", [CONDUCT])
        server.processed(30)
        relay.wait_for(lambda c: c.mail_from == "<>", count=30, what="the acks")
        assert len(server.cli_json("cases")) == 30
    acks = sorted(c.rcpts[0] for c in relay.received if c.mail_from == "<>")
    assert acks == sorted(f"rita{n}@people.test" for n in range(30))


def test_a_member_address_routed_to_mailflow_is_refused_and_logged(server):
    with server.smtp() as s:
        s.ehlo()
        s.mail("someone@people.test")
        code, text = s.rcpt(M1)
    assert code == 550 and b"a committee member's address" in text
    wait_until(lambda: f"refused mail for {M1}, a member's address" in server.log.read_text(),
               what="the error in the log")


def test_the_documented_systemd_unit_is_valid_and_hardened(tmp_path):
    doc = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text()
    [unit] = re.findall(r"```ini\n(.*?)```", doc, re.S)
    for setting in ("User=mailflow", "UMask=0077", "NoNewPrivileges=yes",
                    "ProtectSystem=strict", "PrivateTmp=yes", "ExecReload=/bin/kill -HUP",
                    "KillMode=mixed"):
        assert setting in unit, setting
    # The paths of this checkout for those of the documented installation.
    mailflow_bin = Path(sys.executable).with_name("mailflow")
    path = tmp_path / "mailflow.service"
    path.write_text(unit.replace("/opt/mailflow/venv/bin/mailflow", str(mailflow_bin)))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
