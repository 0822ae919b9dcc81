"""A reply as its reader sees it: the writer's new text, what they quoted, their signature.

One function, :func:`split`, for every kind of mail (HTML arrives rendered by
:mod:`mailflow.mail.htmltext`, with its quotes marked ``> `` the same way).  The new text
is *all* the writer wrote, in order: above the quote (top-posting, Outlook and Gmail's
default), below it (Thunderbird's default, a K-9 option) and between quoted blocks
(interleaved answers).  Commands, the recusal scan and the archive's ``body:`` all read
it, so a quoted line must never land in it.

What counts as quoted, line by line:

- ``>`` lines, and the attribution line(s) that introduce them ("On ... wrote:", in
  English, German, French, Spanish, Italian, Portuguese and Dutch, on one to three lines
  as clients wrap them);
- everything after an unmarked original: an Outlook/Exchange header block (``From:``
  and ``Sent:``/``To:``/``Subject:`` lines, localised), ``-----Original Message-----``,
  the underscore rule above such a block, a forwarded-message marker, or an attribution
  with a date and an address that no ``>`` line follows (Yahoo, AOL);

and what counts as signature: from a ``-- `` line to the next quoted line, and a mobile
signature ("Sent from my iPhone", localised) when only blank lines follow it there.

Every pattern is matched on one bounded line (or up to three joined ones) and only
after a cheap test on its first word or last character, so no input makes this slow,
and nothing here raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailflow.mail import replypatterns as rp

ATTRIBUTION_LINES = 3   # "On ..., Name <\naddress> wrote:" wrapped by the client
HEADER_BLOCK_LINES = 8  # From: and its companions, some wrapped
LONGEST_MARKER = 400    # a longer line is never an attribution or a header
# Lines past this are taken as quoted without a look: no reply is written that long,
# and a hostile one must not cost more than a few milliseconds a kilobyte.
MAX_LINES = 5_000


@dataclass(frozen=True)
class Reply:
    """A reply's text in three parts; each keeps the order of the lines."""

    new_text: str
    quoted_text: str
    signature: str = ""


NEW, QUOTE, SIGNATURE = "new", "quote", "signature"


def split(text: str) -> Reply:
    """Split a mail's text (``\\n`` line ends) into new text, quoted text and signature."""
    lines = text.split("\n")
    kinds = _classify(lines)
    parts: dict[str, list[list[str]]] = {NEW: [], QUOTE: [], SIGNATURE: []}
    previous = None
    for line, kind in zip(lines, kinds, strict=True):
        if kind != previous:
            parts[kind].append([])
            previous = kind
        parts[kind][-1].append(line)
    return Reply(_join(parts[NEW], "\n\n"), _join(parts[QUOTE], "\n"),
                 _join(parts[SIGNATURE], "\n\n"))


def _join(blocks: list[list[str]], between: str) -> str:
    texts = ("\n".join(block).strip("\n") for block in blocks)
    return between.join(t.rstrip() for t in texts if t.strip())


def _classify(lines: list[str]) -> list[str]:
    kinds: list[str] = []
    current = NEW
    i = 0
    end = min(len(lines), MAX_LINES)
    while i < end:
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(">"):
            kinds.append(QUOTE)
            current = NEW   # a signature ends where the quote starts
            i += 1
            continue
        if len(stripped) > LONGEST_MARKER or not stripped:  # prose, or a blank line
            kinds.append(current)
            i += 1
            continue
        attribution = _attribution(lines, i)
        if attribution and _next_text_is_quoted(lines, i + attribution):
            kinds += [QUOTE] * attribution
            i += attribution
            current = NEW
            continue
        if attribution and _strong(lines, i, attribution):
            return kinds + [QUOTE] * (len(lines) - i)   # an unmarked original follows
        # (a weaker one followed by text is prose: "On 20 Nov, Sam wrote:" and a paraphrase)
        if _original_starts(lines, i):
            return kinds + [QUOTE] * (len(lines) - i)
        if line.rstrip() == "--" or (
                _is_mobile_signature(stripped) and _only_blank_until_quote(lines, i + 1)):
            current = SIGNATURE
        kinds.append(current)
        i += 1
    return kinds + [QUOTE] * (len(lines) - len(kinds))


def _attribution(lines: list[str], i: int) -> int:
    """How many lines, from ``i``, make an attribution line ("On ... wrote:"); 0: none."""
    first = lines[i].strip()
    if not first or len(first) > LONGEST_MARKER or not rp.could_attribute(first):
        return 0
    joined = ""
    for n in range(ATTRIBUTION_LINES):
        if i + n >= len(lines):
            break
        part = lines[i + n].strip()
        if not part or part.startswith(">"):
            break
        joined = rp.join_wrapped(joined, part)
        if len(joined) > LONGEST_MARKER:
            break
        if joined.endswith(":") and rp.ATTRIBUTION.match(joined):
            return n + 1
    return 0


def _strong(lines: list[str], i: int, count: int) -> bool:
    """An attribution with a time and an address: a client wrote it, not a person."""
    joined = " ".join(lines[i:i + count])
    return bool(rp.TIME.search(joined) and "@" in joined)


def _next_text_is_quoted(lines: list[str], i: int) -> bool:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i < len(lines) and lines[i].lstrip().startswith(">")


def _original_starts(lines: list[str], i: int) -> bool:
    """An unmarked original starts at line ``i``: everything from here is quoted."""
    line = lines[i].strip()
    if not line or len(line) > LONGEST_MARKER:
        return False
    if rp.ORIGINAL_MESSAGE.match(line) or rp.FORWARDED.match(line):
        return True
    if rp.UNDERSCORE_RULE.match(line):
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        return j < len(lines) and _header_block(lines, j)
    return _header_block(lines, i)


def _header_block(lines: list[str], i: int) -> bool:
    """A localised ``From:`` line followed by at least two of ``Sent:``, ``To:``,
    ``Subject:``... on the lines after it (a value may wrap onto one more line)."""
    if not rp.FROM_HEADER.match(lines[i].strip()):
        return False
    found, unmatched = 0, 0
    for line in lines[i + 1:i + HEADER_BLOCK_LINES]:
        stripped = line.strip()
        if not stripped:
            break
        if len(stripped) <= LONGEST_MARKER and rp.OTHER_HEADER.match(stripped):
            found, unmatched = found + 1, 0
        else:
            unmatched += 1
            if unmatched > 1:
                break
        if found >= 2:
            return True
    return False


def _is_mobile_signature(line: str) -> bool:
    return 0 < len(line) <= 120 and bool(rp.MOBILE_SIGNATURE.match(line))


def _only_blank_until_quote(lines: list[str], i: int) -> bool:
    for j in range(i, len(lines)):
        if lines[j].strip():
            return (lines[j].lstrip().startswith(">") or bool(_attribution(lines, j))
                    or _original_starts(lines, j))
    return True
