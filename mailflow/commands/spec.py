"""What a ``#command`` is: its :class:`Spec` (word, help, where it may be used), the
:func:`command` marker that gives a function one, and the :class:`Invocation` it runs
with.  Who may use which command is policy (``rules/permissions.toml``,
:func:`permission`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mailflow.commands.language import Command
from mailflow.config import Config
from mailflow.store import audit
from mailflow.store.sqlite import Database

if TYPE_CHECKING:  # annotations: the read commands list held mail without the pipeline
    from mailflow.pipeline.context import Context, Services


class CommandError(Exception):
    """A command that cannot be applied; the message is shown in the transcript."""


@dataclass
class Spec:
    word: str
    run: Callable[[Invocation], str]
    summary: str
    usage: str
    example: str
    block: bool = False          # takes the following lines up to #end
    needs_case: bool = True
    # Case statuses the command is allowed in (None: any).
    states: tuple[str, ...] | None = None


CommandFunction = Callable[["Invocation"], str]


def command(word: str, *, summary: str, usage: str, example: str, block: bool = False,
            needs_case: bool = True, states: tuple[str, ...] | None = None
            ) -> Callable[[CommandFunction], CommandFunction]:
    """Mark a function as ``#word``: it gets an :class:`Invocation` and returns what it
    did.  Marking registers nothing: :func:`collect` finds the marked functions of the
    modules :mod:`mailflow.app` lists."""
    def mark(func: CommandFunction) -> CommandFunction:
        func.spec = Spec(word, func, summary, usage, example, block,  # type: ignore[attr-defined]
                         needs_case, states)
        return func
    return mark


def collect(modules: Iterable[ModuleType]) -> dict[str, Spec]:
    """The commands the modules define, by word, in the order of the modules and, within
    each, of the source; a word defined twice is an error."""
    found: dict[str, Spec] = {}
    for module in modules:
        for value in vars(module).values():
            spec = getattr(value, "spec", None)
            if isinstance(spec, Spec) and spec.run is value:
                if spec.word in found:
                    raise ValueError(f"#{spec.word} is defined twice "
                                     f"({found[spec.word].run.__module__}, {module.__name__})")
                found[spec.word] = spec
    return found


@dataclass
class Invocation:
    """One command being applied, with everything a handler needs."""

    ctx: Context
    cmd: Command
    actor: str

    @property
    def db(self) -> Database:
        return self.ctx.db

    @property
    def cfg(self) -> Config:
        return self.ctx.cfg

    @property
    def svc(self) -> Services:
        return self.ctx.svc

    @property
    def case_id(self) -> str:
        if not self.ctx.case_id:
            raise CommandError("this command needs a case: reply to a case's mail")
        return self.ctx.case_id

    @property
    def is_chair(self) -> bool:
        return self.cfg.is_chair(self.actor)

    def block_text(self, what: str) -> str:
        """A block command's text: the words after it on its line, then its block."""
        text = "\n".join(filter(None, [self.cmd.args, self.cmd.text]))
        if not text:
            raise CommandError(f"the {what} is empty: write it on the lines after "
                               f"#{self.cmd.word}, then #end")
        return text

    def log(self, action: str, **detail: Any) -> None:
        audit.append(self.db, self.actor, action, self.ctx.case_id,
                     proof=self.ctx.proof or "", **detail)


def permission(rules: dict[str, Any], word: str) -> str:
    """Who may use ``#word``: "chair" or "member" (the default for a word listed nowhere)."""
    return "chair" if word in rules.get("permissions", {}).get("chair", []) else "member"


