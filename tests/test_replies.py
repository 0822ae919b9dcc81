"""The reply splitter over the corpus of real-shaped replies (tests/fixtures/replies/), and its
rules one by one: what is new text, what is quoted, what is signature, for each mail
client and language the committee uses.  Fast: no server (test_mail_clients.py sends
the same replies through a real one)."""

from __future__ import annotations

import email
import random
import tomllib

import pytest
from fixturekit import FIXTURES, load
from fixturekit import names as fixture_names

from mailflow import app
from mailflow.commands.language import parse as parse_commands
from mailflow.mail import htmltext, quotes
from mailflow.mail.flowed import unflow
from mailflow.mail.htmltext import html_to_text
from mailflow.mail.parse import parse

EXPECTED = tomllib.loads((FIXTURES / "replies" / "expected.toml").read_text())
QUOTED_ONLY = ("#violation no", "#close", "#general was noisy")


def raw(name: str) -> bytes:
    return load("replies", name)


def commands(text: str, hard_wrapped: bool = False) -> list[str]:
    return [c.line for c in parse_commands(text, app.COMMANDS, hard_wrapped).commands]


def test_the_corpus_covers_every_client_the_committee_uses():
    names = set(EXPECTED)
    assert names == set(fixture_names("replies"))
    for family in ("outlook", "exchange", "blackberry", "gmail", "apple", "thunderbird", "k9",
                   "iphone"):
        assert any(n.startswith(family) for n in names), family
    for lang in ("de", "fr", "es", "it", "pt", "nl"):  # besides English
        assert any(n.endswith(f"_{lang}") or f"_{lang}_" in n for n in names), lang


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_new_text_is_what_the_member_wrote(name):
    expected = EXPECTED[name]
    parsed = parse(raw(name))
    assert parsed.new_text == expected["new"].strip("\n")
    assert commands(parsed.new_text, parsed.hard_wrapped) == expected["commands"]
    for line in QUOTED_ONLY:
        assert line not in parsed.new_text
        assert line in parsed.quoted_text.replace("\n> ", " ").replace("\n", " ")
    assert "\r" not in parsed.new_text + parsed.quoted_text + parsed.body_text
    if "signature" in expected:
        assert expected["signature"] in parsed.signature
        assert expected["signature"] not in parsed.new_text


def html_parts(name: str) -> list[str]:
    msg = email.message_from_bytes(raw(name))
    return [p.get_payload(decode=True).decode(p.get_content_charset() or "utf-8")
            for p in msg.walk() if p.get_content_type() == "text/html"]


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if html_parts(n)))
def test_the_html_part_gives_the_same_commands(name):
    """The HTML of each reply (alone, or beside its text/plain) is read alike: its quote
    is found in the markup, whatever the words around it."""
    for markup in html_parts(name):
        split = quotes.split(html_to_text(markup).marked)
        assert commands(split.new_text) == EXPECTED[name]["commands"]
        assert not any(line in split.new_text for line in QUOTED_ONLY)
        assert "#violation no" in split.quoted_text


@pytest.mark.parametrize("attribution", [
    "On Tue, Nov 24, 2026 at 10:02 AM Kim Park <kim@example.org> wrote:",
    "On Tue, Nov 24, 2026 at 10:02 AM Kim Park <\nkim@example.org> wrote:",
    "On 24/11/2026 10:02, Kim Park wrote:",
    "Kim Park <kim@example.org> wrote:",
    "Am Di., 24. Nov. 2026 um 10:02 Uhr schrieb Kim Park <\nkim@example.org>:",
    "Am 24.11.26 um 10:02 schrieb Kim Park:",
    "Kim Park <kim@example.org> schrieb am Di., 24. Nov. 2026, 10:02:",
    "Le mar. 24 nov. 2026 à 10:02, Kim Park <kim@example.org> a\nécrit :",
    "Le 24/11/2026 à 10:02, Kim Park a écrit :",
    "El mar, 24 nov 2026 a las 10:02, Kim Park (<\nkim@example.org>) escribió:",
    "El 24/11/2026 a las 10:02, Kim Park escribió:",
    "Il giorno mar 24 nov 2026 alle ore 10:02 Kim Park <kim@example.org>\nha scritto:",
    "Il 24/11/2026 10:02, Kim Park ha scritto:",
    "Em ter., 24 de nov. de 2026 às 10:02, Kim Park <\nkim@example.org> escreveu:",
    "Em 24/11/2026 10:02, Kim Park escreveu:",
    "Op di 24 nov 2026 om 10:02 schreef Kim Park <kim@example.org>:",
    "Op 24 nov. 2026 om 10:02 heeft Kim Park <kim@example.org> het volgende\ngeschreven:",
    "Den tis 24 nov. 2026 kl 10:02 skrev Kim Park <kim@example.org>:",
])
def test_attribution_lines_go_with_the_quote(attribution):
    text = f"#violation yes\n\n{attribution}\n\n> #violation no\n> #close\n\n#ongoing no\n"
    split = quotes.split(text)
    assert split.new_text == "#violation yes\n\n#ongoing no"
    assert split.quoted_text.startswith(attribution.split("\n")[0])


