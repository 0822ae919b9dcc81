"""Running mailflow: ``serve``, or the parts of it one at a time from an MTA or cron
(``ingest``, ``poll``, ``process``, ``tick``)."""

from __future__ import annotations

import argparse
import os
import sys

from mailflow.cli.options import Failed, arg, command, load_config, open_db
from mailflow.cli.sysexits import EX_CONFIG, EX_OK, EX_TEMPFAIL, EX_USAGE
from mailflow.config import Config, ConfigError


@command("serve", "run the listener and the pipeline")
def cmd_serve(args: argparse.Namespace) -> int:
    """Listen for mail (SMTP or LMTP), process it and deliver what it sends.
    A message is answered 250 only once its bytes are committed to disk.
    SIGHUP reloads mailflow.toml, rules/ and templates/ once they pass `mailflow
    check` (if not, the log says why and the running configuration stays);
    SIGTERM stops taking mail, finishes what was accepted, and exits."""
    from mailflow.cli.serve import serve

    def load() -> Config:
        """The configuration with its rules and templates, checked: at the start, and
        again on SIGHUP (a problem is a ConfigError naming each)."""
        from mailflow.cli import checks

        cfg = load_config(args)
        problems = checks.check_rules(cfg) + checks.check_templates(cfg)
        if problems:
            raise ConfigError("\n".join(problems))
        return cfg

    serve(load(), args.log_settings, load)  # fail at start, not on the first message
    return EX_OK


@command("ingest", "take one message on standard input (pipe transport)",
         arg("--sender", default=None, help="envelope sender (empty for <>)"),
         arg("recipient", nargs="*", help="envelope recipients"), logs=False,
         epilog="""\
In Postfix's master.cf (docs/deploy.md has the whole set-up):
  mailflow  unix  -  n  n  -  -  pipe
    flags= user=mailflow null_sender=
    argv=/opt/mailflow/venv/bin/mailflow --config /etc/mailflow/mailflow.toml
         ingest --sender ${sender} -- ${recipient}
The path is absolute (pipe runs no shell and has no PATH of yours), user= is the
user that owns the archive, and null_sender= keeps a bounce's empty sender empty.""")
def cmd_ingest(args: argparse.Namespace) -> int:
    """For an MTA's pipe transport.  Exits 0 once the message is committed, 75
    (EX_TEMPFAIL) when the MTA should retry, with the reason on one line, and 65
    when the message is over intake.max_size.  `mailflow serve` (or `mailflow
    process`) handles it next."""
    from mailflow.cli import ingest

    return ingest.run(args.config, args.sender, args.recipient or [])


@command("poll", "take mail from the IMAP mailbox of [intake.imap]",
         arg("--idle", action="store_true",
             help="keep going: wait for new mail with IDLE until stopped"))
def cmd_poll(args: argparse.Namespace) -> int:
    """Fetch the messages in intake.imap.folder, commit them like mail received
    by SMTP, then move them to intake.imap.processed_folder.  Once by default
    (then run `mailflow process`, e.g. from cron); with --idle, keep watching
    with IMAP IDLE and reconnect after failures.  `mailflow serve` does the
    same by itself when [intake.imap] is configured.
    Exits 78 (EX_CONFIG) for what needs the administrator (login refused,
    certificate not trusted, folder or password missing), 75 (EX_TEMPFAIL)
    when the server could not be reached."""
    import signal
    import threading

    from mailflow.intake import imap

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


@command("process", "process pending mail and deliver the queue once")
def cmd_process(args: argparse.Namespace) -> int:
    """Run the pipeline over everything committed but not yet processed, then one
    delivery pass; for installations that take mail with `mailflow ingest`
    and run no server."""
    from mailflow import app
    from mailflow.outbound import delivery
    from mailflow.pipeline import runner

    cfg = load_config(args)
    db = open_db(cfg)
    try:
        settled = runner.drain(db, app.services(cfg), lock_timeout=0)
    except TimeoutError:
        raise Failed("mailflow serve is running on this archive and processes the mail "
                     "itself (it holds pipeline.lock)", EX_TEMPFAIL) from None
    delivered = delivery.deliver_once(db, cfg)
    print(f"processed {settled} message(s), delivered to {delivered} recipient(s)")
    return EX_OK


@command("tick", "fire the clocks' alarms that are due, once",
         arg("--now", metavar="ISO", help="act as if it were this time (e.g. to test "
             "rules: 2026-12-01T09:00Z); the same as MAILFLOW_FAKE_NOW"))
def cmd_tick(args: argparse.Namespace) -> int:
    """Fire every alarm that is due (rules/clocks.toml), then one delivery pass.
    `mailflow serve` does this by itself; run it from cron where no server
    runs (after `mailflow process`).  An alarm fires once, however often this
    runs; one that fell due long ago fires once, marked late."""
    from mailflow import app, timestamps
    from mailflow.clocks import scheduler
    from mailflow.outbound import delivery

    if args.now:
        try:
            # The documented way to set the time of a whole process (see timestamps.py).
            os.environ["MAILFLOW_FAKE_NOW"] = timestamps.stamp(timestamps.parse(args.now))
        except ValueError:
            print(f"--now {args.now!r} is not an ISO 8601 time", file=sys.stderr)
            return EX_USAGE
    cfg = load_config(args)
    db = open_db(cfg)
    fired = scheduler.run_due(db, app.services(cfg))
    delivered = delivery.deliver_once(db, cfg)
    print(f"fired {fired} alarm(s), delivered to {delivered} recipient(s)")
    return EX_OK
