"""Member authentication: a command applies only for the roster member named by a
strictly parsed From, with proof (their signed token, or the trusted MTA's aligned
DKIM/DMARC pass).  Everything forged is archived as a note and applies nothing; the
member whose address was used is told, never the sender."""

from __future__ import annotations

from datetime import timedelta

from casekit import open_case

from mailflow import timestamps
from mailflow.mail import tokens
from mailflow.store.secret import load_secret
from mailflow.testing import CHAIR, M1, M2, MailflowServer

MTA = "mx.example.org"
ATTACKER = "attacker@evil.test"
GENUINE_FAIL = f"{MTA}; dkim=fail header.d=example.org; dmarc=fail header.from=example.org"
FORGED_PASS = f"{MTA}; dkim=pass header.d=example.org; dmarc=pass header.from=example.org"


def raw_mail(from_lines: list[str], to: str, subject: str, body: str,
             headers: list[str] = ()) -> bytes:
    """A mail written by hand, for the header tricks make_mail cannot express."""
    lines = [*(f"From: {f}" for f in from_lines), f"To: {to}", f"Subject: {subject}",
             "Date: Tue, 24 Nov 2026 10:00:00 +0000",
             f"Message-ID: <{abs(hash(body))}@evil.test>", *headers,
             "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()


def test_forged_commands_apply_nothing_and_the_real_member_is_told(tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port,
                            extra=f'[security]\ntrusted_authserv_id = "{MTA}"\n').start()
    try:
        case = open_case(server, relay)
        other = open_case(server, relay, "A second, unrelated report.")
        copy = case.copy_for(M1).msg
        token_address, subject = copy["Reply-To"], "Re: " + copy["Subject"]
        secret = tokens.Signer(load_secret(server.archive / "secret.key"))
        yesterday = (timestamps.now() - timedelta(days=1)).date()
        expired = f"committee+{secret.member_token(case.id, M1, yesterday)}@example.org"
        other_case = f"committee+{secret.member_token(other.id, M1, yesterday.replace(year=2099))}"
        plain = "committee@example.org"
        command = "#violation yes"

        forgeries = [
            # (what, From lines, To, extra headers, who is told and why)
            ("a stranger's From", [ATTACKER], token_address, [], None),
            ("a member's address as display name", [f'"{M1}" <{ATTACKER}>'], token_address,
             [], None),
            ("a member's address before the real one", [f"{M1} <{ATTACKER}>"], token_address,
             [], (M1, "no address in its name")),
            ("a member's Reply-To", [ATTACKER], token_address, [f"Reply-To: {M1}"], None),
            ("an encoded word", ["=?utf-8?q?m1=40example.org?= <attacker@evil.test>"],
             token_address, [], None),
            ("a look-alike domain", ["m1@examp1e.org"], token_address, [], None),
            ("two From headers", [M1, ATTACKER], token_address, [], (M1, "several From")),
            ("two addresses in From", [f"{M1}, {ATTACKER}"], token_address, [],
             (M1, "exactly one address")),
            ("injected Authentication-Results", [M1], plain,
             [f"Authentication-Results: {GENUINE_FAIL}", f"Authentication-Results: {FORGED_PASS}"],
             (M1, "no DKIM signature or trusted DKIM/DMARC pass")),
            ("a pass not aligned with From", [M1], plain,
             [f"Authentication-Results: {MTA}; dkim=pass header.d=evil.test"],
             (M1, "no DKIM signature or trusted DKIM/DMARC pass")),
            ("another member's token", [M2], token_address, [], (M2, "another member")),
            ("another case's token", [M1], f"{other_case}@example.org", [],
             (M1, "another case")),
            ("an expired token", [M1], expired, [], (M1, "has expired")),
        ]
        for n, (what, froms, to, headers, told) in enumerate(forgeries, start=1):
            before = len(relay.received)
            server.send(raw_mail(froms, to, subject, f"FORGED-{n} ({what})\n\n{command}\n",
                                 headers), ATTACKER, [to])
            server.processed(2 + n)
            assert server.query("SELECT violation FROM case_record WHERE violation IS NOT NULL"
                                ) == [], what
            if told:
                member, why = told
                transcript = relay.wait_for(
                    lambda c, before=before, member=member: c in relay.received[before:]
                    and c.rcpts == [member] and "Transcript" in c.msg["Subject"],
                    what=f"transcript for {what}")[0].body()
                assert "was not accepted as yours" in transcript and why in transcript, what
                assert f"> {command}\r\nnot run" in transcript
        # Without commands, unproven mail from a member's address is not relayed either.
        server.send(raw_mail([M1], plain, subject, "FORGED-14: the reporter withdrew."),
                    ATTACKER, [plain])
        notice = relay.wait_for(lambda c: c.rcpts == [M1] and "archived as a note and not "
                                "relayed" in c.body() and "> " not in c.body(),
                                what="notice of the note")[0].body()
        assert "was not accepted as yours: no signed token" in notice
        # Forged mail is archived as a note (or held, from a non-member) and relayed to nobody.
        kinds = server.query("SELECT kind, count(*) FROM messages WHERE body_text LIKE "
                             "'FORGED-%' GROUP BY kind ORDER BY kind")
        assert kinds == [("held", 5), ("note", 9)]
        assert not [c for c in relay.received if "FORGED" in c.body()]
        assert not relay.to(ATTACKER)

        # The same mail with the trusted MTA's aligned pass on top applies.
        server.send(raw_mail([M1], plain, subject, "Genuine.\n\n" + command,
                             [f"Authentication-Results: {MTA}; dkim=pass header.d=example.org"]),
                    M1, [plain])
        transcript = relay.wait_for(lambda c: c.rcpts == [M1] and "Genuine" not in c.body()
                                    and "All commands were applied" in c.body(),
                                    what="genuine transcript")[0]
        assert "violation: yes" in transcript.body()
        assert server.query("SELECT case_id, violation FROM case_record") == [(case.id, "yes")]
        assert server.query("SELECT proof FROM audit WHERE action = 'command #violation'") == \
               [("mta-dkim",)]
        # So does a reply to the member's own copy: their signed token.
        case.command(CHAIR, "#ongoing no")
        assert server.query("SELECT proof FROM audit WHERE action = 'command #ongoing'") == \
               [("token",)]
    finally:
        server.stop()
