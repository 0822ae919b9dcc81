"""``mailflow check``: every problem with the configuration, rules and templates,
each named as ``file: key: problem``."""

from __future__ import annotations

from pathlib import Path

import jinja2

from . import render, rules
from .config import Config, ConfigError
from .resources import builtin

# Expected type of each rules key a module reads: {file stem: {key: type}}.
RULE_TYPES: dict[str, dict[str, type]] = {
    "autoreply": {
        "per_sender_per_hour": int,
        "never_local_parts": list,
        "never_local_prefixes": list,
        "never_local_suffixes": list,
        "automatic_headers": list,
    },
}


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
    return problems


def template_dirs(cfg: Config) -> list[Path]:
    dirs = [builtin("templates")]
    if cfg.paths.templates:
        dirs.append(cfg.resolve(cfg.paths.templates))
    return dirs


def check_templates(cfg: Config) -> list[str]:
    problems = []
    env = render.environment(cfg)
    for directory in template_dirs(cfg):
        if not directory.is_dir():
            problems.append(f"{cfg.source}: paths.templates: {directory} is not a directory")
            continue
        for path in sorted(directory.glob("*.txt")):
            source = path.read_text(encoding="utf-8")
            if not source.startswith("Subject:"):
                problems.append(f"{path}: line 1: must start with a 'Subject:' line")
            try:
                env.parse(source)
            except jinja2.TemplateSyntaxError as e:
                problems.append(f"{path}: line {e.lineno}: {e.message}")
    return problems


def run(cfg: Config) -> list[str]:
    return check_rules(cfg) + check_templates(cfg)
