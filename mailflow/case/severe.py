"""The clear-and-severe fast path.

For personal threats, violent, sexist or racist language any member may act before
consensus.  ``#severe <channels>: <what happened>``:

1. records an interim ban of each originator from the channels named, lasting until
   the committee's review of the case or its sign-off (``interim_ban`` in
   ``rules/workflow.toml``; "permanent" keeps the old way);
2. drafts an instruction to the moderators of each channel named, from the map in
   ``rules/channels.toml`` (falling back to ``committee.moderators``), one draft per
   group of moderators: disconnecting someone is theirs to do;
3. drafts the notice to the reporter (received; the person disconnected) and to each
   originator with an address (what qualified, and the right to ask for a review);
4. opens a sign-off item: the case cannot close until the committee signs the use of
   the fast path off by consensus (``#signoff``), so that it is never used to settle
   ordinary heated disagreement.

The notices say "disconnected", so they wait for the instructions: the chair's
``#confirm`` of a notice is refused while an instruction of the fast path is still
pending (:func:`hold_notice`).  Confirming the instructions first (one mail may
confirm all, instructions on the lines above the notices) keeps the notices true.
"""

from __future__ import annotations

from typing import Any

from mailflow import timestamps
from mailflow.case import cases, consensus, reads, sanctions
from mailflow.case.notices import notify_committee
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.config import Config
from mailflow.mail.decode import ADDR_SPEC
from mailflow.responses import drafts
from mailflow.store.sqlite import Database

NOTICES = ("notice-to-reporter-severe", "notice-to-originator-severe")
INTERIM_CHOICES = ("review", "signoff", "permanent")


def interim_event(rules: dict[str, Any]) -> str | None:
    """The event that ends the fast path's ban (None: permanent)."""
    choice = rules.get("workflow", {}).get("interim_ban", "review")
    return None if choice == "permanent" else choice


def channel_map(rules: dict[str, Any]) -> dict[str, list[str]]:
    """``rules/channels.toml``: channel (lower case) -> its moderators' addresses."""
    table = rules.get("channels", {}).get("moderators", {})
    return {k.strip().lower(): [a.strip().lower() for a in v] for k, v in table.items()}


def problems(rules: dict[str, Any]) -> list[str]:
    """What is wrong with ``rules/channels.toml`` and ``interim_ban``, for ``mailflow check``."""
    found = []
    table = rules.get("channels", {}).get("moderators", {})
    for channel, addresses in table.items() if isinstance(table, dict) else []:
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and ADDR_SPEC.match(a.strip()) for a in addresses):
            found.append(f"rules/channels.toml: moderators.{channel}: expected a list of "
                         "email addresses")
        if channel.strip().lower() == "all" or "," in channel:
            found.append(f"rules/channels.toml: moderators.{channel}: not a channel name")
    choice = rules.get("workflow", {}).get("interim_ban", "review")
    if choice not in INTERIM_CHOICES:
        found.append(f"rules/workflow.toml: interim_ban: {choice!r} is not one of "
                     f"{', '.join(INTERIM_CHOICES)}")
    return found


def moderator_groups(cfg: Config, rules: dict[str, Any], scope: str
                     ) -> list[tuple[list[str], list[str]]]:
    """(channels, moderators) for each group of moderators the scope reaches."""
    mapped = channel_map(rules)
    default = [a.lower() for a in cfg.committee.moderators]
    if scope == "all":
        wanted = [(c, m) for c, m in mapped.items()]
        wanted += [("every other community space", default)] if default or not mapped else []
    else:
        wanted = [(c, mapped.get(c) or default) for c in scope.split(",")]
    missing = [c for c, m in wanted if not m]
    if missing:
        raise CommandError(f"no moderators are known for {', '.join(missing)}: add them to "
                           "rules/channels.toml [moderators] (or committee.moderators), so "
                           "that someone is asked to disconnect the person")
    groups: dict[tuple[str, ...], list[str]] = {}
    for channel, mods in wanted:
        groups.setdefault(tuple(dict.fromkeys(mods)), []).append(channel)
    return [(channels, list(mods)) for mods, channels in groups.items()]


def _instruct(inv: Invocation, scope: str, originators: list[dict[str, Any]]) -> list[str]:
    """Draft and file the instruction to each group of moderators."""
    event = interim_event(inv.svc.rules)
    who = "\n".join(f"  {cases.person_text(o)}" for o in originators)
    done = []
    for channels, mods in moderator_groups(inv.cfg, inv.svc.rules, scope):
        lasting = (f"until {reads.INTERIM[event]}; we will tell you when it ends"
                   if event else "until we tell you otherwise")
        actions = (f"Please disconnect, at once, from {', '.join(channels)}:\n\n{who}\n\n"
                   "The committee found a clear and severe breach of the Code of Conduct. "
                   f"The disconnection lasts {lasting}.")
        draft_id = drafts.create_draft(inv.db, inv.svc, case_id=inv.case_id,
                                       template="moderator-instruction", to_role="moderators",
                                       recipients=mods, context={"actions": actions},
                                       author=inv.actor)
        inv.db.execute("INSERT INTO severe_instructions (case_id, draft_id, channels, "
                       "created_at) VALUES (?, ?, ?, ?)",
                       [inv.case_id, draft_id, ",".join(channels), timestamps.stamp()])
        done.append(f"instruction to the moderators of {', '.join(channels)} drafted "
                    f"(draft {draft_id})")
    return done


