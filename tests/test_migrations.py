"""Upgrading an archive written by an earlier mailflow: its data stays and is found."""

from __future__ import annotations

import json

from mailflow import config, store
from mailflow.archive import search
from mailflow.mail.compose import compose
from mailflow.outbound import delivery
from mailflow.outbound.queue import text_columns
from mailflow.store.migrations import core


def test_sent_mail_from_before_the_text_columns_is_parsed_once_and_found(tmp_path):
    cfg = config.from_dict({"storage": {"path": str(tmp_path / "archive")}})
    cfg.archive_dir.mkdir(parents=True)
    db = store.connect(cfg.db_path)
    # The archive as the first release left it: core tables, one acknowledgement queued.
    db.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    core.core_tables(db)
    db.execute("INSERT INTO schema_migrations VALUES ('0001_core_tables', '2026-01-01')")
    msg = compose(cfg, from_=("Conduct committee", "conduct@example.org"),
                           to=["Ann Reporter <ann@people.test>"], subject="Received",
                           body="We received your report about the quokka.\n\n> what I wrote")
    db.execute("INSERT INTO outbound (kind, created_at, message_id, envelope_from, subject, raw)"
               " VALUES ('ack', '2026-01-02T00:00:00Z', 'x@example.org', '', 'Received', ?)",
               [msg.raw])

    applied = store.upgrade(db)

    assert "0002_outbound_text" in applied and "0101_queue_and_outbound_columns" in applied
    row = db.execute("SELECT from_addr, to_addrs, new_text, quoted_text FROM outbound").fetchone()
    assert row[0] == "conduct@example.org" and json.loads(row[1]) == ["ann@people.test"]
    assert "quokka" in row[2] and row[3] == "> what I wrote"
    for query in ("quokka", "to:ann@people.test", "from:conduct@example.org kind:sent"):
        assert [r["ref"] for r in search.run(db, query)["results"]] == ["outbound:1"], query
    assert search.run(db, "body:wrote")["results"] == []  # the quote is not new text


def test_queued_mail_keeps_the_text_it_was_composed_from(tmp_path):
    cfg = config.from_dict({"storage": {"path": str(tmp_path / "archive")}})
    msg = compose(cfg, from_=("Zoë Comité", "conduct@example.org"),
                           to=["a@people.test"], cc=["B <b@people.test>"], subject="Ré",
                           body="Une réponse.\n\nOn Monday, A wrote:\n> la question")
    columns = text_columns(msg)
    assert columns["from_name"] == "Zoë Comité" and columns["from_addr"] == "conduct@example.org"
    assert json.loads(columns["cc_addrs"]) == ["b@people.test"]
    assert columns["new_text"] == "Une réponse."
    assert columns["quoted_text"].startswith("On Monday, A wrote:")


def test_recording_a_delivery_reads_one_row_not_every_copy_a_member_was_sent(tmp_path):
    # Without (outbound_id, rcpt) indexed, each delivery read every row of its
    # recipient: a committee member's thousands of copies, once per copy.
    cfg = config.from_dict({"storage": {"path": str(tmp_path / "archive")}})
    cfg.archive_dir.mkdir(parents=True)
    db = store.open_db(cfg.db_path)
    plan = db.execute("EXPLAIN QUERY PLAN UPDATE outbound_rcpt SET state = 'sent' "
                      "WHERE outbound_id = 1 AND rcpt = 'chair@example.org'").fetchall()
    assert "USING INDEX outbound_rcpt_message (outbound_id=? AND rcpt=?)" in plan[0][3]


def test_a_delivery_pass_reads_the_queue_in_sending_order_without_sorting_it(tmp_path):
    # It sorted every queued recipient to pick a few hundred: a cost that grew with
    # the backlog, paid on every pass.
    cfg = config.from_dict({"storage": {"path": str(tmp_path / "archive")}})
    cfg.archive_dir.mkdir(parents=True)
    db = store.open_db(cfg.db_path)
    plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + delivery.DUE_SQL, ["2026", 10])]
    assert plan == ["SCAN outbound_rcpt USING INDEX outbound_rcpt_queue"], plan
