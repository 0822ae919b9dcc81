"""Recusal holds on every route, over real SMTP: it matches on normalised text in every
header and part, wherever the new text stands; a recused member finds nothing of the
case through search, search transcripts, exports or digests; and writing into the case
tells them nothing, with the same answer as for a case that does not exist."""

from __future__ import annotations

import json
from datetime import timedelta

from mailflow import timestamps
from mailflow.mail import tokens
from mailflow.store.secret import load_secret
from mailflow.testing import CHAIR, M1, M2, MailflowServer, make_mail, wait_until

ALIASES = f'aliases = {{ "{M2}" = ["Sam Jones"] }}\n'
YEAR = timestamps.now().year


def start(tmp_path, relay) -> MailflowServer:
    server = MailflowServer(tmp_path, relay.port)
    text = server.config.read_text()
    server.config.write_text(text.replace("[committee]\n", "[committee]\n" + ALIASES, 1))
    return server.start()


def mime(subject: str, parts: list[tuple[str, str]], sender: str = "rep@people.test",
         headers: str = "", to: str = "conduct@example.org") -> bytes:
    """A report written by hand: ``parts`` are (content type, text), alternatives of
    one another when there are several."""
    head = (f"From: Reporter <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{abs(hash((subject, tuple(parts), sender)))}@people.test>\r\n"
            f"MIME-Version: 1.0\r\n{headers}")
    if len(parts) == 1:
        ctype, text = parts[0]
        return (head + f"Content-Type: {ctype}; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n" + text + "\r\n").encode()
    body = "".join(f"--b\r\nContent-Type: {ctype}; charset=utf-8\r\n"
                   f"Content-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n" for ctype, text in parts)
    return (head + 'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
            + body + "--b--\r\n").encode()


def report(server, relay, raw: bytes, sender: str = "rep@people.test") -> str:
    before = len(relay.to(sender))
    server.send(raw, sender, ["conduct@example.org"])
    ack = relay.wait_for(lambda c: sender in c.rcpts, count=before + 1, what="ack")[-1]
    return ack.msg["X-Mailflow-Case"]


def recused(server, case_id: str) -> list[str]:
    return [r[0] for r in server.query("SELECT address FROM people WHERE case_id = ? AND "
                                       "role = 'recused'", (case_id,))]


def copies(relay, case_id: str, member: str) -> list:
    with relay.lock:
        return [c for c in relay.received if c.rcpts == [member]
                and case_id in (c.msg["Subject"] or "")]


def test_recusal_matches_every_spelling_in_every_part(tmp_path, relay):
    server = start(tmp_path, relay)
    try:
        spellings = {
            "alias over a line break": mime("Report", [("text/plain", "It was Sam\r\nJones.")]),
            "format=flowed soft break": mime("Report", [(
                "text/plain; format=flowed", "It was Sam \r\nJones, again.")]),
            "encoded word in the subject": mime("=?utf-8?q?About_S=C3=A1m_Jones?=",
                                                [("text/plain", "See the subject.")]),
            "HTML only, nbsp and soft hyphen": mime("Report", [(
                "text/html", "<p>It was Sam&nbsp;Jo&shy;nes.</p>")]),
            "only the HTML alternative": mime("Report", [
                ("text/plain", "It was a committee member."),
                ("text/html", "<p>It was <b>Sam</b> <i>Jones</i>.</p>")]),
            "NFD and a zero-width space": mime("Report", [(
                "text/plain", "It was Sa\u200bm Jo\u0301nes.")]),
            "full-width letters": mime("Report", [("text/plain", "It was Ｓａｍ　Ｊｏｎｅｓ.")]),
            "Cyrillic look-alikes": mime("Report", [("text/plain", "It was Ѕаm Јоnеs.")]),
            "address in capitals, encoded in a header": mime(
                "Report", [("text/plain", "See the Comments header.")],
                headers="Comments: =?utf-8?b?TTJARVhBTVBMRS5PUkc=?=\r\n"),
        }
        for n, (what, raw) in enumerate(spellings.items()):
            # One reporter each: acknowledgements are rate-limited per sender.
            sender = f"rep{n}@people.test"
            case_id = report(server, relay, raw.replace(b"rep@people.test", sender.encode()),
                             sender=sender)
            wait_until(lambda case_id=case_id: copies(relay, case_id, CHAIR), what=what)
            assert recused(server, case_id) == [M2], what
            assert copies(relay, case_id, M2) == [], what
        # Control: a report naming nobody reaches every member.
        clean = report(server, relay, mime("Report", [("text/plain", "It was Samuel Jonesy.")]))
        wait_until(lambda: copies(relay, clean, M2), what="the control copy")
        assert recused(server, clean) == []
    finally:
        server.stop()


