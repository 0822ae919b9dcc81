"""The searchable archive: an FTS5 index over everything archived, and its query language.

What is indexed (one row of ``search_docs`` and of the FTS5 table ``search_fts`` each,
under the same rowid; ``ref`` names the record):

- every archived mail, ``message:<messages.id>`` (kinds report, forward, reply, member,
  held, bounce), with the new text and the quoted text in separate columns;
- every mail sent, ``outbound:<outbound.id>`` (kind ``sent``), except the per-member
  copies of relayed mail, whose original is already indexed;
- each case's own fields (subject, code name, status, kind), ``case:<case id>``;
- whatever other modules hand to :func:`index_record`: call summaries, notes, drafts,
  case fields set by commands.

The first three are kept by triggers on their tables, so any insert, update or delete
anywhere updates the index in the same transaction: search never lags.  (The triggers
queue the rows in ``search_queue``; :func:`before_commit` indexes the queue just before
the transaction commits, see there why.)  Other records
are indexed by calling, inside the transaction that stores them::

    search.index_record(db, ref=f"call:{call_id}", kind="call", case_id=case_id,
                        author=member, subject="Call with the reporter", body=text,
                        at=timestamps.stamp())

``ref`` is ``<kind>:<your id>``; indexing a ref again replaces the earlier text.  Kinds
the query language knows: see :data:`KINDS`.

Query language (notmuch/public-inbox style), see :data:`HELP`.  Free words match any
field, with the quoted text of replies weighted low; results are ranked (bm25) when
the query has words to rank by, otherwise (exact terms: addresses, quoted phrases;
conditions) newest first.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from mailflow import timestamps
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.store.fulltext import KINDS, addr_token, before_commit

HELP = """\
Search syntax

  word  "a phrase"  harass*        words match any field; * matches word beginnings
  a b   a AND b                    both (AND is implied between terms)
  a OR b    NOT a    -a    ( )     either; without; grouping
  from:ADDRESS   from:WORD         the sender (an address matches exactly)
  to:ADDRESS     to:WORD           a recipient (To or Cc)
  subject:WORD   body:WORD         the subject; the new text of a mail
  quoted:WORD                      the quoted part of a reply
  case:2026-0001  case:"Amber Fox" a case, by id or code name
  kind:KIND                        report reply member call note draft sent case
                                   (also forward, held, bounce; report includes forward)
  person:ADDRESS  person:WORD      anyone in any role on the case
  status:STATUS                    the case's status (open, closed, ...)
  date:2026-01-01..2026-03-01      a date range (both ends included)
  date:2026-02  date:2026          one month, one year
  date:2w..  date:..3M  date:today relative: h hours, d days, w weeks, M months, y years
