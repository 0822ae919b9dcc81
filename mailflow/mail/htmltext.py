"""HTML mail as the plain text its reader sees, and with what it quotes marked ``> ``.

HTML-only replies (Exchange and Outlook on the web, BlackBerry, Apple Mail, Thunderbird
set to HTML) carry their quote in the markup instead of ``>`` lines: a ``blockquote``,
Gmail's ``gmail_quote``, Thunderbird's ``moz-cite-prefix``, or Outlook's reply header
(``divRplyFwdMsg``, ``OutlookMessageHeader``, the ruled ``From:`` block), after which
everything is the quoted original.  :func:`html_to_text` renders it twice in one walk:
as its reader sees it (the archive's body, where forwards are found), and with those
parts marked ``> `` and signatures opened by ``-- ``, so that HTML mail reaches the one
splitter (:mod:`mailflow.mail.quotes`) in the same shape as plain mail.

The markup is parsed by lexbor's HTML5 parser (selectolax), which builds the tree a
browser builds from the same bytes: a missing or stray end tag ends a quote where the
reader sees it end.  The walk over the tree is iterative (no recursion limit for deep
nesting) and stops after :data:`MAX_ELEMENTS` elements; what follows is left out, as
quoted, so a command can never be read from a part that was not looked at.  An HTML5
parser spends time on every block element in proportion to how deep it stands (as
every browser's does; they cap the depth), so markup nested deeper than
:data:`MAX_DEPTH` is not parsed at all: its text is shown with the tags stripped, all of
it as quoted.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

MAX_ELEMENTS = 50_000
MAX_DEPTH = 1_000
TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]{0,40})")
# Elements that never nest: void ones, and those the parser closes by itself.
NOT_NESTING = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr", "p", "li", "td", "th", "tr", "dt", "dd", "option",
    "optgroup", "tbody", "thead", "tfoot", "colgroup", "html", "head", "body",
})

SKIPPED = frozenset({"head", "style", "script", "title", "template", "noscript", "svg",
                     "object", "iframe"})
# Elements that start and end a line of their own.
BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
    "fieldset", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul",
})
QUOTE_CLASSES = frozenset({"gmail_quote", "moz-cite-prefix", "yahoo_quoted", "protonmail_quote"})
SIGNATURE_CLASSES = frozenset({"gmail_signature", "moz-signature"})
SIGNATURE_IDS = frozenset({"Signature", "signature", "ms-outlook-mobile-signature"})
# Outlook and Exchange put the original after these, with no element around it.
ORIGINAL_IDS = frozenset({"divRplyFwdMsg", "appendonsend", "stopSpelling",
                          "mail-editor-reference-message-container", "OLK_SRC_BODY_SECTION"})
ORIGINAL_CLASSES = frozenset({"OutlookMessageHeader"})
# Outlook desktop's reply header: a div ruled at the top (2007 to 365, in/cm units).
OUTLOOK_RULE = re.compile(r"border-top:\s*solid\s+#(?:E1E1E1|B5C4DF)\s+1\.0pt", re.IGNORECASE)
HTML_SPACE = " \t\n\r\f"
SPACES = re.compile(r"[ \t\n\r\f]+")  # HTML's white space: not the no-break space


class _Lines:
    """The text being built, line by line, each with its quote depth."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []   # (quote depth, text)
        self.words: list[str] = []
        self.started = False    # the current line has something to show
        self.depth = 0          # blockquote-like elements the walk is inside
        self.original = False   # past an Outlook reply header: all the rest is quoted
        self.line_depth = 0

    def text(self, data: str, pre: bool) -> None:
        if pre:
            first, *rest = data.split("\n")
            self._add(first)
            for part in rest:
                self.end(blank=True)
                self._add(part)
        elif data.strip(HTML_SPACE):
            collapse = "\n" in data or "  " in data or "\t" in data or "\r" in data
            self._add(SPACES.sub(" ", data) if collapse else data)
        elif self.started:
            self.words.append(" ")  # white space between words

    def _add(self, data: str) -> None:
        if not self.started and data.strip(HTML_SPACE):
            self.started = True  # (a no-break space counts: Outlook's empty paragraphs)
            self.line_depth = self.quote_depth()
        self.words.append(data)

    def quote_depth(self) -> int:
        return max(self.depth, 1) if self.original else self.depth

    def end(self, blank: bool = False) -> None:
        """End the current line; ``blank``: even if it is empty (a ``<br>``)."""
        if not self.started:
            self.words.clear()
            if blank:
                self.lines.append((self.quote_depth(), ""))
            return
        text = "".join(self.words).replace("\xa0", " ").strip()
        self.words.clear()
        self.started = False
        self.lines.append((self.line_depth, text))

    def signature(self) -> None:
        """A signature block starts: a ``-- `` line before it, unless it has one."""
        self.end()
        if not self.lines or self.lines[-1][1].rstrip() != "--":
            self.lines.append((self.quote_depth(), "-- "))

    def result(self) -> Rendered:
        self.end()
        plain = "\n".join(text for _, text in self.lines)
        marked = "\n".join((">" * depth + (" " + text if text else "")) if depth else text
                           for depth, text in self.lines)
        return Rendered(_tidy(plain), _tidy(marked))