def reply_to_ack(server, relay, sender: str, case_id: str, text: str) -> None:
    ack = next(c for c in relay.to(sender) if c.msg["X-Mailflow-Case"] == case_id).msg
    server.send(make_mail(sender, ack["Reply-To"], "Re: " + ack["Subject"],
                          text.replace("\n", "\r\n")), sender, [ack["Reply-To"]])


def test_a_reply_written_below_the_quote_recuses(tmp_path, relay):
    server = start(tmp_path, relay)
    try:
        for n, layout in enumerate(["bottom", "interleaved"]):
            sender = f"rep{n}@people.test"
            case_id = report(server, relay, mime("Report", [("text/plain", "It happened.")],
                                                 sender=sender), sender=sender)
            wait_until(lambda case_id=case_id: copies(relay, case_id, M2), what="first copy")
            quote = ("On Tue, 24 Nov 2026, Conduct <conduct@example.org> wrote:\n"
                     "> We received your report.\n> We will be in touch.\n")
            text = (f"{quote}\nI forgot to say: it was Sam Jones.\n" if layout == "bottom"
                    else f"{quote.splitlines()[0]}\n> We received your report.\n\nIt was Sam "
                    "Jones.\n\n> We will be in touch.\n")
            reply_to_ack(server, relay, sender, case_id, text)
            wait_until(lambda case_id=case_id: recused(server, case_id), what=layout)
            assert recused(server, case_id) == [M2]
            server.processed(2 * (n + 1))
            assert len(copies(relay, case_id, M2)) == 1, "the reply was not sent to them"
    finally:
        server.stop()


def command(server, relay, member: str, copy, text: str) -> str:
    before = len(relay.to(member))
    server.send(make_mail(member, copy.msg["Reply-To"], "Re: " + copy.msg["Subject"],
                          text.replace("\n", "\r\n")), member, [copy.msg["Reply-To"]])
    return relay.wait_for(lambda c: c.rcpts == [member], count=before + 1,
                          what=f"answer to {member}")[-1].body()


def test_a_recused_member_finds_nothing_of_the_case_by_any_route(tmp_path, relay):
    server = start(tmp_path, relay)
    try:
        named = report(server, relay, mime("Quokkacanary", [(
            "text/plain", "Sam Jones shouted at me; the quokkacanary saw it.")],
            sender="witness.a@people.test"), sender="witness.a@people.test")
        other = report(server, relay, mime("Other", [("text/plain", "Unrelated.")],
                                           sender="b@people.test"), sender="b@people.test")
        m1_copy = wait_until(lambda: copies(relay, other, M1))[-1]
        m2_copy = wait_until(lambda: copies(relay, other, M2))[-1]
        # M1 may see case `named`: their search transcript, sent from case `other`,
        # quotes it.  (Their query names no word of it: M1's own mail is no leak.)
        assert "quokkacanary" in command(server, relay, M1, m1_copy, f"#search case:{named}")
        # The export of `other` holds M1's search transcript no more than the index does.
        for fmt in ("json", "html", "mbox"):
            export = server.cli("case", "export", other, "--as", M2, "--format", fmt,
                                "-o", "-").stdout
            assert b"quokkacanary" not in export.lower() and b"witness.a" not in export, fmt
        for query in ("quokkacanary", "from:witness.a@people.test", "witness",
                      f"case:{named}", "shouted"):
            # Only M2's own #search mails (filed on `other`) may match their words.
            answer = command(server, relay, M2, m2_copy, f"#search {query}")
            assert named not in answer.replace(query, "") and "saw it" not in answer, query
            assert "witness.a" not in answer.replace(query, ""), query
            cli = server.cli_json("search", query, "--as", M2)
            assert [r for r in cli["results"] if r["case"] != other
                    or r["from"] != M2] == [], query
        listed = server.cli_json("cases", "--as", M2)
        assert named not in json.dumps(listed)
        # Their case, and one that does not exist, look the same to them.
        for verb, extra in (("show", ()), ("export", ("-o", "-"))):
            answers = [server.cli("case", verb, case_id, "--as", M2, *extra, check=False)
                       for case_id in (named, f"{YEAR}-0099")]
            assert [a.returncode for a in answers] == [65, 65], verb
            assert answers[0].stderr.replace(named.encode(), b"X") == \
                answers[1].stderr.replace(f"{YEAR}-0099".encode(), b"X"), verb
        # What mailflow writes to members is derived from indexed records, and is not
        # indexed itself: a digest or a transcript is nobody's search result.
        assert server.query("SELECT kind FROM outbound WHERE new_text IS NOT NULL AND kind "
                            "NOT IN ('ack', 'response', 'escalation')") == []
    finally:
        server.stop()


