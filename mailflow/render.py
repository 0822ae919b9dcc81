"""Mail text from ``templates/``: sandboxed Jinja2, strict about missing fields.

A template file starts with a ``Subject:`` line, then a blank line, then the body.
Headers other than the subject never come from templates: recipients come from case
roles, and a subject containing a line break is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .config import Config
from .resources import builtin


class TemplateError(Exception):
    pass


@dataclass
class Rendered:
    subject: str
    body: str


def environment(cfg: Config) -> SandboxedEnvironment:
    paths = [str(builtin("templates"))]
    if cfg.paths.templates:
        paths.insert(0, str(cfg.resolve(cfg.paths.templates)))
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(paths),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(env: SandboxedEnvironment, name: str, **context: Any) -> Rendered:
    try:
        text = env.get_template(f"{name}.txt").render(**context)
    except jinja2.UndefinedError as e:
        raise TemplateError(f"template {name}: missing field: {e.message}") from None
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name}: not found") from None
    except jinja2.TemplateError as e:
        raise TemplateError(f"template {name}: {e}") from None
    head, sep, body = text.partition("\n\n")
    if not sep or not head.startswith("Subject:") or "\n" in head:
        raise TemplateError(
            f"template {name}: must start with one 'Subject:' line and a blank line")
    subject = head[len("Subject:"):].strip()
    return Rendered(subject=subject, body=body.rstrip() + "\n")
