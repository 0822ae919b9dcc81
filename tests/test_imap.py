"""IMAP intake against a real Dovecot on loopback (tests/dovecot.py): real ``mailflow
poll`` and ``mailflow serve`` processes, acknowledgements caught by a real SMTP relay."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dovecot import PASSWORD, USER, Dovecot, make_certificate

from mailflow import config
from mailflow.intake import imap
from mailflow.intake.imap import CRASH_AFTER_COMMIT
from mailflow.testing import MEMBERS, CaptureRelay, MailflowServer, make_mail, wait_until

PASSWORD_ENV = "MAILFLOW_TEST_IMAP_PASSWORD"
EX_TEMPFAIL, EX_CONFIG = 75, 78


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def start_dovecot(certificate: tuple[Path, Path]) -> Iterator[Callable[..., Dovecot]]:
    """Start a Dovecot (``capability`` overrides what it announces); all stop at teardown."""
    started: list[Dovecot] = []

    def start(capability: str | None = None) -> Dovecot:
        started.append(Dovecot(*certificate, capability=capability))
        return started[-1].start()

    yield start
    for server in started:
        print(server.logs()[-20000:])  # shows in pytest's report if the test failed
        server.close()


@pytest.fixture
def dovecot(start_dovecot: Callable[..., Dovecot]) -> Dovecot:
    return start_dovecot()


def mailflow(tmp: Path, dovecot: Dovecot, relay: CaptureRelay | None = None,
             password: str = PASSWORD, **overrides: object) -> MailflowServer:
    """A mailflow whose config polls the Dovecot; ``overrides`` of [intake.imap] keys."""
    keys: dict[str, object] = {
        "host": "127.0.0.1", "port": dovecot.imaps_port, "tls": "implicit",
        "ca_file": str(dovecot.cert), "user": USER, "password_env": PASSWORD_ENV,
        # Long enough that only an IDLE notification can explain a quick pickup.
        "idle_renew": 600, "poll_interval": 600,
        "reconnect_min": 0.1, "reconnect_max": 0.5, "timeout": 5,
    }
    keys.update(overrides)
    table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items() if v is not None)
    return MailflowServer(tmp, relay.port if relay else None, extra=f"[intake.imap]\n{table}\n",
                          env={PASSWORD_ENV: password})


def delivered(sender: str, subject: str, body: str, to: str = "conduct@example.org",
              headers: dict[str, str] | None = None) -> bytes:
    """A message as local delivery leaves it in a mailbox: Return-Path, Delivered-To."""
    return (f"Return-Path: <{sender}>\r\nDelivered-To: {to}\r\n".encode()
            + make_mail(sender, to, subject, body, headers=headers))


def spool(server: MailflowServer) -> list[tuple]:
    return server.query("SELECT id, source, envelope_from, rcpts, duplicates FROM spool "
                        "ORDER BY id")


def finish(server: MailflowServer) -> None:
    """Stop ``mailflow serve``; its log shows in pytest's report if the test failed."""
    server.stop()
    print(server.log.read_text(errors="replace")[-20000:])


def poller_crashed(serve_log: str) -> bool:
    """An exception escaped the poller's stage, or its last-resort handler caught one."""
    return "Process mailflow-imap:" in serve_log or "IMAP poller failed" in serve_log


def poll(server: MailflowServer, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailflow", "--config", str(server.config),
                           "poll"], capture_output=True, env={**server.env, **env},
                          cwd=server.tmp, timeout=60)


