"""Setting mailflow up: ``init``, ``check``, ``help``, ``demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailflow.cli.options import arg, command, emit, load_config
from mailflow.cli.sysexits import EX_CONFIG, EX_OK, EX_USAGE

STARTER_CONFIG = """\
# mailflow configuration.  Every key is optional; the values shown are examples.
# The example.org names are placeholders: `mailflow check` refuses them until the
# committee's own domain and addresses replace them.

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

# [committee.encryption]            # OpenPGP to members with a key (`mailflow keys`)
# default = "if-key"                # encrypted when the member has a key, else in clear
# "m1@example.org" = "required"     # no key: a notice instead of the mail
# "m2@example.org" = "never"        # always in clear

[intake]
listen = "127.0.0.1:8025"
protocol = "smtp"                  # or "lmtp"
# max_size = 26214400              # bytes; larger mail is refused with 552
# stage_priority = "idle"          # or "low" (nice 10) on a host shared with busy programs
# mta_routes = "addresses"         # the MTA sends mailflow only conduct@ and committee@
                                   # (docs/deploy.md); "domain": all of committee.domain

[outbound]
# relay = "127.0.0.1:2525"         # absent: a Maildir under the archive (archive/outbox)
# acknowledgement_sender = "null"  # or "return-path": hear when an acknowledgement bounces
# starttls = true
# username = "mailflow"
# password_env = "MAILFLOW_RELAY_PASSWORD"

[storage]
path = "archive"

[security]
# trusted_authserv_id = "mx.example.org"   # whose Authentication-Results to believe
"""


@command("init", "write a commented starter configuration",
         arg("path", nargs="?", default="mailflow.toml"),
         arg("--force", action="store_true", help="overwrite an existing file"),
         arg("--with-key", action="store_true",
             help="also make the committee's OpenPGP key (as `mailflow keys generate`)"))
def cmd_init(args: argparse.Namespace) -> int:
    """Write a starter mailflow.toml (every key commented) and create the archive.
    With --with-key, also make the committee's OpenPGP key, so that reporters can
    encrypt to it; without it, init says how to make one later."""
    path = Path(args.path)
    if path.exists() and not args.force:
        print(f"{path} exists; use --force to overwrite", file=sys.stderr)
        return EX_USAGE
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    from mailflow import config, store
    from mailflow.cli import keys

    cfg = config.load(str(path))
    store.open_db(cfg.db_path).close()
    print(f"wrote {path}; archive at {cfg.archive_dir}\n"
          "Put your domain and addresses in place of the example.org placeholders, then "
          "run `mailflow check`.")
    if args.with_key:
        return keys.generate(cfg)
    print("encrypted reports: `mailflow keys generate` makes the committee's OpenPGP key")
    return EX_OK


@command("check", "validate the configuration, rules and templates")
def cmd_check(args: argparse.Namespace) -> int:
    """Check the configuration, rules/ and templates/, and that the archive is
    private (0700, its files 0600); each problem is printed as FILE: KEY: PROBLEM.
    Exits 78 (EX_CONFIG) if there is any.  Notes (what the configuration leaves out,
    such as a trusted MTA) are printed but fail nothing."""
    from mailflow.cli import checks

    cfg = load_config(args)
    problems = checks.run(cfg)
    for note in checks.notes(cfg):
        print(f"note: {note}")
    for p in problems:
        print(p)
    if problems:
        return EX_CONFIG
    print(f"{cfg.source}: configuration, rules and templates are valid")
    return EX_OK


@command("help", "the committee's #commands, with who may use them and examples")
def cmd_help(args: argparse.Namespace) -> int:
    """Every #command members can put in their replies: who may use it, its usage
    and an example (the same text #help mails back), then the form event
    organisers use for incident reports."""
    from mailflow import app, rules
    from mailflow.case import events
    from mailflow.commands.help import help_text

    cfg = load_config(args)
    print(help_text(app.COMMANDS, rules.load(cfg)))
    print(events.FORM)
    return EX_OK


@command("demo", "play a whole case on loopback and print the mail exchanged",
         arg("--keep", action="store_true", help="keep the temporary archive"))
def cmd_demo(args: argparse.Namespace) -> int:
    """Start mailflow on a free local port with a temporary archive, play a case
    from report to enactment (acknowledgement, committee list, member commands,
    votes, a call summary, the reporter's consultation, enactment), print every
    mail exchanged and the final case record.  Nothing leaves the machine."""
    from mailflow.cli import demo

    return demo.run(keep=args.keep)


@command("parts", "the built-in parts: the pipeline's steps, the #commands, the close checks",
         json_out=True)
def cmd_parts(args: argparse.Namespace) -> int:
    """The registry (mailflow/app.py), as data: the handlers every message goes
    through, in order, the #commands by the module that defines them, the checks that
    hold back closing a case, the schema's migrations and the stages `mailflow serve`
    runs."""
    import textwrap

    from mailflow import app

    data = app.describe()
    lines = ["Handlers, in order:"]
    for i, h in enumerate(data["handlers"], 1):
        lines.append(f"  {i:2}. {h['name']}")
        lines += textwrap.wrap(h["does"], 80, initial_indent=" " * 6, subsequent_indent=" " * 6)
    lines += ["", "#commands, by module:"]
    lines += [f"  {m:<15} " + " ".join(f"#{w}" for w in ws) for m, ws in data["commands"].items()]
    lines += ["", "Close checks: " + ", ".join(data["close_checks"]),
              f"Migrations: {len(data['migrations'])} ({data['migrations'][-1]} last)",
              "Stages of serve: " + ", ".join(data["stages"]) + " (and imap when configured)"]
    emit(args, data, "\n".join(lines))
    return EX_OK