@pytest.mark.parametrize("block", [
    "From: Kim Park <kim@example.org>\nSent: Tuesday, November 24, 2026 10:02 AM\n"
    "To: Committee\nSubject: Re: case",
    "From: Kim Park\nDate: Tuesday, 24 November 2026 at 10:02\nTo: Committee\nSubject: Re: case",
    "*From:* Kim Park <kim@example.org>\n*Sent:* Tuesday, November 24, 2026 10:02 AM\n"
    "*To:* Committee",
    "Von: Kim Park <kim@example.org>\nGesendet: Dienstag, 24. November 2026 10:02\n"
    "An: Ausschuss\nBetreff: AW: Fall",
    "De : Kim Park\nEnvoyé : mardi 24 novembre 2026 10:02\nÀ : Comité\nObjet : RE: cas",
    "De: Kim Park\nEnviado el: martes, 24 de noviembre de 2026 10:02\nPara: Comité\n"
    "Asunto: RE: caso",
    "Da: Kim Park\nInviato: martedì 24 novembre 2026 10:02\nA: Comitato\nOggetto: R: caso",
    "De: Kim Park\nEnviada em: terça-feira, 24 de novembro de 2026 10:02\nPara: Comitê\n"
    "Assunto: RE: caso",
    "Van: Kim Park\nVerzonden: dinsdag 24 november 2026 10:02\nAan: Commissie\n"
    "Onderwerp: RE: zaak",
    "-----Original Message-----\nFrom: Kim Park",
    "-----Ursprüngliche Nachricht-----\nVon: Kim Park",
    "-----Message d'origine-----\nDe : Kim Park",
    "-----Mensaje original-----",
    "-----Messaggio originale-----",
    "________________________________\nFrom: Kim Park <kim@example.org>\n"
    "Sent: Tuesday, November 24, 2026 10:02 AM\nTo: Committee",
    "---------- Forwarded message ---------\nFrom: Kim Park <kim@example.org>",
    "Begin forwarded message:",
    "On Tuesday, November 24, 2026, 10:02:33 AM GMT+1, Kim Park <kim@example.org> wrote:",
])
def test_an_unmarked_original_is_quoted_to_the_end(block):
    """Outlook, Exchange, forwards and Yahoo quote without '>': everything from their
    header on is the original, commands included."""
    text = f"#violation yes\nAgreed.\n\n{block}\n\n#violation no\n#close\nOld text.\n"
    split = quotes.split(text)
    assert split.new_text == "#violation yes\nAgreed."
    assert "#violation no" in split.quoted_text and "#close" in split.quoted_text


@pytest.mark.parametrize("text", [
    "On 20 Nov, Sam wrote:\nyou are garbage\n#violation yes",   # prose: no '>' follows it
    "On Friday Sam wrote:\n> you are garbage\n#violation yes",  # no date, no address
    "From: the logs\nTo: be read\n#violation yes",             # no header block
    "Some text\n____________________________\n#violation yes",    # a rule, not Outlook's
    "#send apology-request to=originator\nbehaviour: rude\nwhen: 2026-11-20 10:02\n"
    "where: #general\n#end\n#violation yes",                       # #send fields
    "Sent from my phone, so briefly:\n#violation yes",            # text follows it
    "- first\n- second\n#violation yes\nBest regards,\nAda",       # lists, a closing
])
def test_text_that_only_looks_like_a_quote_stays_new(text):
    assert commands(quotes.split(text).new_text)[-1] == "#violation yes"


@pytest.mark.parametrize("signature", [
    "-- \nAda Lovelace\n#general on the chat", "--\nAda", "Sent from my iPhone",
    "Sent from my Android device with K-9 Mail. Please excuse my brevity.",
    "Get Outlook for Android", "Von meinem iPhone gesendet", "Envoyé de mon iPhone",
    "Enviado desde mi iPhone", "Inviato da iPhone", "Enviado do meu iPhone",
    "Verzonden vanaf mijn iPhone", "Gesendet von Outlook für Android",
])
def test_signatures_are_cut_top_and_bottom(signature):
    top = quotes.split(f"#violation yes\n\n{signature}\n\nOn 24/11/2026 10:02, Kim Park <k@x.org>"
                       " wrote:\n> #violation no\n")
    bottom = quotes.split(f"> #violation no\n\n#violation yes\n{signature}\n")
    for split in (top, bottom):
        assert split.new_text == "#violation yes"
        assert signature.split("\n")[-1] in split.signature