def test_mailbox_messages_become_acknowledged_cases_and_move(tmp_path, relay, dovecot):
    reporters = ["rita@people.test", "sam@people.test"]
    for n, who in enumerate(reporters):
        dovecot.append(delivered(who, f"Report {n}", f"What happened to me, part {n}."))
    server = mailflow(tmp_path, dovecot, relay).start()
    try:
        acks = relay.wait_for(lambda c: c.rcpts[0] in reporters, count=2, what="acks")
        relay.wait_for(lambda c: c.rcpts[0] in MEMBERS, count=2 * len(MEMBERS), what="relay")
        wait_until(lambda: dovecot.count("INBOX") == 0, what="INBOX emptied")
        processed = dovecot.messages("Processed")
        assert len(processed) == 2
        # Fetched with BODY.PEEK[]: the committee's mailbox still shows them unread.
        assert all(b"\\Seen" not in m[b"FLAGS"] for m in processed.values())
        rows = spool(server)
        assert [(r[1], r[2], json.loads(r[3])) for r in rows] == [
            ("imap", who, ["conduct@example.org"]) for who in reporters]
        assert all(a.mail_from == "<>" and a.msg["Auto-Submitted"] == "auto-replied"
                   for a in acks)

        # The reporter answers the acknowledgement; the answer also arrives by IMAP and
        # threads into the case exactly as it would by SMTP.
        ack = next(a for a in acks if a.rcpts == [reporters[0]]).msg
        dovecot.append(delivered(reporters[0], f"Re: {ack['Subject']}", "One more detail.",
                                 to=ack["Reply-To"], headers={"In-Reply-To": ack["Message-ID"]}))
        server.processed(3)
        assert len(server.cli_json("cases")) == 2
        kinds = server.query("SELECT case_id, kind FROM messages ORDER BY id")
        assert kinds[2] == (ack["X-Mailflow-Case"], "reply")
    finally:
        finish(server)


def test_message_delivered_while_idling_is_taken_within_seconds(tmp_path, relay, dovecot):
    dovecot.append(delivered("first@people.test", "First", "Before the poller started."))
    server = mailflow(tmp_path, dovecot, relay).start()
    try:
        wait_until(lambda: len(spool(server)) == 1 and dovecot.count("INBOX") == 0,
                   what="first message taken")
        dovecot.append(delivered("second@people.test", "Second", "While it idles."))
        # Within seconds (WAIT), while idle_renew and poll_interval are 600 s: only the
        # IDLE notification can explain it.
        wait_until(lambda: dovecot.count("Processed") == 2, what="IDLE pickup")
        relay.wait_for(lambda c: c.rcpts == ["second@people.test"], what="ack of the second")
    finally:
        finish(server)


def test_change_reported_with_the_idle_continuation_is_not_missed(tmp_path, dovecot,
                                                                  monkeypatch):
    # A message arriving between the poller's last command and its IDLE is reported
    # right after "+ idling", in the same packet: it sits in imaplib's buffer, where
    # IMAPClient.idle_check (polling the socket only) does not look.
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = mailflow(tmp_path, dovecot, idle_renew=5)  # bounds the wait should it fail
    poller = imap.Poller(config.load(str(server.config)))
    with poller._session() as session:
        poller._pass(session)
        dovecot.append(delivered("rita@people.test", "Report", "Just in time."))
        started = time.monotonic()
        poller._wait(session.client)
        assert time.monotonic() - started < 2
        assert poller._pass(session).new == 1


