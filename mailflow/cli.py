"""The ``mailflow`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import intake, outbound, pipeline, rules, store, views
from .config import Config, ConfigError

EX_OK, EX_USAGE, EX_DATAERR, EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG = 0, 64, 65, 70, 75, 78

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
# maintainers = ["maintainers@example.org"]
# delegates = ["organiser@example.org"]   # event organisers
# tag = "coc"                     # subject tag: [coc #2026-0001]
# subject = "codename"            # or "original": what committee subjects show
# emergency_contact = "112 (EU) / 911 (US)"

[intake]
listen = "127.0.0.1:8025"
protocol = "smtp"                  # or "lmtp"
# max_size = 26214400              # bytes; larger mail is refused with 552

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
    from .serve import serve

    cfg = load_config(args)
    rules.load(cfg)  # fail at start, not on the first message
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


def cmd_process(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    db = open_db(cfg)
    settled = pipeline.drain(db, pipeline.Services.load(cfg))
    delivered = outbound.deliver_due(db, cfg, outbound.transport_for(cfg))
    print(f"processed {settled} message(s), delivered to {delivered} recipient(s)")
    return EX_OK


def cmd_cases(args: argparse.Namespace) -> int:
    rows = views.case_list(open_db(load_config(args)), args.status)
    emit(args, rows, views.format_case_list(rows))
    return EX_OK


def cmd_case_show(args: argparse.Namespace) -> int:
    case = views.case_detail(open_db(load_config(args)), args.id)
    if case is None:
        print(f"no case {args.id}", file=sys.stderr)
        return EX_DATAERR
    emit(args, case, views.format_case(case))
    return EX_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
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


def cmd_queue(args: argparse.Namespace) -> int:
    rows = views.queue(open_db(load_config(args)), args.all)
    text = "\n".join(f"{r['id']:>6} {r['kind']:<10} {r['rcpt']:<30} {r['state']:<7} "
                     f"tries {r['attempts']} next {r['next_attempt_at']} {r['last_error'] or ''}"
                     for r in rows) or "The outbound queue is empty."
    emit(args, rows, text)
    return EX_OK


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

    command("process", cmd_process, "process pending mail and deliver the queue once",
            "Run the pipeline over everything committed but not yet processed, then one\n"
            "delivery pass; for installations that take mail with `mailflow ingest`\n"
            "and run no server.")

    p = command("cases", cmd_cases, "list cases", json_out=True)
    p.add_argument("--status", help="only cases with this status (open, closed, ...)")

    p = sub.add_parser("case", help="one case: show ...")
    case_sub = p.add_subparsers(dest="case_command", metavar="ACTION", required=True)
    show = case_sub.add_parser("show", help="status, people, messages in order, what was sent")
    show.add_argument("id", help="case id, e.g. 2026-0001")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_case_show)

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
