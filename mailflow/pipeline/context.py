"""What every part of the pipeline receives: the services of the process, and the
context of one message on its way through the chain.

The built-in parts (handlers, commands, close checks) are listed once, in
:mod:`mailflow.app`, and reach the code that uses them through :class:`Parts`: a part
never finds another by importing it.  Each kind of part has a small protocol here
saying what it receives and what it may do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from mailflow import timestamps
from mailflow.config import Config
from mailflow.mail.tokens import Signer
from mailflow.store.sqlite import Database

if TYPE_CHECKING:  # for annotations only: jinja2 and the parser are slow to import
    from jinja2.sandbox import SandboxedEnvironment

    from mailflow.mail.domainauth import TxtLookup
    from mailflow.mail.openpgp import Keyrings
    from mailflow.mail.parse import Parsed
    from mailflow.mail.pgpmime import Unwrapped
    from mailflow.mail.verdicts import Verdict

HISTORY_STATUS = "closed"


class Handler(Protocol):
    """One step of the pipeline (:data:`mailflow.app.HANDLERS`).  It reads what the
    steps before it decided from the :class:`Context`, may change the context and
    write to the database (all in the message's transaction), and returns nothing.
    Its docstring says what it does; its ``__name__`` names it in the logs."""

    __name__: str

    def __call__(self, ctx: Context, /) -> None: ...


class CommandSpec(Protocol):
    """A ``#command`` (:data:`mailflow.app.COMMAND_MODULES`): its word, its help, and
    ``run``, which receives a :class:`mailflow.commands.spec.Invocation` and returns
    what it did, or raises ``CommandError`` with why it could not."""

    @property
    def word(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def usage(self) -> str: ...
    @property
    def example(self) -> str: ...
    @property
    def block(self) -> bool: ...
    @property
    def needs_case(self) -> bool: ...
    @property
    def states(self) -> tuple[str, ...] | None: ...
    @property
    def run(self) -> Callable[[Any], str]: ...


@dataclass(frozen=True)
class Parts:
    """The built-in parts, as :mod:`mailflow.app` lists them."""

    handlers: tuple[Handler, ...] = ()
    history_handlers: tuple[Handler, ...] = ()
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)


@dataclass
class Services:
    """What every part may use; built once per process by :func:`mailflow.app.services`."""

    cfg: Config
    rules: dict[str, Any]
    signer: Signer
    templates: SandboxedEnvironment
    parts: Parts = field(default_factory=Parts)
    # The OpenPGP keyrings (archive/keyring), opened when first needed.
    keyrings: Keyrings | None = None
    # While the pipeline seals a batch at once: the members' copies waiting for their
    # ciphertext (case.notices.sealed_in_batches).
    sealing: list[Any] | None = None
    # DNS TXT lookups for DKIM keys (None: the system's resolver, built when needed).
    dns: TxtLookup | None = None

    def pgp(self) -> Keyrings:
        if self.keyrings is None:
            from mailflow.mail.openpgp import Keyrings  # GnuPG's binding: only when used

            self.keyrings = Keyrings.open(self.cfg.keyring_dir)
        return self.keyrings

    def pgp_in_use(self) -> Keyrings | None:
        """The keyrings, once a key was ever made or imported; else None, and a
        deployment that uses no OpenPGP never runs GnuPG (nor needs it installed).
        Asked for every mail to a member: until a key exists, one stat of a path."""
        if self.keyrings is None and not os.path.exists(self._pubring):
            return None
        return self.pgp()

    @cached_property
    def _pubring(self) -> str:
        from mailflow.mail.openpgp import COMMITTEE

        return str(self.cfg.keyring_dir / COMMITTEE / "pubring.kbx")

    def txt_lookup(self) -> TxtLookup:
        if self.dns is None:
            from mailflow.mail.domainauth import resolver  # dnspython: only when needed
            self.dns = resolver(self.cfg.security.dns_server, self.cfg.security.dns_timeout)
        return self.dns


@dataclass
class Context:
    """One message on its way through the chain."""

    db: Database
    svc: Services
    spool_id: int
    envelope_from: str | None
    rcpts: list[str]
    raw: bytes
    parsed: Parsed
    side: str = "conduct"            # conduct or committee
    token: str | None = None         # the plus-address token it was sent to
    kind: str = ""                   # report, reply, forward, member, held, bounce, note
    case_id: str | None = None
    new_case: bool = False
    flags: list[str] = field(default_factory=list)
    # Set by authentication: the roster member proven to have sent this, and how.
    actor: str | None = None
    proof: str | None = None
    auth_failure: str | None = None
    # Set when the mail arrived encrypted or signed (handlers.decrypt): the clear
    # message, and the verdict on its signature.  ``raw`` stays as received.
    opened: Unwrapped | None = None
    # Member mail naming a case its sender may not write to (recused) or that does not
    # exist: filed as a note, answered neutrally, never relayed (see handlers.route).
    withheld: bool = False
    # Cases whose records a command's answer quotes (#search results): see commands.
    quoted_cases: set[str] = field(default_factory=set)
    # Imported history (spool source "import"): filed and indexed, nothing else.
    quiet: bool = False
    # Set by screening: what the trusted MTA said of it, and whether the chair released
    # it from held (then it is not screened again).
    verdict: Verdict | None = None
    released: bool = False

    @property
    def cfg(self) -> Config:
        return self.svc.cfg

    @property
    def when(self) -> datetime | None:
        """When imported history happened (its Date, unless in the future); None: now."""
        if not self.quiet or not self.parsed.date:
            return None
        date = timestamps.parse(self.parsed.date)
        return date if date <= timestamps.now() else None

    @property
    def status_opened(self) -> str:
        """Imported history is mostly settled: its cases open closed (``mailflow import
        --status`` changes that afterwards; ``#reopen`` brings one back)."""
        return HISTORY_STATUS if self.quiet else "open"

    @property
    def readable(self) -> bytes:
        """The message as the committee may read it: decrypted, if it could be."""
        return self.opened.raw if self.opened else self.raw

    @property
    def sender(self) -> str | None:
        return self.parsed.from_addr

    @property
    def audit_actor(self) -> str:
        """The sender as the audit log names them: a member by address, anyone else by
        the word "sender" (the log names no one outside the committee)."""
        sender = (self.sender or "").lower()
        return sender if sender and self.cfg.is_member(sender) else "sender"
