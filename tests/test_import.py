"""`mailflow import` and `mailflow reindex` against a real server and real files."""

from __future__ import annotations

import json
import mailbox
import sqlite3
from pathlib import Path

from mailflow.testing import M1

THREADS, REPLIES = 60, 4  # 300 messages
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun"]
QUERIES = ["insulting", "from:person7@people.test", '"thread 12"', "date:2021-03..2021-04",
           "kind:member OR kind:reply", "status:closed kind:report", "walrus -quoted:walrus"]


def history() -> list[bytes]:
    """Threads of 2021: a report, the reporter's replies (quoting), a member's post."""
    out = []
    for t in range(THREADS):
        reporter = f"person{t % 17}@people.test"
        root = f"<t{t}.0@people.test>"
        for n in range(REPLIES + 1):
            month, day = 1 + t % 6, 1 + n
            sender, to = (M1, "committee@example.org") if n == REPLIES else (
                reporter, "conduct@example.org")
            mid = root if n == 0 else f"<t{t}.{n}@people.test>"
            body = (f"Thread {t} message {n}: someone kept insulting people"
                    f"{' (a walrus)' if t % 10 == 0 else ''}.")
            if n:
                body += f"\n\nOn an earlier day, {reporter} wrote:\n> walrus thread {t}"
            if sender == M1:
                body = "#close\n" + body  # history: never applied again
            headers = [f"From: {sender}", f"To: {to}",
                       f"Subject: {'Re: ' if n else ''}Report {t}",
                       f"Date: Mon, {day:02d} {MONTHS[month - 1]} 2021 10:0{n}:00 +0000",
                       f"Message-ID: {mid}"]
            if n:
                headers.append(f"In-Reply-To: {root}")
            out.append(("\n".join(headers) + "\n\n" + body + "\n").encode())
    return out


def case_summary(server) -> list[tuple]:
    return [(c["id"], c["status"], c["messages"], c["reporter"])
            for c in server.cli_json("cases")]


def test_import_twice_gives_the_same_cases_and_sends_nothing(server, relay, tmp_path: Path):
    messages = history()
    box = mailbox.mbox(str(tmp_path / "old.mbox"))
    for raw in reversed(messages):  # out of order on purpose: the import sorts by Date
        box.add(raw)
    box.flush()
    first = server.cli("import", str(tmp_path / "old.mbox"), "--json")
    summary = json.loads(first.stdout)
    assert summary["imported"] == len(messages) and summary["cases_opened"] == THREADS
    assert "msg/s" in first.stderr.decode()  # the progress line
    cases = case_summary(server)
    assert len(cases) == THREADS
    assert all(c[0].startswith("2021-") and c[1] == "closed" and c[2] == REPLIES + 1
               for c in cases)
    again = json.loads(server.cli("import", str(tmp_path / "old.mbox"), "--json").stdout)
    assert again["imported"] == 0 and again["already"] == len(messages)
    # The same mail as a Maildir and as .eml files is already archived too.
    maildir = mailbox.Maildir(str(tmp_path / "Maildir"))
    for raw in messages:
        maildir.add(raw)
    (tmp_path / "eml").mkdir()
    for i, raw in enumerate(messages[:20]):
        (tmp_path / "eml" / f"{i}.eml").write_bytes(raw)
    assert json.loads(server.cli("import", str(tmp_path / "Maildir"), "--json").stdout)[
        "already"] == len(messages)
    assert json.loads(server.cli("import", str(tmp_path / "eml"), "--json").stdout)[
        "already"] == 20
    assert case_summary(server) == cases
    # Nothing went out, nothing was queued, no #command of the history ran.
    assert server.query("SELECT count(*) FROM outbound") == [(0,)]
    assert relay.received == []
    assert server.query("SELECT count(*) FROM audit WHERE actor = ? AND action NOT LIKE "
                        "'mail in%'", (M1,)) == [(0,)]
    bad = server.cli("import", str(tmp_path / "nowhere"), check=False)
    assert bad.returncode == 65 and b"no such file" in bad.stderr


def test_import_status_open_leaves_the_cases_it_opens_open(server, tmp_path: Path):
    (tmp_path / "eml").mkdir()
    for i, raw in enumerate(history()[:2 * (REPLIES + 1)]):  # two threads
        (tmp_path / "eml" / f"{i}.eml").write_bytes(raw)
    summary = json.loads(server.cli("import", str(tmp_path / "eml"), "--status", "open",
                                    "--json").stdout)
    assert summary["cases_opened"] == 2
    assert [c[1] for c in case_summary(server)] == ["open", "open"]
    assert server.query("SELECT count(*) FROM audit WHERE action = "
                        "'status: open (imported history)'") == [(2,)]


