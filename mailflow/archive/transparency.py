"""``mailflow transparency --year YYYY``: the anonymised yearly transparency report.

The guidelines let the officers publish a report and promise that identities stay
confidential.  This report counts, for the cases opened in the year: reports by
channel, by violation finding and by agreed response; the median time to the
automatic acknowledgement, to the first personal contact with the reporter and to an
agreed resolution; and, for the year's events: uses of the clear-and-severe fast
path, bans by kind, warnings and reports found false or abusive.

Nobody can be recognised in it:

- it never holds a name, an address, a case id, a code name, a subject or any text
  written by anyone: channels are the keys of ``rules/channels.toml`` (else "other"),
  responses the words of the guidelines' menu;
- a count below ``min_count`` (``rules/transparency.toml``, default 3) is not given
  ("fewer than 3"), and a median of fewer cases is not given either;
- in a breakdown, categories that small are folded into one line, and when that line
  would itself be small (and so be told by subtracting the others from the total),
  the smallest other categories join it until it is not.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from html import escape
from typing import Any

from mailflow import timestamps
from mailflow.store.sqlite import Database

DEFAULT_MINIMUM = 3
FOLDED = "categories of fewer than {n} each, together"


def problems(rules: dict[str, Any]) -> list[str]:
    value = rules.get("transparency", {}).get("min_count", DEFAULT_MINIMUM)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return [f"rules/transparency.toml: min_count: {value!r} is not a whole number of "
                "at least 1"]
    return []


def minimum(rules: dict[str, Any]) -> int:
    return int(rules.get("transparency", {}).get("min_count", DEFAULT_MINIMUM))


def count(n: int, least: int) -> int | None:
    """``n``, or None when it is too small to show (zero is shown: it names nobody)."""
    return n if n == 0 or n >= least else None


def breakdown(counts: Counter[str], least: int) -> list[dict[str, Any]]:
    """Categories with their counts, largest first; small ones folded (see the module)."""
    shown = {k: v for k, v in counts.items() if v >= least}
    folded = sum(v for v in counts.values() if 0 < v < least)
    while 0 < folded < least and shown:
        smallest = min(shown, key=lambda k: (shown[k], k))
        folded += shown.pop(smallest)
    rows = [{"label": k, "count": v}
            for k, v in sorted(shown.items(), key=lambda kv: (-kv[1], kv[0]))]
    if folded:
        rows.append({"label": FOLDED.format(n=least), "count": count(folded, least)})
    return rows


def median(values: list[float], least: int) -> float | None:
    return round(statistics.median(values), 1) if values and len(values) >= least else None


def _hours(start: str, end: str | None) -> float | None:
    if not end:
        return None
    return (timestamps.parse(end) - timestamps.parse(start)).total_seconds() / 3600


def channel_of(text: str | None, channels: list[str]) -> str:
    """A case's channel as the report counts it: the first known channel it names."""
    if not text:
        return "not recorded"
    for channel in channels:
        if re.search(rf"(?<!\w){re.escape(channel)}(?!\w)", text, re.IGNORECASE):
            return channel
    return "other"


def _case_rows(db: Database, year: int) -> list[dict[str, Any]]:
    return list(db.query(
        "SELECT c.id, c.opened_at, c.acknowledged_at, r.channel, r.severe_scope, r.violation,"
        " r.response, r.closed_at,"
        " (SELECT min(o.created_at) FROM outbound o JOIN outbound_rcpt t ON t.outbound_id = o.id"
        "  JOIN people p ON p.case_id = c.id AND p.role = 'reporter' AND p.address = t.rcpt"
        "  WHERE o.case_id = c.id AND o.kind != 'ack') AS contacted_at,"
        " (SELECT min(decided_at) FROM proposals WHERE case_id = c.id AND kind = 'response'"
        "  AND status = 'passed') AS resolved_at"
        " FROM cases c LEFT JOIN case_record r ON r.case_id = c.id WHERE c.year = ?", [year]))


def _events(db: Database, year: int) -> dict[str, Any]:
    """What happened during the year, whatever year its case was opened in."""
    span = [f"{year}-01-01", f"{year + 1}-01-01"]

    def n(sql: str) -> int:
        return int(db.execute(sql, span).fetchone()[0])

    bans = Counter(
        "interim (fast path)" if until_event else "permanent" if ends_at is None else "temporary"
        for until_event, ends_at in db.execute(
            "SELECT until_event, ends_at FROM bans WHERE created_at >= ? AND created_at < ?",
            span))
    return {
        "severe": n("SELECT count(*) FROM case_record WHERE severe_at >= ? AND severe_at < ?"),
        "bans": bans,
        "warnings": n("SELECT count(*) FROM warnings WHERE at >= ? AND at < ?"),
        "false_reports": n("SELECT count(*) FROM proposals WHERE kind = 'false-report' AND "
                           "status = 'passed' AND decided_at >= ? AND decided_at < ?"),
    }