Words rank the results by relevance; a query of addresses, "quoted phrases" and
conditions alone lists them newest first.
Operators are written in capitals; quote a phrase to search for a word like "OR"."""

KIND_ALIASES = {"report": ("report", "forward")}
TEXT_PREFIXES = {"subject": "subject", "body": "body", "quoted": "quoted"}
PREFIXES = ("from", "to", "subject", "body", "quoted", "case", "kind", "person", "status", "date")
# bm25 weights, in the column order of search_fts (fulltext.COLUMNS).
WEIGHTS = (2.0, 1.0, 4.0, 3.0, 0.5, 1.0)
MAX_QUERY = 1000


class SearchError(ValueError):
    """A query that cannot be run; the message is meant for the person who wrote it."""


# ---------------------------------------------------------------------------------------
# Schema: the index tables and the triggers that keep them.


# ---------------------------------------------------------------------------------------
# Records from other modules.


# ---------------------------------------------------------------------------------------
# Rebuilding the index from its sources.


# ---------------------------------------------------------------------------------------
# The query language.

@dataclass
class Text:
    """A full-text condition, as an FTS5 expression."""

    expr: str
    # Words to rank by.  Exact terms (an address, a quoted phrase) are not: bm25 weighs
    # each term by how many records have it, which for a phrase means finding every
    # match (20 ms at a million messages), so exact terms alone come newest first.
    ranked: bool


@dataclass
class Meta:
    """A condition on the record or its case, as SQL over ``search_docs d``."""

    sql: str
    params: list[Any]


@dataclass
class And:
    items: list[Node]


@dataclass
class Or:
    items: list[Node]


@dataclass
class Not:
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
    start, end = parse_date_range(plain)
    return Meta("d.at >= ? AND d.at < ?", [timestamps.stamp(start), timestamps.stamp(end)])


_EXAMPLES = {
    "from": "from:alice@example.org", "to": "to:conduct@example.org", "subject": "subject:slides",
    "body": "body:apology", "quoted": "quoted:apology", "case": "case:2026-0001",
    "kind": "kind:call", "person": "person:bob@example.org", "status": "status:open",
    "date": "date:2026-01-01..2026-03-01",
}

# ---------------------------------------------------------------------------------------
# Dates: absolute (YYYY, YYYY-MM, YYYY-MM-DD, with an optional THH:MM), today,
# yesterday, now, and ages (2w, 3d, 6M, 1y, 12h, 30m).

_AGE = re.compile(r"^(\d+)\s*(m|min|mins|minutes?|h|hours?|d|days?|w|weeks?|M|months?|"
                  r"y|years?)$")
DATE_HINT = ("use YYYY-MM-DD, YYYY-MM, YYYY, today, yesterday, now, or an age such as "
             "2w, 3d, 6M, 1y")
LATEST = datetime(9999, 12, 31, tzinfo=UTC)
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)


def _months_before(when: datetime, months: int) -> datetime:
    total = when.year * 12 + (when.month - 1) - months
    year, month = divmod(total, 12)
    day = min(when.day, 28)  # the same day-of-month may not exist; close enough for an age
    return when.replace(year=year, month=month + 1, day=day)


def _point(text: str) -> tuple[datetime, datetime]:
    """The period a date expression names: [start, end)."""
    now = timestamps.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    lowered = text.lower()
    if lowered == "now":
        return now, now
    if lowered == "today":
        return today, today + timedelta(days=1)
    if lowered == "yesterday":
        return today - timedelta(days=1), today
    age = _AGE.match(text)
    if age:
        n, unit = int(age.group(1)), age.group(2)
        if unit == "M" or unit.startswith("month"):
            when = _months_before(now, n)
        elif unit.startswith("y"):
            when = _months_before(now, 12 * n)
        else:
            seconds = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[unit[0]]
            when = now - timedelta(seconds=n * seconds)
        return when, when
    try:
        if re.fullmatch(r"\d{4}", text):
            start = datetime(int(text), 1, 1, tzinfo=UTC)
            return start, start.replace(year=start.year + 1)
        if re.fullmatch(r"\d{4}-\d{2}", text):
            start = datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
            return start, _months_before(start, -1)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            start = timestamps.parse(text)
            return start, start + timedelta(days=1)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?Z?", text):
            start = timestamps.parse(text)
            return start, start + timedelta(seconds=1 if text.count(":") == 2 else 60)
    except ValueError:
        pass
    raise SearchError(f"date: cannot read {text!r}; {DATE_HINT}")


def parse_date_range(value: str) -> tuple[datetime, datetime]:
    """``A..B`` (both included), ``A..``, ``..B`` or ``A``: [start, end) in UTC."""
    if ".." in value:
        first, _, last = value.partition("..")
        start = _point(first)[0] if first else EARLIEST
        end = _point(last)[1] if last else LATEST
        # An age as the end means up to that moment: "..2w" is "more than two weeks ago".
        if last and _AGE.match(last):
            end = _point(last)[0]
    else:
        start, end = _point(value)
        if _AGE.match(value) or value.lower() == "now":
            end = LATEST  # "date:2w" reads as "in the last two weeks"
    if end <= start:
        raise SearchError(f"date: {value!r} ends before it starts")
    return start, end


# ---------------------------------------------------------------------------------------
# Compiling a query to SQL.

def _fts(node: Node) -> str | None:
    """The node as one FTS5 expression, or None if it needs SQL."""
    if isinstance(node, Text):
        return node.expr
    if isinstance(node, Or):
        parts = [_fts(n) for n in node.items]
        return None if None in parts else " OR ".join(f"({p})" for p in parts)
    if isinstance(node, And):
        positive = [_fts(n) for n in node.items if not isinstance(n, Not)]
        negative = [_fts(n.item) for n in node.items if isinstance(n, Not)]
        if not positive or None in positive or None in negative:
            return None
        expr = " AND ".join(f"({p})" for p in positive)
        for n in negative:
            expr = f"({expr}) NOT ({n})"
        return expr
    return None


def _ranked(node: Node) -> bool:
    if isinstance(node, Text):
        return node.ranked
    if isinstance(node, And | Or):
        return any(_ranked(n) for n in node.items)
    return False  # words under NOT rank nothing


def _sql(node: Node) -> tuple[str, list[Any]]:
    """The node as a SQL condition over ``search_docs d``."""
    if isinstance(node, Meta):
        return f"({node.sql})", list(node.params)
    expr = _fts(node)
    if expr is not None:
        return "d.id IN (SELECT rowid FROM search_fts WHERE search_fts MATCH ?)", [expr]
    if isinstance(node, Not):
        sql, params = _sql(node.item)
        return f"NOT {sql}", params
    assert isinstance(node, And | Or)
    parts = [_sql(n) for n in node.items]
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]


@dataclass
class Plan:
    match: str | None          # the FTS5 expression that drives the query, if any
    ranked: bool
    where: list[str]           # conditions on search_docs d, with their params
    params: list[Any]
    # Whether `where` holds conditions of the query's own (date:, kind:, ...), which may
    # leave out most matches; the recusal filter alone leaves out few.
    narrowed: bool = False
    # Ranked among the matches from this rowid up only (see RANK_WINDOW); None: all.
    since: int | None = None


def plan(node: Node, as_member: str | None = None) -> Plan:
    match = _fts(node)
    if match is not None:
        p = Plan(match, _ranked(node), [], [])
    elif isinstance(node, And):
        # The parts FTS5 can do drive the query; the rest filter its hits.
        text = [n for n in node.items if _fts(n.item if isinstance(n, Not) else n) is not None]
        match = _fts(And(text)) if text else None
        rest = node.items if match is None else [n for n in node.items
                                                 if not any(n is t for t in text)]
        p = Plan(match, match is not None and _ranked(And(text)), [], [])
        for n in rest:
            sql, params = _sql(n)
            p.where.append(sql)
            p.params += params
    else:
        sql, params = _sql(node)
        p = Plan(None, False, [sql], params)
    p.narrowed = bool(p.where)
    if as_member:
        # The recused are people of the case with the role "recused" (cases.recused).
        p.where.append("(d.case_id IS NULL OR d.case_id NOT IN (SELECT case_id FROM people "
                       "WHERE role = 'recused' AND address = lower(?)))")
        p.params.append(as_member)
    return p


# ---------------------------------------------------------------------------------------
# Running a query: first the hits in result order, then what is shown for each.
#
# A common word matches a third of the archive (60,000 documents at 200,000 messages),
# so the cost of a query is what it does per match: ranking it (FTS5's bm25, about 1 µs),
# joining it to search_docs (about 0.5 µs), looking it up again to show it.  Only the
# ranking is unavoidable; the rest is done for the rows shown, or in one cheap pass.

MARKS = ("\x02", "\x03")   # highlight markers inside the engine, replaced on output
SNIPPET_TOKENS = 16
BM25 = f"bm25(search_fts, {', '.join(str(w) for w in WEIGHTS)})"


def _execute(db: sqlite_utils.Database, sql: str, args: list[Any]) -> list[tuple]:
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError as e:
        raise SearchError(f"the query could not be run: {e}") from None


def _also(conditions: list[str]) -> str:
    """Conditions to append to a WHERE clause."""
    return "".join(f" AND {c}" for c in conditions)


def _hits(db: sqlite_utils.Database, p: Plan, limit: int, extra: str = "",
          extra_params: list[Any] | None = None) -> list[tuple]:
    """The first ``limit`` hits in result order, (id, ref, kind, case_id, at, score)."""
    where = list(p.where) + ([extra] if extra else [])
    params = list(p.params) + (extra_params or [])
    if p.match is None:
        sql = ("SELECT d.id, d.ref, d.kind, d.case_id, d.at, 0 AS score FROM search_docs d "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY d.at DESC, d.ref LIMIT ?")
        return _execute(db, sql, [*params, limit])
    if p.ranked and not extra:
        best = _best_ranked(db, p, limit)
        if best is not None:
            return best
    if not p.ranked and not p.narrowed and not extra:
        newest = _newest_unranked(db, p, limit)
        if newest is not None:
            return newest
    # Conditions that may leave out most matches are checked on every match.
    score = BM25 if p.ranked else "0"
    order = "score, d.at DESC, d.ref" if p.ranked else "d.at DESC, d.ref"
    window, window_args = _window_sql(p, "search_fts.rowid")
    sql = (f"SELECT d.id, d.ref, d.kind, d.case_id, d.at, {score} AS score "
           "FROM search_fts JOIN search_docs d ON d.id = search_fts.rowid "
           f"WHERE search_fts MATCH ? {window}{_also(where)} "
           f"ORDER BY {order} LIMIT ?")
    return _execute(db, sql, [p.match, *window_args, *params, limit])


# Unranked matches (addresses, phrases) come newest first.  Joining every match to its
# date costs about 1 µs a match (27,000 for an active sender in a million messages), but
# most records are archived in date order, so the newest matches are found by walking
# back from the newest record, which FTS5 does without reading the rest.
LATE_CHECKED = 100  # records archived out of date order that are checked one by one


def _newest_unranked(db: sqlite_utils.Database, p: Plan, limit: int) -> list[tuple] | None:
    """The first ``limit`` unranked hits, from the most recently archived matches; None
    when the general query has to join every match.

    The walk back gives ``limit`` matches, the oldest of them dated T, and every match
    archived after the earliest of them.  A match it did not see that is dated T or later
    must be a record dated T or later that was archived before them (an import of older
    mail, a wrong Date header): those records are few, found by date, and checked.
    Every other match is older than the ``limit`` in hand."""
    conditions = _also(p.where)
    hits = ("SELECT d.id, d.ref, d.kind, d.case_id, d.at, 0 AS score FROM search_fts "
            "JOIN search_docs d ON d.id = search_fts.rowid WHERE search_fts MATCH ?")
    rows = _execute(db, f"{hits}{conditions} ORDER BY search_fts.rowid DESC LIMIT ?",
                    [p.match, *p.params, limit])
    if len(rows) == limit:
        since, first = min(r[4] for r in rows), min(r[0] for r in rows)
        # Bounded: twice the span of ids the matches came from, and the late allowed.
        budget = 2 * (rows[0][0] - first + 1) + LATE_CHECKED
        dated, late = db.execute(
            "SELECT count(*), total(id < ?) FROM (SELECT id FROM search_docs WHERE at >= ? "
            "LIMIT ?)", [first, since, budget]).fetchone()
        if dated == budget or late > LATE_CHECKED:
            return None  # dates in no order: the general query
        if late:
            ids = [i for (i,) in db.execute(
                "SELECT id FROM search_docs WHERE at >= ? AND id < ?", [since, first])]
            rows += _execute(db, f"{hits} AND search_fts.rowid IN "
                             f"({', '.join('?' * len(ids))}){conditions}",
                             [p.match, *ids, *p.params])
    rows.sort(key=lambda r: r[1])
    rows.sort(key=lambda r: r[4], reverse=True)  # stable: newest first, then by ref
    return rows[:limit]


# A word in a large share of the archive says little about relevance, and bm25 costs
# 1 to 3 µs a match (300 ms for a word in 300,000 records): when there are more matches
# than this, the most recently archived this many are ranked.  Conditions of the query's
# own (date:, kind:, ...) are applied first, so they may pick old matches.
RANK_WINDOW = 1_000


def _window_sql(p: Plan, rowid: str) -> tuple[str, list[Any]]:
    return (f"AND {rowid} >= ?", [p.since]) if p.since is not None else ("", [])


def _best_ranked(db: sqlite_utils.Database, p: Plan, limit: int
                 ) -> list[tuple] | None:
    """The first ``limit`` hits of ranked words; None when the rows kept cannot tell,
    and the general query has to.

    FTS5 keeps the best scores itself and only those rows are joined to search_docs
    and, unless the query has conditions of its own, filtered (by recusal).  (Not
    FTS5's own ``ORDER BY rank``: in SQLite 3.40 it sorts every match, position lists
    and all, with no LIMIT, and measured slower than this.)
    More rows are kept than asked for: some may be filtered out, and equal scores go
    newest first, which only their dates decide.  Ties are common: short uniform
    records such as a case's own fields often score alike.  Every row not kept scores
    at least as badly as the last one kept, so the answer stands if the last hit
    scores strictly better than that."""
    keep = 2 * limit + 100  # a few hundred rows joined cost a fraction of a millisecond
    # The newest RANK_WINDOW matches (that pass the query's conditions, if it has any)
    # are scored as FTS5 reads them, newest first.
    # The query's own conditions choose the window; the recusal filter alone is left
    # to the rows kept (``passes``), as it leaves out few.
    if p.narrowed:
        matches = ("search_fts JOIN search_docs d ON d.id = search_fts.rowid "
                   f"WHERE search_fts MATCH ?{_also(p.where)}")
        inside, passes, after = p.params, "1", []
    else:
        matches = "search_fts WHERE search_fts MATCH ?"
        inside, passes, after = [], f"(1{_also(p.where)})", p.params
    sql = (f"WITH recent AS MATERIALIZED (SELECT search_fts.rowid AS id, {BM25} AS score "
           f"FROM {matches} ORDER BY search_fts.rowid DESC LIMIT ?), "
           "best AS MATERIALIZED (SELECT id, score FROM recent ORDER BY score LIMIT ?) "
           f"SELECT d.id, d.ref, d.kind, d.case_id, d.at, best.score, {passes}, "
           "(SELECT count(*) FROM recent), (SELECT min(id) FROM recent) FROM best "
           "JOIN search_docs d ON d.id = best.id ORDER BY best.score, d.at DESC, d.ref")
    rows = _execute(db, sql, [p.match, *inside, RANK_WINDOW, keep, *after])
    if rows and rows[0][7] == RANK_WINDOW and _execute(
            db, f"SELECT 1 FROM {matches} AND search_fts.rowid < ? "
            "ORDER BY search_fts.rowid DESC LIMIT 1",  # from the window down: found soonest
            [p.match, *inside, rows[0][8]]):
        p.since = rows[0][8]  # there are older matches, left unranked
    hits = [r[:6] for r in rows if r[6]]
    # Every match in the window was kept, or the last hit beats every row not kept.
    if len(rows) < keep or (len(hits) >= limit and hits[limit - 1][5] < rows[-1][5]):
        return hits[:limit]
    return None


def _display(db: sqlite_utils.Database, p: Plan, ids: list[int]) -> dict[int, dict]:
    """Sender, subject and a highlighted snippet for each hit."""
    if not ids:
        return {}
    marks = ", ".join("?" * len(ids))
    if p.match is None:
        rows = _execute(db, "SELECT rowid, sender, subject, substr(body, 1, 200) FROM "
                        f"search_fts WHERE rowid IN ({marks})", ids)
    else:
        # The new text if the words are there, else the quoted text, else the subject;
        # the start of the new text if the query only names addresses.
        columns = (3, 4, 2)
        snippets = ", ".join(f"snippet(search_fts, {c}, ?, ?, '…', {SNIPPET_TOKENS})"
                             for c in columns)
        # Snippets need the MATCH.  Handed `rowid IN (...)`, FTS5 runs the MATCH afresh
        # for each id, looking each word up in every index segment (40-100 µs an id with
        # 15-20 segments, however few the matches).  One pass over the matches from the
        # first id to the last (the + keeps the IN list from FTS5) is cheaper, and costs
        # at most what choosing the hits did, which ranked at most RANK_WINDOW matches
        # (0.8 ms against 2.4 for a common word at a million messages).
        sql = (f"SELECT rowid, sender, subject, {snippets} FROM search_fts WHERE search_fts "
               f"MATCH ? AND rowid BETWEEN ? AND ? AND +rowid IN ({marks})")
        rows = _execute(db, sql, [*MARKS * len(columns), p.match, min(ids), max(ids), *ids])
    out = {}
    for rowid, sender, subject, *snippets in rows:
        snippet = next((s for s in snippets if s and MARKS[0] in s), snippets[0] or "")
        out[rowid] = {"from": sender, "subject": subject, "snippet": " ".join(snippet.split())}
    return out


def _results(p: Plan, rows: list[tuple], shown: dict[int, dict], marks: tuple[str, str]
             ) -> list[dict[str, Any]]:
    out = []
    for doc_id, ref, kind, case_id, at, score in rows:
        d = shown.get(doc_id, {"from": "", "subject": "", "snippet": ""})
        snippet = d["snippet"].replace(MARKS[0], marks[0]).replace(MARKS[1], marks[1])
        out.append({"ref": ref, "kind": kind, "case": case_id, "date": at,
                    "from": d["from"], "subject": d["subject"], "snippet": snippet,
                    "score": round(-score, 4) if p.ranked else None})
    return out


def run(db: sqlite_utils.Database, query: str, *, as_member: str | None = None,
        limit: int = 20, by_case: bool = False, per_case: int = 3,
        marks: tuple[str, str] = ("*", "*")) -> dict[str, Any]:
    """Run a query; plain data for ``--json``, :func:`format_results` and ``#search``.

    ``as_member``: leave out the cases that member is recused from.
    ``by_case``: ``limit`` counts cases, each with up to ``per_case`` hits.
    Raises :class:`SearchError` with a message for the person who wrote the query.
    """
    if limit < 1:
        raise SearchError("the limit must be at least 1")
    p = plan(parse_query(query), as_member)
    if db.conn.in_transaction:
        # What this transaction filed is still queued for the index (#search by mail
        # runs inside the pipeline's transaction): index it, so it is found.
        before_commit(db)
    if not by_case:
        rows = _hits(db, p, limit + 1)
        shown = _display(db, p, [r[0] for r in rows[:limit]])
        return {"query": query, "results": _results(p, rows[:limit], shown, marks),
                "more": len(rows) > limit or p.since is not None,
                "ranked_among": RANK_WINDOW if p.since is not None else None}
    groups = _case_groups(db, p, limit + 1)
    chosen = groups[:limit]
    case_ids = [g["case"] for g in chosen if g["case"] is not None]
    cases_out = []
    if chosen:
        marks_sql = ", ".join("?" * len(case_ids))
        cond = [f"d.case_id IN ({marks_sql})"] if case_ids else []
        if any(g["case"] is None for g in chosen):
            cond.append("d.case_id IS NULL")
        rows = _hits(db, p, 10 ** 9, "(" + " OR ".join(cond) + ")", case_ids)
        by: dict[str | None, list[tuple]] = {}
        for r in rows:
            if len(by.setdefault(r[3], [])) < per_case:
                by[r[3]].append(r)
        # One pass for the hits of all the cases shown.
        shown = _display(db, p, [r[0] for hits in by.values() for r in hits])
        info = {r["id"]: r for r in db.query(
            f"SELECT id, codename, status, subject FROM cases WHERE id IN ({marks_sql})",
            case_ids)}
        for g in chosen:
            c = info.get(g["case"], {})
            cases_out.append({"case": g["case"], "codename": c.get("codename"),
                              "status": c.get("status"), "hits": g["hits"],
                              "results": _results(p, by.get(g["case"], []), shown, marks)})
    return {"query": query, "cases": cases_out, "more": len(groups) > limit}


def _case_groups(db: sqlite_utils.Database, p: Plan, limit: int) -> list[dict[str, Any]]:
    where = _also(p.where)
    if p.match is not None:
        score = BM25 if p.ranked else "0"
        hits = (f"SELECT d.case_id, {score} AS score, d.at FROM search_fts JOIN search_docs d "
                f"ON d.id = search_fts.rowid WHERE search_fts MATCH ? {where}")
        args = [p.match, *p.params, limit]
    else:
        hits = f"SELECT d.case_id, 0 AS score, d.at FROM search_docs d WHERE 1 {where}"
        args = [*p.params, limit]
    # Materialized: bm25() only works in the query that does the MATCH, not an aggregate.
    order = "best, latest DESC" if p.ranked else "latest DESC"
    sql = (f"WITH hits AS MATERIALIZED ({hits}) SELECT case_id, min(score) AS best, count(*), "
           f"max(at) AS latest FROM hits GROUP BY case_id ORDER BY {order}, case_id LIMIT ?")
    return [{"case": r[0], "hits": r[2]} for r in _execute(db, sql, args)]


def format_results(data: dict[str, Any]) -> str:
    """Results as text, for the terminal and for a ``#search`` reply."""
    def hit(r: dict[str, Any], indent: str) -> list[str]:
        head = f"{indent}{r['date'][:10]}  {r['kind']:<7} {r['case'] or '-':<10} {r['from']}"
        lines = [head, f"{indent}    {r['subject'] or '(no subject)'}"]
        if r["snippet"]:
            lines.append(f"{indent}    {r['snippet']}")
        return lines

    lines: list[str] = []
    if "cases" in data:
        for c in data["cases"]:
            name = f"{c['case']} ({c['codename']}, {c['status']})" if c["case"] else "no case"
            lines.append(f"{name}: {c['hits']} hit{'s' if c['hits'] != 1 else ''}")
            for r in c["results"]:
                lines += hit(r, "  ")
            lines.append("")
        empty = not data["cases"]
    else:
        for r in data["results"]:
            lines += hit(r, "")
        empty = not data["results"]
    if empty:
        return f"Nothing matches {data['query']!r}."
    if data.get("ranked_among"):
        lines.append(f"(more than {data['ranked_among']:,} matches: ranked among the "
                     f"{data['ranked_among']:,} most recently archived; narrow the query "
                     "to rank them all)")
    elif data["more"]:
        lines.append("(more results: raise the limit or narrow the query)")
    return "\n".join(lines).rstrip()


# #search by mail: the asking member's view (never a case they are recused from).
MAIL_SEARCH_LIMIT = 20


@command("search", needs_case=False,
         summary="search the archive; the results come back in the transcript "
         "(never a case you are recused from)",
         usage="#search <query>   (the syntax of `mailflow search --help`)",
         example='#search from:alice@example.org "keynote slides" date:2026')
def _search(inv: Invocation) -> str:
    try:
        data = run(inv.db, inv.cmd.args, as_member=inv.actor, limit=MAIL_SEARCH_LIMIT)
    except SearchError as e:
        raise CommandError(f"{e} (send #help search for the syntax)") from None
    return format_results(data)
