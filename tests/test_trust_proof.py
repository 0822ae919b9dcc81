"""Strict DKIM/DMARC proof, over real SMTP with a real DNS server on loopback:
mailflow verifies DKIM itself on the raw bytes, and a signature (or the trusted MTA's
result) proves a member only when its domain aligns with From under DMARC relaxed
alignment, using the Public Suffix List."""

from __future__ import annotations

from casekit import open_case
from dnskit import Signer, TxtServer

from mailflow.testing import M1, MailflowServer

MTA = "mx.example.org"


def mail(subject: str, body: str, headers: tuple[str, ...] = ()) -> bytes:
    lines = [f"From: {M1}", "To: committee@example.org", f"Subject: {subject}",
             "Date: Tue, 24 Nov 2026 10:00:00 +0000",
             f"Message-ID: <{abs(hash(body))}@example.org>", *headers,
             "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()


def test_only_an_aligned_verified_signature_or_trusted_result_proves_a_member(tmp_path,
                                                                               relay):
    ours = Signer.make(tmp_path, "example.org")
    sub = Signer.make(tmp_path, "lists.example.org", selector="sub")
    evil = Signer.make(tmp_path, "evil.test")
    unpublished = Signer.make(tmp_path, "example.org", selector="gone")
    with TxtServer(dict([ours.record, evil.record, sub.record])) as dns:
        server = MailflowServer(tmp_path, relay.port, extra=(
            f'[security]\ntrusted_authserv_id = "{MTA}"\ndns_server = "{dns.address}"\n'
        )).start()
        try:
            case = open_case(server, relay)
            subject = f"Re: [coc #{case.id}] the case"

            def attempt(n: int, raw: bytes) -> str:
                before = len(case.transcripts(M1))
                server.send(raw, M1, ["committee@example.org"])
                relay.wait_for(lambda c: c.rcpts == [M1] and "Transcript" in c.msg["Subject"],
                               count=before + 1, what=f"answer {n}")
                return case.transcripts(M1)[before].body()

            def body(n: int) -> str:
                return f"Attempt {n}.\r\n\r\n#channel attempt-{n}\r\n"

            accepted = {
                "signed by the From domain": ours.sign(mail(subject, body(1))),
                "signed by a subdomain of it (relaxed)": sub.sign(mail(subject, body(2))),
                "the trusted MTA's aligned dkim pass": mail(subject, body(3), (
                    f"Authentication-Results: {MTA}; dkim=pass header.d=mail.example.org",)),
                "the trusted MTA's dmarc pass": mail(subject, body(4), (
                    f"Authentication-Results: {MTA}; dmarc=pass header.from=example.org",)),
            }
            refused = {
                "signed by another domain": evil.sign(mail(subject, body(11))),
                "changed after signing": ours.sign(mail(subject, body(12))).replace(
                    b"Attempt 12.", b"Attempt 12!"),
                "a body length tag and an added command": ours.sign(
                    mail(subject, body(13)), length=True).replace(
                    b"attempt-13\r\n", b"attempt-13\r\n#violation yes\r\n"),
                "a key that is not published": unpublished.sign(mail(subject, body(14))),
                "header.from in a dkim result": mail(subject, body(15), (
                    f"Authentication-Results: {MTA}; dkim=pass header.d=evil.test "
                    "header.from=example.org",)),
                "a signature by a public suffix": mail(subject, body(16), (
                    f"Authentication-Results: {MTA}; dkim=pass header.d=org",)),
                "dmarc for another domain": mail(subject, body(17), (
                    f"Authentication-Results: {MTA}; dmarc=pass header.from=evil.test",)),
                "another MTA's pass": mail(subject, body(18), (
                    "Authentication-Results: mx.evil.test; dkim=pass header.d=example.org",)),
                "a forged pass below the MTA's fail": mail(subject, body(19), (
                    f"Authentication-Results: {MTA}; dkim=fail header.d=example.org",
                    f"Authentication-Results: {MTA}; dkim=pass header.d=example.org")),
            }
            n = 0
            for what, raw in accepted.items():
                n += 1
                assert "All commands were applied." in attempt(n, raw), what
            for what, raw in refused.items():
                n += 1
                answer = attempt(n, raw)
                assert "was not accepted as yours" in answer, what
                assert "Nothing in this message was applied." in answer, what
            assert server.query("SELECT channel, violation FROM case_record") == [
                ("attempt-4", None)]
            proofs = [r[0] for r in server.query(
                "SELECT proof FROM audit WHERE action = 'command #channel' ORDER BY id")]
            assert proofs == ["dkim", "dkim", "mta-dkim", "mta-dmarc"]
            assert any(q.endswith("_domainkey.example.org") for q in dns.queries)
        finally:
            server.stop()