def test_poller_killed_between_commit_and_move_creates_no_duplicate(tmp_path, dovecot):
    dovecot.append(delivered("rita@people.test", "Report", "Please help."))
    server = mailflow(tmp_path, dovecot)
    # The crash-simulation point: SIGKILL right after the commit, before the move.
    crashed = poll(server, **{CRASH_AFTER_COMMIT: "1"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    assert len(spool(server)) == 1
    assert dovecot.count("INBOX") == 1 and dovecot.count("Processed") == 0

    again = poll(server)
    assert again.returncode == 0, again.stderr.decode()
    assert b"took 0 new message(s), 1 already taken" in again.stdout
    assert dovecot.count("INBOX") == 0 and dovecot.count("Processed") == 1
    rows = spool(server)
    assert len(rows) == 1 and rows[0][4] == 1  # read again, recognised as the same
    server.cli("process")
    assert len(server.cli_json("cases")) == 1
    assert server.query("SELECT count(*) FROM outbound WHERE kind = 'ack'") == [(1,)]


def test_recreated_folder_with_new_uidvalidity_creates_no_duplicates(tmp_path, dovecot):
    dovecot.create("Reports")
    old = [delivered(f"r{n}@people.test", f"Report {n}", f"Body {n}.") for n in range(2)]
    for raw in old:
        dovecot.append(raw, "Reports")
    server = mailflow(tmp_path, dovecot, folder="Reports")
    assert b"took 2 new message(s)" in poll(server).stdout
    validity = dovecot.uidvalidity("Reports")

    # The folder is deleted and recreated (say, restored from a backup): UIDs start
    # again at 1.  The new report gets UID 1, below the UIDs recorded before, so only
    # the UIDVALIDITY check finds it; the restored copies must not become cases again.
    dovecot.delete("Reports")
    dovecot.create("Reports")
    assert dovecot.uidvalidity("Reports") != validity
    assert dovecot.append(delivered("new@people.test", "Another", "Fresh."), "Reports") == 1
    for raw in old:
        dovecot.append(raw, "Reports")
    result = poll(server)
    assert b"took 1 new message(s), 2 already taken" in result.stdout
    assert b"UIDVALIDITY" in result.stderr
    assert dovecot.count("Reports") == 0 and dovecot.count("Processed") == 5
    server.cli("process")
    assert len(server.cli_json("cases")) == 3


def test_dovecot_restart_during_idle_reconnects_and_takes_what_arrived(tmp_path, relay,
                                                                       dovecot):
    dovecot.append(delivered("first@people.test", "First", "Before the restart."))
    server = mailflow(tmp_path, dovecot, relay).start()
    try:
        wait_until(lambda: dovecot.count("Processed") == 1, what="first message taken")
        dovecot.stop()
        assert poll(server).returncode == EX_TEMPFAIL  # `mailflow poll`: try again later
        # Local delivery goes on while the IMAP server is down.
        dovecot.deliver_to_maildir(delivered("second@people.test", "Second", "Meanwhile."))
        dovecot.start()
        wait_until(lambda: dovecot.count("Processed") == 2, what="taken after the restart")
        dovecot.append(delivered("third@people.test", "Third", "After the restart."))
        wait_until(lambda: dovecot.count("Processed") == 3, what="IDLE again")
        server.processed(3)
        relay.wait_for(lambda c: c.rcpts[0].endswith("@people.test"), count=3, what="acks")
        log = server.log.read_text()
        assert "reconnecting in" in log and not poller_crashed(log), log
    finally:
        finish(server)


@pytest.mark.parametrize("problem", ["password", "certificate"])
def test_wrong_password_or_untrusted_certificate_is_one_clear_error(tmp_path, dovecot, problem):
    if problem == "password":
        server = mailflow(tmp_path, dovecot, password="wrong", reconnect_max=1.0)
        expected = f"IMAP login as {USER} at 127.0.0.1:{dovecot.imaps_port} refused: " \
                   "[AUTHENTICATIONFAILED]"
    else:  # no ca_file: the system's CAs do not know our self-signed certificate
        server = mailflow(tmp_path, dovecot, ca_file=None, reconnect_max=1.0)
        expected = f"TLS certificate of 127.0.0.1:{dovecot.imaps_port} not trusted: " \
                   "self-signed certificate; for a private CA set intake.imap.ca_file"
    dovecot.append(delivered("rita@people.test", "Report", "Please help."))

    once = poll(server)
    assert once.returncode == EX_CONFIG
    assert expected in once.stderr.decode() and b"Traceback" not in once.stderr

    # `mailflow serve` logs the same line, keeps running (SMTP intake is unaffected) and
    # retries only every reconnect_max (1 s here): no crash loop, no hammering.
    server.start()
    try:
        wait_until(lambda: expected in server.log.read_text(), what="the error in the log")
        time.sleep(2)
        assert server.proc and server.proc.poll() is None
        log = server.log.read_text()
        assert not poller_crashed(log) and log.count(expected) <= 4, log
        assert dovecot.count("INBOX") == 1
        server.send(make_mail("sam@people.test", "conduct@example.org", "By SMTP", "Still."),
                    "sam@people.test", ["conduct@example.org"])
        server.processed(1)
    finally:
        finish(server)


def test_starttls_and_password_file(tmp_path, dovecot):
    secret = tmp_path / "imap-password"
    secret.write_text(PASSWORD + "\n")
    dovecot.append(delivered("rita@people.test", "Report", "Please help."))
    server = mailflow(tmp_path, dovecot, tls="starttls", port=dovecot.imap_port,
                      password_env=None, password_file=str(secret))
    result = poll(server)
    assert result.returncode == 0, result.stderr.decode()
    assert dovecot.count("Processed") == 1


@pytest.mark.parametrize("capability", ["IMAP4rev1 UIDPLUS", "IMAP4rev1"])
def test_servers_without_move(tmp_path, start_dovecot, capability):
    dovecot = start_dovecot(capability)
    for n in range(2):
        dovecot.append(delivered(f"r{n}@people.test", f"Report {n}", f"Body {n}."))
    server = mailflow(tmp_path, dovecot)
    assert b"took 2 new message(s)" in poll(server).stdout
    if "UIDPLUS" in capability:  # COPY, \Deleted, UID EXPUNGE of exactly those
        assert dovecot.count("INBOX") == 0 and dovecot.count("Processed") == 2
    else:  # nothing safe to move with: the messages stay, and are not read again
        assert dovecot.count("INBOX") == 2
        # Guards the pitfall: "UID 3:*" still answers UID 2, the highest.
        assert b"took 0 new message(s), 0 already taken" in poll(server).stdout
    assert [r[4] for r in spool(server)] == [0, 0]


def test_server_without_idle_is_polled_and_poll_idle_stops_cleanly(tmp_path, start_dovecot):
    dovecot = start_dovecot("IMAP4rev1 MOVE")
    server = mailflow(tmp_path, dovecot, poll_interval=0.5)
    log = tmp_path / "poll.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mailflow", "--config", str(server.config),
                                 "poll", "--idle"], stdout=out, stderr=subprocess.STDOUT,
                                env=server.env, cwd=tmp_path)
    try:
        wait_until(lambda: "(polling every 0.5s)" in log.read_text(), what="the poller")
        dovecot.append(delivered("rita@people.test", "Report", "Please help."))
        wait_until(lambda: dovecot.count("Processed") == 1, what="the next poll")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert "IMAP poller stopped" in log.read_text()
    assert len(spool(server)) == 1


