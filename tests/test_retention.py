"""The audit log's chain, the case dossier, and retention: what a purge leaves behind."""

from __future__ import annotations

import json
import mailbox
import os
import sqlite3
from pathlib import Path

from mailflow.testing import MailflowServer, make_mail

REPORTER = "reporter@people.test"


def report(server, body: str, subject: str = "Report") -> str:
    server.send(make_mail(REPORTER, "conduct@example.org", subject, body), REPORTER,
                ["conduct@example.org"])
    server.processed(1)
    return server.cli_json("cases")[-1]["id"]


def test_editing_one_audit_row_is_detected(server):
    report(server, "Something happened.")
    assert json.loads(server.cli("audit", "verify", "--json").stdout)["ok"] is True
    with sqlite3.connect(server.archive / "mailflow.db") as conn:
        conn.execute("UPDATE audit SET actor = 'someone else' WHERE id = 2")
    result = server.cli("audit", "verify", check=False)
    assert result.returncode == 65
    assert b"BROKEN at entry 2" in result.stdout and b"edited" in result.stdout


def test_the_dossier_has_the_whole_case_in_order(server, tmp_path: Path):
    case_id = report(server, "The <b>speaker</b> mocked me & others.")
    html = tmp_path / "case.html"
    server.cli("case", "export", case_id, "--format", "html", "-o", str(html))
    page = html.read_text()
    assert "The &lt;b&gt;speaker&lt;/b&gt; mocked me &amp; others." in page
    # Readable offline: nothing fetched from elsewhere, nothing run.
    assert "<script" not in page and "http://" not in page and "https://" not in page
    data = json.loads(server.cli("case", "export", case_id, "--format", "json", "-o",
                                 "-").stdout)
    types = [e["type"] for e in data["timeline"]]
    assert types[0] == "mail in" and "mail out" in types and "event" in types
    assert [e["at"] for e in data["timeline"]] == sorted(e["at"] for e in data["timeline"])
    server.cli("case", "export", case_id, "--format", "mbox", "-o", str(tmp_path / "c.mbox"))
    box = mailbox.mbox(str(tmp_path / "c.mbox"))
    subjects = [m["Subject"] for m in box]
    assert subjects[0] == "Report" and "received your report" in subjects[1]
    assert subjects[-1].endswith("the case record")
    assert server.query("SELECT count(*) FROM audit WHERE action = 'case exported'") == [(3,)]


def mbox_of(path: Path, mails: list[bytes]) -> Path:
    box = mailbox.mbox(str(path))
    for raw in mails:
        box.add(raw)
    box.flush()
    return path


def test_purge_leaves_no_trace_of_an_expired_case(tmp_path: Path, relay):
    # 2019: two reports come in and are imported as closed history.
    server = MailflowServer(tmp_path, relay.port,
                            env={"MAILFLOW_FAKE_NOW": "2019-06-01T10:00:00Z"}).start()
    old = mbox_of(tmp_path / "old.mbox", [
        make_mail(REPORTER, "conduct@example.org", "Xylophonecanary subject",
                  "The xylophonecanary happened at the sprint.", message_id="<p1@x>"),
        make_mail("other@people.test", "conduct@example.org", "Banned one",
                  "A keepsakeword report; its originator is banned for good.",
                  message_id="<p2@x>"),
    ])
    server.cli("import", str(old), "-q")
    cases = {c["subject"]: c["id"] for c in server.cli_json("cases")}
    purged, banned = cases["Xylophonecanary subject"], cases["Banned one"]
    assert purged.startswith("2019-")
    with sqlite3.connect(server.archive / "mailflow.db") as conn:
        conn.execute("INSERT INTO bans (case_id, person, scope, starts_at, reason, actor, "
                     "created_at) VALUES (?, 'originator@people.test', 'all', "
                     "'2019-05-01T00:00:00Z', 'threats', 'chair@example.org', "
                     "'2019-05-01T00:00:00Z')", [banned])
    assert server.cli("search", "xylophonecanary", "--json").stdout.count(b'"ref"') == 2
    server.stop()

    # Years later, the committee purges.
    server.env = {k: v for k, v in os.environ.items() if k != "MAILFLOW_FAKE_NOW"}
    dry = json.loads(server.cli("purge", "--before", "2020-01-01", "--dry-run", "--json").stdout)
    assert {(c["case_id"], c["action"]) for c in dry["cases"]} == {
        (purged, "would purge"), (banned, "refused")}
    out = json.loads(server.cli("purge", "--before", "2020-01-01", "--json").stdout)
    assert {(c["case_id"], c["action"]) for c in out["cases"]} == {
        (purged, "purged"), (banned, "refused")}
    assert json.loads(server.cli("search", "xylophonecanary", "--json").stdout)["results"] == []
    assert json.loads(server.cli("search", "keepsakeword", "--json").stdout)["results"]
    assert server.query("SELECT status, subject FROM cases WHERE id = ?", (purged,)) == [
        ("purged", None)]
    assert server.query("SELECT count(*) FROM audit WHERE action = 'purged' AND case_id = ?",
                        (purged,)) == [(1,)]
    assert json.loads(server.cli("audit", "verify", "--json").stdout)["ok"] is True
    files = [p for p in server.archive.iterdir() if p.name.startswith(("mailflow.db", "spool.db"))]
    assert any(p.name.endswith("-wal") for p in files) or len(files) >= 2
    for path in files:
        data = path.read_bytes().lower()
        assert b"xylophonecanary" not in data, path.name
    assert b"keepsakeword" in (server.archive / "mailflow.db").read_bytes()
