"""The ``mailflow`` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import intake, store
from .config import Config, ConfigError

EX_OK, EX_USAGE, EX_DATAERR, EX_TEMPFAIL, EX_CONFIG = 0, 64, 65, 75, 78

DESCRIPTION = """\
mailflow handles Code of Conduct reports by email.

Reporters write to conduct@DOMAIN; every report becomes a case, is acknowledged at
once and reaches the committee's private list; members act by #commands in replies.

Configuration comes from --config FILE, else $MAILFLOW_CONFIG, else ./mailflow.toml,
else the embedded defaults (listen on 127.0.0.1:8025, archive in ./archive, outgoing
mail to the Maildir ./archive/outbox).  `mailflow init` writes a starter file.
"""

STARTER_CONFIG = """\
# mailflow configuration.  Every key is optional; the values shown are examples.

[committee]
name = "Example Code of Conduct Committee"
domain = "example.org"            # conduct@ and committee@ live here
chair = "chair@example.org"       # must also be a member
members = ["chair@example.org", "m1@example.org", "m2@example.org"]
officers = ["officers@example.org"]
board = ["board@example.org"]     # the alternative contact for reporters
# maintainers = ["maintainers@example.org"]   # told of ongoing bans with the final report
# moderators = ["mods@example.org"]           # carry out bans and removals
# public = ["discuss@lists.example.org"]      # where public statements are posted
# delegates = ["organiser@example.org"]   # event organisers
# tag = "coc"                     # subject tag: [coc #2026-0001]
# subject = "codename"            # or "original": what committee subjects show
# emergency_contact = "112 (EU) / 911 (US)"

[intake]
listen = "127.0.0.1:8025"
protocol = "smtp"                  # or "lmtp"
# max_size = 26214400              # bytes; larger mail is refused with 552
# stage_priority = "idle"          # or "low" (nice 10) on a host shared with busy programs

[outbound]
# relay = "127.0.0.1:2525"         # absent: a Maildir under the archive (archive/outbox)
# starttls = true
# username = "mailflow"
# password_env = "MAILFLOW_RELAY_PASSWORD"

[storage]
path = "archive"

