"""The commands of drafts: ``#send`` drafts a templated mail, ``#edit`` replaces a
draft's text, ``#confirm`` (the chair) sends it, ``#discard`` drops it.  See
:mod:`mailflow.responses.drafts` for the path every such mail takes."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from mailflow.case import cases, sanctions, severe
from mailflow.commands.language import COMMAND_LINE
from mailflow.commands.spec import Invocation, command
from mailflow.responses.drafts import (
    ROLES,
    DraftError,
    Prepared,
    case_context,
    check_identities,
    checked_header,
    confirm_code,
    create_draft,
    decide,
    file_draft,
    names_on_case,
    pending_draft,
    recipients_for,
    send,
    template_fields,
)

FIELD_LINE = re.compile(r"^([a-z][a-z0-9_]*):[ \t]*(.*)$")


SIGNATURE = ("--", "-- ")


def parse_fields(text: str, known: Mapping[str, Any]) -> dict[str, str]:
    """The ``name: text`` lines of a #send block; other lines continue the field above."""
    fields: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.rstrip() in SIGNATURE:
            break
        match = FIELD_LINE.match(line)
        if match:
            current = match.group(1)
            fields[current] = match.group(2)
        elif COMMAND_LINE.match(line.strip()) and line.strip()[1:].split()[0].lower() in \
                known:
            raise DraftError(f"{line.strip()!r} is inside the fields of #send: put #end after "
                             "the fields, before other commands")
        elif current is not None:
            fields[current] += "\n" + line
        elif line.strip():
            raise DraftError(f"expected 'name: text' lines after #send, got {line.strip()!r}")
    return {k: v.strip() for k, v in fields.items()}


@command(
    "send", block=True,
    summary="draft a templated mail to the people in a role; the chair gets it to #confirm. "
    "Template fields follow as 'name: text' lines (more lines continue a field), then #end. "
    "The templates it can use are listed in rules/sending.toml (and in its error)",
    usage=f"#send <template> to=<{'|'.join(ROLES)}>\n    field: text ...\n    #end",
    example="#send private-reprimand to=originator\n    behaviour: ...\n    #end")
def _send(inv: Invocation) -> str:
    words = inv.cmd.args.split()
    options = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    if not words or list(options) != ["to"] or len(words) != 2:
        raise DraftError("use #send <template> to=<role>, with the fields on the lines after it")
    template, role = words[0].lower(), options["to"].lower()
    sendable = inv.svc.rules.get("sending", {}).get("sendable", [])
    if template not in sendable:
        raise DraftError(f"#send cannot use template {template!r}; it can use: "
                         f"{', '.join(sendable)}")
    if template in sanctions.SANCTION_TEMPLATES and role == "reporter":
        sanctions.reporter_may_face(inv.db, inv.case_id, None)
    fields = parse_fields(inv.cmd.text, inv.svc.parts.commands)
    # Standard fields (recipients' greeting, reply addresses, the record) are not the
    # author's to change.
    recipients = recipients_for(inv.db, inv.cfg, inv.case_id, role)
    standard = case_context(inv.db, inv.svc, inv.case_id, role, recipients,
                            names_on_case(inv.db, inv.case_id))
    unknown = sorted(set(fields) - (template_fields(inv.svc.templates, template) - set(standard)))
    if unknown:
        raise DraftError(f"template {template} has no field {', '.join(unknown)} "
                         "that a #send may set")
    draft_id = create_draft(inv.db, inv.svc, case_id=inv.case_id, template=template,
                            to_role=role, context=fields, author=inv.actor)
    return f"draft {draft_id} ({template} to the {role}) went to the chair to confirm"


@command("confirm", summary="send a draft exactly as it was mailed to you: copy the "
         "#confirm line of the draft's mail, with its code",
         usage="#confirm <draft-id> <code>", example="#confirm 7 k3j5h2m8q4zt")
def _confirm(inv: Invocation) -> str:
    words = inv.cmd.args.split()
    draft = pending_draft(inv.db, inv.case_id, words[0] if words else "")
    # The code proves this chair received this draft's mail; a reply address alone
    # proves only a member, and one may have leaked.
    code = confirm_code(inv.svc, inv.case_id, draft["id"], inv.actor)
    if len(words) != 2 or not hmac.compare_digest(words[1].lower(), code):
        raise DraftError(f"#confirm {draft['id']} needs the code from the mail of draft "
                         f"{draft['id']} to you: reply with its line '#confirm {draft['id']} "
                         "<code>' (the code was wrong or missing)")
    severe.hold_notice(inv.db, draft)
    sent = send(inv.db, inv.svc, draft, inv.actor)
    cc = " cc the committee" if draft["cc_committee"] else ""
    return (f"draft {draft['id']} sent to the {draft['to_role']} "
            f"({', '.join(draft['recipients'])}){cc}, {len(sent)} mail(s)")


@command("discard", summary="drop a draft (the chair or its author)",
                  usage="#discard <draft-id>", example="#discard 7")
def _discard(inv: Invocation) -> str:
    draft = pending_draft(inv.db, inv.case_id, inv.cmd.args)
    if not inv.is_chair and inv.actor != draft["author"] and \
            cases.acting_chair(inv.db, inv.cfg, inv.case_id) != inv.actor:
        raise DraftError(f"only the chair or {draft['author']} may discard draft {draft['id']}")
    decide(inv.db, draft["id"], "discarded", inv.actor)
    return f"draft {draft['id']} discarded"


@command(
    "edit", block=True,
    summary="replace a draft's text: the lines after it, up to #end (a first line "
    "'Subject: ...' replaces the subject); the new draft goes to the chair",
    usage="#edit <draft-id>\n    corrected text ...\n    #end",
    example="#edit 7\n    Dear ...\n    #end")
def _edit(inv: Invocation) -> str:
    old = pending_draft(inv.db, inv.case_id, inv.cmd.args)
    text = inv.cmd.text.strip()
    subject = old["subject"]
    first, _, rest = text.partition("\n")
    if first.startswith("Subject:"):
        subject, text = checked_header("Subject", first[len("Subject:"):].strip()), rest.strip()
    if not text:
        raise DraftError(f"#edit {old['id']} needs the corrected text on the lines after it")
    check_identities(inv.db, inv.cfg, inv.case_id, old["to_role"], old["recipients"],
                      subject, text)
    names = names_on_case(inv.db, inv.case_id)
    p = Prepared(inv.case_id, old["template"], old["to_role"], old["recipients"], names,
                 old["reply_to"], subject, text.rstrip() + "\n", bool(old["cc_committee"]),
                 json.loads(old["fields"]))
    decide(inv.db, old["id"], "replaced", inv.actor)
    new_id = file_draft(inv.db, inv.svc, p, inv.actor, replaces=old["id"])
    return f"draft {old['id']} replaced by draft {new_id}, which went to the chair to confirm"
