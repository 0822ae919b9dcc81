"""mailflow behind a real Postfix (tests/postfix.py), set up as docs/deploy.md says:
each of mailflow's addresses routed to it, by LMTP or by the pipe transport, and
everything mailflow sends relayed by the same Postfix to the outside world (a
capturing aiosmtpd), members in the conduct domain included."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postfix import Postfix, pipe_entry
from service import USER as PIPE_USER
from service import mailflow_for, service_root

from mailflow.testing import (
    MEMBERS,
    CaptureRelay,
    MailflowServer,
    free_port,
    make_mail,
    wait_until,
)

# Postfix is installed by .ci/run (a missing Postfix fails these tests, it does not
# skip them); its master must run as root, as CI does.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Postfix's master runs as root")

DOMAIN = "example.org"
CONDUCT, COMMITTEE = f"conduct@{DOMAIN}", f"committee@{DOMAIN}"
OURS = (CONDUCT, COMMITTEE)
REPORTER = "rita@people.test"


def report(n: int) -> bytes:
    return make_mail(REPORTER.replace("rita", f"rita{n}"), CONDUCT, f"Report {n}",
                     f"Report number {n}: someone was rude to me in the chat.",
                     message_id=f"<report-{n}@people.test>")


def send_through(postfix: Postfix, raw: bytes, sender: str, rcpts: list[str]) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=15) as s:
        s.sendmail(sender, rcpts, raw)


@pytest.fixture
def start_postfix() -> Iterator[Callable[..., Postfix]]:
    started: list[Postfix] = []

    def start(**kwargs: object) -> Postfix:
        started.append(Postfix(domain=DOMAIN, **kwargs))  # type: ignore[arg-type]
        return started[-1].start()

    yield start
    for instance in started:
        print(instance.logs()[-20000:])  # in pytest's report if the test failed
        instance.close()


def routed(start_postfix: Callable[..., Postfix], relay: CaptureRelay, port: int, transport: str,
           services: str = "") -> Postfix:
    """A Postfix on ``port`` routing mailflow's addresses to ``transport``, and the rest
    of the world, members in the conduct domain included, to the capturing relay."""
    return start_postfix(port=port, relayhost=f"127.0.0.1:{relay.port}",
                         elsewhere=tuple(MEMBERS), routes=dict.fromkeys(OURS, transport),
                         services=services)


def acks(relay: CaptureRelay) -> list:
    return [c for c in relay.received if (c.msg["Auto-Submitted"] or "") == "auto-replied"]


def test_lmtp_reports_become_cases_acknowledged_and_copied_through_postfix(
        tmp_path, relay, start_postfix):
    postfix_port = free_port()
    with MailflowServer(tmp_path, postfix_port, protocol="lmtp") as server:
        postfix = routed(start_postfix, relay, postfix_port, f"lmtp:inet:127.0.0.1:{server.port}")
        server.start()
        send_through(postfix, report(1), REPORTER.replace("rita", "rita1"), [CONDUCT])
        ack = relay.wait_for(lambda c: c.rcpts == ["rita1@people.test"], what="ack")[0]
        assert ack.mail_from == "<>"  # the null sender survived Postfix
        case_id = ack.msg["X-Mailflow-Case"]
        # Each member, all in the conduct domain, gets the committee's copy.
        for member in MEMBERS:
            relay.wait_for(lambda c, m=member: c.rcpts == [m], what=f"copy to {member}")
        assert [c["id"] for c in server.cli_json("cases")] == [case_id]
        # mailflow's log line for the report names Postfix's queue id, so an
        # administrator can follow it from Postfix's "queued as" to the case, and
        # holds no address, subject or text of the reporter's.
        queue_id = postfix.queue_id("<report-1@people.test>")
        log = server.log.read_text()
        assert re.search(rf"spool 1 mta-id {queue_id} msgid [0-9a-f]{{12}} case {case_id} "
                         rf"\(new\) report: acknowledged, copied to 3 member\(s\)", log), log
        for secret in ("rita1", "people.test", "Report 1", "rude to me"):
            assert secret not in log
        # Unknown addresses of the domain are refused by Postfix at RCPT, not bounced.
        import smtplib

        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send_through(postfix, report(2), REPORTER, [f"nobody@{DOMAIN}"])


def test_lmtp_mail_is_deferred_while_mailflow_is_down_and_delivered_once_after(
        tmp_path, relay, start_postfix):
    postfix_port = free_port()
    server = MailflowServer(tmp_path, postfix_port, protocol="lmtp")
    postfix = routed(start_postfix, relay, postfix_port, f"lmtp:inet:127.0.0.1:{server.port}")
    for n in range(20):
        send_through(postfix, report(n), f"rita{n}@people.test", [CONDUCT])
    wait_until(lambda: len(postfix.queued()) == 20 and postfix.logs().count(
        "status=deferred") >= 20, what="20 reports deferred by Postfix")
    with server:
        server.start()
        postfix.flush_until_empty()
        server.processed(20)
        wait_until(lambda: len(acks(relay)) >= 20, what="20 acknowledgements")
        cases = server.cli_json("cases")
        assert len(cases) == 20
        assert server.query("SELECT count(*), sum(duplicates) FROM spool") == [(20, 0)]
        assert sorted(c.rcpts[0] for c in acks(relay)) == sorted(
            f"rita{n}@people.test" for n in range(20))
        assert len(postfix.delivered(CONDUCT)) == 20


@pytest.fixture
def service_dir() -> Iterator[Path]:
    """The service user of docs/deploy.md runs both `mailflow serve` and the pipe."""
    with service_root() as root:
        yield root


def pipe_service(server: MailflowServer) -> str:
    """The master.cf entry of docs/deploy.md, with this test's paths."""
    return pipe_entry("mailflow", PIPE_USER, [
        *server.command, "--config", str(server.config), "ingest", "--sender", "${sender}",
        "--", "${recipient}"])


