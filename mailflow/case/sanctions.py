"""The ban and warning registry.

- A ban has a person, a scope (the spaces it covers), a start, an end (none when
  permanent), the case and a reason.  It expires on its own when its end passes: the
  state is computed from the clock, never stored, so no job has to run for it.  Bans
  are never deleted; ``#unban`` lifts one early and keeps the record.
- An interim ban (the clear-and-severe fast path) has no date for its end but an
  event: the committee's sign-off of the fast path, or its review of the case (a
  response agreed by consensus).  When that comes, its end is set to that moment.
- Warnings are counted per person across all cases; the third flags the case, since
  the guidelines let the committee take any action after three warnings.
- The reporter faces a sanction on their own case only once the committee found the
  report false or abusive (``#false-report``, decided by consensus): before, a
  retaliating member could not warn, ban or reprimand them.  A reporter who is also
  an originator of the case (both sides escalated) may be sanctioned as one.

People are keyed by lower-cased address, or by the name or handle given when the
committee has no address for them.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime
from typing import Any

from mailflow import store, timestamps
from mailflow.case import cases
from mailflow.case.notices import notify_committee
from mailflow.case.reads import PERMANENT, bans, case_flags
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.store import audit
from mailflow.store.sqlite import Database

THREE_WARNINGS = "three warnings: any action may be taken"
WARNING_LIMIT = 3
PERSON_ROLES = ("originator", "affected", "witness", "reporter")
# The mark a case carries once the committee found its report false or abusive.
FALSE_REPORT = "false or abusive report: the menu of responses applies to the reporter"
# Templates that sanction the person they are sent to.
SANCTION_TEMPLATES = ("private-reprimand", "apology-request", "hiatus", "ban-notice",
                      "leave-event")
OPTION = re.compile(r"^(scope|until|start)=(.*)$", re.IGNORECASE)


def parse_when(text: str | date | datetime | None, what: str) -> datetime | None:
    """A date (the moment that day begins, UTC) or a timestamp; None for permanent."""
    if text is None or (isinstance(text, str) and text.strip().lower() == PERMANENT):
        return None
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    if isinstance(text, date):
        return datetime(text.year, text.month, text.day, tzinfo=UTC)
    try:
        return timestamps.parse(text.strip())
    except ValueError:
        raise CommandError(f"{what}={text!r} is not a date (YYYY-MM-DD)"
                           f"{' or permanent' if what == 'until' else ''}") from None


def normalise_scope(scope: str) -> str:
    spaces = list(dict.fromkeys(s.strip().lower() for s in scope.split(",") if s.strip()))
    if not spaces:
        raise CommandError("a ban needs a scope: scope=all, or the spaces, e.g. scope=forum,chat")
    return "all" if "all" in spaces else ",".join(spaces)


def record_ban(db: Database, *, case_id: str, person: str, scope: str,
               until: str | date | datetime | None, reason: str, actor: str,
               start: str | date | datetime | None = None, until_event: str | None = None
               ) -> int:
    """File a ban (``until`` None or "permanent": no end, unless ``until_event`` names
    the event that ends it, see :data:`INTERIM`); call inside a transaction."""
    person = person.strip().lower()
    if not person:
        raise CommandError("a ban needs the person it applies to")
    if not reason.strip():
        raise CommandError("a ban needs a reason")
    starts = parse_when(start, "start") or timestamps.now()
    ends = parse_when(until, "until")
    if ends is not None and ends <= starts:
        raise CommandError(f"the ban would end ({timestamps.stamp(ends)}) before it starts "
                           f"({timestamps.stamp(starts)})")
    cur = db.execute(
        "INSERT INTO bans (case_id, person, scope, starts_at, ends_at, reason, actor, created_at,"
        " until_event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [case_id, person, normalise_scope(scope), timestamps.stamp(starts),
         timestamps.stamp(ends) if ends else None, reason.strip(), actor, timestamps.stamp(),
         until_event])
    ban_id = store.inserted(cur)
    audit.append(db, actor, "ban recorded", case_id, ban=ban_id,
                 until=timestamps.stamp(ends) if ends else until_event or PERMANENT)
    return ban_id


def end_interim(db: Database, case_id: str, event: str) -> list[int]:
    """End the case's interim bans that last until ``event`` ("signoff", "review"): their
    end becomes now, so they expire by the clock like any other; returns their ids."""
    ids = [r[0] for r in db.execute(
        "SELECT id FROM bans WHERE case_id = ? AND until_event = ? AND ends_at IS NULL "
        "AND lifted_at IS NULL", [case_id, event])]
    for ban_id in ids:
        db.execute("UPDATE bans SET ends_at = ? WHERE id = ?", [timestamps.stamp(), ban_id])
        audit.append(db, "mailflow", "interim ban ended", case_id, ban=ban_id, event=event)
    return ids


def ongoing(db: Database, case_id: str) -> list[dict[str, Any]]:
    """The case's bans still in force or still to come: what the maintainers must know."""
    return [b for b in bans(db, case_id) if b["status"] in ("current", "upcoming")]


