"""Templated responses: drafted by any member, sent only on the chair's ``#confirm``.

The path of every mail that leaves the committee on a case:

1. ``#send <template> to=<role>`` (or another module through :func:`create_draft`)
   renders the template with the case's standard context (:func:`case_context`) and
   the fields the author gave, refuses header injection and protected identities
   (:mod:`mailflow.redaction`), files the draft on the case and mails it to the chair
   with a ``#confirm <id>`` line.
2. ``#edit <id>`` files a corrected text as a new draft replacing the old one, so the
   chair always confirms exactly the text that was mailed to them.
3. ``#confirm <id>`` (chair only) checks identities once more and queues one mail per
   person (group roles, such as the officers, share one), cc the committee where the
   rules say so (``rules/sending.toml``).  ``#discard <id>`` drops a draft.

Recipients never come from template text: they are the case's people in a role, or
the configured addresses of a group role.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formataddr
from typing import TYPE_CHECKING, Any

from mailflow import store, timestamps
from mailflow.case import cases, consensus, keys, reads
from mailflow.case.grievance import review_address
from mailflow.case.notices import deliver, mail_members, outer_subject
from mailflow.commands.spec import CommandError
from mailflow.mail import render
from mailflow.mail.compose import HeaderInjection, Outgoing, check_header, compose
from mailflow.mail.decode import ADDR_SPEC
from mailflow.outbound.queue import enqueue
from mailflow.responses import redaction
from mailflow.store import audit, fulltext
from mailflow.store.sqlite import Database

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

# People on the case, by role: each gets a mail of their own, so that nobody learns
# who else was written to.
PERSON_ROLES = ("reporter", "originator", "affected", "witness")
# Configured groups (committee.<role> in the config): one mail to the group.
GROUP_ROLES = ("moderators", "officers", "maintainers", "public", "delegates")
ROLES = PERSON_ROLES + GROUP_ROLES
UNDETERMINED = "not yet determined"


class DraftError(CommandError):
    """A draft that cannot be made, changed or sent; the message says why."""


@dataclass
class Prepared:
    """A rendered, checked mail, not yet filed."""

    case_id: str
    template: str
    to_role: str
    recipients: list[str]
    names: dict[str, str]
    reply_to: str
    subject: str
    body: str
    cc_committee: bool
    fields: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# The standard context every template gets.

def _yes_no(value: str | None) -> str:
    return value if value in ("yes", "no") else UNDETERMINED


def case_record(db: Database, case_id: str) -> dict[str, Any]:
    """What the committee determined (see ``workflow``), in words a template can print;
    anything not determined yet reads "not yet determined"."""
    rows = list(db.query("SELECT * FROM case_record WHERE case_id = ?", [case_id]))
    row = rows[0] if rows else {}
    people = cases.people(db, case_id)
    response = row.get("response")
    return {
        "channel": row.get("channel") or UNDETERMINED,
        "what_happened": row.get("what_happened") or UNDETERMINED,
        "violation": _yes_no(row.get("violation")),
        "ongoing": _yes_no(row.get("ongoing")),
        "safety": _yes_no(row.get("safety")),
        "response": consensus.describe(response, row.get("response_detail") or "")
                    if response else UNDETERMINED,
        "originators": [cases.person_text(p) for p in people if p["role"] == "originator"],
        "affected": [cases.person_text(p) for p in people if p["role"] == "affected"],
    }


def standard_context(cfg, case: dict[str, Any], record: dict[str, Any],
                     bans: list[dict[str, Any]], *, role: str, names: list[str],
                     chair: str, reply_to: str, review_to: str) -> dict[str, Any]:
    """The fields every draft template may use (see templates/README.md)."""
    context: dict[str, Any] = {
        "committee": cfg.committee,
        "case": {k: case[k] for k in ("id", "codename", "subject", "status", "kind")}
                | {"opened": case["opened_at"][:10]},
        "tag": cases.case_tag(cfg, case["id"]),
        "today": timestamps.now().date().isoformat(),
        "chair": chair,
        "role": role,
        "greeting": f"Dear {names[0]}," if len(names) == 1 and names[0] else "Hello,",
        "reply_address": reply_to,
        "review_address": review_to,
        "record": record,
        "undetermined": UNDETERMINED,
        "bans": bans,
    }
    if bans:
        # The latest ban of the case; absent otherwise, so that a ban notice without a
        # recorded ban fails naming "ban".
        context["ban"] = bans[-1]
    return context


def case_context(db: Database, svc, case_id: str, role: str,
                 recipients: list[str], names: dict[str, str]) -> dict[str, Any]:
    case = cases.get(db, case_id)
    if case is None:
        raise DraftError(f"no case {case_id}")
    return standard_context(
        svc.cfg, case, case_record(db, case_id), reads.bans(db, case_id), role=role,
        names=[names.get(r, "") for r in recipients],
        chair=cases.acting_chair(db, svc.cfg, case_id) or svc.cfg.committee.chair,
        reply_to=f"conduct+{svc.signer.case_token(case_id)}@{svc.cfg.committee.domain}",
        review_to=review_address(svc, case_id))


# ---------------------------------------------------------------------------------------
# Recipients.

def recipients_for(db: Database, cfg, case_id: str, role: str) -> list[str]:
    """The addresses a role names on this case."""
    if role in PERSON_ROLES:
        addresses = [p["address"] for p in cases.people(db, case_id, role) if p["address"]]
        if not addresses:
            raise DraftError(f"this case has no {role} with an address yet")
        return addresses
    if role in GROUP_ROLES:
        addresses = [a.lower() for a in getattr(cfg.committee, role)]
        if not addresses:
            raise DraftError(f"no {role} are configured (committee.{role} in the config)")
        return addresses
    raise DraftError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")


def names_on_case(db: Database, case_id: str) -> dict[str, str]:
    return {p["address"]: p["name"] for p in cases.people(db, case_id) if p["address"]}


def checked_header(name: str, value: str) -> str:
    """The value, or a refusal naming the header a line break would have reached."""
    try:
        return check_header(name, value)
    except HeaderInjection as e:
        raise DraftError(str(e)) from None


def to_headers(recipients: list[str], names: dict[str, str]) -> list[str]:
    return [checked_header("To", formataddr((names.get(r, ""), r))) for r in recipients]


def _checked_recipients(recipients: list[str]) -> list[str]:
    out = []
    for address in recipients:
        address = checked_header("To", address.strip().lower())
        if not ADDR_SPEC.match(address):
            raise DraftError(f"refused: {address!r} is not a plain email address")
        out.append(address)
    return list(dict.fromkeys(out))


def _outside_committee(cfg, recipients: list[str]) -> bool:
    return any(not cfg.is_member(r) for r in recipients)


# ---------------------------------------------------------------------------------------
# Rendering and checking.

def exists(env: SandboxedEnvironment, name: str) -> bool:
    return f"{name}.txt" in env.list_templates(extensions=["txt"])


def template_fields(env: SandboxedEnvironment, name: str) -> set[str]:
    """Every top-level name the template refers to."""
    import jinja2.meta  # as mail.render does: only when a template is read

    return jinja2.meta.find_undeclared_variables(env.parse(render.source(env, name)[0]))


def render_all_missing(env: SandboxedEnvironment, name: str, context: dict[str, Any]
                       ) -> render.Rendered:
    """Render, or fail naming every missing field at once (not only the first)."""
    missing: list[str] = []
    trial = dict(context)
    while True:
        try:
            rendered = render.render(env, name, **trial)
            break
        except render.TemplateError as e:
            if e.missing is None or e.missing in missing:
                if not missing:
                    raise DraftError(str(e)) from None
                break  # a stand-in for a missing field tripped the template: enough said
            missing.append(e.missing)
            trial[e.missing] = ""
    if missing:
        hint = " (record it with #ban first)" if missing == ["ban"] else (
            "; give them as 'name: text' lines after the command, up to #end")
        raise DraftError(f"template {name}: missing field{'s' * (len(missing) > 1)}: "
                         f"{', '.join(missing)}{hint}")
    return rendered


def check_identities(db: Database, cfg, case_id: str, role: str,
                      recipients: list[str], subject: str, body: str) -> None:
    if not _outside_committee(cfg, recipients):
        return
    identities = redaction.protected(db, case_id, recipients, public=role == "public")
    matches = redaction.find(subject, body, identities)
    if matches:
        raise DraftError(redaction.refusal(matches))


def prepare(db: Database, svc, *, case_id: str, template: str, to_role: str,
            context: dict[str, Any], recipients: list[str] | None = None) -> Prepared:
    """Render and check a mail for the case; raises :class:`DraftError` with the reason."""
    env = svc.templates
    if not exists(env, template):
        raise DraftError(f"no template {template!r}")
    recipients = _checked_recipients(
        recipients_for(db, svc.cfg, case_id, to_role) if recipients is None else recipients)
    if not recipients:
        raise DraftError("a draft needs at least one recipient")
    names = names_on_case(db, case_id)
    to_headers(recipients, names)  # refuse now what composing would refuse at #confirm
    full = case_context(db, svc, case_id, to_role, recipients, names) | context
    rendered = render_all_missing(env, template, full)
    reply_to = checked_header("Reply-To", full["reply_address"])
    check_identities(db, svc.cfg, case_id, to_role, recipients, rendered.subject, rendered.body)
    cc = template in svc.rules.get("sending", {}).get("cc_committee", [])
    return Prepared(case_id, template, to_role, recipients, names, reply_to, rendered.subject,
                    rendered.body, cc, context)


# ---------------------------------------------------------------------------------------
# Filing, confirming, editing, discarding.


def file_draft(db: Database, svc, p: Prepared, author: str,
               replaces: int | None = None) -> int:
    """File a prepared draft on its case and mail it to the chair with the #confirm line."""
    chair = cases.acting_chair(db, svc.cfg, p.case_id)
    if chair is None:
        raise DraftError("every chair of this case is recused: name a substitute with #chair")
    cur = db.execute(
        "INSERT INTO drafts (case_id, template, to_role, recipients, cc_committee, reply_to,"
        " subject, body, fields, author, created_at, replaces)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [p.case_id, p.template, p.to_role, json.dumps(p.recipients), int(p.cc_committee),
         p.reply_to, p.subject, p.body, json.dumps(p.fields, default=str), author.lower(),
         timestamps.stamp(), replaces])
    draft_id = store.inserted(cur)
    fulltext.index_record(db, ref=f"draft:{draft_id}", kind="draft", case_id=p.case_id,
                        author=author, subject=p.subject, body=p.body)
    audit.append(db, author, "draft filed", p.case_id, draft=draft_id, template=p.template,
                 rcpts=len(p.recipients), replaces=replaces)
    # mail_members tags the subject with the case already.
    subject = p.subject.replace(cases.case_tag(svc.cfg, p.case_id), "").strip()
    mail_members(db, svc, p.case_id, [chair],
                       subject=f"Draft {draft_id} to confirm: {subject}",
                       body=_chair_mail(svc, draft_id, p, author, chair), kind="draft",
                       verbatim=True)
    return draft_id