def _tidy(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


@dataclass(frozen=True)
class Rendered:
    """An HTML part as text: ``text`` as its reader sees it (the archive's body),
    ``marked`` with each quoted line prefixed ``> `` (what the splitter reads)."""

    text: str
    marked: str


def _children(node: LexborNode) -> Iterator[LexborNode]:
    return iter(node.iter(include_text=True))


def _opens(node: LexborNode, tag: str, out: _Lines) -> bool:
    """What an element does to the text before its content: True if it quotes it."""
    if tag in ("div", "hr", "blockquote"):
        attrs = node.attributes
        ident = attrs.get("id") or ""
        classes = set((attrs.get("class") or "").split())
        if (ident in ORIGINAL_IDS or classes & ORIGINAL_CLASSES
                or OUTLOOK_RULE.search(attrs.get("style") or "")):
            out.end()
            out.original = True
        if ident in SIGNATURE_IDS or classes & SIGNATURE_CLASSES:
            out.signature()
        return tag == "blockquote" or bool(classes & QUOTE_CLASSES)
    return False


def _too_deep(markup: str) -> bool:
    """Whether elements may nest deeper than :data:`MAX_DEPTH` (counting the tags that
    can nest; checked only when there are that many tags at all)."""
    if markup.count("<") <= MAX_DEPTH:
        return False
    depth = 0
    for match in TAG.finditer(markup):
        if match.group(2).lower() in NOT_NESTING:
            continue
        depth = max(0, depth - 1) if match.group(1) else depth + 1
        if depth > MAX_DEPTH:
            return True
    return False


def _flat_quoted(markup: str) -> Rendered:
    text = html.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = [f"[this HTML nests deeper than {MAX_DEPTH} elements: shown without its markup]"]
    lines += [line.strip() for line in text.splitlines() if line.strip()]
    return Rendered("\n".join(lines), "\n".join("> " + line for line in lines))


def html_to_text(markup: str) -> Rendered:
    """The text of an HTML part: blocks on lines of their own, signatures after a ``-- ``
    line; in ``marked``, quoted lines prefixed with ``> `` (one per level).  Never
    raises."""
    if _too_deep(markup):
        return _flat_quoted(markup)
    try:
        tree = LexborHTMLParser(markup)
        root = tree.body or tree.root
    except Exception:  # the parser refused the input outright: no text to read
        return Rendered("", "")
    if root is None:
        return Rendered("", "")
    out = _Lines()
    # For each open element: its children still to visit, whether it quotes, whether
    # it is a <pre>, whether it is a block.
    stack: list[tuple[Iterator[LexborNode], bool, bool, bool]] = [
        (_children(root), False, False, True)]
    pre = 0
    elements = 0
    while stack:
        children, quotes, is_pre, block = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            pre -= is_pre
            if block:
                out.end()
            out.depth -= quotes
            continue
        tag = child.tag or ""
        if tag == "-text":
            out.text(child.text_content or "", pre > 0)
            continue
        if tag[:1] == "-" or tag in SKIPPED:
            continue
        elements += 1
        if elements > MAX_ELEMENTS:
            out.end()
            out.original = True
            out.text("[the rest of this HTML was not read: over "
                     f"{MAX_ELEMENTS} elements]", False)
            break
        if tag == "br":
            out.end(blank=True)
            continue
        block = tag in BLOCKS
        if block:
            out.end()
        quotes = _opens(child, tag, out)
        out.depth += quotes
        child_pre = tag == "pre"
        pre += child_pre
        stack.append((_children(child), quotes, child_pre, block))
    return out.result()
