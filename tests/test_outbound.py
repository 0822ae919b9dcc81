"""Outbound delivery: through a relay that demands STARTTLS and AUTH, into a Maildir
when there is no relay, and never with a header that carries a line break."""

from __future__ import annotations

import ssl
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from dovecot import make_certificate

from mailflow import config
from mailflow.mail.compose import HeaderInjection, compose
from mailflow.outbound import delivery, transports
from mailflow.outbound.queue import enqueue
from mailflow.testing import CaptureRelay, MailflowServer, free_port, make_mail, wait_until

REPORTER = "reporter@people.test"


class SecureRelay(CaptureRelay):
    """A relay that refuses mail unless the session is encrypted and authenticated."""

    def __init__(self, port: int, cert: Path, key: Path):
        super().__init__(port)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.logins: list[str] = []

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"mailflow" and auth_data.password == b"relay-secret"
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    def start(self) -> None:
        self.controller = Controller(
            self, hostname="127.0.0.1", port=self.port, tls_context=self.context,
            require_starttls=True, auth_required=True, auth_require_tls=True,
            authenticator=self.authenticate)
        self.controller.start()


@pytest.fixture
def secure_relay(tmp_path):
    cert, key = make_certificate(tmp_path)
    relay = SecureRelay(free_port(), cert, key)
    relay.start()
    yield relay, cert
    relay.stop()


def relay_settings(ca: Path | None) -> str:
    return ("starttls = true\nusername = \"mailflow\"\npassword_env = \"RELAY_PASSWORD\"\n"
            + (f'ca_file = "{ca}"\n' if ca else ""))


def server_with(tmp_path: Path, port: int, settings: str) -> MailflowServer:
    server = MailflowServer(tmp_path, port, env={"RELAY_PASSWORD": "relay-secret"})
    text = server.config.read_text().replace("[outbound]\n", "[outbound]\n" + settings)
    server.config.write_text(text)
    return server.start()


def test_delivery_through_a_relay_with_starttls_and_auth(tmp_path, secure_relay):
    relay, cert = secure_relay
    with server_with(tmp_path, relay.port, relay_settings(cert)) as server:
        server.send(make_mail(REPORTER, "conduct@example.org", "Secure", "Over TLS."),
                    REPORTER, ["conduct@example.org"])
        relay.wait_for(lambda c: REPORTER in c.rcpts, what="ack over TLS")
        assert "mailflow" in relay.logins


def test_an_untrusted_relay_certificate_defers_and_loses_nothing(tmp_path, secure_relay):
    relay, _ = secure_relay
    with server_with(tmp_path, relay.port, relay_settings(None)) as server:  # no private CA
        server.send(make_mail(REPORTER, "conduct@example.org", "Untrusted", "Hold it."),
                    REPORTER, ["conduct@example.org"])
        rows = wait_until(lambda: [r for r in server.cli_json("queue") if r["attempts"]],
                          what="a deferred delivery")
        assert "CERTIFICATE_VERIFY_FAILED" in rows[0]["last_error"]
        assert relay.received == []


def test_without_a_relay_mail_goes_to_the_maildir_outbox(tmp_path):
    with MailflowServer(tmp_path, relay_port=None).start() as server:
        server.send(make_mail(REPORTER, "conduct@example.org", "No relay", "Maildir."),
                    REPORTER, ["conduct@example.org"])
        new = server.archive / "outbox" / "new"
        files = wait_until(lambda: sorted(new.iterdir()) if new.exists() and len(
            list(new.iterdir())) == 4 else None, what="4 files in the outbox")
        texts = [f.read_bytes() for f in files]
        ack = next(t for t in texts if f"X-Mailflow-Envelope-To: {REPORTER}".encode() in t)
        assert b"Return-Path: <>" in ack and b"Auto-Submitted: auto-replied" in ack
        assert not list((server.archive / "outbox" / "tmp").iterdir())


@pytest.mark.parametrize("value", ["Hello\r\nBcc: victim@x.test", "Hi\nthere", "a%0aBcc: x",
                                   "=?utf-8?q?x=0D=0ABcc:_y?=", "=?utf-8?b?eApCY2M6IHk=?=",
                                   "line\u2028break"])
def test_compose_refuses_a_line_break_in_any_header(value):
    cfg = config.Config()
    with pytest.raises(HeaderInjection):
        compose(cfg, from_=("x", "conduct@example.org"), to=["a@b.test"],
                         subject=value, body="text")
    with pytest.raises(HeaderInjection):
        compose(cfg, from_=(value, "conduct@example.org"), to=["a@b.test"],
                         subject="ok", body="text")


def test_compose_accepts_text_that_only_looks_encoded():
    msg = compose(config.Config(), from_=("x", "conduct@example.org"),
                           to=["a@b.test"], subject="release v=0a1, 100%", body="text")
    assert msg["Subject"] == "release v=0a1, 100%"


def test_compose_encodes_non_ascii_and_long_lines():
    cfg = config.Config()
    msg = compose(cfg, from_=("Comité de conduite", "conduct@example.org"),
                           to=["a@b.test"], subject="Ihre Meldung über #general",
                           body="Grüße\n" + "x" * 2000 + "\n")
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Ihre Meldung über #general"
    assert parsed["From"].addresses[0].display_name == "Comité de conduite"
    assert parsed.get_content().replace("\r\n", "\n") == "Grüße\n" + "x" * 2000 + "\n"
    assert max(len(line) for line in msg.as_bytes().split(b"\r\n")) <= 998