def confirm_code(svc, case_id: str, draft_id: int, chair: str) -> str:
    """The code of a draft's ``#confirm`` line: only the chair it was mailed to has it,
    so a reply address that leaked (which proves a member, nothing more) sends nothing."""
    return svc.signer.code("confirm", case_id, str(draft_id), chair.lower())


def _chair_mail(svc, draft_id: int, p: Prepared, author: str, chair: str) -> str:
    cfg = svc.cfg
    separate = p.to_role not in GROUP_ROLES and len(p.recipients) > 1
    cc = f"Cc:        the committee ({cfg.committee.committee_address})\n" if p.cc_committee else ""
    return (
        f"Draft {draft_id} on case {p.case_id}, by {author}: template {p.template}.\n\n"
        f"To:        the {p.to_role}: {', '.join(to_headers(p.recipients, p.names))}"
        f"{' (one mail each)' if separate else ''}\n{cc}"
        f"Reply-To:  {p.reply_to}\n\n"
        "To send it exactly as below, reply with this line (its code is this draft's\n"
        "and yours: keep it to yourself):\n\n"
        f"#confirm {draft_id} {confirm_code(svc, p.case_id, draft_id, chair)}\n\n"
        f"To drop it, reply with #discard {draft_id}.  To change it, reply with\n"
        f"#edit {draft_id}, then the corrected text (a first line \"Subject: ...\" changes\n"
        "the subject), then #end; the changed draft comes back to you to confirm.\n"
        + "=" * 72 + f"\nSubject: {p.subject}\n\n{p.body}" + "=" * 72 + "\n")


