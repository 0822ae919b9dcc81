"""The durability promise: what an MTA may rely on when it hands mailflow a message."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from aiosmtpd.smtp import SMTP

from mailflow.intake.listener import PLAIN_PATH, Server
from mailflow.testing import (
    WAIT,
    CaptureRelay,
    MailflowServer,
    free_port,
    make_mail,
    wait_until,
)

REPORTER = "reporter@people.test"


def cases_count(server: MailflowServer) -> int:
    return server.query("SELECT count(*) FROM cases")[0][0]


def test_unknown_recipient_is_refused_at_rcpt(server):
    with server.smtp() as s:
        s.ehlo()
        s.mail(REPORTER)
        code, text = s.rcpt("someone@example.org")
        assert code == 550 and b"5.1.1" in text
        code, _ = s.rcpt("someone@elsewhere.test")
        assert code == 550
        assert s.rcpt("conduct@example.org")[0] == 250


def test_oversized_message_is_refused_with_552(tmp_path, relay):
    with MailflowServer(tmp_path, relay.port, intake_extra="max_size = 2048").start() as server:
        big = make_mail(REPORTER, "conduct@example.org", "Big", ("y" * 70 + "\r\n") * 100)
        with pytest.raises(smtplib.SMTPException) as err:
            server.send(big, REPORTER, ["conduct@example.org"])
        assert "552" in str(err.value)
        assert server.query("SELECT count(*) FROM spool")[0][0] == 0
        # The session is still usable, and a message within the limit is taken.
        server.send(make_mail(REPORTER, "conduct@example.org", "Small", "ok"),
                    REPORTER, ["conduct@example.org"])
        server.processed(1)


def test_same_message_delivered_twice_makes_one_record(server, relay):
    raw = make_mail(REPORTER, "conduct@example.org", "Twice", "Same text.",
                    message_id="<twice@sender.test>")
    server.send(raw, REPORTER, ["conduct@example.org"])
    # The second copy went through another relay hop: same Message-ID and body.
    server.send(b"Received: from mx2.sender.test by mx.example.org\r\n" + raw,
                REPORTER, ["conduct@example.org"])
    server.processed(1)
    relay.wait_for(lambda c: REPORTER in c.rcpts, what="ack")
    assert server.query("SELECT count(*), max(duplicates) FROM spool")[0] == (1, 1)
    assert cases_count(server) == 1
    # A different body under a reused Message-ID may be a different report: kept.
    server.send(make_mail(REPORTER, "conduct@example.org", "Twice", "Other text.",
                          message_id="<twice@sender.test>"), REPORTER, ["conduct@example.org"])
    server.processed(2)
    assert server.query("SELECT count(*) FROM spool")[0][0] == 2


def test_mail_answered_250_stays_spooled_while_other_processes_read_the_archive(server, relay):
    """Each "250" is a promise even while others (``mailflow status``, a backup, this
    test) open and close the databases between messages.  A process that opens and
    closes a database file it also has a connection to drops that connection's locks;
    the next reader to close then deletes the WAL still being written, and every later
    message answered 250 was lost (seen: the second report of a reporter vanished)."""
    for n in range(1, 5):
        server.send(make_mail(REPORTER, "conduct@example.org", f"Report {n}", f"Text {n}."),
                    REPORTER, ["conduct@example.org"])
        # A reader in another process opens the spool and closes it again.
        reader = sqlite3.connect(server.archive / "spool.db")
        assert reader.execute("SELECT count(*) FROM spool").fetchone()[0] == n
        reader.close()
        server.processed(n)
    relay.wait_for(lambda c: REPORTER in c.rcpts, count=4, what="four acknowledgements")
    assert cases_count(server) == 4


def test_failing_store_answers_451_and_the_retry_makes_exactly_one_case(server, relay):
    raw = make_mail(REPORTER, "conduct@example.org", "Locked out", "Please help.")
    # Another process holds the database's write lock (a long purge, a stuck backup...).
    blocker = sqlite3.connect(server.archive / "spool.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(smtplib.SMTPDataError) as err:
            server.send(raw, REPORTER, ["conduct@example.org"])
        assert err.value.smtp_code == 451
        assert b"4.3.0" in err.value.smtp_error
        assert b"locked" not in err.value.smtp_error.lower()  # no exception text
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    server.send(raw, REPORTER, ["conduct@example.org"])  # the MTA's retry
    server.processed(1)
    relay.wait_for(lambda c: REPORTER in c.rcpts, what="ack")
    assert cases_count(server) == 1


def test_kill_9_after_250_loses_nothing_and_processes_exactly_once(tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port).start()
    senders = [f"r{i}@people.test" for i in range(60)]
    with server.smtp() as s:
        for i, sender in enumerate(senders):
            s.sendmail(sender, ["conduct@example.org"],
                       make_mail(sender, "conduct@example.org", f"Report {i}", f"Body {i}"))
    server.kill9()  # right after the last 250: some messages are committed, not processed
    pending = server.query("SELECT count(*) FROM spool s LEFT JOIN spool_state q ON "
                           "q.spool_id = s.id WHERE q.state IS NULL OR q.state = 'new'")[0][0]
    assert pending >= 1, "the test must catch the server before it processed everything"
    assert server.query("SELECT count(*) FROM spool")[0][0] == 60
    server.start()
    try:
        server.processed(60)
        # Exactly once in the archive: one case, one acknowledgement, three relays each.
        assert cases_count(server) == 60
        spooled = server.query("SELECT count(DISTINCT spool_id), count(*) FROM messages")[0]
        assert spooled == (60, 60)
        assert server.query("SELECT count(*) FROM outbound WHERE kind='ack'")[0][0] == 60
        assert server.query("SELECT count(*) FROM outbound WHERE kind='relay'")[0][0] == 180
        # Delivery is at-least-once (SMTP's own promise): mail that was on the wire when
        # the server died may arrive twice, but every reporter hears back.
        wait_until(lambda: all(relay.to(s) for s in senders), what="every reporter acked")
        wait_until(lambda: server.cli_json("queue") == [], what="queue drained")
    finally:
        server.stop()


def test_mail_accepted_while_the_relay_is_down_is_delivered_when_it_is_back(tmp_path):
    down = CaptureRelay(port=free_port())  # not started yet
    with MailflowServer(tmp_path, down.port).start() as server:
        server.send(make_mail(REPORTER, "conduct@example.org", "Relay down", "Still here."),
                    REPORTER, ["conduct@example.org"])
        server.processed(1)
        wait_until(lambda: server.query(
            "SELECT count(*) FROM outbound_rcpt WHERE attempts >= 1 AND state = 'queued'")[0][0]
            == 4, what="deliveries deferred")
        queue = server.cli_json("queue")
        assert {r["state"] for r in queue} == {"queued"} and all(r["last_error"] for r in queue)
        down.start()
        try:
            down.wait_for(lambda c: True, count=4, what="delivery after the relay came back")
            assert len(down.to(REPORTER)) == 1
        finally:
            down.stop()
        wait_until(lambda: server.cli_json("queue") == [], what="queue drained")


def _read_reply(f) -> str:
    lines = []
    while True:
        line = f.readline().decode()
        lines.append(line.rstrip("\r\n"))
        if len(line) < 4 or line[3] != "-":
            return "\n".join(lines)


def test_lmtp_answers_once_per_accepted_recipient(tmp_path, relay):
    with MailflowServer(tmp_path, relay.port, protocol="lmtp").start() as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            f = sock.makefile("rb")
            assert _read_reply(f).startswith("220")
            sock.sendall(b"LHLO client.test\r\n")
            assert _read_reply(f).startswith("250")
            sock.sendall(b"MAIL FROM:<reporter@people.test>\r\n")
            assert _read_reply(f).startswith("250")
            for rcpt in ("conduct@example.org", "nobody@example.org", "committee@example.org",
                         "conduct+x@example.org"):
                sock.sendall(f"RCPT TO:<{rcpt}>\r\n".encode())
                reply = _read_reply(f)
                assert reply.startswith("550" if rcpt.startswith("nobody") else "250")
            sock.sendall(b"DATA\r\n")
            assert _read_reply(f).startswith("354")
            sock.sendall(make_mail(REPORTER, "conduct@example.org", "LMTP", "Three rcpts.")
                         + b".\r\n")
            replies = [_read_reply(f) for _ in range(3)]
            assert all(r.startswith("250") for r in replies)
            sock.sendall(b"NOOP\r\n")
            assert _read_reply(f).startswith("250")  # no stray fourth reply was queued
        server.processed(1)


def test_ingest_exits_0_when_committed_and_75_when_it_cannot_commit(server, relay):
    raw = make_mail(REPORTER, "conduct@example.org", "Piped", "Via the pipe transport.")
    ok = server.cli("ingest", "--sender", REPORTER, "conduct@example.org", input=raw)
    assert ok.returncode == 0
    relay.wait_for(lambda c: REPORTER in c.rcpts, what="ack for piped mail")
    blocker = sqlite3.connect(server.archive / "spool.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        other = make_mail("x@people.test", "conduct@example.org", "Piped 2", "Locked.")
        failed = server.cli("ingest", "--sender", "x@people.test", "conduct@example.org",
                            input=other, check=False)
        assert failed.returncode == 75
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert server.query("SELECT count(*) FROM spool")[0][0] == 1


def test_a_message_that_keeps_failing_is_quarantined_and_can_be_released(tmp_path, relay):
    # A deployment's own acknowledgement template refers to a field that does not exist:
    # every report fails in processing.  Nothing may be lost.
    overrides = tmp_path / "my-templates"
    overrides.mkdir()
    (overrides / "acknowledgement.txt").write_text("Subject: Thanks\n\n{{ no_such_field }}\n")
    server = MailflowServer(tmp_path, relay.port,
                            extra=f'[paths]\ntemplates = "{overrides}"\n').start()
    try:
        server.send(make_mail(REPORTER, "conduct@example.org", "Broken", "Will it survive?"),
                    REPORTER, ["conduct@example.org"])
        wait_until(lambda: server.cli_json("quarantine"), what="quarantine")
        held = server.cli_json("quarantine")
        assert len(held) == 1 and "no_such_field" in held[0]["last_error"]
        assert cases_count(server) == 0
        (overrides / "acknowledgement.txt").unlink()  # the administrator fixes it
        server.stop()
        server.start()
        server.cli("quarantine", "--release", str(held[0]["id"]))
        relay.wait_for(lambda c: REPORTER in c.rcpts, what="ack after release")
        assert cases_count(server) == 1
        assert server.cli_json("quarantine") == []
    finally:
        server.stop()


def test_concurrent_sessions_each_get_their_own_answer(server, relay):
    errors: list[Exception] = []

    def send(n: int) -> None:
        try:
            for i in range(10):
                sender = f"c{n}-{i}@people.test"
                server.send(make_mail(sender, "conduct@example.org", f"S{n}-{i}", "Hi"),
                            sender, ["conduct@example.org"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    server.processed(40)
    assert cases_count(server) == 40


def test_ingest_refuses_a_message_over_the_size_limit(tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[intake]\nmax_size = 2048\n[storage]\npath = "{tmp_path}/a"\n')
    result = subprocess.run([sys.executable, "-m", "mailflow", "--config", str(cfg), "ingest"],
                            input=b"x" * 5000, capture_output=True, timeout=60)
    assert result.returncode == 65
    assert b"max_size" in result.stderr


def stage_pid(server: MailflowServer, name: str) -> int:
    """A stage process of the server, by the name it shows in ps (mf-<stage>)."""
    assert server.proc
    parent = server.proc.pid

    def find() -> int | None:
        children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True,
                                  text=True).stdout.split()
        for pid in children:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == f"mf-{name}":
                    return int(pid)
        return None

    return wait_until(find, what=f"the mf-{name} process")


def test_flow_control_holds_new_mail_back_while_the_pipeline_is_behind(tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port,
                            intake_extra="flow_backlog = 2\nflow_delay = 0.6").start()
    pipeline = stage_pid(server, "pipeline")
    try:
        os.kill(pipeline, signal.SIGSTOP)  # the pipeline falls behind
        took = []
        with server.smtp() as s:
            for n in range(5):
                started = time.monotonic()
                s.sendmail(f"r{n}@people.test", ["conduct@example.org"],
                           make_mail(f"r{n}@people.test", "conduct@example.org", f"R{n}", "x"))
                took.append(time.monotonic() - started)
        # Up to the backlog of 2 and one more, straight in; then each waited its
        # flow_delay at MAIL FROM and was accepted all the same.
        assert all(t < 0.4 for t in took[:3]), took
        assert all(t >= 0.55 for t in took[3:]), took
        assert server.query("SELECT count(*) FROM spool")[0][0] == 5
        os.kill(pipeline, signal.SIGCONT)
        server.processed(5)
        relay.wait_for(lambda c: c.rcpts[0].startswith("r") and c.rcpts[0].endswith(
            "@people.test"), count=5, what="five acknowledgements")
        with server.smtp() as s:  # caught up: no waiting
            started = time.monotonic()
            s.sendmail("r5@people.test", ["conduct@example.org"],
                       make_mail("r5@people.test", "conduct@example.org", "R5", "x"))
            assert time.monotonic() - started < 0.4
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pipeline, signal.SIGCONT)
        server.stop()


def test_a_message_waiting_for_the_spool_lock_does_not_hold_up_other_sessions(tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port, intake_extra="commit_timeout = 5").start()
    blocker = sqlite3.connect(server.archive / "spool.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # say, `mailflow ingest` in the middle of a commit
    try:
        waiting = server.smtp()
        waiting.ehlo()
        waiting.mail(REPORTER)
        waiting.rcpt("conduct@example.org")
        assert waiting.docmd("DATA")[0] == 354
        waiting.send(make_mail(REPORTER, "conduct@example.org", "Waits", "for the lock")
                     + b".\r\n")
        # While that message waits for the lock, the listener still serves others (were
        # it stuck, this would not be answered until the first gave up with 451).
        with server.smtp() as other:
            assert other.ehlo()[0] == 250
            assert other.mail("other@people.test")[0] == 250
            assert other.rcpt("conduct@example.org")[0] == 250
        blocker.execute("ROLLBACK")
        code, text = waiting.getreply()
        assert code == 250, text
        waiting.quit()
        assert server.query("SELECT count(*) FROM spool")[0][0] == 1
    finally:
        blocker.close()
        server.stop()


def test_the_stages_yield_the_cpu_to_the_listener(tmp_path, relay):
    def policy(pid: int) -> tuple[int, int]:
        return os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid)

    for sub in ("idle", "low"):
        (tmp_path / sub).mkdir()
    with MailflowServer(tmp_path / "idle", relay.port).start() as server:
        for name in ("pipeline", "outbound", "scheduler"):
            pid = stage_pid(server, name)
            wait_until(lambda pid=pid: policy(pid)[0] == os.SCHED_IDLE, what=f"{name} idle")
        assert policy(server.proc.pid) == (os.SCHED_OTHER, 0)  # the listener itself
    with MailflowServer(tmp_path / "low", relay.port,
                        intake_extra='stage_priority = "low"').start() as server:
        pid = stage_pid(server, "pipeline")
        wait_until(lambda: policy(pid) == (os.SCHED_OTHER, 10), what="pipeline niced")


PLAIN = ["<a@b>", "<a@b> ", " <a@b>", "<a@b>  SIZE=1  ", "<a@b>SIZE=1", "<a@b>\t",
         "<a.b@c.d> SIZE=1 BODY=8BITMIME", "<A+x@B.C>", "<a@-b>", "<mailer-daemon@b>",
         "<a@b> SIZE=1 (c)", "<" + "x" * 70 + "@b>"]  # (over the limit: aiosmtpd refuses)
OTHER = ["<a..b@c>", "<.a@c>", "<a@b..c>", "<a@[1.2.3.4]>", "<@route:a@b>", "<a(c)@b>",
         "<a@b> (comment)", "<a@b>(x)", '<"a b"@c.d>', "<a b@c>", "<>",
         "<mailer-daemon>", "<ünï@example.org>", "a@b", "<a@b", ""]


@pytest.mark.parametrize("path", PLAIN + OTHER)
def test_mail_paths_are_read_as_aiosmtpd_reads_them(path):
    ours, theirs = Server(handler=None), SMTP(handler=None)
    ours.local_part_limit = theirs.local_part_limit = 64
    assert ours._getaddr(path) == theirs._getaddr(path)
    # Plain paths take the quick way, the rest aiosmtpd's parser.
    assert bool(PLAIN_PATH.fullmatch(path)) == (path in PLAIN)


def test_a_stage_that_dies_is_started_again_and_nothing_waits_for_ever(tmp_path, relay):
    with MailflowServer(tmp_path, relay.port).start() as server:
        first = stage_pid(server, "pipeline")
        os.kill(first, signal.SIGKILL)
        # Mail that arrives while the pipeline is down is kept and processed after.
        server.send(make_mail(REPORTER, "conduct@example.org", "While down", "x"),
                    REPORTER, ["conduct@example.org"])
        wait_until(lambda: stage_pid(server, "pipeline") not in (None, first),
                   what="a new pipeline")
        server.processed(1)
        relay.wait_for(lambda c: REPORTER in c.rcpts, what="the acknowledgement")
        assert "stage pipeline exited" in server.log.read_text()


@pytest.mark.parametrize("shift", range(-3, 3))
def test_the_dedupe_key_hashes_a_large_body_in_chunks_as_it_hashed_it_whole(shift):
    """The key is stored: a body hashed a chunk at a time must give the key it gave
    when hashed whole, a CRLF cut by a chunk's end included."""
    import hashlib

    from mailflow.intake.spool import HASH_CHUNK, dedupe_key

    head = b"From: a@b.test\r\nMessage-ID: <big@b.test>\r\n\r\n"
    line = b"x" * 70 + b"\r\n"
    body = line * (HASH_CHUNK // len(line) - 1)
    # The CR of this line ends the first chunk when shift is 0 (chunks count from the body).
    body += b"y" * (HASH_CHUNK - len(body) - 1 + shift) + b"\r\n" + line * 3 + b"\r"
    raw = head + body
    digest = hashlib.sha256(raw).hexdigest()
    whole = hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest()
    expected = "mid:" + hashlib.sha256(b"<big@b.test>\0" + whole.encode()).hexdigest()
    assert dedupe_key(raw, digest) == expected


def test_a_large_message_is_spooled_whole_and_once(tmp_path):
    """Written into its row a chunk at a time; sent again, it is a duplicate."""
    import os as _os

    from mailflow.intake.spool import LARGE, Envelope, commit_one

    raw = make_mail(REPORTER, "conduct@example.org", "Video", "see below").replace(
        b"see below", _os.urandom(3 * LARGE).hex().encode())
    env = Envelope("pipe", REPORTER, ["conduct@example.org"])
    db = tmp_path / "mailflow.db"
    assert commit_one(db, raw, env) == (1, False)
    assert commit_one(db, raw, env) == (1, True)
    conn = sqlite3.connect(tmp_path / "spool.db")
    assert conn.execute("SELECT raw, size, duplicates FROM spool").fetchall() == [
        (raw, len(raw), 1)]
