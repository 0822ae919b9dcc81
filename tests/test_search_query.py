"""The query side of search, in process: which hits come first (bm25 best first, equal
scores newest first), filters and recusal combined with words, and what is shown."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mailflow import config, store
from mailflow.archive import search
from mailflow.store import fulltext

START = datetime(2021, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(tmp_path):
    cfg = config.from_dict({"storage": {"path": str(tmp_path / "archive")}})
    cfg.archive_dir.mkdir(parents=True)
    return store.open_db(cfg.db_path)


def day(n: int) -> str:
    return (START + timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def note(db, n: int, body: str, *, kind: str = "note", case_id: str | None = None,
         subject: str = "") -> None:
    fulltext.index_record(db, ref=f"{kind}:{n}", kind=kind, case_id=case_id, body=body,
                        subject=subject, at=day(n))


def open_case(db, case_id: str, recused: str | None = None) -> None:
    year, seq = case_id.split("-")
    db.execute("INSERT INTO cases (id, year, seq, codename, opened_at, updated_at) "
               "VALUES (?, ?, ?, ?, ?, ?)", [case_id, int(year), int(seq), f"Case {seq}",
                                             day(0), day(0)])
    if recused:
        db.execute("INSERT INTO people (case_id, role, address, added_at) "
                   "VALUES (?, 'recused', ?, ?)", [case_id, recused, day(0)])


def mail(db, n: int, *, subject: str, body: str, quoted: str = "",
         sender: str = "alice@people.test", dated: int | None = None) -> None:
    """Mail number ``n``, archived on day ``n`` and dated day ``dated`` (default ``n``)."""
    db.execute("INSERT INTO messages (id, kind, received_at, date, from_addr, from_name, "
               "to_addrs, subject, new_text, quoted_text) VALUES (?, 'report', ?, ?, ?, "
               "'Alice', '[\"conduct@example.org\"]', ?, ?, ?)",
               [n, day(n), day(n if dated is None else dated), sender, subject, body, quoted])


def refs(db, query: str, **kw) -> list[str]:
    return [r["ref"] for r in search.run(db, query, **kw)["results"]]


def expected(db, query: str, limit: int, as_member: str | None = None) -> list[str]:
    """The order promised, computed the plain way: every match scored, joined and sorted."""
    p = search.plan(search.parse_query(query), as_member)
    where = "".join(" AND " + w for w in p.where)
    sql = (f"SELECT d.ref FROM search_fts JOIN search_docs d ON d.id = search_fts.rowid "
           f"WHERE search_fts MATCH ? {where} "
           f"ORDER BY {search.BM25}, d.at DESC, d.ref LIMIT ?")
    return [r[0] for r in db.execute(sql, [p.match, *p.params, limit])]


@pytest.mark.parametrize("tied", [5, 150])  # within the rows kept, and far past them
def test_words_rank_best_first_and_equal_scores_newest_first(db, tied):
    with store.transaction(db):
        for n in range(tied):  # the same text, so the same score: only the date differs
            note(db, n, "wombat seen near the garden gate")
        note(db, 1000, "wombat wombat")  # short and twice: the best
        note(db, 1001, "wombat wombat wombat and then a few more words")
        for n in range(2000, 2030):  # longer, the word once: the worst
            note(db, n, "a wombat " + "and some other words " * (n % 7 + 2))
    for limit in (1, 3, 20, 60, 200):
        got = search.run(db, "wombat", limit=limit)
        assert [r["ref"] for r in got["results"]] == expected(db, "wombat", limit)
        assert got["more"] == (limit < tied + 32)
    best = refs(db, "wombat", limit=2 + tied)
    assert best[0] == "note:1000"
    ties = [r for r in best if int(r.split(":")[1]) < tied]
    assert ties == [f"note:{n}" for n in reversed(range(tied))]  # newest first


def test_a_recused_member_gets_the_best_hits_of_the_other_cases(db):
    with store.transaction(db):
        open_case(db, "2021-0001", recused="m1@example.org")
        open_case(db, "2021-0002")
        for n in range(150):  # the recused case holds the best hits
            note(db, n, "wombat wombat " + "word " * (n % 9), case_id="2021-0001")
        for n in range(150, 350):
            note(db, n, "wombat in another case " + "word " * (n % 13), case_id="2021-0002")
        note(db, 400, "wombat with no case at all")
    for member in ("m1@example.org", "m2@example.org"):
        for limit in (1, 20, 100, 400):
            got = refs(db, "wombat", as_member=member, limit=limit)
            assert got == expected(db, "wombat", limit, as_member=member)
    hidden = {f"note:{n}" for n in range(150)}
    assert not hidden & set(refs(db, "wombat", as_member="m1@example.org", limit=400))
    assert set(refs(db, "wombat", as_member="m2@example.org")) <= hidden


def test_filters_combine_with_words_and_keep_the_ranking(db):
    with store.transaction(db):
        for n in range(0, 700, 7):
            note(db, n, "wombat " + "filler " * (n % 11), kind="call" if n % 2 else "note")
            note(db, n + 1, "numbat only", kind="call")
    for query in ("wombat kind:call", "wombat date:2021-03-01..2021-09-30",
                  "wombat kind:call date:2021", "wombat -kind:call", "wombat OR numbat"):
        got = refs(db, query, limit=15)
        assert got and got == expected(db, query, 15)
    assert all(r.startswith("call:") for r in refs(db, "wombat kind:call", limit=100))


def test_snippets_highlight_the_words_in_the_new_text_else_the_quoted_else_the_subject(db):
    with store.transaction(db):
        mail(db, 1, subject="Report", body="The wombat bit a newcomer at the stand.")
        mail(db, 2, subject="Re: Report", body="I saw it too.",
             quoted="> The wombat bit a newcomer at the stand.")
        mail(db, 3, subject="Wombat incident", body="Nothing else to add here.")
    shown = {r["ref"]: r["snippet"]
             for r in search.run(db, "wombat", marks=("[", "]"))["results"]}
    assert shown == {"message:1": "The [wombat] bit a newcomer at the stand.",
                     "message:2": "> The [wombat] bit a newcomer at the stand.",
                     "message:3": "[Wombat] incident"}


def test_a_query_without_words_to_rank_shows_the_start_of_the_new_text(db):
    with store.transaction(db):
        mail(db, 1, subject="Long", body=" ".join(f"word{i}" for i in range(40)),
             quoted="> wombat")
        mail(db, 2, subject="Short", body="Just this.", sender="bob@people.test")
    hits = search.run(db, "from:alice@people.test", marks=("[", "]"))["results"]
    assert [h["snippet"] for h in hits] == [" ".join(f"word{i}" for i in range(16)) + "…"]
    assert hits[0]["score"] is None


def test_snippets_are_highlighted_for_the_best_of_many_matches(db):
    with store.transaction(db):
        for n in range(400):  # more matches than the ranking keeps: the shown rows are spread
            note(db, n, f"entry {n}: " + "filler " * (n % 13) + "the wombat again",
                 subject=f"Entry {n}")
    got = search.run(db, "wombat", limit=20, marks=("[", "]"))
    assert len(got["results"]) == 20 and got["more"]
    assert all("[wombat]" in r["snippet"] and r["subject"] for r in got["results"])


def test_hits_grouped_by_case_come_with_their_snippets(db):
    with store.transaction(db):
        open_case(db, "2021-0001")
        open_case(db, "2021-0002")
        for n in range(10):
            note(db, n, f"wombat number {n}", case_id="2021-0001" if n % 2 else "2021-0002")
    got = search.run(db, "wombat -kind:case", by_case=True, per_case=2, marks=("[", "]"))
    assert [c["hits"] for c in got["cases"]] == [5, 5]
    for c in got["cases"]:
        assert len(c["results"]) == 2 and {r["case"] for r in c["results"]} == {c["case"]}
        assert all(r["snippet"].startswith("[wombat] number") for r in c["results"])


def test_a_word_with_more_matches_than_the_window_ranks_the_newest_of_them(db, monkeypatch):
    with store.transaction(db):
        note(db, 1, "wombat wombat wombat")  # the best match, and the oldest
        for n in range(2, 7):
            note(db, n, f"a wombat among many other words of note {n} and more filler")
    monkeypatch.setattr(search, "RANK_WINDOW", 10)
    assert refs(db, "wombat")[0] == "note:1"
    assert search.run(db, "wombat")["ranked_among"] is None
    monkeypatch.setattr(search, "RANK_WINDOW", 3)
    data = search.run(db, "wombat")
    assert sorted(r["ref"] for r in data["results"]) == ["note:4", "note:5", "note:6"]
    assert data["ranked_among"] == 3 and data["more"]
    assert "ranked among the 3 most recently archived" in search.format_results(data)
    # Conditions of the query's own choose the matches first, old ones if need be.
    assert refs(db, "wombat date:2021-01-01..2021-01-04")[0] == "note:1"
    data = search.run(db, "wombat date:..2021-01-06")  # notes 1 to 5: the newest 3 ranked
    assert sorted(r["ref"] for r in data["results"]) == ["note:3", "note:4", "note:5"]
    assert data["ranked_among"] == 3 and data["more"]


def _archived(seed: int, moved: int) -> dict[int, int]:
    """The day each of mails 1..200 is dated: in order, four a day, but for ``moved``
    mails dated any day (an import of older mail, a wrong Date header)."""
    rng = random.Random(seed)
    dates = {n: n // 4 for n in range(1, 201)}
    for n in rng.sample(sorted(dates), moved):
        dates[n] = rng.randrange(55)
    return dates


ARCHIVED = {f"{moved} moved, seed {seed}": _archived(seed, moved)
            for moved, seeds in ((6, range(8)), (200, [0])) for seed in seeds}


@pytest.mark.parametrize("dates", ARCHIVED.values(), ids=ARCHIVED.keys())
@pytest.mark.parametrize("late", [0, 100])  # out-of-order records checked, or not
def test_unranked_hits_come_newest_first_in_whatever_order_they_were_archived(
        db, monkeypatch, late, dates):
    monkeypatch.setattr(search, "LATE_CHECKED", late)
    with store.transaction(db):
        for n, dated in dates.items():
            mail(db, n, subject="s", body="b", dated=dated,
                 sender="alice@people.test" if n % 3 else "bob@people.test")
    # Newest first, equal dates by reference, as every query without words to rank.
    alice = sorted((-dated, f"message:{n}") for n, dated in dates.items() if n % 3)
    for limit in range(1, 30):
        assert refs(db, "from:alice@people.test", limit=limit) == [r for _, r in alice[:limit]]


def test_a_sender_of_only_old_mail_gets_their_newest_first(db):
    with store.transaction(db):
        for n in range(1, 201):  # alice wrote the first 50, one of them dated much later
            mail(db, n, subject="s", body="b", dated=170 if n == 3 else n,
                 sender="alice@people.test" if n <= 50 else "bob@people.test")
    assert refs(db, "from:alice@people.test", limit=3) == ["message:3", "message:50",
                                                           "message:49"]


def test_a_quoted_phrase_alone_lists_its_matches_newest_first(db):
    with store.transaction(db):
        note(db, 1, "wombat garden, wombat garden")  # what bm25 would rank first
        note(db, 2, "a wombat garden among many other words of note and filler")
        note(db, 3, "the wombat garden again, in a longer note than the first one was")
        note(db, 4, "a garden wombat: the words, not the phrase")
        note(db, 5, "nothing of the kind here", subject="Wombat garden visit")
    for query, newest in (('"wombat garden"', 5), ('body:"wombat garden"', 3)):
        got = search.run(db, query, marks=("[", "]"))["results"]
        assert [r["ref"] for r in got] == [f"note:{n}" for n in range(newest, 0, -1) if n != 4]
        assert all("wombat garden]" in r["snippet"].lower() and r["score"] is None
                   for r in got)
    # With a word to rank by, the phrase ranks too.
    assert refs(db, '"wombat garden" wombat')[0] == "note:1"
