"""Searching the archive: a query is parsed (:mod:`.query`), compiled to SQL over the
FTS5 index (:mod:`.plan`), and run here: ranked by bm25 when it has words to rank by,
otherwise (exact terms: addresses, quoted phrases; conditions) newest first, with
highlighted snippets.  ``--as MEMBER`` and ``#search`` never show a case the member
is recused from.  The index itself is :mod:`mailflow.store.fulltext`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from mailflow.archive.plan import Plan, plan
from mailflow.archive.query import SearchError, parse_query
from mailflow.store.fulltext import before_commit
from mailflow.store.sqlite import Database

# bm25 weights, in the column order of search_fts (fulltext.COLUMNS).
WEIGHTS = (2.0, 1.0, 4.0, 3.0, 0.5, 1.0)


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


def _execute(db: Database, sql: str, args: list[Any]) -> list[tuple]:
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError as e:
        raise SearchError(f"the query could not be run: {e}") from None


def _also(conditions: list[str]) -> str:
    """Conditions to append to a WHERE clause."""
    return "".join(f" AND {c}" for c in conditions)


def _hits(db: Database, p: Plan, limit: int, extra: str = "",
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


def _newest_unranked(db: Database, p: Plan, limit: int) -> list[tuple] | None:
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


def _best_ranked(db: Database, p: Plan, limit: int
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


def _display(db: Database, p: Plan, ids: list[int]) -> dict[int, dict]:
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
    for rowid, sender, subject, *texts in rows:
        snippet = next((s for s in texts if s and MARKS[0] in s), texts[0] or "")
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


def run(db: Database, query: str, *, as_member: str | None = None,
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


def _case_groups(db: Database, p: Plan, limit: int) -> list[dict[str, Any]]:
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
