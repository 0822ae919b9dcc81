"""Compiling a parsed query to SQL: the FTS5 expression for what the index can match,
SQL conditions for the rest, and the recusals of the member who asks."""

from __future__ import annotations

from typing import Any

from mailflow.archive.query import And, Meta, Node, Not, Or, Text


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


class Plan:
    """How a query runs.  (A plain class, not a dataclass: `mailflow search` would load
    inspect for it.)"""

    __slots__ = ("match", "narrowed", "params", "ranked", "since", "where")

    def __init__(self, match: str | None, ranked: bool, where: list[str], params: list[Any]):
        self.match = match        # the FTS5 expression that drives the query, if any
        self.ranked = ranked
        self.where = where        # conditions on search_docs d, with their params
        self.params = params
        # Whether `where` holds conditions of the query's own (date:, kind:, ...), which
        # may leave out most matches; the recusal filter alone leaves out few.
        self.narrowed = False
        # Ranked among the matches from this rowid up only (see RANK_WINDOW); None: all.
        self.since: int | None = None


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
        # Nor held mail that names them (mailflow.case.held): it is on no case yet.
        p.where.append("d.ref NOT IN (SELECT 'message:' || m.id FROM held h JOIN messages m "
                       "ON m.spool_id = h.spool_id WHERE h.state != 'released' AND EXISTS "
                       "(SELECT 1 FROM json_each(h.named) WHERE value = lower(?)))")
        p.params += [as_member, as_member]
    return p
