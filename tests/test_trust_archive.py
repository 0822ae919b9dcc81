"""The archive keeps its secrets, over real SMTP: audit entries hold ids, actions and
hashes, never text or names, so that after a purge no canary of the case is left in any
file under the archive; the audit chain is keyed and anchored outside the database, so
truncating it or editing and re-hashing it is detected; and every file is private
whatever the umask."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

from casekit import Case, draft_ids, start_server

from mailflow.testing import CHAIR, M1, M2, MailflowServer, make_mail, wait_until

REPORTER, REPORTER_NAME = "xanthe.quill@people.test", "Xanthe Quillfeather"
ORIGINATOR = "orrin.vantablack@people.test"
CANARIES = ["xanthe", "quillfeather", "orrin", "vantablack", "zebracanary", "yakcanary",
            "wombatcanary", "narwhalcanary", "ibexcanary"]


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_after_a_purge_no_canary_of_the_case_is_in_any_file(tmp_path, relay):
    # 2019: a case is reported, worked on by mail and closed.
    server = start_server(tmp_path, relay, env={"MAILFLOW_FAKE_NOW": "2019-06-03T10:00:00Z"})
    try:
        server.send(make_mail(REPORTER, "conduct@example.org", "Zebracanary in the chat",
                              "Orrin Vantablack posted the zebracanary insult about me.",
                              name=REPORTER_NAME), REPORTER, ["conduct@example.org"])
        ack = relay.wait_for(lambda c: REPORTER in c.rcpts, what="the acknowledgement")[0]
        case = Case(server, relay, ack.msg["X-Mailflow-Case"])
        case.command(M1, f"""#what Orrin Vantablack posted the yakcanary insult
#channel the wombatcanary chat
#originator Orrin Vantablack <{ORIGINATOR}>
#affected {REPORTER_NAME} <{REPORTER}>
#violation yes
#ongoing no
#safety no
#note narwhalcanary: Xanthe asked us to be discreet
""")
        case.command(M1, "#propose private reprimand")
        case.command(M2, "#vote agree")
        case.command(CHAIR, "#vote agree")
        report = case.command(M1, "#report")
        assert draft_ids(report), report
        case.confirm(*draft_ids(report))
        assert "case closed" in case.command(CHAIR, "#close ibexcanary: reprimand delivered")
        assert server.cli_json("search", "zebracanary")["results"]
        # From another case, a member's search quotes it: the transcript goes with it.
        server.send(make_mail("bystander@people.test", "conduct@example.org", "Another",
                              "Something else."), "bystander@people.test",
                    ["conduct@example.org"])
        ack = relay.wait_for(lambda c: "bystander@people.test" in c.rcpts, what="ack")[0]
        other = Case(server, relay, ack.msg["X-Mailflow-Case"])
        assert "zebracanary" in other.command(M2, f"#search case:{case.id}").lower()
    finally:
        server.stop()

    # Years later, the committee purges it.
    server.env = {k: v for k, v in os.environ.items() if k != "MAILFLOW_FAKE_NOW"}
    out = server.cli_json("purge", "--before", "2020-01-01")
    assert [(c["case_id"], c["action"]) for c in out["cases"]] == [(case.id, "purged")]
    assert server.cli_json("audit", "verify")["ok"] is True
    files = files_under(server.archive)
    names = {p.name for p in files}
    assert {"mailflow.db", "spool.db", "audit.anchor"} <= names, names
    for path in files:
        data = path.read_bytes().lower()
        for canary in CANARIES:
            assert canary.encode() not in data, (path.name, canary)
    # The audit log still tells what happened, by ids, actions and hashes.
    actions = {r[0] for r in server.query("SELECT action FROM audit WHERE case_id = ?",
                                          (case.id,))}
    assert {"case opened", "command #what", "draft sent", "purged"} <= actions


def test_a_purge_leaves_nothing_of_the_case_in_the_maildir_outbox(tmp_path):
    # No relay: what mailflow sends is written to the Maildir outbox under the archive.
    server = MailflowServer(tmp_path, None, env={"MAILFLOW_FAKE_NOW": "2019-06-03T10:00:00Z"})
    with server.start():
        server.send(make_mail(REPORTER, "conduct@example.org", "Zebracanary in the chat",
                              "Orrin Vantablack posted it.", name=REPORTER_NAME),
                    REPORTER, ["conduct@example.org"])
        server.processed(1)
        outbox = server.archive / "outbox"
        wait_until(lambda: len(list(outbox.glob("new/*"))) >= 3, what="ack and copies")
    assert any(b"Zebracanary" in p.read_bytes() for p in outbox.glob("new/*"))
    with sqlite3.connect(server.archive / "mailflow.db") as conn:  # closed (how is not
        conn.execute("UPDATE cases SET status = 'closed'")       # what this test is about)
    server.env = {k: v for k, v in os.environ.items() if k != "MAILFLOW_FAKE_NOW"}
    assert server.cli_json("purge", "--before", "2020-01-01")["cases"][0]["action"] == "purged"
    for path in files_under(server.archive):
        data = path.read_bytes().lower()
        assert b"zebracanary" not in data and b"xanthe" not in data, path.name


def chain_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, at, actor, action, case_id, proof, detail, prev_hash, "
                            "hash FROM audit ORDER BY id").fetchall()


def rehash_without_the_key(db: Path, from_id: int) -> None:
    """What someone who can write the database but lacks the key would do: edit an
    entry and recompute the chain after it with a plain hash."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit SET action = 'nothing happened' WHERE id = ?", [from_id])
        prev = conn.execute("SELECT hash FROM audit WHERE id < ? ORDER BY id DESC LIMIT 1",
                            [from_id]).fetchone()[0]
        for row in conn.execute("SELECT id, at, actor, action, case_id, proof, detail "
                                "FROM audit WHERE id >= ? ORDER BY id", [from_id]).fetchall():
            digest = hashlib.sha256(json.dumps([*row[1:], prev]).encode()).hexdigest()
            conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?",
                         [prev, digest, row[0]])
            prev = digest