def test_acknowledgements_queued_during_a_pass_go_ahead_of_the_copies_left(tmp_path, relay):
    from mailflow import store

    cfg = config.from_dict({"storage": {"path": str(tmp_path / "archive")},
                            "outbound": {"relay": f"127.0.0.1:{relay.port}", "connections": 1}})
    cfg.archive_dir.mkdir()
    db = store.open_db(cfg.db_path)

    def queue(kind: str, n: int) -> None:
        with store.transaction(db):
            for i in range(n):
                msg = compose(cfg, from_=("", "conduct@example.org"),
                                       to=[f"{kind}{i}@people.test"], subject=f"{kind} {i}",
                                       body="text")
                enqueue(db, msg, kind=kind, rcpts=[f"{kind}{i}@people.test"])

    queue("relay", 30)
    calls = 0

    def new_mail() -> bool:  # the pipeline queues two acknowledgements mid-pass
        nonlocal calls
        calls += 1
        if calls == 5:
            queue("ack", 2)
        return calls == 5

    sessions = [transports.transport_for(cfg)]
    try:
        assert delivery.deliver_due(db, cfg, sessions, new_mail) == 32
    finally:
        sessions[0].close()
    order = [c.rcpts[0].split("@")[0] for c in relay.received]
    assert len(order) == 32 and {"ack0", "ack1"} <= set(order)
    # Sent as soon as the copies already handed to the session are: not after the rest.
    assert order.index("ack0") <= 6 and order.index("ack1") == order.index("ack0") + 1


def test_deliveries_are_recorded_once_the_pipeline_lets_go_of_the_write_lock(tmp_path, relay):
    import sqlite3
    import threading

    from mailflow import store

    cfg = config.from_dict({"storage": {"path": str(tmp_path / "archive")},
                            "outbound": {"relay": f"127.0.0.1:{relay.port}"}})
    cfg.archive_dir.mkdir()
    db = store.open_db(cfg.db_path)
    with store.transaction(db):
        for i in range(30):
            msg = compose(cfg, from_=("", "conduct@example.org"), to=[f"r{i}@x.test"],
                                   subject="copy", body="text")
            enqueue(db, msg, kind="relay", rcpts=[f"r{i}@x.test"])
    pipeline = sqlite3.connect(cfg.db_path, isolation_level=None, check_same_thread=False)
    pipeline.execute("BEGIN IMMEDIATE")  # a long batch holds the write lock
    with pytest.raises(store.Busy), store.transaction(db, timeout=0):
        pass
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000  # left as it was
    threading.Timer(0.5, lambda: pipeline.execute("COMMIT")).start()
    sessions = [transports.transport_for(cfg) for _ in range(2)]
    try:
        assert delivery.deliver_due(db, cfg, sessions) == 30  # sent meanwhile, then recorded
    finally:
        for t in sessions:
            t.close()
    assert len(relay.received) == 30
    assert db.execute("SELECT count(*) FROM outbound_rcpt WHERE state = 'sent'").fetchone() == (30,)


def report_with_attachment() -> bytes:
    """A report whose attachment is larger than a delivery chunk, and whose text has
    lines that SMTP must dot-stuff, with LF line ends as Postfix's pipe delivers it."""
    import base64
    import os

    video = base64.encodebytes(os.urandom(1_200_000))
    head = make_mail(REPORTER, "conduct@example.org", "Video", "x").split(b"Content-Type:")[0]
    return (head.replace(b"\r\n", b"\n") + b"Content-Type: multipart/mixed; boundary=b1\n\n"
            b"--b1\nContent-Type: text/plain\n\n.\n..hidden dots\nSee the video.\n"
            b"--b1\nContent-Type: video/mp4\nContent-Transfer-Encoding: base64\n\n"
            + video + b"--b1--\n")


@pytest.mark.parametrize("through", ["relay", "maildir"])
def test_committee_copies_carry_the_original_whole_streamed_from_the_spool(tmp_path, relay,
                                                                         through):
    original = report_with_attachment()
    server = MailflowServer(tmp_path, relay.port if through == "relay" else None)
    with server.start():
        server.cli("ingest", "--sender", REPORTER, "conduct@example.org", input=original)
        server.processed(1)
        if through == "relay":
            copies = [c.raw for c in relay.wait_for(lambda c: c.mail_from != "<>", count=3,
                                                    what="the committee's copies")]
        else:
            new = server.archive / "outbox" / "new"
            # The outbound stage makes the Maildir when it first delivers.
            wait_until(lambda: new.is_dir() and len(list(new.iterdir())) == 4,
                       what="four mails in the Maildir")
            copies = [p.read_bytes() for p in new.iterdir() if b"original.eml" in p.read_bytes()]
    # The original is stored once, in the spool, whatever the number of members.
    assert server.query("SELECT count(*), sum(length(raw)) < 100000 FROM outbound WHERE "
                        "attach_spool_id = 1") == [(3, 1)]
    expected = original.replace(b"\n", b"\r\n")
    assert len(copies) == 3
    for raw in copies:
        msg = message_from_bytes(raw, policy=policy.default)
        [attached] = [p for p in msg.iter_attachments() if p.get_filename() == "original.eml"]
        inner = attached.get_payload()[0].as_bytes(policy=policy.SMTP)
        assert inner == expected
