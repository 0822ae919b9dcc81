"""Keeping reporters' and witnesses' identities inside the committee.

Before mail leaves for anyone outside the committee, its text is searched for the
names, addresses and handles of the case's reporters and witnesses (and, for a
public statement, of the affected parties too, as the guidelines promise them the
same confidentiality).  Nobody is protected from themselves: a mail to one person
may name that person.  A recorded ``#consent`` lifts the protection for that person.

What is looked for, per person:
- the address, and its local part when it is distinctive (4+ characters);
- the full name, case-insensitively, and each capitalised part of a name of several
  words (3+ letters) as a whole word with its capital, so "Dawn" matches the name
  but "dawn" in prose does not;
- handles: an ``@handle`` in the name matches with or without the ``@``.

Everything is matched on folded text (:mod:`mailflow.mail.normalise`): encoded words
decoded, NFKC, look-alike letters, accents and (but for name parts) case folded,
invisible characters dropped, line breaks read as spaces.  So ``=?utf-8?q?Zo=C3=AB?=``,
``Zoe\u0308``, ``Zo\u200bë``, ``ZOË`` and a name wrapped over two lines are all
``Zoë``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailflow import timestamps
from mailflow.case import cases
from mailflow.commands.spec import CommandError, Invocation, command
from mailflow.mail import normalise
from mailflow.store.sqlite import Database

PROTECTED_ROLES = ("reporter", "witness")
PUBLIC_PROTECTED_ROLES = ("reporter", "witness", "affected")
LABELS = {"reporter": "the reporter", "witness": "a witness", "affected": "an affected party"}
HANDLE = re.compile(r"@([\w][\w.\-]*\w)")


@dataclass(frozen=True)
class Identity:
    role: str
    kind: str            # address, name, handle
    value: str
    keep_case: bool = False  # a name part must keep its capital

    @property
    def pattern(self) -> re.Pattern[str]:
        """Where it stands in text folded with :func:`normalise.fold` (same case rule)."""
        return normalise.whole(self.value, self.keep_case)

    @property
    def label(self) -> str:
        return f"[{LABELS.get(self.role, self.role)}]"


@dataclass(frozen=True)
class Match:
    identity: Identity
    where: str           # "subject" or "line N"

    def describe(self) -> str:
        i = self.identity
        return f"{LABELS.get(i.role, i.role)}'s {i.kind} {i.value!r} ({self.where})"


def person_key(person: dict) -> str:
    """How a people row is named in consents: its address, else its name."""
    return (person.get("address") or person.get("name") or "").lower()


def identities_of(person: dict) -> list[Identity]:
    role = person["role"]
    found: list[Identity] = []
    address = (person.get("address") or "").lower()
    if address:
        found.append(Identity(role, "address", address))
        local = address.split("@", 1)[0]
        if len(local) >= 4:
            found.append(Identity(role, "address", local))
    name = (person.get("name") or "").strip()
    if name:
        found.append(Identity(role, "name", name))
    for handle in HANDLE.findall(name):
        found.append(Identity(role, "handle", "@" + handle))
        if len(handle) >= 3:
            found.append(Identity(role, "handle", handle))
    words = [w for w in re.split(r"[\s,]+", name) if w and not w.startswith("@")]
    if len(words) > 1:
        found += [Identity(role, "name", w, keep_case=True) for w in words
                  if len(w) >= 3 and w.isalpha() and w[0].isupper()]
    return found


def consented(db: Database, case_id: str) -> set[str]:
    rows = db.execute("SELECT person FROM identity_consents WHERE case_id = ? "
                      "AND withdrawn_at IS NULL", [case_id]).fetchall()
    return {r[0] for r in rows}


def protected_people(db: Database, case_id: str, recipients: list[str],
                     public: bool = False) -> list[dict]:
    """The people whose identity a mail to ``recipients`` must not reveal."""
    roles = PUBLIC_PROTECTED_ROLES if public else PROTECTED_ROLES
    agreed = consented(db, case_id)
    # The same text goes to every recipient, so only a sole recipient may see their own name.
    self_only = {recipients[0].lower()} if len(recipients) == 1 else set()
    return [p for p in cases.people(db, case_id) if p["role"] in roles
            and person_key(p) not in agreed and p["address"].lower() not in self_only]


def protected(db: Database, case_id: str, recipients: list[str],
              public: bool = False) -> list[Identity]:
    """The identities a mail to ``recipients`` must not contain."""
    return [i for p in protected_people(db, case_id, recipients, public)
            for i in identities_of(p)]


def find(subject: str, body: str, identities: list[Identity]) -> list[Match]:
    """Every protected identity in the text, each reported once, where it first occurs."""
    body = normalise.decode_words(body)
    folded = {keep: (normalise.fold(subject, keep), normalise.fold_mapped(body, keep))
              for keep in (False, True)}
    matches: list[Match] = []
    seen: set[tuple[str, str]] = set()
    for identity in identities:
        key = (identity.kind, normalise.fold(identity.value))
        if key in seen:
            continue
        in_subject, (text, where) = folded[identity.keep_case]
        hit = identity.pattern.search(in_subject)
        if hit is not None:
            place = "subject"
        elif (hit := identity.pattern.search(text)) is not None:
            place = f"line {body.count(chr(10), 0, where[hit.start()]) + 1}"
        else:
            continue
        matches.append(Match(identity, place))
        seen.add(key)
    return matches


def redact(text: str, identities: list[Identity]) -> str:
    """The text with every protected identity replaced by a label (longest first)."""
    text = normalise.decode_words(text)
    for identity in sorted(identities, key=lambda i: -len(i.value)):
        folded, where = normalise.fold_mapped(text, identity.keep_case)
        for hit in reversed(list(identity.pattern.finditer(folded))):
            start, end = where[hit.start()], where[hit.end() - 1] + 1
            while end < len(text) and not normalise.fold_char(text[end]):
                end += 1  # the accents and invisible characters of its last letter
            text = text[:start] + identity.label + text[end:]
    return text


def refusal(matches: list[Match]) -> str:
    listed = "; ".join(m.describe() for m in matches)
    return (f"refused: the text names people whose identity is protected: {listed}. "
            "Take them out (#edit), or record their consent first (#consent)")


@command(
    "consent", summary="record that a reporter or witness agreed to be named in mail that "
    "leaves the committee (add 'withdraw' to take it back)",
    usage="#consent <address|name|role> [withdraw]", example="#consent reporter")
def _consent(inv: Invocation) -> str:
    words = inv.cmd.args.split()
    withdraw = len(words) > 1 and words[-1].lower() == "withdraw"
    who = " ".join(words[:-1] if withdraw else words).strip().lower()
    if not who:
        raise CommandError("say whose consent: #consent reporter, or an address or name")
    people = [p for p in cases.people(inv.db, inv.case_id) if p["role"] in PUBLIC_PROTECTED_ROLES
              and who in (p["role"], p["address"].lower(), p["name"].lower())]
    if not people:
        raise CommandError(f"no reporter, witness or affected party {who!r} on this case")
    keys = sorted({person_key(p) for p in people})
    now = timestamps.stamp()
    for key in keys:
        if withdraw:
            inv.db.execute("UPDATE identity_consents SET withdrawn_at = ? WHERE case_id = ? "
                           "AND person = ? AND withdrawn_at IS NULL", [now, inv.case_id, key])
        elif key not in consented(inv.db, inv.case_id):
            inv.db.execute("INSERT INTO identity_consents (case_id, person, given_at, given_by) "
                           "VALUES (?, ?, ?, ?)", [inv.case_id, key, now, inv.actor])
    if withdraw:
        return f"consent withdrawn for {', '.join(keys)}: they are protected again"
    return f"consent recorded for {', '.join(keys)}: mail that leaves may name them"
