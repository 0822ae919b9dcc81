"""``mailflow check``: every problem with the configuration, rules and templates,
each named as ``file: key: problem``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mailflow import filecache, rules
from mailflow.archive import transparency
from mailflow.case import reads, severe
from mailflow.cli import deployment
from mailflow.clocks.policy import problems as clock_problems
from mailflow.config import Config, ConfigError
from mailflow.intake import imap
from mailflow.mail import render
from mailflow.pipeline.handlers import triage
from mailflow.resources import builtin
from mailflow.responses import drafts
from mailflow.store import private

# Expected type of each rules key a module reads: {file stem: {key: type}}.
RULE_TYPES: dict[str, dict[str, type]] = {
    "autoreply": {
        "per_sender_per_hour": int,
        "never_local_parts": list,
        "never_local_prefixes": list,
        "never_local_suffixes": list,
        "automatic_headers": list,
    },
    "permissions": {"chair": list},
    "retention": {"closed_days": int, "closed_statuses": list},
    "workflow": {"mediation_days": int, "interim_ban": str},
    "sending": {"sendable": list, "cc_committee": list},
    "channels": {"moderators": dict},
    "transparency": {"min_count": int},
}
# rules/spam.toml: the keys of each table ("score" is a number, the rest lists of strings).
SPAM_KEYS = {"spamassassin": ("headers", "score"), "rspamd": ("headers", "score"),
             "authentication": ("dmarc", "spf")}


def spam_problems(spam: dict[str, Any]) -> list[str]:
    problems = []
    for table, keys in SPAM_KEYS.items():
        for key in keys:
            value = spam.get(table, {}).get(key)
            if value is None:
                continue
            if key == "score":
                ok, want = isinstance(value, int | float) and not isinstance(value, bool), \
                    "a number"
            else:
                ok, want = isinstance(value, list) and all(isinstance(v, str) for v in value), \
                    "a list of strings"
            if not ok:
                problems.append(f"rules/spam.toml: {table}.{key}: expected {want}")
    return problems


def check_rules(cfg: Config) -> list[str]:
    try:
        loaded = rules.load(cfg)
    except ConfigError as e:
        return [str(e)]
    problems = []
    for stem, types in RULE_TYPES.items():
        table = loaded.get(stem, {})
        for key, kind in types.items():
            if key in table and not isinstance(table[key], kind):
                problems.append(f"rules/{stem}.toml: {key}: expected {kind.__name__}")
    # Rules with more structure than a type: durations, a time zone, dates, patterns.
    return (problems + spam_problems(loaded.get("spam", {})) + clock_problems(loaded)
            + triage.problems(loaded) + severe.problems(loaded) + transparency.problems(loaded))


def template_dirs(cfg: Config) -> list[Path]:
    dirs = [builtin("templates")]
    if cfg.paths.templates:
        dirs.append(cfg.resolve(cfg.paths.templates))
    return dirs


class Sample(str):
    """Stands in for a field that only a real case or command supplies: it prints as its
    name, has any attribute, and is an empty list to loop over."""

    def __getattr__(self, name: str) -> Sample:
        if name.startswith("_"):
            raise AttributeError(name)
        return Sample(f"{self}.{name}")

    def __iter__(self):
        return iter(())


def sample_context(cfg: Config) -> dict[str, Any]:
    """The standard draft context of a made-up case, as a real one would have it."""
    case = {"id": "2026-0001", "codename": "Amber Fox", "subject": "Insults in #general",
            "status": "open", "kind": "report", "opened_at": "2026-03-02T09:00:00Z"}
    record = {"channel": "#general", "what_happened": "insults towards a newcomer",
              "violation": "yes", "ongoing": "no", "safety": "no",
              "response": "a temporary ban", "originators": ["Sam <sam@example.net>"],
              "affected": ["Ada <ada@example.net>"]}
    ban = reads.describe_ban({
        "id": 1, "case_id": case["id"], "person": "sam@example.net", "scope": "forum,chat",
        "starts_at": "2026-03-09T00:00:00Z", "ends_at": "2026-06-09T00:00:00Z",
        "reason": "insults", "actor": cfg.committee.chair, "created_at": "2026-03-09T00:00:00Z",
        "lifted_at": None, "lifted_by": None, "lift_reason": None})
    return drafts.standard_context(
        cfg, case, record, [ban], role="originator", names=["Sam"], chair=cfg.committee.chair,
        reply_to=f"conduct+2026-0001.sig@{cfg.committee.domain}",
        review_to=f"conduct+2026-0001.review.sig@{cfg.committee.domain}")


def sample_render(env: SandboxedEnvironment, name: str, context: dict[str, Any]) -> str | None:
    """Render with the sample context, standing in for any other field; the problem or None."""
    trial = dict(context)
    while True:
        try:
            render.render(env, name, **trial)
            return None
        except render.TemplateError as e:
            if e.missing is None or e.missing in trial:
                return str(e)
            trial[e.missing] = Sample(e.missing)


def check_templates(cfg: Config) -> list[str]:
    problems = []
    env = render.environment(cfg)
    names: set[str] = set()
    for directory in template_dirs(cfg):
        if not directory.is_dir():
            problems.append(f"{cfg.source}: paths.templates: {directory} is not a directory")
            continue
        for path in sorted(directory.glob("*.txt")):
            try:
                env.parse(path.read_text(encoding="utf-8"))
                names.add(path.stem)
            except jinja2.TemplateSyntaxError as e:
                problems.append(f"{path}: line {e.lineno}: {e.message}")
    # Each template in use (a deployment's own before the shipped one) renders.
    context = sample_context(cfg)
    for name in sorted(names):
        problem = sample_render(env, name, context)
        if problem:
            problems.append(f"{render.source(env, name)[1]}: {problem}")
    try:
        sending = rules.load(cfg).get("sending", {})
    except ConfigError:
        return problems  # reported by check_rules
    for key in ("sendable", "cc_committee"):
        problems += [f"rules/sending.toml: {key}: no template {n!r}"
                     for n in sending.get(key, []) if n not in names]
    return problems


def notes(cfg: Config) -> list[str]:
    """What the configuration or the machine leaves out, that an administrator should
    know."""
    out = []
    if not cfg.security.trusted_authserv_id.strip():
        out.append("security.trusted_authserv_id is not set: mailflow has no spam verdicts "
                   "to use (nothing is held as spam) and no Authentication-Results it can "
                   "trust, so acknowledgements never repeat a sender's name or subject "
                   "(README, \"Spam and bounces\")")
    unusable = filecache.unusable()
    if unusable:
        out.append(f"the cache cannot be written ({unusable}): run as this user, "
                   "`mailflow ingest` reads mailflow.toml for every message, about a third "
                   "slower, and every command parses its TOML files (docs/deploy.md, "
                   "section 5)")
    return out


def run(cfg: Config) -> list[str]:
    return (check_rules(cfg) + check_templates(cfg) + imap.problems(cfg)
            + deployment.problems(cfg) + private.problems(cfg.archive_dir))