def test_imap_config_is_validated():
    def problems(**imap: object) -> str:
        table = {"host": "imap.example.org", "user": "conduct", "password_env": "PW", **imap}
        with pytest.raises(config.ConfigError) as e:
            config.from_dict({"intake": {"imap": table}})
        return str(e.value)

    assert "intake.imap.password: unknown key" in problems(password="in the clear")
    assert "exactly one of password_env and password_file" in problems(password_file="pw")
    assert "only allowed for a server on this host" in problems(tls="none")
    assert "intake.imap.idle_renew" in problems(idle_renew=1800)
    assert "must differ from folder" in problems(processed_folder="INBOX")
    cfg = config.from_dict({"intake": {"imap": {"host": "imap.example.org", "user": "c",
                                                "password_file": "pw", "tls": "starttls"}}})
    assert cfg.intake.imap and cfg.intake.imap.effective_port == 143

    # `mailflow check` also finds what only shows on the machine.
    cfg = config.from_dict({"intake": {"imap": {
        "host": "imap.example.org", "user": "c", "password_env": "MAILFLOW_TEST_UNSET",
        "ca_file": "/nonexistent/ca.pem"}}}, source="mailflow.toml")
    assert imap.problems(cfg) == [
        "mailflow.toml: intake.imap.password_env: $MAILFLOW_TEST_UNSET is not set",
        "mailflow.toml: intake.imap.ca_file: cannot load /nonexistent/ca.pem: "
        "[Errno 2] No such file or directory"]
