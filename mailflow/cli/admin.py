"""Looking after the archive: ``quarantine``, ``queue``, ``import``, ``reindex``,
``audit verify``, ``purge``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailflow.cli.options import arg, command, emit, load_config, open_db
from mailflow.cli.sysexits import EX_DATAERR, EX_OK, EX_TEMPFAIL, EX_USAGE


@command("quarantine", "list (or release) messages that kept failing",
         arg("--release", type=int, metavar="ID", help="process this message again"),
         json_out=True)
def cmd_quarantine(args: argparse.Namespace) -> int:
    """Messages whose processing failed intake.max_attempts times are kept here,
    never dropped.  --release ID sends one through the pipeline again."""
    from mailflow.archive import listings
    from mailflow.pipeline import runner

    db = open_db(load_config(args))
    if args.release is not None:
        if not runner.release(db, args.release):
            print(f"spool message {args.release} is not quarantined", file=sys.stderr)
            return EX_DATAERR
        print(f"released {args.release}; it will be processed again")
        return EX_OK
    rows = listings.quarantine(db)
    text = "\n".join(f"{r['id']:>6} {r['received_at']} {r['source']:<6} from "
                     f"{r['envelope_from'] or '<>'} ({r['attempts']} attempts): {r['last_error']}"
                     for r in rows) or "Nothing is quarantined."
    emit(args, rows, text)
    return EX_OK


@command("import", "import old mail (mbox, Maildir, .eml files); sends nothing",
         arg("path", help="mbox file, Maildir, or directory of .eml files"),
         arg("--status", default="closed",
             help="status for the cases the import opens (default: closed; #reopen "
                  "brings one back)"),
         arg("-q", "--quiet", action="store_true", help="no progress bar"), json_out=True)
def cmd_import(args: argparse.Namespace) -> int:
    """Import an mbox file, a Maildir, a directory of .eml files or one .eml file.
    Messages go in oldest first and are threaded into cases by the same rules
    as live mail; a case opened by an import takes its year from the mail's
    Date.  Nothing is sent, no #command in the old mail is applied and no clock
    starts.  Restartable: what is already archived is skipped, so running it
    again (or after an interruption) gives the same cases as once.  With
    `mailflow serve` running, the server processes the mail as it is committed."""
    from mailflow import app
    from mailflow.intake import importer

    cfg = load_config(args)
    try:
        summary = importer.run(app.services(cfg), Path(args.path), status=args.status,
                               show_progress=not args.quiet)
    except importer.SourceError as e:
        print(f"mailflow import: {e}", file=sys.stderr)
        return EX_DATAERR
    emit(args, summary.as_dict(), importer.format_summary(summary))
    return EX_OK


@command("reindex", "rebuild the parsed mail and the search index",
         arg("-q", "--quiet", action="store_true", help="no progress bar"))
def cmd_reindex(args: argparse.Namespace) -> int:
    """Re-parse every archived message from its raw bytes (the source of truth)
    into the parsed columns of the archive, then rebuild the search index from
    scratch.  Which case a message belongs to, people, commands, decisions and
    the audit log are history, not derived data, and are kept as they are.
    Runs in one transaction: stop `mailflow serve` first."""
    from mailflow import store
    from mailflow.archive import reindex
    from mailflow.case import keys

    cfg = load_config(args)
    db = open_db(cfg)
    rings = keys.open_keyrings(cfg)  # encrypted mail is read as the pipeline read it
    try:
        with store.exclusive(cfg.archive_dir / "pipeline.lock", timeout=0):
            counts = reindex.reindex(db, show_progress=not args.quiet, ring=rings.committee)
    except TimeoutError:
        print("mailflow reindex: stop `mailflow serve` first: reindexing rewrites the "
              "archive in one transaction", file=sys.stderr)
        return EX_TEMPFAIL
    finally:
        rings.stop_agents()
    print(f"reindexed {counts['messages']} message(s); {counts['documents']} searchable "
          "record(s)")
    return EX_OK


@command("audit verify", "check the audit log's keyed chain and its anchor",
         arg("--head", metavar="ID:HASH",
             help="also check a head recorded elsewhere (the chair's digest names one)"),
         json_out=True)
def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Every state change and every mail in or out is an entry of the audit
    log, whose keyed hash (audit.key) covers the entry before it; the newest
    entry is also recorded in audit.anchor after each change.  This recomputes
    the chain, checks the newest anchor (and --head, from a digest) is still in
    it, and names the first entry edited, removed or reordered.  Exits 65 if
    broken."""
    from mailflow.store import audit

    head = None
    if args.head:
        entry, _, digest = args.head.partition(":")
        if not entry.isdigit() or len(digest) < 8:
            print("mailflow audit verify: --head ID:HASH (at least 8 characters of the "
                  "hash, as the digest gives it)", file=sys.stderr)
            return EX_USAGE
        head = (int(entry), digest)
    count, broken, why = audit.verify(open_db(load_config(args)), head)
    data = {"entries": count, "ok": broken is None, "first_broken": broken, "problem": why}
    text = (f"audit log intact: {count} entries" if broken is None else
            f"audit log BROKEN at entry {broken}: {why} ({count} entries checked)")
    emit(args, data, text)
    return EX_OK if broken is None else EX_DATAERR


