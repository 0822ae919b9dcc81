"""The searchable archive through the real server and the real CLI: each prefix, phrases,
boolean operators, date ranges, recusal, call summaries filed by #call, #search by mail."""

from __future__ import annotations

import json

import pytest

from mailflow.testing import CHAIR, M1, M2, wait_until

ALICE, CAROL, BOB_ALICE = "alice@people.test", "carol@people.test", "bob.alice@people.test"
CONDUCT = "conduct@example.org"


def mail(sender: str, subject: str, body: str, date: str, mid: str, to: str = CONDUCT,
         extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: <{mid}>\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{body}\r\n").encode()


# What the archive holds: (key, sender, subject, body, Date, Message-ID, extra headers).
MAILS = [
    ("m1", ALICE, "Harassment in the chat", "Bob kept insulting newcomers in the chat.",
     "Sat, 10 Jan 2026 09:00:00 +0000", "a1@people.test", ""),
    ("m2", CAROL, "Keynote slides", "The keynote slides were offensive. Quartz penguin.",
     "Sun, 15 Feb 2026 09:00:00 +0000", "c1@people.test", ""),
    ("m3", ALICE, "Re: Harassment in the chat",
     "He did it again today.\r\n\r\nOn Sat, 10 Jan 2026, Alice wrote:\r\n"
     "> Bob kept insulting newcomers in the chat.",
     "Fri, 20 Mar 2026 09:00:00 +0000", "a2@people.test", "In-Reply-To: <a1@people.test>\r\n"),
    ("m4", BOB_ALICE, "Question", "Where can I read the code of conduct?",
     "Wed, 01 Apr 2026 09:00:00 +0000", "b1@people.test", ""),
]


@pytest.fixture
def archive(server):
    for _, sender, subject, body, date, mid, extra in MAILS:
        server.send(mail(sender, subject, body, date, mid, extra=extra), sender, [CONDUCT])
        server.processed(1)
    server.processed(len(MAILS))
    return server


def search(server, *query: str, as_member: str | None = None) -> list[dict]:
    args = ["search", *query, "--json", "--limit", "50"]
    if as_member:
        args += ["--as", as_member]
    return json.loads(server.cli(*args).stdout)["results"]


def keys(results: list[dict]) -> list[str]:
    """The test's names for the messages found (anything else by its kind)."""
    by_subject = {(m[1], m[2]): m[0] for m in MAILS}
    out = []
    for r in results:
        address = r["from"].split()[-1] if r["from"] else ""
        out.append(by_subject.get((address, r["subject"]), r["kind"]))
    return out


def test_prefixes_phrases_booleans_and_dates(archive):
    s = archive
    # Free words rank: the new text of m1 above the quoted copy in m3.
    assert keys(search(s, "insulting")) == ["m1", "m3"]
    assert keys(search(s, "body:insulting")) == ["m1"]
    assert keys(search(s, "quoted:insulting")) == ["m3"]
    assert keys(search(s, "insult*")) == ["m1", "m3"]
    # An address matches exactly (not bob.alice@); a word matches any sender with it.
    assert keys(search(s, f"from:{ALICE}")) == ["m3", "m1"]
    assert sorted(keys(search(s, "from:alice kind:report"))) == ["m1", "m4"]
    assert sorted(keys(search(s, f"to:{CONDUCT}", "kind:report"))) == ["m1", "m2", "m4"]
    assert keys(search(s, "subject:keynote", "kind:report")) == ["m2"]
    assert sorted(keys(search(s, "subject:keynote"))) == ["case", "m2"]
    # Phrases keep word order.
    assert keys(search(s, '"quartz penguin"')) == ["m2"]
    assert search(s, '"penguin quartz"') == []
    # Boolean operators and grouping.
    assert sorted(keys(search(s, "insulting OR quartz"))) == ["m1", "m2", "m3"]
    assert keys(search(s, "insulting AND NOT quoted:insulting")) == ["m1"]
    assert search(s, f"insulting -from:{ALICE}") == []
    assert keys(search(s, "(quartz OR insulting) kind:reply")) == ["m3"]
    assert sorted(keys(search(s, "kind:report NOT (from:carol OR question)"))) == ["m1"]
    # Date ranges: both ends included; one day; open ends; relative ages.
    assert sorted(keys(search(s, "date:2026-02-01..2026-03-20"))) == ["m2", "m3"]
    assert keys(search(s, "date:2026-03-20")) == ["m3"]
    assert keys(search(s, "date:..2026-01")) == ["m1"]
    assert keys(search(s, "date:2026-04.. kind:report")) == ["m4"]
    assert search(s, "date:2w.. kind:report") == []
    # Case, person and status are the case's; kind:sent is what mailflow sent.
    case1 = search(s, "body:insulting")[0]["case"]
    assert keys(search(s, f"case:{case1}", "kind:reply")) == ["m3"]
    assert sorted(keys(search(s, f"person:{ALICE}", "NOT kind:sent", "NOT kind:case"))) == [
        "m1", "m3"]
    assert sorted(keys(search(s, "status:open kind:report"))) == ["m1", "m2", "m4"]
    assert search(s, "status:closed") == []
    assert keys(search(s, "kind:sent")) == ["sent"] * 3  # one acknowledgement per report
    # Sent mail is indexed by its recipients, sender and text like received mail.
    ack = search(s, f"to:{CAROL}", "kind:sent")
    assert len(ack) == 1 and ack[0]["subject"].endswith("We have received your report")
    assert len(search(s, "body:confirms", f"to:{CAROL}")) == 1
    assert len(search(s, "from:conduct@example.org", "kind:sent")) == 3
    assert len(search(s, "kind:case")) == 3


def test_results_have_snippets_and_group_by_case(archive):
    hit = search(archive, "quartz")[0]
    assert "«Quartz»" in hit["snippet"] and hit["score"] > 0
    text = archive.cli("search", "insulting").stdout.decode()
    assert "*insulting*" in text
    grouped = json.loads(archive.cli("search", "insulting OR quartz", "--by-case",
                                     "--json").stdout)
    assert sorted(c["hits"] for c in grouped["cases"]) == [1, 2]
    assert {r["case"] for r in grouped["cases"][0]["results"]} == {grouped["cases"][0]["case"]}


@pytest.mark.parametrize("query, words", [
    ("foo:bar", "unknown prefix 'foo:'"),
    ("(insulting", "missing ')'"),
    ("insulting OR", "after OR"),
    ("date:2026-13-01", "date: cannot read"),
    ("date:2026-03..2026-01", "ends before it starts"),
    ("kind:letter", "is not a kind"),
    ('"unclosed', "unclosed quote"),
])
def test_a_bad_query_gets_a_clear_message(archive, query, words):
    result = archive.cli("search", query, check=False)
    err = result.stderr.decode()
    assert result.returncode == 64
    assert words in err and "Traceback" not in err


def test_a_recused_member_never_sees_the_case(server, relay):
    # M1 is named in the report, so is recused from the case automatically.
    server.send(mail(ALICE, "About a member", "m1@example.org was rude. Walrus incident.",
                     "Sat, 10 Jan 2026 09:00:00 +0000", "r1@people.test"), ALICE, [CONDUCT])
    server.processed(1)
    wait_until(lambda: server.query("SELECT count(*) FROM people WHERE role = 'recused'")[0][0],
               what="the recusal")
    assert keys(search(server, "walrus")) == ["report"]
    assert search(server, "walrus", as_member=M2)
    assert search(server, "walrus", as_member=M1) == []
    assert search(server, "kind:report", as_member=M1) == []
    assert json.loads(server.cli("cases", "--as", M1, "--json").stdout) == []
    assert len(json.loads(server.cli("cases", "--as", M2, "--json").stdout)) == 1
    case_id = search(server, "walrus")[0]["case"]
    assert server.cli("case", "show", case_id, "--as", M1, check=False).returncode == 65


def _reply_address(relay, member: str) -> str:
    copies = relay.wait_for(lambda c: c.rcpts == [member] and c.msg["Reply-To"], what="relay")
    return copies[-1].msg["Reply-To"]


def test_search_by_mail_answers_with_the_members_view(server, relay):
    server.send(mail(ALICE, "About a member", "m1@example.org was rude. Walrus incident.",
                     "Sat, 10 Jan 2026 09:00:00 +0000", "r1@people.test"), ALICE, [CONDUCT])
    server.processed(1)
    server.send(mail(CAROL, "Another", "The walrus again, in another channel.",
                     "Sun, 11 Jan 2026 09:00:00 +0000", "r2@people.test"), CAROL, [CONDUCT])
    server.processed(2)
    answers = {}
    for member in (M1, M2):
        to = _reply_address(relay, member)
        server.send(mail(member, "Re: case", "#search walrus", "Mon, 12 Jan 2026 10:00:00 +0000",
                         f"s-{member}", to=to), member, [to])
        got = relay.wait_for(lambda c, m=member: c.rcpts == [m] and "#search walrus" in c.body()
                             and "(mailflow)" in c.msg["From"], what="the #search transcript")
        answers[member] = got[-1].body()
    assert "in another channel" in answers[M1] and "was rude" not in answers[M1]
    assert "in another channel" in answers[M2] and "was rude" in answers[M2]


def test_a_call_summary_filed_by_mail_is_found_by_a_word_of_it(server, relay):
    server.send(mail(ALICE, "Report", "Something happened at the meetup.",
                     "Sat, 10 Jan 2026 09:00:00 +0000", "k1@people.test"), ALICE, [CONDUCT])
    server.processed(1)
    to = _reply_address(relay, CHAIR)
    body = ("#call today the reporter\r\nWe spoke about the zeppelin incident at length."
            "\r\n#end")
    server.send(mail(CHAIR, "Re: case", body, "Sat, 10 Jan 2026 11:00:00 +0000", "k2@x", to=to),
                CHAIR, [to])
    wait_until(lambda: search(server, "kind:call"), what="the call summary indexed")
    found = search(server, "zeppelin", "kind:call")
    assert len(found) == 1 and found[0]["from"] == CHAIR
    assert "«zeppelin»" in found[0]["snippet"]
