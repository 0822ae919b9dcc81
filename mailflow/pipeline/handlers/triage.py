"""Urgent triage: words and patterns from ``rules/triage.toml`` (threats of violence,
self-harm, doxxing, an event in progress) mark a new report urgent.

Two pipeline handlers, because they need different moments:

- :func:`assess`, right after threading, marks the case urgent, so that the clocks,
  the acknowledgement (which then tells the reporter whom to call in an emergency)
  and the relay all see it;
- :func:`alert`, just before the relay (after any automatic recusal), alerts every
  member on the case at once with a distinct subject, ahead of the ordinary copy.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailflow.case import cases
from mailflow.case.notices import mail_members
from mailflow.mail import render
from mailflow.store import audit

if TYPE_CHECKING:
    from mailflow.pipeline.context import Context


@dataclass(frozen=True)
class Hit:
    label: str
    matched: str


def _word_pattern(word: str) -> str:
    # Whole words or phrases, any spacing between the words of a phrase.
    return r"(?<!\w)" + r"\s+".join(re.escape(w) for w in word.split()) + r"(?!\w)"


def problems(rules: Mapping[str, Any]) -> list[str]:
    """Every problem with ``rules/triage.toml``, for ``mailflow check``."""
    out = []
    table = rules.get("triage", {})
    cats = table.get("categories", {})
    if not isinstance(cats, dict):
        return ["rules/triage.toml: categories: expected tables [categories.NAME]"]
    for name, spec in cats.items():
        key = f"rules/triage.toml: categories.{name}"
        if not isinstance(spec, dict):
            out.append(f"{key}: expected a table")
            continue
        for field in ("words", "patterns"):
            values = spec.get(field, [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                out.append(f"{key}.{field}: expected a list of strings")
        patterns = spec.get("patterns", [])
        errors = len(out)
        for pattern in patterns:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as e:
                out.append(f"{key}.patterns: {pattern!r}: {e}")
        if len(out) == errors and patterns:
            try:
                category_pattern(tuple(patterns))
            except re.error as e:
                out.append(f"{key}.patterns: they do not compile as one alternation ({e}); "
                           "a group name used twice?")
    if not isinstance(table.get("subject_prefix", "URGENT"), str):
        out.append("rules/triage.toml: subject_prefix: expected a string")
    return out


def find(rules: Mapping[str, Any], text: str) -> list[Hit]:
    """One hit per category whose words or patterns occur in ``text``."""
    # Matched in lower case with whitespace collapsed: "any case, any spacing", and
    # a case-sensitive regex runs several times faster than an IGNORECASE one.
    flat = " ".join(text.split()).lower()
    hits = []
    for name, spec in rules.get("triage", {}).get("categories", {}).items():
        matched = _first_word(spec.get("words", []), flat)
        if not matched and spec.get("patterns"):
            found = category_pattern(tuple(spec["patterns"])).search(flat)
            matched = found.group(0) if found else None
        if matched:
            hits.append(Hit(spec.get("label", name), matched))
    return hits


def _first_word(words: list[str], flat: str) -> str | None:
    # A plain substring test first: the whole-word regex runs only where the word is.
    # (One big alternation tried at every position cost more than the rest of
    # processing a report.)
    for phrase, pattern in _phrases(tuple(words)):
        if phrase in flat and pattern.search(flat):
            return phrase
    return None


@functools.lru_cache(maxsize=64)
def _phrases(words: tuple[str, ...]) -> list[tuple[str, re.Pattern[str]]]:
    """A category's words, normalised and compiled once rather than for every report."""
    phrases = [" ".join(word.lower().split()) for word in words]
    return [(phrase, re.compile(_word_pattern(phrase))) for phrase in phrases]


@functools.lru_cache(maxsize=64)
def category_pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """A category's patterns as one alternation: one pass over the text instead of one
    per pattern.  The text is in lower case, so IGNORECASE is needed only for a capital
    letter written as a literal (not in an escape such as \\S or in (?P<name>))."""
    joined = "|".join(f"(?:{p})" for p in patterns)
    literal = re.sub(r"\\.|\(\?P[<=]", "", joined)
    return re.compile(joined, re.IGNORECASE if any(c.isupper() for c in literal) else 0)


def _report_text(ctx: Context) -> str:
    p = ctx.parsed
    return "\n".join([p.subject, p.body_text, *(f.subject + "\n" + f.text for f in p.forwarded)])


def assess(ctx: Context) -> None:
    """A new report with urgent words (rules/triage.toml) marks its case urgent."""
    if not ctx.new_case or not ctx.case_id:
        return
    hits = find(ctx.svc.rules, _report_text(ctx))
    if not hits:
        return
    ctx.db.execute("UPDATE cases SET urgent = 1 WHERE id = ?", [ctx.case_id])
    labels = ", ".join(h.label for h in hits)
    ctx.flags.append(f"urgent: {labels}")
    audit.append(ctx.db, "mailflow", "marked urgent", ctx.case_id, categories=len(hits))


def alert(ctx: Context) -> None:
    """Alert every member deciding an urgent new report at once, ahead of its copy."""
    if not ctx.new_case or not ctx.case_id:
        return
    case = cases.get(ctx.db, ctx.case_id)
    if not case or not case["urgent"]:
        return
    members = cases.active_members(ctx.db, ctx.cfg, ctx.case_id)
    if not members:
        return
    hits = find(ctx.svc.rules, _report_text(ctx))
    text = render.render(
        ctx.svc.templates, "urgent-alert", committee=ctx.cfg.committee, case=case,
        prefix=ctx.svc.rules.get("triage", {}).get("subject_prefix", "URGENT"),
        labels=[h.label for h in hits], hits=hits, body=ctx.parsed.text_with_forwards,
        reporters=cases.reporters(ctx.db, ctx.case_id))
    mail_members(ctx.db, ctx.svc, ctx.case_id, members, subject=text.subject, body=text.body,
                       kind="urgent")