@command("purge", "remove expired closed cases (rules/retention.toml)",
         arg("--before", required=True, metavar="DATE",
             help="only cases last active before this date (YYYY-MM-DD)"),
         arg("--dry-run", action="store_true", help="only list what would happen"),
         json_out=True)
def cmd_purge(args: argparse.Namespace) -> int:
    """Remove the mail and text of closed cases whose retention period
    (rules/retention.toml closed_days) is over and that were last active before
    DATE: from the database, its WAL and the search index (secure delete, index
    rewrite, WAL checkpoint).  The case id, the ban and warning registries and
    the audit log stay, with an entry for the purge; the OpenPGP key a reporter sent
    goes too, unless another case still uses it.  A case with an ongoing ban
    is refused.  Exits 75 if a WAL could not be emptied (run it again)."""
    from mailflow import rules, store, timestamps
    from mailflow.archive import retention
    from mailflow.case import keys

    cfg = load_config(args)
    try:
        before = timestamps.parse(args.before)
    except ValueError:
        print(f"mailflow purge: --before {args.before!r}: use a date, YYYY-MM-DD",
              file=sys.stderr)
        return EX_USAGE
    rings = keys.open_keyrings(cfg)
    try:
        outcomes, problems = retention.purge(
            open_db(cfg), store.connect_spool(cfg.db_path), rules.load(cfg), before,
            dry_run=args.dry_run, outbox=None if cfg.outbound.relay else cfg.outbox_dir,
            correspondents=rings.correspondents)
    finally:
        rings.stop_agents()
    emit(args, {"cases": [o.__dict__ for o in outcomes], "problems": problems},
         retention.format_outcomes(outcomes, problems))
    return EX_TEMPFAIL if problems else EX_OK


@command("queue", "list outbound mail not yet delivered",
         arg("--all", action="store_true", help="include delivered mail"), json_out=True)
def cmd_queue(args: argparse.Namespace) -> int:
    """The outbound queue: each recipient of each message not yet delivered, its
    state, attempts, next attempt and last error (--all: delivered mail too)."""
    from mailflow.archive import listings

    rows = listings.queue(open_db(load_config(args)), args.all)
    text = "\n".join(f"{r['id']:>6} {r['kind']:<10} {r['rcpt']:<30} {r['state']:<7} "
                     f"tries {r['attempts']} next {r['next_attempt_at']} {r['last_error'] or ''}"
                     for r in rows) or "The outbound queue is empty."
    emit(args, rows, text)
    return EX_OK


@command("queue flush", "retry deferred outbound mail now")
def cmd_queue_flush(args: argparse.Namespace) -> int:
    """Make every deferred recipient due now, as Postfix's `postqueue -f` does:
    after the relay is back, say.  With `mailflow serve` running, its delivery
    stage sends them within seconds; otherwise this command delivers them.
    Recipients given up on (failed) stay as they are."""
    from mailflow.archive.status import serve_state
    from mailflow.outbound import delivery, queue

    cfg = load_config(args)
    db = open_db(cfg)
    due = queue.retry_now(db)
    if serve_state(cfg.archive_dir)["running"]:
        print(f"{due} deferred recipient(s) due now; mailflow serve delivers them")
        return EX_OK
    delivered = delivery.deliver_once(db, cfg)
    print(f"{due} deferred recipient(s) due now; delivered to {delivered} recipient(s)")
    return EX_OK


@command("status", "is serve running; backlog, queue, held, quarantine, next clock, errors",
         json_out=True)
def cmd_status(args: argparse.Namespace) -> int:
    """What an administrator looks at first: whether `mailflow serve` runs on this
    archive, mail waiting for the pipeline, the outbound queue (deferred and
    failed recipients), held mail, quarantined mail, the next clock to fire,
    and the latest error of each kind still standing."""
    from mailflow.archive import status

    cfg = load_config(args)
    found = status.status(open_db(cfg), cfg.archive_dir)
    emit(args, found, status.format_status(found))
    return EX_OK