def create_draft(db: Database, svc, *, case_id: str, template: str, to_role: str,
                 context: dict[str, Any], author: str, recipients: list[str] | None = None
                 ) -> int:
    """Render ``template`` for the case, check it, file it and mail it to the chair.

    ``context`` adds to (and may override) the standard context; ``recipients``
    overrides the role's lookup.  Call inside the caller's transaction.  Raises
    :class:`DraftError` (a :class:`CommandError`) with the reason it refused.
    """
    p = prepare(db, svc, case_id=case_id, template=template, to_role=to_role,
                context=context, recipients=recipients)
    return file_draft(db, svc, p, author)


def pending_draft(db: Database, case_id: str, arg: str) -> dict[str, Any]:
    draft = reads.get_draft(db, int(arg)) if arg.strip().isdigit() else None
    if draft is None or draft["case_id"] != case_id:
        raise DraftError(f"no draft {arg.strip()!r} on this case")
    if draft["state"] == "replaced":
        newer = db.execute("SELECT id FROM drafts WHERE replaces = ?", [draft["id"]]).fetchone()
        raise DraftError(f"draft {draft['id']} was replaced by draft {newer[0]} (edited); "
                         f"confirm that one after reading it")
    if draft["state"] != "pending":
        raise DraftError(f"draft {draft['id']} was already {draft['state']}")
    return draft


