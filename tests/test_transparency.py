"""`mailflow transparency`: the anonymised yearly report counts what the guidelines'
process did, and nobody can be recognised in it: no name, address, case or code
name, no count below the minimum, and no small category that subtraction would
reveal."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from clockkit import Archive

from mailflow.archive.transparency import FOLDED, breakdown
from mailflow.testing import CHAIR, M1, M2

CHANNELS = '[moderators]\nforum = ["forum-mods@example.org"]\nchat = ["chat@example.org"]\n'
# (reporter, channel, violation, response agreed or None)
CASES = [
    ("ann@people.test", "the forum, thread 'Release 6'", "yes", "private reprimand"),
    ("bea@people.test", "forum", "yes", "private reprimand"),
    ("cal@people.test", "Forum sidebar", "yes", "private reprimand"),
    ("dan@people.test", "forum DMs", "no", "no action"),
    ("eve@people.test", "#chat", "yes", None),
    ("fay@people.test", "the chat", "no", None),
    ("gus@people.test", "#irc-offtopic", "no", None),
]


@pytest.fixture
def archive(tmp_path, monkeypatch) -> Archive:
    a = Archive(tmp_path, monkeypatch, committee='moderators = ["mods@example.org"]')
    (tmp_path / "rules" / "channels.toml").write_text(CHANNELS)
    ids = []
    for n, (reporter, channel, violation, response) in enumerate(CASES):
        a.at("2026-03-02T10:00:00Z")
        case = a.report(f"Reporter {n} here: Sam Sharp insulted me.", sender=reporter,
                        subject=f"Report {n}")
        ids.append(case)
        a.member(CHAIR, case, f"#channel {channel}\n#violation {violation}\n"
                              f"#originator Sam Sharp <sam{n}@people.test>")
        if response:
            a.member(CHAIR, case, f"#propose {response}")
            a.at(f"2026-03-0{3 + n}T10:00:00Z")      # agreed n+1 days after the report
            a.member(M1, case, "#vote agree")
            a.member(M2, case, "#vote agree")
    for case in ids[:3]:
        a.member(CHAIR, case, "#warn originator insults")
    a.member(CHAIR, ids[4], "#severe chat: threats")
    a.ids = ids  # type: ignore[attr-defined]
    return a


def run(archive: Archive, fmt: str, year: str = "2026") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mailflow", "--config", str(archive.cfg.source), "transparency",
         "--year", year, "--format", fmt], capture_output=True, timeout=60,
        env={"MAILFLOW_FAKE_NOW": "2026-12-31T12:00:00Z", "PATH": "/usr/bin:/bin"})


def test_the_report_counts_the_year_and_folds_small_categories(archive):
    r = json.loads(run(archive, "json").stdout)
    assert (r["year"], r["minimum"], r["reports"]) == (2026, 3, 7)
    together = FOLDED.format(n=3)
    # chat (2) and other (1) are each too small: together they make 3.
    assert r["by_channel"] == [{"label": "forum", "count": 4}, {"label": together, "count": 3}]
    assert r["by_finding"] == [{"label": "a violation", "count": 4},
                               {"label": "no violation", "count": 3}]
    # "no action" (1) alone would be told by subtraction: the smallest other joins it.
    assert r["by_response"] == [{"label": "private reprimand", "count": 3},
                                {"label": together, "count": 4}]
    assert r["median_days_to_resolution"] == 2.5      # 1, 2, 3 and 4 days
    assert r["median_hours_to_acknowledgement"] == 0.0
    assert r["median_hours_to_personal_contact"] is None   # nobody was written to yet
    assert (r["unresolved"], r["warnings"], r["false_reports"]) == (3, 3, 0)
    # One use of the fast path, one ban: fewer than three, so not given.
    assert (r["severe_path_uses"], r["bans"]) == (None, None)


def test_no_name_address_case_or_code_name_in_any_format(archive):
    secrets = [c[0] for c in CASES] + [c[0].split("@")[0] for c in CASES] + ["Sam", "sam0"]
    secrets += archive.ids + [r[0] for r in archive.db.execute("SELECT codename FROM cases")]
    secrets += ["Release 6", "irc-offtopic", "sidebar", "threats", "insults"]
    for fmt in ("md", "html", "json"):
        out = run(archive, fmt)
        assert out.returncode == 0, out.stderr
        text = out.stdout.decode()
        assert [s for s in secrets
                if re.search(rf"(?<!\w){re.escape(s)}(?!\w)", text, re.IGNORECASE)] == [], fmt
        assert "fewer than 3" in text if fmt != "json" else "null" in text
    md = run(archive, "md").stdout.decode()
    assert "| reports received | 7 |" in md and "| uses of the clear-and-severe fast path | " \
        "fewer than 3 |" in md
    html = run(archive, "html").stdout.decode()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and "http" not in html


def test_the_minimum_is_the_committees_to_set(archive, tmp_path):
    (tmp_path / "rules" / "transparency.toml").write_text("min_count = 1\n")
    r = json.loads(run(archive, "json").stdout)
    assert r["by_channel"] == [{"label": "forum", "count": 4}, {"label": "chat", "count": 2},
                               {"label": "other", "count": 1}]
    assert (r["severe_path_uses"], r["bans"]) == (1, 1)
    (tmp_path / "rules" / "transparency.toml").write_text("min_count = 0\n")
    check = subprocess.run([sys.executable, "-m", "mailflow", "--config",
                            str(archive.cfg.source), "check"], capture_output=True, timeout=60)
    assert "rules/transparency.toml: min_count: 0 is not a whole number of at least 1" in \
        check.stdout.decode() + check.stderr.decode()


def test_a_year_without_cases_and_a_bad_year(archive):
    r = json.loads(run(archive, "json", "2025").stdout)
    assert (r["reports"], r["by_channel"], r["median_days_to_resolution"]) == (0, [], None)
    for bad in ("26", "2099", "last"):
        out = run(archive, "md", bad)
        assert out.returncode == 64 and b"--year" in out.stderr, bad


@pytest.mark.parametrize("counts, shown", [
    ({"a": 10, "b": 1}, [("folded", 11)]),      # "b: fewer than 3" would be total - 10
    ({"a": 10, "b": 5, "c": 1}, [("a", 10), ("folded", 6)]),
    ({"a": 2}, [("folded", None)]),
    ({"a": 3, "b": 3}, [("a", 3), ("b", 3)]),
    ({}, []),
])
def test_no_single_small_cell_can_be_told_by_subtraction(counts, shown):
    from collections import Counter

    rows = breakdown(Counter(counts), 3)
    got = [(r["label"] if r["label"] in counts else "folded", r["count"]) for r in rows]
    want = [(label if label in counts else "folded", n) for label, n in shown]
    assert got == want
    small = [r for r in rows if r["count"] is not None and 0 < r["count"] < 3]
    assert small == []
