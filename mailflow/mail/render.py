"""Mail text from ``templates/``: sandboxed Jinja2, strict about missing fields.

A template file starts with a ``Subject:`` line, then a blank line, then the body
(a Jinja comment documenting the fields may come first).  Headers other than the
subject never come from templates: recipients come from case roles, and a subject
into which a value brings a line break, literal or encoded, is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailflow.config import Config
from mailflow.mail.compose import HeaderInjection, check_header
from mailflow.resources import builtin

if TYPE_CHECKING:  # jinja2 is imported when a template is first needed: a command that
    # only reads the archive never loads it (25 ms of its start)
    from jinja2.sandbox import SandboxedEnvironment

UNDEFINED_NAME = re.compile(r"^'(\w+)' is undefined$")


class TemplateError(Exception):
    def __init__(self, message: str, missing: str | None = None):
        super().__init__(message)
        self.missing = missing  # the top-level field that was not given, if that was it


@dataclass
class Rendered:
    subject: str
    body: str


def environment(cfg: Config) -> SandboxedEnvironment:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

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


def source(env: SandboxedEnvironment, name: str) -> tuple[str, str]:
    """A template's text and the file it comes from (a deployment's own, else ours)."""
    if env.loader is None:
        raise TemplateError("no template directory is configured")
    text, filename, _ = env.loader.get_source(env, f"{name}.txt")
    return text, filename or f"{name}.txt"


def render(env: SandboxedEnvironment, name: str, **context: Any) -> Rendered:
    import jinja2  # loaded with the environment

    try:
        text = env.get_template(f"{name}.txt").render(**context)
    except jinja2.UndefinedError as e:
        match = UNDEFINED_NAME.match(e.message or "")
        missing = match.group(1) if match else None
        raise TemplateError(f"template {name}: missing field: {missing or e.message}",
                            missing) from None
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name}: not found") from None
    except jinja2.TemplateError as e:
        raise TemplateError(f"template {name}: {e}") from None
    head, sep, body = text.partition("\n\n")
    if not sep or not head.startswith("Subject:"):
        raise TemplateError(
            f"template {name}: must start with one 'Subject:' line and a blank line")
    subject = head[len("Subject:"):].strip()
    try:
        check_header("Subject", subject)
    except HeaderInjection as e:
        raise TemplateError(f"template {name}: {e}") from None
    return Rendered(subject=subject, body=body.rstrip() + "\n")
