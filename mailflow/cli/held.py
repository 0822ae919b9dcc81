"""``mailflow held``: the mail kept without being acted on, and the chair's decision on it."""

from __future__ import annotations

import argparse
import sys

from mailflow.cli.options import arg, command, emit, load_config, open_db
from mailflow.cli.sysexits import EX_DATAERR, EX_OK


@command("held", "list held mail (suspected spam, stray bounces, non-members' mail to the "
         "committee); release or discard it",
         arg("--release", type=int, nargs="+", metavar="ID",
             help="handle these after all, as new reports (acknowledged, copied, clocks)"),
         arg("--discard", type=int, nargs="+", metavar="ID",
             help="decide these need nothing; they stay archived until retention"),
         arg("--all", action="store_true", help="list released and discarded mail too"),
         json_out=True)
def cmd_held(args: argparse.Namespace) -> int:
    """Held mail is archived but not acted on: suspected spam (the trusted MTA's
    verdicts, rules/spam.toml), bounces of mail mailflow did not send, and mail
    to the committee list from non-members.  It gets no acknowledgement, no
    committee copy and no clocks.  --release hands it to `mailflow serve` (or the
    next `mailflow process`) to be handled as a new report; --discard keeps it
    archived until retention.  Both are recorded in the audit log as the admin's."""
    from mailflow import store
    from mailflow.case import held

    db = open_db(load_config(args))
    for ids, act in ((args.release, held.release), (args.discard, held.discard)):
        for held_id in ids or []:
            try:
                with store.transaction(db):
                    print(act(db, held_id, "admin"))
            except held.HeldError as e:
                print(f"mailflow held: {e}", file=sys.stderr)
                return EX_DATAERR
    if args.release or args.discard:
        return EX_OK
    rows = held.listing(db, everything=args.all)
    emit(args, rows, "\n".join(held.describe(r) for r in rows) or "Nothing is held.")
    return EX_OK
