"""Reply splitting benchmark: what reading a reply as its reader sees it costs a message.

    .venv/bin/python bench/replies.py [--rounds 2000] [--libraries]

In one process, each measured as the best of five batches (the machine is shared):

1. a 10 KB HTML-only reply (Outlook's shape, a thread quoted under it): rendered
   (``htmltext.html_to_text``) and split (``quotes.split``): the target is 1 ms;
2. beside it, the baseline every message pays anyway: the standard library parsing the
   same message's bytes (``email.message_from_bytes``), and ``parse()`` in full;
3. every reply of tests/fixtures/replies/: ``parse()`` in full, and the split alone, per message;
4. hostile input: 300 KB of attribution-like lines, 200,000 nested elements.

``--libraries``: the maintained splitters evaluated for the README (mail-parser-reply,
quotequail, email_reply_parser), where installed (`pip install` them by hand, they are
not dependencies), on the same corpus: how many replies each reads right (exactly the
member's commands read from what it returns as new text, all the member's lines kept,
no line of the quote header or the quoted copy in it), and their time on one hostile
line.  Results to stdout and bench/results/replies.json.
"""

from __future__ import annotations

import argparse
import email
import json
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mailflow.app import COMMANDS  # noqa: E402
from mailflow.commands.language import parse as parse_commands  # noqa: E402
from mailflow.mail import quotes  # noqa: E402
from mailflow.mail.htmltext import html_to_text  # noqa: E402
from mailflow.mail.parse import parse  # noqa: E402

CORPUS = HERE.parent / "tests" / "fixtures" / "replies"


def best_ms(func: Callable[[], object], rounds: int) -> float:
    """The best of five batches of ``rounds`` calls, per call, in milliseconds."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            func()
        best = min(best, (time.perf_counter() - start) / rounds * 1000)
    return best


def ten_kb_html_reply() -> bytes:
    """Outlook's HTML-only reply (the corpus' Exchange one) with a longer thread
    quoted under it, padded to 10 KB of HTML."""
    raw = (CORPUS / "exchange_html_only_fr.eml").read_bytes().replace(b"\n", b"\r\n")
    msg = email.message_from_bytes(raw)
    html = msg.get_payload(decode=True).decode()
    older = ("<div>&gt; Earlier in the thread: the moderators removed two posts and asked "
             "everyone to keep to the topic of the release.</div>\n")
    while len(html.encode()) < 10_240:
        html = html.replace("</body>", older + "</body>", 1)
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"quoted-printable", b"8bit")
    return head + b"\r\n\r\n" + html.encode()


def measure_ours(rounds: int) -> dict:
    raw = ten_kb_html_reply()
    html = raw.split(b"\r\n\r\n", 1)[1].decode()
    figures = {
        "html_bytes": len(html.encode()),
        "render_and_split_10kb_html_ms": best_ms(lambda: quotes.split(html_to_text(html).marked),
                                                 rounds),
        "render_10kb_html_ms": best_ms(lambda: html_to_text(html), rounds),
        "stdlib_message_from_bytes_ms": best_ms(lambda: email.message_from_bytes(raw), rounds),
        "parse_whole_message_ms": best_ms(lambda: parse(raw), rounds),
    }
    figures["ratio_split_to_stdlib_parse"] = (figures["render_and_split_10kb_html_ms"]
                                              / figures["stdlib_message_from_bytes_ms"])
    replies = [p.read_bytes().replace(b"\n", b"\r\n") for p in sorted(CORPUS.glob("*.eml"))]
    bodies = [parse(r).body_text for r in replies]
    figures["corpus_replies"] = len(replies)
    figures["corpus_parse_per_message_ms"] = best_ms(
        lambda: [parse(r) for r in replies], max(1, rounds // 20)) / len(replies)
    figures["corpus_split_per_message_ms"] = best_ms(
        lambda: [quotes.split(b) for b in bodies], max(1, rounds // 20)) / len(replies)
    hostile_plain = "\n".join(["> q", "On 1 Nov 2026, Kim <k@x.org> wrote:"] * 8_000)
    hostile_html = "<div>" * 200_000 + "x" + "</div>" * 200_000
    figures["hostile_300kb_attribution_lines_ms"] = best_ms(
        lambda: quotes.split(hostile_plain), 1)
    figures["hostile_200k_nested_elements_ms"] = best_ms(lambda: html_to_text(hostile_html),
                                                         1)
    return figures


def splitter_text(raw: bytes, body: str) -> str:
    """What mailflow's splitter reads: the body, or for HTML-only mail the HTML rendered
    with its quotes marked '>' (the archive keeps it unmarked)."""
    msg = email.message_from_bytes(raw)
    if any(p.get_content_type() == "text/plain" for p in msg.walk()):
        return body
    return "\n".join(html_to_text(p.get_payload(decode=True).decode()).marked
                     for p in msg.walk() if p.get_content_type() == "text/html")


def measure_libraries() -> dict:
    """The candidate libraries on the corpus, where they are installed."""
    expected = tomllib.loads((CORPUS / "expected.toml").read_text())
    candidates: dict[str, Callable[[str], str]] = {"mailflow": lambda t: quotes.split(t).new_text}
    try:
        from mailparser_reply import EmailReplyParser
        langs = ["en", "de", "fr", "es", "it", "nl"]
        candidates["mail-parser-reply"] = lambda t: EmailReplyParser(
            languages=langs).parse_reply(t) or ""
    except ImportError:
        pass
    try:
        import quotequail
        candidates["quotequail"] = lambda t: quotequail.quote(t, quote_intro_line=True)[0][1]
    except ImportError:
        pass
    try:
        from email_reply_parser import EmailReplyParser as GitHubParser
        candidates["email_reply_parser"] = GitHubParser.parse_reply
    except ImportError:
        pass
    results = {}
    hostile = "On " + "a b " * 5_000 + "\n"
    for name, split in candidates.items():
        right = []
        for reply in sorted(expected):
            raw = (CORPUS / f"{reply}.eml").read_bytes()
            parsed = parse(raw)
            new = split(splitter_text(raw, parsed.body_text))
            commands = [c.line for c in parse_commands(new, COMMANDS, parsed.hard_wrapped)
                        .commands]
            kept = all(line in new for line in expected[reply]["new"].split("\n"))
            leaked = parsed.quoted_text.split("\n")[0] in new or "Case:      " in new
            if commands == expected[reply]["commands"] and kept and not leaked:
                right.append(reply)
        start = time.perf_counter()
        split(hostile)
        results[name] = {"right": len(right), "of": len(expected),
                         "wrong": sorted(set(expected) - set(right)),
                         "hostile_20kb_line_ms": (time.perf_counter() - start) * 1000}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--libraries", action="store_true")
    args = parser.parse_args()
    results = {"mailflow": measure_ours(args.rounds)}
    if args.libraries:
        results["libraries"] = measure_libraries()
    text = json.dumps(results, indent=2)
    print(text)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "replies.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