def test_the_audit_chain_is_keyed_and_anchored_outside_the_database(server, relay):
    for n in range(3):
        server.send(make_mail(f"r{n}@people.test", "conduct@example.org", "Report",
                              f"Report {n}."), f"r{n}@people.test", ["conduct@example.org"])
    server.processed(3)
    server.stop()
    db = server.archive / "mailflow.db"
    assert server.cli_json("audit", "verify")["ok"] is True
    rows = chain_rows(db)
    assert len(rows) > 6
    assert stat.S_IMODE((server.archive / "audit.key").stat().st_mode) == 0o600
    backup = server.tmp / "backup"
    shutil.copytree(server.archive, backup)

    def tampered(change) -> dict:
        shutil.rmtree(server.archive)
        shutil.copytree(backup, server.archive)
        change()
        result = server.cli("audit", "verify", "--json", check=False)
        assert result.returncode == 65, result.stdout
        return json.loads(result.stdout)

    def truncate() -> None:
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM audit WHERE id > ?", [rows[-3][0]])

    assert "anchor" in tampered(truncate)["problem"]
    broken = tampered(lambda: rehash_without_the_key(db, rows[4][0]))
    assert broken["first_broken"] == rows[4][0] and "edited" in broken["problem"]
    # Without the anchor file, nothing vouches for the head: that is reported too.
    assert "anchor" in tampered(lambda: (server.archive / "audit.anchor").unlink())["problem"]


def test_the_archive_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        server = MailflowServer(tmp_path, None).start()  # no relay: a Maildir outbox
    finally:
        os.umask(old)
    try:
        server.send(make_mail("r@people.test", "conduct@example.org", "Report", "Hello."),
                    "r@people.test", ["conduct@example.org"])
        server.processed(1)
        wait_until(lambda: list((server.archive / "outbox" / "new").glob("*")),
                   what="the acknowledgement in the outbox")
        loose = []
        for path in [server.archive, *server.archive.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode != (0o700 if path.is_dir() else 0o600):
                loose.append(f"{path.relative_to(server.tmp)} {oct(mode)}")
        assert loose == []
        names = {p.name for p in server.archive.rglob("*")}
        assert {"mailflow.db-wal", "mailflow.db-shm", "spool.db-wal", "secret.key"} <= names
        # Stopped first: a running stage that opens the database tightens it again.
        server.stop()
        (server.archive / "mailflow.db").chmod(0o644)
        server.archive.chmod(0o755)
        result = server.cli("check", check=False)
        out = result.stdout.decode()
        assert result.returncode == 78
        assert "mailflow.db: mode 0644" in out and "archive: mode 0755" in out.replace(
            str(server.archive), "archive")
    finally:
        server.stop()