def record_warning(db: Database, *, case_id: str, person: str, reason: str,
                   actor: str) -> int:
    """File a warning; returns how many the person has now, across all cases."""
    person = person.strip().lower()
    cur = db.execute("INSERT INTO warnings (case_id, person, reason, actor, at) "
                     "VALUES (?, ?, ?, ?, ?)",
                     [case_id, person, reason.strip(), actor, timestamps.stamp()])
    count = db.execute("SELECT count(*) FROM warnings WHERE person = ?", [person]).fetchone()[0]
    audit.append(db, actor, "warning recorded", case_id, warning=cur.lastrowid, count=count)
    return count


def warning_counts(db: Database) -> list[dict[str, Any]]:
    rows = db.query("SELECT person, count(*) AS count, group_concat(DISTINCT case_id) AS cases "
                    "FROM warnings GROUP BY person ORDER BY count DESC, person")
    return [{**r, "cases": r["cases"].split(","), "flagged": r["count"] >= WARNING_LIMIT}
            for r in rows]


def flag_case(db: Database, case_id: str, flag: str) -> bool:
    """Flag the case; False if it already carried the flag."""
    cur = db.execute("INSERT OR IGNORE INTO case_flags (case_id, flag, at) VALUES (?, ?, ?)",
                     [case_id, flag, timestamps.stamp()])
    if cur.rowcount:
        audit.append(db, "mailflow", "case flagged", case_id, flag=audit.fingerprint(db, flag))
    return bool(cur.rowcount)


def resolve_person(db: Database, case_id: str, who: str) -> str:
    """An address or handle as given, or a role word naming the one person in that role;
    refused for the case's reporter until the report was found false (see the module)."""
    person = who
    if who.lower() in PERSON_ROLES:
        people = [p["address"] or p["name"] for p in cases.people(db, case_id, who.lower())]
        if len(people) != 1:
            found = ", ".join(people) if people else "nobody"
            raise CommandError(f"{who} names {found} on this case: give one address or handle")
        person = people[0]
    reporter_may_face(db, case_id, person)
    return person


def reporter_may_face(db: Database, case_id: str, person: str | None) -> None:
    """Refuse a sanction of the case's reporter (``person`` None: of every reporter, as
    ``#send ... to=reporter`` writes) unless the report was found false, or the
    reporter is an originator of the case as well."""
    people = cases.people(db, case_id)

    def fold(text: str) -> str:  # a full-width or differently cased spelling is the same
        return unicodedata.normalize("NFKC", text).strip().casefold()

    def keyed(role: str) -> set[str]:
        return {fold(p["address"] or p["name"]) for p in people if p["role"] == role}

    reporters = keyed("reporter")
    targets = reporters if person is None else {fold(person)}
    if not (targets & reporters - keyed("originator")):
        return
    if FALSE_REPORT not in case_flags(db, case_id):
        raise CommandError("the reporter faces a response only once the committee has found "
                           "the report false or abusive (#false-report <reason>, decided by "
                           "consensus)")


@command(
    "ban", summary="record a ban in the registry (scope: the spaces, comma-separated, or all); "
    "it expires by itself; the notices are drafted with #send",
    usage="#ban <person|originator> scope=<spaces> until=<YYYY-MM-DD>|permanent "
          "[start=<YYYY-MM-DD>] <reason>",
    example="#ban originator scope=forum,chat until=2026-09-01 threats in the forum")