def report(db: Database, rules: dict[str, Any], year: int) -> dict[str, Any]:
    """The report as data: counts are None where too small to give."""
    least = minimum(rules)
    channels = [k.strip().lower() for k in rules.get("channels", {}).get("moderators", {})]
    rows = _case_rows(db, year)
    by_channel = Counter(channel_of(r["channel"] or r["severe_scope"], channels) for r in rows)
    finding = {"yes": "a violation", "no": "no violation"}
    by_finding = Counter(finding.get(r["violation"] or "", "not determined") for r in rows)
    by_response = Counter((r["response"] or "none agreed").replace("-", " ") for r in rows)
    acknowledge = [h for r in rows
                   if (h := _hours(r["opened_at"], r["acknowledged_at"])) is not None]
    contact = [h for r in rows if (h := _hours(r["opened_at"], r["contacted_at"])) is not None]
    resolve = [h / 24 for r in rows
               if (h := _hours(r["opened_at"], r["resolved_at"] or r["closed_at"])) is not None]
    events = _events(db, year)
    return {
        "year": year, "minimum": least, "generated": timestamps.stamp(),
        "reports": count(len(rows), least),
        "by_channel": breakdown(by_channel, least),
        "by_finding": breakdown(by_finding, least),
        "by_response": breakdown(by_response, least),
        "median_hours_to_acknowledgement": median(acknowledge, least),
        "median_hours_to_personal_contact": median(contact, least),
        "median_days_to_resolution": median(resolve, least),
        "unresolved": count(len(rows) - len(resolve), least),
        "severe_path_uses": count(events["severe"], least),
        "bans": count(sum(events["bans"].values()), least),
        "bans_by_kind": breakdown(events["bans"], least),
        "warnings": count(events["warnings"], least),
        "false_reports": count(events["false_reports"], least),
    }


def _sections(r: dict[str, Any]) -> list[tuple[str, list[tuple[str, Any]]]]:
    def rows(items: list[dict[str, Any]]) -> list[tuple[str, Any]]:
        return [(i["label"], i["count"]) for i in items] or [("none", 0)]

    return [
        ("In numbers", [
            ("reports received", r["reports"]),
            ("still without an agreed resolution", r["unresolved"]),
            ("median hours to the automatic acknowledgement",
             r["median_hours_to_acknowledgement"]),
            ("median hours to the first personal contact with the reporter",
             r["median_hours_to_personal_contact"]),
            ("median days to an agreed resolution", r["median_days_to_resolution"]),
            ("uses of the clear-and-severe fast path", r["severe_path_uses"]),
            ("bans recorded", r["bans"]), ("warnings recorded", r["warnings"]),
            ("reports found false or abusive", r["false_reports"])]),
        ("Reports by channel", rows(r["by_channel"])),
        ("Reports by finding", rows(r["by_finding"])),
        ("Reports by agreed response", rows(r["by_response"])),
        ("Bans by kind", rows(r["bans_by_kind"])),
    ]


def _value(v: Any, least: int) -> str:
    return f"fewer than {least}" if v is None else str(v)


def _intro(r: dict[str, Any]) -> str:
    return (f"Cases opened in {r['year']}; fast-path uses, bans, warnings and false-report "
            f"findings made in {r['year']}. To protect the people involved, no count below "
            f"{r['minimum']} is given, smaller categories are counted together, and no "
            "name, address or case is ever shown.")


def to_markdown(r: dict[str, Any], title: str) -> str:
    least = r["minimum"]
    out = [f"# {title}: transparency report {r['year']}", "", _intro(r)]
    for heading, rows in _sections(r):
        out += ["", f"## {heading}", "", "| | |", "|---|---:|"]
        out += [f"| {label} | {_value(v, least)} |" for label, v in rows]
    return "\n".join(out) + "\n"


def to_html(r: dict[str, Any], title: str) -> str:
    least, t = r["minimum"], escape(f"{title}: transparency report {r['year']}")
    body = [f"<h1>{t}</h1>", f"<p>{escape(_intro(r))}</p>"]
    for heading, rows in _sections(r):
        body.append(f"<h2>{escape(heading)}</h2><table>")
        body += [f"<tr><td>{escape(label)}</td><td>{escape(_value(v, least))}</td></tr>"
                 for label, v in rows]
        body.append("</table>")
    style = ("body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto}"
             "td{padding:.2rem .8rem;border-bottom:1px solid #ddd}td+td{text-align:right}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{t}</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def render(r: dict[str, Any], fmt: str, title: str) -> str:
    if fmt == "json":
        return json.dumps(r, indent=2, ensure_ascii=False) + "\n"
    return to_html(r, title) if fmt == "html" else to_markdown(r, title)


def valid_year(text: str) -> int:
    """The year asked for, or ValueError saying why it is not one to report on."""
    if not re.fullmatch(r"\d{4}", text.strip()):
        raise ValueError("give the year as YYYY")
    year = int(text)
    if year > timestamps.now().year:
        raise ValueError("that year has not begun")
    return year