def decide(db: Database, draft_id: int, state: str, actor: str) -> None:
    db.execute("UPDATE drafts SET state = ?, decided_by = ?, decided_at = ? WHERE id = ?",
               [state, actor, timestamps.stamp(), draft_id])


def _same(msg: Outgoing) -> Callable[[str], Outgoing]:
    return lambda _member: msg


def send(db: Database, svc, draft: dict[str, Any], actor: str) -> list[int]:
    """Queue the mail of a pending draft; returns the outbound ids."""
    cfg = svc.cfg
    check_identities(db, cfg, draft["case_id"], draft["to_role"], draft["recipients"],
                      draft["subject"], draft["body"])
    names = names_on_case(db, draft["case_id"])
    cc = cases.active_members(db, cfg, draft["case_id"]) if draft["cc_committee"] else []
    groups = ([draft["recipients"]] if draft["to_role"] in GROUP_ROLES
              else [[r] for r in draft["recipients"]])
    sent = []
    case = cases.get(db, draft["case_id"]) or {}
    for group in groups:
        msg = compose(
            cfg, from_=(cfg.committee.name, cfg.committee.conduct_address),
            to=to_headers(group, names),
            cc=[cfg.committee.committee_address] if cc else [],
            subject=draft["subject"], body=draft["body"], reply_to=draft["reply_to"],
            headers={"X-Mailflow-Case": draft["case_id"]})
        # A reporter who wrote encrypted is answered encrypted, when there is a key.
        out = (keys.seal_for_reporter(svc, case, group[0], msg, outer_subject(db, cfg, case["id"]))
               if draft["to_role"] == "reporter" else msg)
        sent.append(enqueue(db, out or msg, kind="response", rcpts=group,
                            envelope_from=cfg.committee.conduct_address, case_id=case["id"]))
        # The members' copies go the members' way: encrypted as each one's policy says.
        deliver(db, svc, case["id"], cc, _same(msg), kind="response",
                envelope_from=cfg.committee.conduct_address, searchable=False)
    decide(db, draft["id"], "sent", actor)
    audit.append(db, actor, "draft sent", draft["case_id"], draft=draft["id"],
                 template=draft["template"], rcpts=len(draft["recipients"]), cc=len(cc))
    return sent