def test_reindex_reproduces_identical_results(server, tmp_path: Path):
    box = mailbox.mbox(str(tmp_path / "old.mbox"))
    for raw in history():
        box.add(raw)
    box.flush()
    server.cli("import", str(tmp_path / "old.mbox"), "-q")

    def results() -> list:
        return [server.cli("search", q, "--json", "--limit", "100").stdout for q in QUERIES] + [
            server.cli("search", q, "--json", "--by-case").stdout for q in QUERIES[:2]]

    before = results()
    assert all(json.loads(r).get("results", True) for r in before)
    assert server.cli("reindex", check=False).returncode == 75  # serve holds the archive
    server.stop()
    # Damage the derived data: reindex must bring it back from the raw bytes.
    with sqlite3.connect(server.archive / "mailflow.db") as conn:
        conn.execute("UPDATE messages SET new_text = 'lost', subject = NULL")
        conn.execute("DELETE FROM search_fts")
    out = server.cli("reindex")
    assert b"reindexed 300 message(s)" in out.stdout and b"msg/s" in out.stderr
    assert results() == before


def test_a_large_import_is_taken_in_by_a_second_process_and_files_the_same(tmp_path, monkeypatch):
    from mailflow import app, config, store
    from mailflow.intake import importer
    from mailflow.pipeline import runner

    box = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    for n, raw in enumerate(history()):
        (box / "cur" / f"{n:04d}:2,").write_bytes(raw)
    parsed_here = []
    monkeypatch.setattr(runner, "parse", lambda raw: parsed_here.append(raw) or
                        importer.parse(raw))
    monkeypatch.setattr(importer, "CHUNK", 64)  # several chunks, one taken in ahead

    def run(name: str, parallel_min: int) -> list[tuple]:
        monkeypatch.setattr(importer, "PARALLEL_MIN", parallel_min)
        cfg = config.from_dict({"storage": {"path": str(tmp_path / name)}})
        summary = importer.run(app.services(cfg), box, show_progress=False)
        assert summary.imported == THREADS * (REPLIES + 1) and summary.cases_opened == THREADS
        db = store.connect(cfg.db_path)
        assert db.execute("SELECT DISTINCT status FROM cases").fetchall() == [("closed",)]
        return db.execute("SELECT m.message_id, m.kind, c.seq, c.status FROM messages m "
                          "LEFT JOIN cases c ON c.id = m.case_id ORDER BY m.id").fetchall()

    in_process = run("one", parallel_min=10 ** 9)
    assert len(parsed_here) == THREADS * (REPLIES + 1)
    parsed_here.clear()
    assert run("two", parallel_min=0) == in_process
    assert parsed_here == []  # every message came parsed from the worker


def test_import_names_the_messages_over_the_size_limit_and_takes_the_rest(tmp_path, monkeypatch):
    from mailflow import app, config
    from mailflow.intake import importer

    messages = history()[:REPLIES + 1]
    big = messages[0].replace(b"<t0.0@", b"<big@") + b"x" * 5000 + b"\n"
    (tmp_path / "eml").mkdir()
    for i, raw in enumerate([*messages, big]):
        (tmp_path / "eml" / f"{i}.eml").write_bytes(raw)
    box = mailbox.mbox(str(tmp_path / "old.mbox"))
    for raw in [*messages, big]:
        box.add(raw)
    box.flush()
    for name, source, parallel_min, too_large in [
            ("files", "eml", 10 ** 9, f"{tmp_path}/eml/{REPLIES + 1}.eml"),
            ("files-worker", "eml", 0, f"{tmp_path}/eml/{REPLIES + 1}.eml"),
            ("mbox", "old.mbox", 10 ** 9, f"{tmp_path}/old.mbox message {REPLIES + 2}")]:
        monkeypatch.setattr(importer, "PARALLEL_MIN", parallel_min)
        cfg = config.from_dict({"storage": {"path": str(tmp_path / name)},
                                "intake": {"max_size": 4096}})
        summary = importer.run(app.services(cfg), tmp_path / source, show_progress=False)
        assert summary.too_large == [too_large], name
        assert (summary.read, summary.imported, summary.cases_opened) == (REPLIES + 2,
                                                                          REPLIES + 1, 1)


def test_the_next_import_finishes_what_an_interrupted_one_committed(tmp_path):
    from mailflow import app, config, store
    from mailflow.intake import importer

    messages = history()
    thread_a, thread_b = messages[:REPLIES + 1], messages[REPLIES + 1:2 * (REPLIES + 1)]
    (tmp_path / "a").mkdir()
    for i, raw in enumerate(thread_a):
        (tmp_path / "a" / f"{i}.eml").write_bytes(raw)
    cfg = config.from_dict({"storage": {"path": str(tmp_path / "archive")}})
    assert importer.run(app.services(cfg), tmp_path / "a", show_progress=False).cases_opened == 1
    # A run that stopped after committing thread B to the spool, before filing any of it.
    spool = store.connect_spool(cfg.db_path)
    importer.take_in(spool, [(f"b{i}", raw) for i, raw in enumerate(thread_b)],
                     cfg.intake.max_size, parse_new=False)
    spool.close()
    again = importer.run(app.services(cfg), tmp_path / "a", show_progress=False)
    assert (again.imported, again.already, again.cases_opened) == (0, REPLIES + 1, 1)
    db = store.connect(cfg.db_path)
    assert db.execute("SELECT count(*) FROM messages").fetchone() == (2 * (REPLIES + 1),)
    assert db.execute("SELECT status, count(*) FROM cases GROUP BY status").fetchall() == [
        ("closed", 2)]