def test_a_recused_member_writing_into_the_case_learns_nothing(tmp_path, relay):
    server = start(tmp_path, relay)
    try:
        case_id = report(server, relay, mime("Report", [("text/plain", "It happened.")]))
        old_copy = wait_until(lambda: copies(relay, case_id, M2))[-1]
        reply_to_ack(server, relay, "rep@people.test", case_id, "It was m2@example.org.\n")
        wait_until(lambda: recused(server, case_id), what="the recusal")
        signer = tokens.Signer(load_secret(server.archive / "secret.key"))
        no_case = signer.member_token(None, M2, (timestamps.now() + timedelta(days=9)).date())
        general = f"committee+{no_case}@example.org"
        missing = f"{YEAR}-0099"
        probes = [  # (to, subject): their old copy's address; the tag of the case; of none
            (old_copy.msg["Reply-To"], "Re: " + old_copy.msg["Subject"]),
            (general, f"[coc #{case_id}] a question"),
            (general, f"[coc #{missing}] a question"),
            ("committee@example.org", f"[coc #{case_id}] a question"),   # no proof at all
            ("committee@example.org", f"[coc #{missing}] a question"),
        ]
        answers = []
        for n, (to, subject) in enumerate(probes, start=1):
            before = len(relay.to(M2))
            server.send(make_mail(M2, to, subject, f"Probe-{n}\r\n#violation yes\r\n"), M2, [to])
            answers.append(relay.wait_for(lambda c: c.rcpts == [M2], count=before + 1,
                                          what=f"answer to probe {n}")[-1])
        bodies = {a.body() for a in answers}
        assert len(bodies) == 1, bodies
        body = " ".join(bodies.pop().split())
        assert "not accepted" in body and "not relayed" in body
        assert "recused" not in body.lower() and case_id not in body and missing not in body
        assert len({a.msg["Subject"] for a in answers}) == 1
        server.processed(len(probes) + 2)
        assert not [c for c in relay.received if "Probe-" in c.body()]
        assert server.query("SELECT violation FROM case_record WHERE violation IS NOT NULL"
                            ) == []
        assert not [c for c in relay.to(M2) if case_id in (c.msg["Subject"] or "")
                    and c is not old_copy and c not in answers]
        assert [c for c in relay.to(CHAIR) if "recused" in (c.msg["Subject"] or "")]
        # Writing as a reporter with the case's tag, or a missing one's: each opens a new
        # case, acknowledged alike; neither joins the case.
        for n, tag in enumerate((case_id, missing)):
            server.send(make_mail(M2, "conduct@example.org", f"[coc #{tag}] about it",
                                  f"Conduct-probe-{n}"), M2, ["conduct@example.org"])
        relay.wait_for(lambda c: c.rcpts == [M2] and "received your report" in
                       (c.msg["Subject"] or ""), count=2, what="both acknowledgements")
        filed = server.query("SELECT case_id FROM messages WHERE body_text LIKE "
                             "'Conduct-probe-%'")
        assert len(filed) == 2 and case_id not in {r[0] for r in filed}
    finally:
        server.stop()