[security]
# trusted_authserv_id = "mx.example.org"   # whose Authentication-Results to believe
"""


def load_config(args: argparse.Namespace) -> Config:
    return config_mod.load(args.config)


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else text)


def open_db(cfg: Config):
    return store.open_db(cfg.db_path)


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        print(f"{path} exists; use --force to overwrite", file=sys.stderr)
        return EX_USAGE
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    cfg = config_mod.load(str(path))
    store.open_db(cfg.db_path).close()
    print(f"wrote {path}; archive at {cfg.archive_dir}")
    return EX_OK


def cmd_check(args: argparse.Namespace) -> int:
    from . import checks

    cfg = load_config(args)
    problems = checks.run(cfg)
    for p in problems:
        print(p)
    if problems:
        return EX_CONFIG
    print(f"{cfg.source}: configuration, rules and templates are valid")
    return EX_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .checks import check_rules
    from .serve import serve

    cfg = load_config(args)
    problems = check_rules(cfg)  # fail at start, not on the first message
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return EX_CONFIG
    serve(cfg)
    return EX_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    """For a pipe transport: 0 once committed, 75 (EX_TEMPFAIL) otherwise."""
    try:
        cfg = load_config(args)
        raw = sys.stdin.buffer.read(cfg.intake.max_size + 1)
        if len(raw) > cfg.intake.max_size:
            print("mailflow ingest: message exceeds intake.max_size", file=sys.stderr)
            return EX_DATAERR  # permanent: the MTA bounces it
        env = intake.Envelope("pipe", args.sender, args.recipient or [])
        spool_id, duplicate = intake.commit_one(cfg.db_path, raw, env,
                                                timeout=cfg.intake.commit_timeout)
    except Exception as e:
        print(f"mailflow ingest: temporary failure: {type(e).__name__}", file=sys.stderr)
        return EX_TEMPFAIL
    print(f"{'duplicate of' if duplicate else 'queued as'} {spool_id}", file=sys.stderr)
    return EX_OK


def cmd_poll(args: argparse.Namespace) -> int:
    import signal
    import threading

    from . import imap

    cfg = load_config(args)
    if cfg.intake.imap is None:
        print(f"{cfg.source}: [intake.imap] is not configured", file=sys.stderr)
        return EX_CONFIG
    if args.idle:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        imap.Poller(cfg, stop).run()
        return EX_OK
    try:
        counts = imap.Poller(cfg).poll_once()
    except imap.AdminError as e:
        print(f"mailflow poll: {e}", file=sys.stderr)
        return EX_CONFIG
    except Exception as e:
        print(f"mailflow poll: temporary failure: {imap.error_text(e)}", file=sys.stderr)
        return EX_TEMPFAIL
    print(f"took {counts.new} new message(s), {counts.duplicates} already taken")
    return EX_OK


def cmd_process(args: argparse.Namespace) -> int:
    from . import outbound, pipeline

    cfg = load_config(args)
    db = open_db(cfg)
    settled = pipeline.drain(db, pipeline.Services.load(cfg))
    delivered = outbound.deliver_once(db, cfg)
    print(f"processed {settled} message(s), delivered to {delivered} recipient(s)")
    return EX_OK


def cmd_tick(args: argparse.Namespace) -> int:
    from . import clock, outbound, pipeline, scheduler

    if args.now:
        try:
            # The documented way to set the time of a whole process (see clock.py).
            os.environ["MAILFLOW_FAKE_NOW"] = clock.stamp(clock.parse(args.now))
        except ValueError:
            print(f"--now {args.now!r} is not an ISO 8601 time", file=sys.stderr)
            return EX_USAGE
    cfg = load_config(args)
    db = open_db(cfg)
    fired = scheduler.run_due(db, pipeline.Services.load(cfg))
    delivered = outbound.deliver_once(db, cfg)
    print(f"fired {fired} alarm(s), delivered to {delivered} recipient(s)")
    return EX_OK


def cmd_deadlines(args: argparse.Namespace) -> int:
    from . import clocks, rules

    cfg = load_config(args)
    rows = clocks.deadlines(open_db(cfg), rules.load(cfg))
    emit(args, rows, clocks.format_deadlines(rows))
    return EX_OK


def cmd_cases(args: argparse.Namespace) -> int:
    from . import views

    cfg = load_config(args)
    rows = views.case_list(open_db(cfg), args.status, member_filter(args, cfg))
    emit(args, rows, views.format_case_list(rows))
    return EX_OK


def cmd_case_show(args: argparse.Namespace) -> int:
    from . import cases, views

    cfg = load_config(args)
    db = open_db(cfg)
    member = member_filter(args, cfg)
    case = views.case_detail(db, args.id, cfg)
    if case is not None and member and member in cases.recused(db, args.id):
        case = None  # as far as this member is concerned
    if case is None:
        print(f"no case {args.id}", file=sys.stderr)
        return EX_DATAERR
    emit(args, case, views.format_case(case))
    return EX_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    from . import pipeline, views

    db = open_db(load_config(args))
    if args.release is not None:
        if not pipeline.release(db, args.release):
            print(f"spool message {args.release} is not quarantined", file=sys.stderr)
            return EX_DATAERR
        print(f"released {args.release}; it will be processed again")
        return EX_OK
    rows = views.quarantine(db)
    text = "\n".join(f"{r['id']:>6} {r['received_at']} {r['source']:<6} from "
                     f"{r['envelope_from'] or '<>'} ({r['attempts']} attempts): {r['last_error']}"
                     for r in rows) or "Nothing is quarantined."
    emit(args, rows, text)
    return EX_OK


def member_filter(args: argparse.Namespace, cfg: Config) -> str | None:
    """``--as MEMBER``: see only what that member may see (no case they are recused from)."""
    member = getattr(args, "as_member", None)
    if member and not cfg.is_member(member):
        raise ConfigError(f"--as {member}: not a member of the committee")
    return member.lower() if member else None


def cmd_search(args: argparse.Namespace) -> int:
    from . import search

    cfg = load_config(args)
    db = open_db(cfg)
    try:
        data = search.run(db, " ".join(args.query), as_member=member_filter(args, cfg),
                          limit=args.limit, by_case=args.by_case,
                          marks=("«", "»") if args.json else
                          ("\x1b[1m", "\x1b[0m") if sys.stdout.isatty() else ("*", "*"))
    except search.SearchError as e:
        print(f"mailflow search: {e}\n(see `mailflow search --help` for the syntax)",
              file=sys.stderr)
        return EX_USAGE
    emit(args, data, search.format_results(data))
    return EX_OK


def cmd_import(args: argparse.Namespace) -> int:
    from . import importer

    cfg = load_config(args)
    try:
        summary = importer.run(cfg, Path(args.path), status=args.status,
                               show_progress=not args.quiet)
    except importer.SourceError as e:
        print(f"mailflow import: {e}", file=sys.stderr)
        return EX_DATAERR
    emit(args, summary.as_dict(), importer.format_summary(summary))
    return EX_OK


def cmd_reindex(args: argparse.Namespace) -> int:
    from . import search

    cfg = load_config(args)
    db = open_db(cfg)
    try:
        with store.exclusive(cfg.archive_dir / "pipeline.lock", timeout=0):
            counts = search.reindex(db, show_progress=not args.quiet)
    except TimeoutError:
        print("mailflow reindex: stop `mailflow serve` first: reindexing rewrites the "
              "archive in one transaction", file=sys.stderr)
        return EX_TEMPFAIL
    print(f"reindexed {counts['messages']} message(s); {counts['documents']} searchable "
          "record(s)")
    return EX_OK


def cmd_case_export(args: argparse.Namespace) -> int:
    from . import cases, dossier

    cfg = load_config(args)
    db = open_db(cfg)
    member = member_filter(args, cfg)
    if member and cases.exists(db, args.id) and member in cases.recused(db, args.id):
        print(f"case {args.id}: {member} is recused from it", file=sys.stderr)
        return EX_DATAERR
    data = dossier.export(db, args.id, args.format, by=member)
    if data is None:
        print(f"no case {args.id}", file=sys.stderr)
        return EX_DATAERR
    if args.output == "-":
        sys.stdout.buffer.write(data)
    else:
        out = Path(args.output or f"case-{args.id}.{args.format}")
        out.write_bytes(data)
        print(f"wrote {out}")
    return EX_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from . import audit

    count, broken, why = audit.verify(open_db(load_config(args)))
    data = {"entries": count, "ok": broken is None, "first_broken": broken, "problem": why}
    text = (f"audit log intact: {count} entries" if broken is None else
            f"audit log BROKEN at entry {broken}: {why} ({count} entries checked)")
    emit(args, data, text)
    return EX_OK if broken is None else EX_DATAERR


def cmd_purge(args: argparse.Namespace) -> int:
    from . import clock, retention, rules

    cfg = load_config(args)
    try:
        before = clock.parse(args.before)
    except ValueError:
        print(f"mailflow purge: --before {args.before!r}: use a date, YYYY-MM-DD",
              file=sys.stderr)
        return EX_USAGE
    outcomes, problems = retention.purge(open_db(cfg), store.connect_spool(cfg.db_path),
                                         rules.load(cfg), before, dry_run=args.dry_run)
    emit(args, {"cases": [o.__dict__ for o in outcomes], "problems": problems},
         retention.format_outcomes(outcomes, problems))
    return EX_TEMPFAIL if problems else EX_OK


def cmd_queue(args: argparse.Namespace) -> int:
    from . import views

    rows = views.queue(open_db(load_config(args)), args.all)
    text = "\n".join(f"{r['id']:>6} {r['kind']:<10} {r['rcpt']:<30} {r['state']:<7} "
                     f"tries {r['attempts']} next {r['next_attempt_at']} {r['last_error'] or ''}"
                     for r in rows) or "The outbound queue is empty."
    emit(args, rows, text)
    return EX_OK


def cmd_bans(args: argparse.Namespace) -> int:
    from . import sanctions

    data = sanctions.registry(open_db(load_config(args)))
    emit(args, data, sanctions.format_registry(data))
    return EX_OK


def cmd_report(args: argparse.Namespace) -> int:
    from . import drafts, finalreport, pipeline

    cfg = load_config(args)
    db = open_db(cfg)
    svc = pipeline.Services.load(cfg)
    try:
        context = finalreport.report_context(db, svc, args.id)
        prepared = finalreport.prepare(db, svc, args.id, context["report"])
    except drafts.DraftError as e:
        print(f"mailflow report: {e}", file=sys.stderr)
        return EX_DATAERR
    mails = [{"template": p.template, "to": p.recipients, "subject": p.subject, "body": p.body}
             for p in prepared]
    missing = context["missing"]
    emit(args, {"case": args.id, "missing": missing, "mails": mails},
         "\n".join(f"To: {', '.join(m['to'])}\nSubject: {m['subject']}\n\n{m['body']}"
                   for m in mails))
    if missing:
        print(f"not ready for #report: still undetermined: {', '.join(missing)}",
              file=sys.stderr)
    return EX_OK


def cmd_help(args: argparse.Namespace) -> int:
    from . import commands, events, rules

    cfg = load_config(args)
    commands.load()
    print(commands.help_text(rules.load(cfg)))
    print(events.FORM)
    return EX_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.run(keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailflow", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="configuration file (TOML)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func, help: str, description: str | None = None, json_out=False):
        p = sub.add_parser(name, help=help, description=description or help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        if json_out:
            p.add_argument("--json", action="store_true", help="print JSON")
        return p

    p = command("init", cmd_init, "write a commented starter configuration",
                "Write a starter mailflow.toml (every key commented) and create the archive.")
    p.add_argument("path", nargs="?", default="mailflow.toml")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    command("check", cmd_check, "validate the configuration, rules and templates",
            "Check the configuration, rules/ and templates/; each problem is printed as\n"
            "FILE: KEY: PROBLEM.  Exits 78 (EX_CONFIG) if there is any.")

    command("serve", cmd_serve, "run the listener and the pipeline",
            "Listen for mail (SMTP or LMTP), process it and deliver what it sends.\n"
            "A message is answered 250 only once its bytes are committed to disk.")

    p = command("ingest", cmd_ingest, "take one message on standard input (pipe transport)",
                "For an MTA pipe transport, e.g. in Postfix master.cf:\n"
                "  mailflow unix - n n - - pipe\n"
                "    user=mailflow argv=mailflow ingest --sender ${sender} ${recipient}\n"
                "Exits 0 once the message is committed, 75 (EX_TEMPFAIL) when the MTA\n"
                "should retry.  `mailflow serve` (or `mailflow process`) handles it next.")
    p.add_argument("--sender", default=None, help="envelope sender (empty for <>)")
    p.add_argument("recipient", nargs="*", help="envelope recipients")

    p = command("poll", cmd_poll, "take mail from the IMAP mailbox of [intake.imap]",
                "Fetch the messages in intake.imap.folder, commit them like mail received\n"
                "by SMTP, then move them to intake.imap.processed_folder.  Once by default\n"
                "(then run `mailflow process`, e.g. from cron); with --idle, keep watching\n"
                "with IMAP IDLE and reconnect after failures.  `mailflow serve` does the\n"
                "same by itself when [intake.imap] is configured.\n"
                "Exits 78 (EX_CONFIG) for what needs the administrator (login refused,\n"
                "certificate not trusted, folder or password missing), 75 (EX_TEMPFAIL)\n"
                "when the server could not be reached.")
    p.add_argument("--idle", action="store_true",
                   help="keep going: wait for new mail with IDLE until stopped")

    command("process", cmd_process, "process pending mail and deliver the queue once",
            "Run the pipeline over everything committed but not yet processed, then one\n"
            "delivery pass; for installations that take mail with `mailflow ingest`\n"
            "and run no server.")

    p = command("tick", cmd_tick, "fire the clocks' alarms that are due, once",
                "Fire every alarm that is due (rules/clocks.toml), then one delivery pass.\n"
                "`mailflow serve` does this by itself; run it from cron where no server\n"
                "runs (after `mailflow process`).  An alarm fires once, however often this\n"
                "runs; one that fell due long ago fires once, marked late.")
    p.add_argument("--now", metavar="ISO", help="act as if it were this time (e.g. to test "
                   "rules: 2026-12-01T09:00Z); the same as MAILFLOW_FAKE_NOW")

    command("deadlines", cmd_deadlines, "every open clock: when it is due, its case, what it "
            "will do", "List every pending alarm of rules/clocks.toml, soonest first, in the\n"
            "committee's time zone: its case, what it will do when it fires and what\n"
            "would make it unnecessary.", json_out=True)

    command("help", cmd_help, "the committee's #commands, with who may use them and examples",
            "Every #command members can put in their replies: who may use it, its usage\n"
            "and an example (the same text #help mails back), then the form event\n"
            "organisers use for incident reports.")

    p = command("demo", cmd_demo, "play a whole case on loopback and print the mail exchanged",
                "Start mailflow on a free local port with a temporary archive, play a case\n"
                "from report to enactment (acknowledgement, committee list, member commands,\n"
                "votes, a call summary, the reporter's consultation, enactment), print every\n"
                "mail exchanged and the final case record.  Nothing leaves the machine.")
    p.add_argument("--keep", action="store_true", help="keep the temporary archive")

    as_help = "as this committee member sees it: without the cases they are recused from"
    p = command("cases", cmd_cases, "list cases", json_out=True)
    p.add_argument("--status", help="only cases with this status (open, closed, ...)")
    p.add_argument("--as", dest="as_member", metavar="MEMBER", help=as_help)

    p = sub.add_parser("case", help="one case: show ...")
    case_sub = p.add_subparsers(dest="case_command", metavar="ACTION", required=True)
    show = case_sub.add_parser("show", help="status, people, messages in order, what was sent")
    show.add_argument("id", help="case id, e.g. 2026-0001")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--as", dest="as_member", metavar="MEMBER", help=as_help)
    show.set_defaults(func=cmd_case_show)
    export = case_sub.add_parser(
        "export", help="the whole case in one file (json, html or mbox)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The whole case in the order things happened: mail in and out, call\n"
        "summaries and notes, commands and their results, drafts, votes and decisions\n"
        "(from the audit log, with the proof of identity used), then every table of the\n"
        "case.  html is one self-contained page, readable offline; mbox opens in a\n"
        "mail client and ends with the case record as text; json has everything.\n"
        "The export is recorded in the audit log.")
    export.add_argument("id", help="case id, e.g. 2026-0001")
    export.add_argument("--format", choices=("json", "html", "mbox"), default="html")
    export.add_argument("-o", "--output", metavar="FILE",
                        help="where to write it ('-': standard output; default "
                        "case-ID.FORMAT here)")
    export.add_argument("--as", dest="as_member", metavar="MEMBER", help=as_help)
    export.set_defaults(func=cmd_case_export)

    from .search import HELP as SEARCH_HELP

    p = command("search", cmd_search, "search the archive (mail, calls, notes, drafts, cases)",
                "Search everything archived: mail (headers, new text and quoted text apart),\n"
                "mail sent, call summaries, notes, drafts and case fields.  Results are\n"
                "ranked when the query has words, else newest first; matches are marked\n"
                "*like this* (bold on a terminal, «like this» in JSON).\n\n" + SEARCH_HELP,
                json_out=True)
    p.add_argument("query", nargs="+",
                   help="the query (quote it for the shell if it has ( ) or \")")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="at most N results (with --by-case: N cases); default 20")
    p.add_argument("--by-case", action="store_true",
                   help="group the results by case, best case first, 3 hits each")
    p.add_argument("--as", dest="as_member", metavar="MEMBER", help=as_help)

    p = command("import", cmd_import, "import old mail (mbox, Maildir, .eml files); sends nothing",
                "Import an mbox file, a Maildir, a directory of .eml files or one .eml file.\n"
                "Messages go in oldest first and are threaded into cases by the same rules\n"
                "as live mail; a case opened by an import takes its year from the mail's\n"
                "Date.  Nothing is sent, no #command in the old mail is applied and no clock\n"
                "starts.  Restartable: what is already archived is skipped, so running it\n"
                "again (or after an interruption) gives the same cases as once.  With\n"
                "`mailflow serve` running, the server processes the mail as it is committed.",
                json_out=True)
    p.add_argument("path", help="mbox file, Maildir, or directory of .eml files")
    p.add_argument("--status", default="closed",
                   help="status for the cases the import opens (default: closed; #reopen "
                   "brings one back)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = command("reindex", cmd_reindex, "rebuild the parsed mail and the search index",
                "Re-parse every archived message from its raw bytes (the source of truth)\n"
                "into the parsed columns of the archive, then rebuild the search index from\n"
                "scratch.  Which case a message belongs to, people, commands, decisions and\n"
                "the audit log are history, not derived data, and are kept as they are.\n"
                "Runs in one transaction: stop `mailflow serve` first.")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("audit", help="the tamper-evident audit log: verify")
    audit_sub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_sub.add_parser(
        "verify", help="check the hash chain; name the first broken entry",
        description="Every state change and every mail in or out is an entry of the audit\n"
        "log, whose hash covers the entry before it.  This recomputes the chain and\n"
        "names the first entry edited, removed or reordered.  Exits 65 if broken.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=cmd_audit_verify)

    p = command("purge", cmd_purge, "remove expired closed cases (rules/retention.toml)",
                "Remove the mail and text of closed cases whose retention period\n"
                "(rules/retention.toml closed_days) is over and that were last active before\n"
                "DATE: from the database, its WAL and the search index (secure delete, index\n"
                "rewrite, WAL checkpoint).  The case id, the ban and warning registries and\n"
                "the audit log stay, with an entry for the purge.  A case with an ongoing ban\n"
                "is refused.  Exits 75 if a WAL could not be emptied (run it again).",
                json_out=True)
    p.add_argument("--before", required=True, metavar="DATE",
                   help="only cases last active before this date (YYYY-MM-DD)")
    p.add_argument("--dry-run", action="store_true", help="only list what would happen")

    command("bans", cmd_bans, "the ban registry (current and past bans) and warning counts",
            "Every ban the committee recorded (#ban), current ones first, then the past\n"
            "ones (expired by their date, or lifted with #unban), which stay for review;\n"
            "then the number of warnings per person across cases (#warn), flagged at three.",
            json_out=True)

    p = command("report", cmd_report, "print a case's final report to the officers",
                "Print the report #report drafts for the officers (and the maintainers'\n"
                "notice while a ban is in force), as it would be sent: the reporter's\n"
                "identity withheld unless they consented.", json_out=True)
    p.add_argument("id", help="case id, e.g. 2026-0001")

    p = command("quarantine", cmd_quarantine, "list (or release) messages that kept failing",
                "Messages whose processing failed intake.max_attempts times are kept here,\n"
                "never dropped.  --release ID sends one through the pipeline again.",
                json_out=True)
    p.add_argument("--release", type=int, metavar="ID", help="process this message again")

    p = command("queue", cmd_queue, "list outbound mail not yet delivered", json_out=True)
    p.add_argument("--all", action="store_true", help="include delivered mail")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.verbose:
        # aiosmtpd logs every SMTP command at INFO: a line per command per message.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return EX_USAGE
    try:
        return args.func(args)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