def service_server(root: Path, relay_port: int) -> MailflowServer:
    return MailflowServer(root, relay_port, user=PIPE_USER, command=mailflow_for(PIPE_USER, root))


def test_pipe_transport_as_documented_takes_reports_and_null_senders(
        service_dir, relay, start_postfix):
    postfix_port = free_port()
    with service_server(service_dir, postfix_port) as server:
        postfix = routed(start_postfix, relay, postfix_port, "mailflow:", pipe_service(server))
        server.start()
        send_through(postfix, report(1), "rita1@people.test", [CONDUCT])
        relay.wait_for(lambda c: c.rcpts == ["rita1@people.test"], what="ack")
        for member in MEMBERS:
            relay.wait_for(lambda c, m=member: c.rcpts == [m], what=f"copy to {member}")
        assert server.query("SELECT source, envelope_from, rcpts FROM spool") == [
            ("pipe", "rita1@people.test", f'["{CONDUCT}"]')]
        # A message from the null sender reaches mailflow with an empty sender (not
        # Postfix's MAILER-DAEMON), so that nothing answers it.
        send_through(postfix, report(2), "", [CONDUCT])
        server.processed(2)
        assert server.query("SELECT envelope_from FROM spool WHERE id = 2") == [("",)]
        assert [a.rcpts for a in acks(relay)] == [["rita1@people.test"]]


def test_pipe_mail_is_deferred_while_the_archive_is_unwritable_and_taken_once_after(
        service_dir, relay, start_postfix):
    postfix_port = free_port()
    with service_server(service_dir, postfix_port) as server:
        postfix = routed(start_postfix, relay, postfix_port, "mailflow:", pipe_service(server))
        server.start()
        spool = server.archive / "spool.db"
        wait_until(spool.exists, what="the spool")
        os.chmod(spool, 0o400)  # as a wrong owner or mode would: ingest cannot write
        try:
            for n in range(5):
                send_through(postfix, report(n), f"rita{n}@people.test", [CONDUCT])
            wait_until(lambda: postfix.logs().count("status=deferred") >= 5,
                       what="5 reports deferred")
            assert len(postfix.queued()) == 5
            deferred = [line for line in postfix.logs().splitlines() if "status=deferred" in line]
            # The reason reaches Postfix's log on one line, with the file and the user.
            assert all(f"mailflow ingest: temporary failure: {spool}: cannot write it" in line
                       and f"running as {PIPE_USER}" in line for line in deferred), deferred[0]
        finally:
            os.chmod(spool, 0o600)
        postfix.flush_until_empty()
        server.processed(5)
        wait_until(lambda: len(acks(relay)) >= 5, what="5 acknowledgements")
        assert server.query("SELECT count(*), sum(duplicates) FROM spool") == [(5, 0)]
        assert len(server.cli_json("cases")) == 5
