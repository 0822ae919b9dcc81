"""Reading the archive: ``cases``, ``case show``, ``case export``, ``search``,
``deadlines``, ``bans``, ``report``, ``transparency``.  They print what they find:
none sets logging up (``logs=False``, so each starts faster; a warning still reaches
standard error, as Python prints one by default)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailflow.archive.syntax import HELP as SEARCH_SYNTAX
from mailflow.cli.options import AS_MEMBER, arg, command, emit, load_config, member_filter, open_db
from mailflow.cli.sysexits import EX_DATAERR, EX_OK, EX_USAGE


@command("deadlines", "every open clock: when it is due, its case, what it will do",
         json_out=True, logs=False)
def cmd_deadlines(args: argparse.Namespace) -> int:
    """List every pending alarm of rules/clocks.toml, soonest first, in the
    committee's time zone: its case, what it will do when it fires and what
    would make it unnecessary."""
    from mailflow import rules
    from mailflow.clocks import alarms

    cfg = load_config(args)
    rows = alarms.deadlines(open_db(cfg), rules.load(cfg))
    emit(args, rows, alarms.format_deadlines(rows))
    return EX_OK


@command("cases", "list cases",
         arg("--status", help="only cases with this status (open, closed, ...)"),
         AS_MEMBER, json_out=True, logs=False)
def cmd_cases(args: argparse.Namespace) -> int:
    """List the cases, oldest first: status, when opened, how many messages, the
    code name and the reporter; then how many messages are held (`mailflow held`)."""
    from mailflow.archive import listings
    from mailflow.case import held

    cfg = load_config(args)
    db = open_db(cfg)
    member = member_filter(args, cfg)
    rows = listings.case_list(db, args.status, member)
    waiting = len(held.listing(db, hide_from=member))
    footer = (f"\n\n{waiting} message{'s' if waiting > 1 else ''} held (suspected spam, "
              "bounces of mail mailflow did not send, non-members' mail to the committee): "
              "`mailflow held` lists them." if waiting else "")
    emit(args, rows, listings.format_case_list(rows) + footer)
    return EX_OK


@command("case show", "status, people, messages in order, what was sent",
         arg("id", help="case id, e.g. 2026-0001"), AS_MEMBER, json_out=True, logs=False)
def cmd_case_show(args: argparse.Namespace) -> int:
    """One case: its record and what is still undetermined, the committee, the
    people, decisions and votes, the records filed, the messages in order, the
    mail sent and the clocks.  With --json, what blocks closing it too."""
    from mailflow.archive import views
    from mailflow.case import cases

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


@command("search", "search the archive (mail, calls, notes, drafts, cases)",
         arg("query", nargs="+", help="the query (quote it for the shell if it has ( ) or \")"),
         arg("--limit", type=int, default=20, metavar="N",
             help="at most N results (with --by-case: N cases); default 20"),
         arg("--by-case", action="store_true",
             help="group the results by case, best case first, 3 hits each"),
         AS_MEMBER, json_out=True, epilog=SEARCH_SYNTAX, logs=False)
def cmd_search(args: argparse.Namespace) -> int:
    """Search everything archived: mail (headers, new text and quoted text apart),
    mail sent, call summaries, notes, drafts and case fields.  Results are
    ranked when the query has words, else newest first; matches are marked
    *like this* (bold on a terminal, «like this» in JSON)."""
    from mailflow.archive import search

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


@command("case export", "the whole case in one file (json, html or mbox)",
         arg("id", help="case id, e.g. 2026-0001"),
         arg("--format", choices=("json", "html", "mbox"), default="html"),
         arg("-o", "--output", metavar="FILE",
             help="where to write it ('-': standard output; default case-ID.FORMAT here)"),
         AS_MEMBER, logs=False)
def cmd_case_export(args: argparse.Namespace) -> int:
    """The whole case in the order things happened: mail in and out, call
    summaries and notes, commands and their results, drafts, votes and decisions
    (from the audit log, with the proof of identity used), then every table of the
    case.  html is one self-contained page, readable offline; mbox opens in a
    mail client and ends with the case record as text; json has everything.
    The export is recorded in the audit log."""
    from mailflow.archive import dossier
    from mailflow.case import cases

    cfg = load_config(args)
    db = open_db(cfg)
    member = member_filter(args, cfg)
    # As far as a recused member is concerned, there is no such case.
    hidden = bool(member and cases.exists(db, args.id) and member in cases.recused(db, args.id))
    data = None if hidden else dossier.export(db, args.id, args.format, by=member)
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


@command("bans", "the ban registry (current and past bans) and warning counts",
         json_out=True, logs=False)
def cmd_bans(args: argparse.Namespace) -> int:
    """Every ban the committee recorded (#ban), current ones first, then the past
    ones (expired by their date, or lifted with #unban), which stay for review;
    then the number of warnings per person across cases (#warn), flagged at three."""
    from mailflow.case import sanctions

    data = sanctions.registry(open_db(load_config(args)))
    emit(args, data, sanctions.format_registry(data))
    return EX_OK


@command("report", "print a case's final report to the officers",
         arg("id", help="case id, e.g. 2026-0001"), json_out=True, logs=False)
def cmd_report(args: argparse.Namespace) -> int:
    """Print the report #report drafts for the officers (and the maintainers'
    notice while a ban is in force), as it would be sent: the reporter's
    identity withheld unless they consented."""
    from mailflow import app
    from mailflow.responses import drafts, finalreport

    cfg = load_config(args)
    db = open_db(cfg)
    svc = app.services(cfg)
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


@command("transparency", "the anonymised yearly transparency report (md, html or json)",
         arg("--year", required=True, metavar="YYYY", help="the year to report on"),
         arg("--format", choices=("md", "html", "json"), default="md"), logs=False)
def cmd_transparency(args: argparse.Namespace) -> int:
    """Counts for the public: the reports of the year by channel (the keys of
    rules/channels.toml), by violation finding and by agreed response; the median
    time to the acknowledgement, to the first personal contact and to a resolution;
    uses of the fast path, bans, warnings and reports found false.  No name,
    address or case is ever in it, and no count below rules/transparency.toml
    min_count (default 3): smaller categories are counted together."""
    from mailflow import rules
    from mailflow.archive import transparency

    cfg = load_config(args)
    try:
        year = transparency.valid_year(args.year)
    except ValueError as e:
        print(f"mailflow transparency: --year {args.year}: {e}", file=sys.stderr)
        return EX_USAGE
    data = transparency.report(open_db(cfg), rules.load(cfg), year)
    sys.stdout.write(transparency.render(data, args.format, cfg.committee.name))
    return EX_OK
