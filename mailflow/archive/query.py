"""The query language of ``mailflow search`` and ``#search`` (notmuch/public-inbox
style, see :mod:`.syntax`): words, phrases, prefixes, AND/OR/NOT and parentheses, parsed
into a small tree of :data:`Node`.  Free words match any field, with the quoted text
of replies weighted low."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from mailflow import timestamps
from mailflow.archive.dates import parse_date_range
from mailflow.store.fulltext import KINDS, addr_token

KIND_ALIASES = {"report": ("report", "forward")}


TEXT_PREFIXES = {"subject": "subject", "body": "body", "quoted": "quoted"}


PREFIXES = ("from", "to", "subject", "body", "quoted", "case", "kind", "person", "status", "date")


MAX_QUERY = 1000


class SearchError(ValueError):
    """A query that cannot be run; the message is meant for the person who wrote it."""


# The tree's nodes are NamedTuples, not dataclasses: `mailflow search` would load
# inspect for them (bench/README.md).  They are told apart by type, never by ==.
class Text(NamedTuple):
    """A full-text condition, as an FTS5 expression."""

    expr: str
    # Words to rank by.  Exact terms (an address, a quoted phrase) are not: bm25 weighs
    # each term by how many records have it, which for a phrase means finding every
    # match (20 ms at a million messages), so exact terms alone come newest first.
    ranked: bool


class Meta(NamedTuple):
    """A condition on the record or its case, as SQL over ``search_docs d``."""

    sql: str
    params: list[Any]


class And(NamedTuple):
    items: list[Node]


class Or(NamedTuple):
    items: list[Node]


class Not(NamedTuple):
    item: Node


Node = Text | Meta | And | Or | Not


_TOKEN = re.compile(r'\s*(?:(\()|(\))|("(?:[^"]*)"?)|([^\s()"]+(?:"[^"]*"?)?))')


def _lex(query: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        lpar, rpar, phrase, word = m.groups()
        if lpar:
            out.append(("(", lpar))
        elif rpar:
            out.append((")", rpar))
        elif phrase is not None:
            if len(phrase) < 2 or not phrase.endswith('"'):
                raise SearchError(f"unclosed quote in {phrase!r}")
            out.append(("phrase", phrase[1:-1]))
        elif word in ("AND", "OR", "NOT"):
            out.append((word, word))
        elif word:
            if word.count('"') % 2:
                raise SearchError(f"unclosed quote in {word!r}")
            out.append(("word", word))
    return out


class _Parser:
    def __init__(self, query: str):
        self.tokens = _lex(query)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Node:
        if not self.tokens:
            raise SearchError("empty query: give words, a phrase or a prefix like from:")
        node = self.or_expr()
        if self.peek() == ")":
            raise SearchError("a ')' without its '('")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.peek() == "OR":
            self.take()
            items.append(self.and_expr("OR"))
        return items[0] if len(items) == 1 else Or(items)

    def and_expr(self, after: str | None = None) -> Node:
        items = [self.unary(after)]
        while self.peek() not in (None, ")", "OR"):
            op = None
            if self.peek() == "AND":
                op = self.take()[0]
            items.append(self.unary(op))
        return items[0] if len(items) == 1 else And(items)

    def unary(self, after: str | None = None) -> Node:
        kind = self.peek()
        if kind is None or kind in (")", "OR", "AND"):
            where = f"after {after}" if after else "here"
            found = "the end of the query" if kind is None else repr(kind)
            raise SearchError(f"expected a search term {where}, found {found}")
        if kind == "NOT":
            self.take()
            return Not(self.unary("NOT"))
        if kind == "(":
            self.take()
            if self.peek() == ")":
                raise SearchError("empty parentheses")
            node = self.or_expr()
            if self.peek() != ")":
                raise SearchError("missing ')'")
            self.take()
            return node
        kind, value = self.take()
        if kind == "phrase":
            return _free_text(value, phrase=True)
        if value.startswith("-") and len(value) > 1:
            return Not(_term(value[1:]))
        return _term(value)


def parse_query(query: str) -> Node:
    if len(query) > MAX_QUERY:
        raise SearchError(f"query too long (at most {MAX_QUERY} characters)")
    return _Parser(query).parse()


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _fts_value(value: str, where: str) -> str:
    """A value as an FTS5 phrase (``word*`` as a prefix search); it must have a word in it."""
    star = value.endswith("*") and not value.endswith('"*')
    core = value[:-1] if star else value
    if core.startswith('"') and core.endswith('"') and len(core) >= 2:
        core = core[1:-1]
    if not re.search(r"\w", core):
        raise SearchError(f"{where}: {value!r} has no letters or digits to search for")
    return _quote(core) + ("*" if star else "")


def _free_text(value: str, phrase: bool = False) -> Node:
    if phrase:
        if not re.search(r"\w", value):
            raise SearchError(f'"{value}" has no letters or digits to search for')
        return Text(_quote(value), ranked=False)
    return Text(_fts_value(value, "search term"), ranked=True)


def _term(word: str) -> Node:
    name, sep, value = word.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z]+", name):
        return _free_text(word)
    name = name.lower()
    if name not in PREFIXES:
        known = ", ".join(p + ":" for p in PREFIXES)
        raise SearchError(f"unknown prefix {name + ':'!r} (known: {known}); "
                          f"put {word!r} in quotes to search for it as text")
    if not value:
        raise SearchError(f"{name}: needs a value, e.g. {_EXAMPLES[name]}")
    plain = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if name in ("from", "to"):
        if "@" in plain and not plain.endswith("*"):
            role = "f" if name == "from" else "t"
            return Text(f"addr : {_quote(addr_token(role, plain))}", ranked=False)
        column = "sender" if name == "from" else "rcpt"
        return Text(f"{column} : {_fts_value(value, name + ':')}", ranked=False)
    if name in TEXT_PREFIXES:
        return Text(f"{TEXT_PREFIXES[name]} : {_fts_value(value, name + ':')}",
                    ranked=plain == value)  # a quoted phrase is exact, as above
    if name == "case":
        if re.fullmatch(r"\d{4}-\d{4,}", plain):
            return Meta("d.case_id = ?", [plain])
        return Meta("d.case_id IN (SELECT id FROM cases WHERE lower(codename) = lower(?))",
                    [plain])
    if name == "kind":
        kind = plain.lower()
        if kind not in KINDS:
            raise SearchError(f"kind: {plain!r} is not a kind (known: {', '.join(KINDS)})")
        kinds = KIND_ALIASES.get(kind, (kind,))
        return Meta(f"d.kind IN ({', '.join('?' * len(kinds))})", list(kinds))
    if name == "person":
        if "@" in plain:
            return Meta("d.case_id IN (SELECT case_id FROM people WHERE address = lower(?))",
                        [plain])
        return Meta("d.case_id IN (SELECT case_id FROM people WHERE ' ' || lower(name) || ' ' "
                    "LIKE '% ' || lower(?) || ' %' OR address LIKE lower(?) || '@%')",
                    [plain, plain])
    if name == "status":
        return Meta("d.case_id IN (SELECT id FROM cases WHERE status = lower(?))", [plain])
    try:
        start, end = parse_date_range(plain)
    except ValueError as e:
        raise SearchError(str(e)) from None
    return Meta("d.at >= ? AND d.at < ?", [timestamps.stamp(start), timestamps.stamp(end)])


_EXAMPLES = {
    "from": "from:alice@example.org", "to": "to:conduct@example.org", "subject": "subject:slides",
    "body": "body:apology", "quoted": "quoted:apology", "case": "case:2026-0001",
    "kind": "kind:call", "person": "person:bob@example.org", "status": "status:open",
    "date": "date:2026-01-01..2026-03-01",
}
