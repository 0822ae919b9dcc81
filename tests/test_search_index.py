"""The index is complete the moment a transaction commits, and only with what it kept."""

from __future__ import annotations

import pytest

from mailflow import config, store
from mailflow.archive import search
from mailflow.store import fulltext


@pytest.fixture
def db(tmp_path):
    cfg = config.from_dict({"storage": {"path": str(tmp_path / "archive")}})
    cfg.archive_dir.mkdir(parents=True)
    return store.open_db(cfg.db_path)


def refs(db, query: str) -> list[str]:
    return sorted(r["ref"] for r in search.run(db, query)["results"])


def test_what_a_transaction_indexes_is_found_once_it_commits(db):
    with store.transaction(db):
        for n in range(3):
            fulltext.index_record(db, ref=f"note:{n}", kind="note", case_id=None,
                                body=f"the wombat note {n}")
        assert db.execute("SELECT count(*) FROM search_queue").fetchone()[0] == 3
    assert db.execute("SELECT count(*) FROM search_queue").fetchone()[0] == 0
    assert refs(db, "wombat") == ["note:0", "note:1", "note:2"]


def test_a_step_undone_inside_a_transaction_leaves_nothing_in_the_index(db):
    with store.transaction(db):
        fulltext.index_record(db, ref="note:kept", kind="note", case_id=None, body="kept wombat")
        with pytest.raises(RuntimeError), store.savepoint(db, "step"):
            fulltext.index_record(db, ref="note:undone", kind="note", case_id=None,
                                body="undone wombat")
            raise RuntimeError("the step fails")
    assert refs(db, "wombat") == ["note:kept"]


def test_text_replaced_in_the_same_transaction_is_indexed_as_last_written(db):
    with store.transaction(db):
        fulltext.index_record(db, ref="note:1", kind="note", case_id=None, body="first wombat")
        fulltext.index_record(db, ref="note:1", kind="note", case_id=None, body="second quokka")
    assert refs(db, "wombat") == [] and refs(db, "quokka") == ["note:1"]
    with store.transaction(db):
        fulltext.index_record(db, ref="note:1", kind="note", case_id=None, body="third numbat")
    assert refs(db, "quokka") == [] and refs(db, "numbat") == ["note:1"]


def test_search_inside_a_transaction_sees_its_own_writes(db):
    # #search by mail runs inside the pipeline's transaction.
    with store.transaction(db):
        fulltext.index_record(db, ref="note:1", kind="note", case_id=None, body="early wombat")
        assert refs(db, "wombat") == ["note:1"]
