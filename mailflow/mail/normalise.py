"""One way of reading text for matching names and addresses: recusal and redaction
both match on :func:`fold`, so that no spelling a mail client shows the same way gets
past either.

Folding, in order:

- RFC 2047 encoded words (``=?utf-8?q?Zo=C3=AB?=``) are decoded wherever they stand:
  a mail client shows them decoded in a header, and a subject is a header;
- Unicode NFKC: full-width letters, ligatures, mathematical letters become plain ones;
- format characters (category Cf: zero-width space and joiners, soft hyphen, BOM,
  bidirectional marks) are removed: they are invisible, so ``Zo\\u200bë`` reads ``Zoë``;
- case is folded (``casefold``), then accents: letters are decomposed and their
  combining marks dropped, so ``Zoë``, ``ZOE`` and ``zoe`` are one spelling;
- look-alike letters of other scripts (Cyrillic ``а``, Greek ``ο``) become the Latin
  letter they are drawn like (the Unicode confusables of the ``confusable-homoglyphs``
  package);
- every run of whitespace, line breaks included, becomes one space, so a name wrapped
  over two lines still reads as the name.

:func:`fold_mapped` also says where each folded character came from, so that a match
in the folded text can be replaced in the original (redaction).
"""

from __future__ import annotations

import json
import re
import unicodedata
from email.header import decode_header
from functools import cache
from importlib import resources

ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
# Encoded words separated only by whitespace are one run: the whitespace is not text.
ENCODED_RUN = re.compile(rf"{ENCODED_WORD.pattern}(?:\s*{ENCODED_WORD.pattern})*")


def decode_words(text: str) -> str:
    """``text`` with every run of RFC 2047 encoded words decoded in place."""
    if "=?" not in text:
        return text
    return ENCODED_RUN.sub(_decode_run, text)


def _decode_run(match: re.Match[str]) -> str:
    try:
        return "".join(chunk.decode(charset or "ascii", "replace") if isinstance(chunk, bytes)
                       else chunk for chunk, charset in decode_header(match.group(0)))
    except (LookupError, ValueError):  # an unknown charset or a broken word: as written
        return match.group(0)


@cache
def _lookalikes() -> dict[str, str]:
    """{letter of another script: the Latin letter it looks like}, from the Unicode
    confusables table that ``confusable-homoglyphs`` ships."""
    data = json.loads(resources.files("confusable_homoglyphs")
                      .joinpath("confusables.json").read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for char, homoglyphs in data.items():
        if len(char) != 1 or char.isascii() or not char.isalpha():
            continue
        latin = [h["c"] for h in homoglyphs
                 if len(h["c"]) == 1 and h["c"].isascii() and h["c"].isalpha()]
        if latin:
            table[char] = latin[0].lower()
    return table



@cache
def fold_char(char: str, keep_case: bool = False) -> str:
    """One character folded (see the module's docstring); may be empty or several."""
    if char.isascii():
        return " " if char.isspace() else (char if keep_case else char.lower())
    out = []
    for c in unicodedata.normalize("NFKC", char):
        if unicodedata.category(c) == "Cf":
            continue
        c = c if keep_case else c.casefold()
        for d in unicodedata.normalize("NFKD", c):
            if unicodedata.combining(d) or unicodedata.category(d) in ("Mn", "Cf"):
                continue
            if d.isspace():
                out.append(" ")
                continue
            latin = _lookalikes().get(d)
            if latin is not None:
                d = latin.upper() if keep_case and d.isupper() else latin
            out.append(d)
    return "".join(out)


class _Table(dict[int, str]):
    """``str.translate``'s table, filled with :func:`fold_char` as characters come."""

    def __init__(self, keep_case: bool) -> None:
        super().__init__()
        self.keep_case = keep_case

    def __missing__(self, code: int) -> str:
        self[code] = folded = fold_char(chr(code), self.keep_case)
        return folded


_TABLES = {False: _Table(False), True: _Table(True)}


def fold(text: str, keep_case: bool = False) -> str:
    """``text`` folded for matching (see the module's docstring).  ``keep_case``:
    everything but the case folding, for matches that must see a capital."""
    text = decode_words(text)
    if text.isascii():
        folded = text if keep_case else text.lower()
    else:
        folded = text.translate(_TABLES[keep_case])
    return " ".join(folded.split())


@cache
def whole(value: str, keep_case: bool = False) -> re.Pattern[str]:
    """A pattern finding ``value``, folded, as a whole word or address in folded text:
    not inside a longer word, address or handle."""
    flags = 0 if keep_case else re.IGNORECASE
    return re.compile(rf"(?<![\w@.+\-]){re.escape(fold(value, keep_case))}(?![\w\-]|\.\w)",
                      flags)


def fold_mapped(text: str, keep_case: bool = False) -> tuple[str, list[int]]:
    """(folded text, for each folded character the index in ``text`` it came from).

    ``text`` is taken with its encoded words decoded (:func:`decode_words`): callers
    that replace matches work on that text.  Whitespace is collapsed as in
    :func:`fold`, but not stripped, so indexes stay simple."""
    out: list[str] = []
    where: list[int] = []
    for i, c in enumerate(text):
        for f in fold_char(c, keep_case):
            if f == " " and out and out[-1] == " ":
                continue
            out.append(f)
            where.append(i)
    return "".join(out), where