def test_interleaved_answers_are_all_new_text_in_order():
    text = ("On 24/11/2026 10:02, Kim Park wrote:\n> first point\n> #violation no\n\n"
            "Answer one.\n#violation yes\n\n> second point\n>> older\n\nAnswer two.\n"
            "#ongoing no\n\n> last point\n")
    split = quotes.split(text)
    assert split.new_text == "Answer one.\n#violation yes\n\nAnswer two.\n#ongoing no"
    assert len(split.quoted_text.split("\n")) == 6  # the attribution and five '>' lines


def test_crlf_and_lone_cr_become_newlines_even_without_a_quote():
    mail = (b"From: m1@example.org\r\nTo: committee@example.org\r\nSubject: x\r\n"
            b"Message-ID: <a@b>\r\n\r\n#violation yes\r\nSent from my iPhone\r\n")
    parsed = parse(mail)
    assert parsed.new_text == "#violation yes" and "\r" not in parsed.body_text


def test_format_flowed_is_unwrapped_before_anything_reads_it():
    text = ("#what Sam called the patch garbage and told Rita to \nleave the project\n"
            "> a quoted line that \n> goes on\n>> deeper \n> back\n From here, stuffed\n-- \nAda")
    assert unflow(text) == ("#what Sam called the patch garbage and told Rita to leave the "
                            "project\n> a quoted line that goes on\n>> deeper \n> back\n"
                            "From here, stuffed\n-- \nAda")
    assert unflow("one \ntwo", delsp=True) == "onetwo"  # DelSp=yes: the space was added
    assert unflow("ends flowed ") == "ends flowed "


def test_html_quote_ends_where_the_reader_sees_it_end():
    """lexbor builds the tree a browser builds: a stray end tag inside a quote does not
    end it, and an unclosed blockquote runs to the end, as it is shown."""
    stray = ("<div>#violation yes</div><blockquote>#violation no</div></span><br>"
             "#close</blockquote><div>#ongoing no</div>")
    assert commands(quotes.split(html_to_text(stray).marked).new_text) == ["#violation yes",
                                                                     "#ongoing no"]
    unclosed = "<p>#violation yes</p><blockquote><p>#violation no<p>#close"
    assert commands(quotes.split(html_to_text(unclosed).marked).new_text) == ["#violation yes"]
    nested = "<blockquote><blockquote><p>old</p></blockquote><p>newer</p></blockquote>"
    assert html_to_text(nested).marked == ">> old\n> newer"
    assert html_to_text(nested).text == "old\nnewer"  # the archive's body: as it reads


def test_html_signature_blocks_and_outlook_markers():
    html = ('<div>#violation yes</div><div class="gmail_signature">Ada<br>#general</div>'
            '<div id="divRplyFwdMsg"><b>Od:</b> Kim</div><div>#violation no</div>')
    split = quotes.split(html_to_text(html).marked)
    assert split.new_text == "#violation yes"
    assert "#general" in split.signature and "#violation no" in split.quoted_text


def test_hostile_input_never_raises_and_stays_bounded():
    rng = random.Random(16)
    pieces = ["<blockquote>", "</blockquote>", "<div class='gmail_quote'>", "</div>", "<pre>",
              "\n", "> ", "#violation yes", "On 1 Nov, <a@b> wrote:", "From: x", "Sent: y",
              "-- ", "\x00", "\ud800", "&#0;", "<!--", "<script>", "\r", "<br>", "<",
              "é", "\u202e", "Sent from my iPhone", "_" * 40, "<hr id=stopSpelling>"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 80)))
        quotes.split(text)
        quotes.split(html_to_text(text).marked)
        unflow(text, delsp=bool(rng.getrandbits(1)))
    deep = "<div>" * 200_000 + "#violation yes" + "</div>" * 200_000
    rendered = html_to_text(deep).marked  # not parsed: the parser would take minutes
    assert "deeper than" in rendered and "#violation yes" not in quotes.split(rendered).new_text
    wide = "<div>x</div>" * (htmltext.MAX_ELEMENTS + 10) + "<div>#violation yes</div>"
    rendered = html_to_text(wide).marked
    assert "not read" in rendered and "#violation yes" not in quotes.split(rendered).new_text
    many = "\n".join(["> q", "On 1 Nov, <a@b> wrote:"] * 20_000) + "\n#violation yes"
    assert quotes.split(many).new_text == ""  # past MAX_LINES everything is quoted
