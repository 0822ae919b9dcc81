"""``mailflow import PATH``: old mail into the archive, threaded like live mail.

PATH is an mbox file, a Maildir (a directory with ``cur/`` or ``new/``), a directory
of ``.eml`` files (searched recursively) or one ``.eml`` file.

- Messages go in oldest first (by their Date header), so a reply finds the case its
  parent opened, whatever order the files are in.
- Each goes through the durable intake (spool source ``import``) and then the same
  threading rules as live mail; the pipeline treats it as history (see
  ``mailflow.app.HISTORY_HANDLERS``): it is filed and indexed, and sends nothing, applies
  none of the #commands in it and starts no clock.  A case it opens takes its year
  and opening date from the mail's Date.
- Cases opened by an import get the status ``--status`` (closed by default: old
  mail is mostly settled history; ``#reopen`` brings one back).  The pipeline opens
  them closed, and another ``--status`` is set once the import is done.
- Restartable: what is already in the archive (the same Message-ID and body, or the
  same bytes) is skipped, and what an interrupted run committed is processed next
  time, so running an import twice, or after a crash, gives the same cases as once.
- If ``mailflow serve`` is running it does the processing; the import waits for it.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import re
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailflow import store, timestamps
from mailflow.intake.sources import Item, SourceError, date_keys, header_block, open_source
from mailflow.intake.spool import Envelope, commit_many
from mailflow.mail.parse import Parsed, parse
from mailflow.pipeline import runner
from mailflow.pipeline.context import HISTORY_STATUS, Services
from mailflow.progress import Progress
from mailflow.store import audit
from mailflow.store.sqlite import Database

CHUNK = 1024
PARALLEL_MIN = 2 * CHUNK
IMPORT_CACHE_KIB = 256 * 1024
IMPORT_CHECKPOINT_PAGES = 16384  # 64 MB of WAL
# Larger transactions than live mail's: the import is the only writer while it runs.
BATCH, BATCH_SECONDS = 1024, 2.0
RETURN_PATH = re.compile(rb"^return-path:[ \t]*<([^>\r\n]*)>", re.IGNORECASE | re.MULTILINE)


@dataclass
class Summary:
    read: int = 0
    imported: int = 0
    already: int = 0
    too_large: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    cases_opened: int = 0
    quarantined: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _date_order(items: list[Item], summary: Summary, pool: ProcessPoolExecutor | None
                ) -> list[Item]:
    """Oldest first; a message without a readable Date keeps its neighbour's place.
    Reads the head of each message to sort (files: half of them in the second
    process), then each whole one is read as it is taken in, rather than holding a
    whole archive in memory."""
    half = len(items) // 2 if pool and all(item.path for item in items) else len(items)
    theirs = pool.submit(date_keys, items[half:]) if pool and half < len(items) else None
    keys = date_keys(items[:half]) + (_result(theirs) if theirs else [])
    keyed = []
    last = 0.0
    for n, (item, key) in enumerate(zip(items, keys, strict=True)):
        if isinstance(key, str):
            summary.unreadable.append(key)
            continue
        last = last if key is None else key
        keyed.append((last, n, item))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [item for _, _, item in keyed]


def _envelope(raw: bytes) -> Envelope:
    match = RETURN_PATH.search(header_block(raw))
    sender = match.group(1).decode("ascii", "replace").strip() if match else None
    # No envelope recipients: threading falls back to To and Cc, as for mail that
    # reached us through a list.
    return Envelope("import", sender, [])


Chunk = list[tuple[str, Path | bytes]]  # (name, Item.source())


@dataclass
class Taken:
    """What :func:`take_in` made of a chunk."""
    new: list[tuple[int, Parsed | None]] = field(default_factory=list)  # spool id, parsed
    already: list[int] = field(default_factory=list)                    # spool ids
    too_large: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def take_in(spool: Database, chunk: Chunk, max_size: int, parse_new: bool
            ) -> Taken:
    """Read a chunk, commit it to the spool, and parse what is new in it for the pipeline."""
    taken = Taken()
    accepted = []
    for name, source in chunk:
        try:
            if isinstance(source, Path) and source.stat().st_size > max_size:
                taken.too_large.append(name)
                continue
            raw = source.read_bytes() if isinstance(source, Path) else source
        except OSError as e:
            taken.unreadable.append(f"{name}: {e.strerror or e}")
            continue
        if len(raw) > max_size:
            taken.too_large.append(name)
        else:
            accepted.append(raw)
    committed = commit_many(spool, [(raw, _envelope(raw)) for raw in accepted])
    for raw, (spool_id, duplicate) in zip(accepted, committed, strict=True):
        if duplicate:
            taken.already.append(spool_id)
        else:
            taken.new.append((spool_id, _parse(raw) if parse_new else None))
    return taken


def _parse(raw: bytes) -> Parsed | None:
    try:
        return parse(raw)
    except Exception:
        return None  # the pipeline parses it again, and quarantines it if it fails there


# The second process's own connection to the spool (a large import).
_worker_spool: Database | None = None


def _worker_start(db_path: Path, timeout: float) -> None:
    global _worker_spool
    _worker_spool = store.connect_spool(db_path, timeout=timeout)


def _take_in_worker(chunk: Chunk, max_size: int) -> Taken:
    assert _worker_spool is not None
    return take_in(_worker_spool, chunk, max_size, parse_new=True)


def _result(future: Future) -> Any:
    try:
        return future.result()
    except BrokenProcessPool as e:
        raise SourceError("the import's second process stopped; run the import again: it "
                          "carries on where this one stopped") from e


def _pending_import_rows(db: Database) -> list[int]:
    """Imported mail an interrupted run committed but the pipeline has not settled."""
    return [r[0] for r in db.execute(
        "SELECT id FROM spool WHERE source = 'import' AND id > "
        "(SELECT coalesce(max(spool_id), 0) FROM spool_state) UNION "
        "SELECT st.spool_id FROM spool_state st JOIN spool s ON s.id = st.spool_id "
        "WHERE st.state = 'new' AND s.source = 'import' ORDER BY 1")]


def run(svc: Services, path: Path, *, status: str = "closed", show_progress: bool = True
        ) -> Summary:
    """Import everything at ``path``; see the module docstring."""
    cfg = svc.cfg
    kind, items = open_source(path)
    gc.freeze()  # a list of every message in the source: not garbage, never to scan
    db = store.open_db(cfg.db_path)
    # A bulk job over indexes far larger than SQLite's default 2 MB page cache; and
    # checkpoints less often, so the pages every batch touches are copied from the WAL
    # to the database once for many batches, not once for each.
    db.execute(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")
    db.execute(f"PRAGMA wal_autocheckpoint = {IMPORT_CHECKPOINT_PAGES}")
    progress = Progress(f"importing {kind}", len(items)) if show_progress else None
    spool = store.connect_spool(cfg.db_path, timeout=cfg.intake.commit_timeout)
    job = _Import(svc, db, spool, progress, ours=_pending_import_rows(db))
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(store.exclusive(cfg.archive_dir / "pipeline.lock", timeout=0))
            job.processing = True
        except TimeoutError:
            pass  # `mailflow serve` holds it and processes as we commit
        # A large import commits each chunk to the spool and parses it in a second
        # process, one chunk ahead, while this one files the chunk before (a small one
        # does it all here: the worker takes a moment to start).
        if job.processing and len(items) >= PARALLEL_MIN:
            job.pool = stack.enter_context(ProcessPoolExecutor(
                1, mp.get_context("spawn"), initializer=_worker_start,
                initargs=(cfg.db_path, cfg.intake.commit_timeout)))
        job.take_all(items)
    spool.close()
    if progress:
        job.summary.seconds = progress.finish()
    _settle(db, job.summary, job.ours, status, str(path))
    db.close()
    return job.summary


class _Import:
    """One run of ``mailflow import``: chunks committed (and parsed) one ahead of the
    chunk being filed."""

    def __init__(self, svc: Services, db: Database, spool: Database,
                 progress: Progress | None, ours: list[int]):
        self.svc, self.db, self.spool, self.progress = svc, db, spool, progress
        self.ours = ours  # the spool ids this import committed (and an interrupted one left)
        self.summary = Summary()
        self.processing = False
        self.pool: ProcessPoolExecutor | None = None
        self.ahead: list[tuple[Chunk, Future | None]] = []

    def take_all(self, items: list[Item]) -> None:
        chunk: Chunk = []
        for item in _date_order(items, self.summary, self.pool):
            try:
                chunk.append((item.name, item.source()))
            except OSError as e:
                self.summary.unreadable.append(f"{item.name}: {e.strerror or e}")
                continue
            if len(chunk) >= CHUNK:
                self.take(chunk)
                chunk = []
        self.take(chunk)
        self.flush(*self.ahead.pop())
        # What an interrupted run left above this source's last message (a source that
        # changed since), if anything.
        while self.processing and runner.process_pending(self.db, self.svc, BATCH,
                                                         BATCH_SECONDS):
            pass
        if not self.processing and self.ours:
            _wait_for_pipeline(self.db, max(self.ours))

    def take(self, chunk: Chunk) -> None:
        max_size = self.svc.cfg.intake.max_size
        taking = (self.pool.submit(_take_in_worker, chunk, max_size)
                  if self.pool and chunk else None)
        if self.ahead:
            self.flush(*self.ahead.pop())
        self.ahead.append((chunk, taking))

    def flush(self, chunk: Chunk, taking: Future | None) -> None:
        taken: Taken = (_result(taking) if taking else take_in(
            self.spool, chunk, self.svc.cfg.intake.max_size, parse_new=False))
        s = self.summary
        s.read += len(chunk) - len(taken.unreadable)
        s.imported += len(taken.new)
        s.already += len(taken.already)
        s.too_large += taken.too_large
        s.unreadable += taken.unreadable
        new_ids = [spool_id for spool_id, _ in taken.new]
        self.ours.extend(new_ids)
        ids = new_ids + taken.already
        if self.processing and ids:
            parsed = {spool_id: p for spool_id, p in taken.new if p is not None}
            while runner.process_pending(self.db, self.svc, BATCH, BATCH_SECONDS, parsed,
                                         max(ids)):
                pass
        if self.pool:
            # The second process writes the spool while this one reads it, so its WAL
            # would never see a moment without a reader in which to start over, and
            # would grow by the size of the import: start it over while we read nothing.
            self.spool.execute("PRAGMA wal_checkpoint(RESTART)")
        if self.progress:
            self.progress.advance(len(chunk))


def _wait_for_pipeline(db: Database, last: int, timeout: float = 3600.0) -> None:
    """Until the pipeline has settled everything up to our last message."""
    def pending() -> bool:
        return runner.settled_up_to(db) < last or db.execute(
            "SELECT 1 FROM spool_state WHERE state = 'new' AND spool_id <= ? LIMIT 1",
            [last]).fetchone() is not None

    deadline = timestamps.monotonic() + timeout
    while pending():
        if timestamps.monotonic() > deadline:
            raise SourceError("mailflow serve has not processed the imported mail in an hour; "
                               "it will go on doing so: check `mailflow quarantine`")
        timestamps.sleep(0.2)


def _settle(db: Database, summary: Summary, ours: list[int], status: str,
            source: str) -> None:
    """Give the cases this import opened their status; record the import."""
    opened: list[str] = []
    for start in range(0, len(ours), 500):
        part = ours[start:start + 500]
        marks = ", ".join("?" * len(part))
        opened += [r[0] for r in db.execute(
            f"SELECT m.case_id FROM messages m WHERE m.spool_id IN ({marks}) AND m.kind IN "
            "('report', 'forward') AND m.case_id IS NOT NULL", part)]
        summary.quarantined += db.execute(
            f"SELECT count(*) FROM spool_state WHERE spool_id IN ({marks}) "
            "AND state = 'quarantined'", part).fetchone()[0]
    summary.cases_opened = len(opened)
    with store.transaction(db):
        if status != HISTORY_STATUS:
            for case_id in opened:
                cur = db.execute("UPDATE cases SET status = ? WHERE id = ? AND status = ?",
                                 [status, case_id, HISTORY_STATUS])
                if cur.rowcount:
                    audit.append(db, "admin", f"status: {status} (imported history)", case_id)
        audit.append(db, "admin", "import", None, source=audit.fingerprint(db, source),
                     read=summary.read,
                     imported=summary.imported, already=summary.already,
                     cases_opened=summary.cases_opened)


def format_summary(s: Summary) -> str:
    lines = [f"read {s.read} message(s): {s.imported} imported, {s.already} already in the "
             f"archive; {s.cases_opened} case(s) opened"]
    if s.quarantined:
        lines.append(f"{s.quarantined} could not be processed: see `mailflow quarantine`")
    for name in s.too_large:
        lines.append(f"skipped (larger than intake.max_size): {name}")
    for problem in s.unreadable:
        lines.append(f"unreadable: {problem}")
    return "\n".join(lines)