def _notices(inv: Invocation, originators: list[dict[str, Any]], reason: str) -> list[str]:
    db, case_id, done = inv.db, inv.case_id, []
    if cases.reporters(db, case_id):
        draft = drafts.create_draft(db, inv.svc, case_id=case_id,
                                    template="notice-to-reporter-severe", to_role="reporter",
                                    context={}, author=inv.actor)
        done.append(f"notice to the reporter drafted (draft {draft})")
    with_address = [o for o in originators if o["address"]]
    for o in with_address:
        draft = drafts.create_draft(
            db, inv.svc, case_id=case_id, template="notice-to-originator-severe",
            to_role="originator", recipients=[o["address"]], author=inv.actor,
            context={"breach": reason})
        done.append(f"notice to {o['address']} drafted (draft {draft})")
    if len(with_address) < len(originators):
        done.append("no address for some originators: contact them another way and file it "
                    "with #call or #note")
    return done


@command("severe", summary="clear and severe breach: record the originator's interim "
         "disconnection from the channels named (or all), draft the instruction to their "
         "moderators and the notices to the reporter and the originator (confirm the "
         "instruction first), and open a sign-off item that blocks closing until #signoff",
         usage="#severe <channels, comma-separated | all>: <what qualified as a clear and "
               "severe breach>",
         example="#severe forum, chat: threatened to hurt another contributor",
         states=(cases.OPEN,))
def _severe(inv: Invocation) -> str:
    scope, colon, reason = inv.cmd.args.partition(":")
    if not colon or not scope.strip() or not reason.strip():
        raise CommandError("use #severe <channels or all>: <what qualified as a clear and "
                           "severe breach>")
    scope, reason = sanctions.normalise_scope(scope), reason.strip()
    db, case_id = inv.db, inv.case_id
    used = cases.record(db, case_id)["severe_at"]
    if used:
        raise CommandError(f"the fast path was already used on this case ({used})")
    originators = cases.people(db, case_id, "originator")
    if not originators:
        raise CommandError("record the originator first (#originator ...), on a line above")
    for o in originators:
        sanctions.record_ban(db, case_id=case_id, person=o["address"] or o["name"],
                             scope=scope, until=None, reason=f"clear and severe breach: {reason}",
                             actor=inv.actor, until_event=interim_event(inv.svc.rules))
    spaces = "all community channels" if scope == "all" else scope.replace(",", ", ")
    ban = reads.bans(db, case_id)[-1]
    done = [f"interim disconnection of {len(originators)} originator(s) from {spaces} "
            f"recorded, until {ban['end']}"]
    # The instructions first: the notices say "disconnected" and wait for them.
    done += _instruct(inv, scope, originators) + _notices(inv, originators, reason)
    cases.update_record(db, case_id, severe_at=timestamps.stamp(), severe_by=inv.actor,
                        severe_reason=reason, severe_scope=scope)
    item = consensus.new_proposal(inv.ctx, case_id, consensus.SIGNOFF, consensus.SIGNOFF,
                                  reason, inv.actor)
    notify_committee(
        inv.ctx, case_id, "Clear and severe breach: fast path used",
        f"{inv.actor} used the clear-and-severe fast path on case {case_id}:\n"
        f"  {reason}\nThe originator's interim disconnection from {spaces} is recorded "
        f"(until {ban['end']}).\nThe instruction to the moderators and the notices to the "
        "reporter and the\noriginator went to the chair to confirm, the instruction first.\n\n"
        f"Every member must review this use (sign-off item #{item}) and sign it off:\n"
        "  #signoff            (or #signoff object <why>)\n"
        "The case cannot close before.")
    done.append(f"sign-off item #{item} opened; the case cannot close until it is signed off")
    return "; ".join(done)


def hold_notice(db: Database, draft: dict[str, Any]) -> None:
    """Refuse to send a fast-path notice ("disconnected") while an instruction to the
    moderators is still pending: it would not be true yet."""
    if draft["template"] not in NOTICES:
        return
    pending = []
    for row in db.execute("SELECT draft_id, channels FROM severe_instructions WHERE "
                          "case_id = ? ORDER BY id", [draft["case_id"]]).fetchall():
        current = reads.current_draft(db, row[0])
        if current and current["state"] == "pending":
            pending.append(f"draft {current['id']} ({row[1].replace(',', ', ')})")
    if pending:
        raise CommandError(f"draft {draft['id']} says that the person has been disconnected: "
                           "first confirm the instruction to the moderators, "
                           + "; ".join(pending) + " (on a line above, in the same mail is fine)")