def _ban(inv: Invocation) -> str:
    words = inv.cmd.args.split()
    if not words:
        raise CommandError("say who: #ban <address|handle|originator> scope=... until=...")
    options: dict[str, str] = {}
    rest = []
    for word in words[1:]:
        match = OPTION.match(word)
        if match:
            options[match.group(1).lower()] = match.group(2)
        else:
            rest.append(word)
    for needed in ("scope", "until"):
        if needed not in options:
            raise CommandError(f"#ban needs {needed}=... (until=<YYYY-MM-DD> or until=permanent)")
    person = resolve_person(inv.db, inv.case_id, words[0])
    ban_id = record_ban(inv.db, case_id=inv.case_id, person=person, scope=options["scope"],
                        until=options["until"], start=options.get("start"),
                        reason=" ".join(rest), actor=inv.actor)
    ban = bans(inv.db, inv.case_id)[-1]
    return (f"ban {ban_id} recorded: {ban['person']} from {ban['spaces']}, "
            f"{ban['start']} to {ban['end']} ({ban['status']}). "
            "Draft the notices with #send ban-notice to=originator and "
            "#send moderator-instruction to=moderators")


@command(
    "unban", summary="lift a ban before its end (e.g. after a review); the record stays",
    usage="#unban <ban-id> <reason>", example="#unban 3 review found the ban disproportionate")
def _unban(inv: Invocation) -> str:
    ban_id, _, reason = inv.cmd.args.partition(" ")
    row = inv.db.execute("SELECT lifted_at FROM bans WHERE id = ?",
                         [int(ban_id) if ban_id.isdigit() else -1]).fetchone()
    if row is None:
        raise CommandError(f"no ban {ban_id!r} (the registry: mailflow bans)")
    if row[0]:
        raise CommandError(f"ban {ban_id} was already lifted")
    if not reason.strip():
        raise CommandError("say why the ban is lifted: #unban <ban-id> <reason>")
    inv.db.execute("UPDATE bans SET lifted_at = ?, lifted_by = ?, lift_reason = ? WHERE id = ?",
                   [timestamps.stamp(), inv.actor, reason.strip(), int(ban_id)])
    return f"ban {ban_id} lifted; it stays in the registry as lifted"


@command(
    "warn", summary="record a warning; warnings are counted per person across cases and "
    "the third flags the case (any action may then be taken)",
    usage="#warn <person|originator> [reason]", example="#warn originator insults in #general")
def _warn(inv: Invocation) -> str:
    who, _, reason = inv.cmd.args.partition(" ")
    if not who:
        raise CommandError("say who: #warn <address|handle|originator> [reason]")
    person = resolve_person(inv.db, inv.case_id, who)
    count = record_warning(inv.db, case_id=inv.case_id, person=person, reason=reason,
                           actor=inv.actor)
    result = f"warning {count} recorded for {person.lower()}"
    if count >= WARNING_LIMIT:
        result += f". The case is flagged: {THREE_WARNINGS}"
        if flag_case(inv.db, inv.case_id, THREE_WARNINGS):
            notify_committee(
                inv.ctx, inv.case_id, "Three warnings: any action may be taken",
                f"{person.lower()} has now been warned {count} times (mailflow bans lists "
                "them).\nThe guidelines allow the committee to take any action it deems "
                "appropriate,\nup to and including a permanent ban.")
    return result


def registry(db: Database) -> dict[str, Any]:
    """``mailflow bans``: every ban, current ones first, and the warning counts."""
    all_bans = bans(db)
    order = {"current": 0, "upcoming": 1, "expired": 2, "lifted": 3}
    all_bans.sort(key=lambda b: (order[b["status"]], b["id"]))
    return {"bans": all_bans, "warnings": warning_counts(db)}


def format_registry(data: dict[str, Any]) -> str:
    lines = []
    for title, states in (("Current bans", ("current", "upcoming")),
                          ("Past bans", ("expired", "lifted"))):
        rows = [b for b in data["bans"] if b["status"] in states]
        lines.append(f"{title}:")
        lines += [f"  #{b['id']:<4} {b['person']:<28} {b['spaces']:<24} {b['start']} to "
                  f"{b['end']:<10} {b['status']:<8} case {b['case_id']}: {b['reason']}"
                  for b in rows] or ["  (none)"]
        lines.append("")
    lines.append("Warnings:")
    lines += [f"  {w['person']:<28} {w['count']} in {', '.join(w['cases'])}"
              f"{'  FLAGGED: ' + THREE_WARNINGS if w['flagged'] else ''}"
              for w in data["warnings"]] or ["  (none)"]
    return "\n".join(lines)
