"""Configuration: a TOML file, or the embedded defaults.

Lookup order: ``--config FILE``, then ``$MAILFLOW_CONFIG``, then ``./mailflow.toml``,
else the defaults below.  Every problem is reported as ``file: key: problem`` so a
mail administrator can fix it without reading code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mailflow import configfile, tomlfile
from mailflow.imapsettings import Imap, validate_imap
from mailflow.sections import Section, field

ADDRESS_RE = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")


class ConfigError(Exception):
    """A configuration problem, already phrased for the administrator."""


class Committee(Section):
    name: str = "Example Code of Conduct Committee"
    domain: str = "example.org"
    chair: str = "chair@example.org"
    members: list[str] = field(
        default_factory=lambda: ["chair@example.org", "m1@example.org", "m2@example.org"]
    )
    officers: list[str] = field(default_factory=lambda: ["officers@example.org"])
    board: list[str] = field(default_factory=lambda: ["board@example.org"])
    maintainers: list[str] = field(default_factory=list)
    moderators: list[str] = field(default_factory=list)
    delegates: list[str] = field(default_factory=list)
    # Where public statements (reminders, public reprimands) are posted: a forum's or
    # mailing list's address.
    public: list[str] = field(default_factory=list)
    # Other names a member goes by (handles, nicknames) so that a report naming
    # them recuses them automatically.
    aliases: dict[str, list[str]] = field(default_factory=dict)
    tag: str = "coc"
    # "codename": committee subjects name nobody; "original": keep the reporter's subject.
    subject: str = "codename"
    emergency_contact: str = "your local emergency number"
    # [committee.encryption]: each member's ENCRYPTION_POLICIES, by address; "default".
    encryption: dict[str, str] = field(default_factory=dict)

    def encryption_policy(self, member: str) -> str:
        """How mail to ``member`` is protected (OpenPGP): if-key, required or never."""
        by_address = {k.lower(): v for k, v in self.encryption.items()}
        return by_address.get(member.lower(), by_address.get("default", "if-key"))

    @property
    def conduct_address(self) -> str:
        return f"conduct@{self.domain}"

    @property
    def committee_address(self) -> str:
        return f"committee@{self.domain}"


ENCRYPTION_POLICIES = ("if-key", "required", "never")


class Intake(Section):
    listen: str = "127.0.0.1:8025"
    protocol: str = "smtp"
    hostname: str = "mailflow.localhost"
    max_size: int = 25 * 1024 * 1024
    # Give up on a busy database after this long and answer 451, so the MTA retries.
    commit_timeout: float = 10.0
    max_attempts: int = 5
    # Flow control, as Postfix's in_flow_delay: while more than flow_backlog accepted
    # messages wait for the pipeline, a new message waits up to flow_delay seconds
    # before its MAIL FROM is answered, so a flood cannot push reporters'
    # acknowledgements minutes back.  flow_delay = 0 switches it off.
    flow_backlog: int = 8
    flow_delay: float = 1.0
    # How the stages behind the listener (pipeline, delivery, clocks, IMAP) yield the
    # CPU to it: "idle" (Linux SCHED_IDLE: they run on what the listener leaves),
    # "low" (nice 10) or "normal".  "low" suits a host shared with busy programs.
    stage_priority: str = "idle"
    # How the MTA in front hands mail to mailflow: "domain" (everything for
    # committee.domain, so that a member's address there never reaches the member) or
    # "addresses" (conduct@, committee@ and their +token forms only, as docs/deploy.md
    # sets it up).  `mailflow check` holds members' addresses to it.
    mta_routes: str = "domain"
    imap: Imap | None = None

    @property
    def host(self) -> str:
        return split_hostport(self.listen)[0]

    @property
    def port(self) -> int:
        return split_hostport(self.listen)[1]


STAGE_PRIORITIES = ("idle", "low", "normal")
ACK_SENDERS = ("null", "return-path")


class Outbound(Section):
    relay: str | None = None
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    # A private CA for the relay's certificate (STARTTLS); the system's CAs otherwise.
    ca_file: str | None = None
    # Parallel sessions to the relay.
    connections: int = 4
    retry_initial: float = 60.0
    retry_max: float = 3600.0
    # After this long a message is marked failed (kept, listed by `mailflow queue`).
    give_up_after: float = 5 * 86400.0
    # The acknowledgement's envelope sender: "null" (RFC 3834's advice: nothing can
    # bounce back) or "return-path" (a signed address of the case that takes bounces
    # and answers nothing, so the committee hears when a reporter was not reached).
    acknowledgement_sender: str = "null"
    timeout: float = 30.0


class Storage(Section):
    path: str = "archive"


class Security(Section):
    # HMAC key for case and member tokens; created on first use, mode 0600.
    secret_file: str = ""
    # authserv-id of the MTA whose Authentication-Results we trust (empty: trust none).
    # Only once that MTA removes incoming headers claiming it (docs/mta-authentication.md).
    trusted_authserv_id: str = ""
    # Per-member command tokens expire (days).
    member_token_days: int = 90
    # Check members' DKIM signatures ourselves (dkimpy), looking keys up in DNS through
    # dns_server ("host:port"; empty: the system's resolver), each lookup at most
    # dns_timeout seconds.
    verify_dkim: bool = True
    dns_server: str = ""
    dns_timeout: float = 5.0


class Paths(Section):
    templates: str | None = None
    rules: str | None = None


class Config(Section):
    committee: Committee = field(default_factory=Committee)
    intake: Intake = field(default_factory=Intake)
    outbound: Outbound = field(default_factory=Outbound)
    storage: Storage = field(default_factory=Storage)
    security: Security = field(default_factory=Security)
    paths: Paths = field(default_factory=Paths)
    source: str = "<embedded defaults>"
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def archive_dir(self) -> Path:
        return self.resolve(self.storage.path)

    @property
    def db_path(self) -> Path:
        return self.archive_dir / "mailflow.db"

    @property
    def outbox_dir(self) -> Path:
        return self.archive_dir / "outbox"

    @property
    def keyring_dir(self) -> Path:
        """The GnuPG homes (mode 0700): the committee's and the correspondents'."""
        return self.archive_dir / "keyring"

    @property
    def secret_path(self) -> Path:
        return self.resolve(self.security.secret_file or str(self.archive_dir / "secret.key"))

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def is_member(self, address: str) -> bool:
        return address.lower() in {m.lower() for m in self.committee.members}

    def is_chair(self, address: str) -> bool:
        return address.lower() == self.committee.chair.lower()

    def is_board(self, address: str) -> bool:
        return address.lower() in {b.lower() for b in self.committee.board}


SECTIONS = {
    "committee": Committee,
    "intake": Intake,
    "outbound": Outbound,
    "storage": Storage,
    "security": Security,
    "paths": Paths,
}
# Tables inside sections, e.g. [intake.imap].
NESTED: dict[str, type] = {"intake.imap": Imap}


def split_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def load(explicit: str | None = None) -> Config:
    found = configfile.find(explicit)
    if found is None:
        return Config()
    path = Path(found)
    try:
        data = tomlfile.read(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read it: {why}") from None
    except tomlfile.TOMLError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return from_dict(data, source=str(path), base_dir=path.resolve().parent)


def from_dict(data: dict[str, Any], source: str = "<dict>", base_dir: Path | None = None) -> Config:
    cfg = Config(source=source, base_dir=base_dir or Path.cwd())
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: [{section}]: unknown section")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: {section}: must be a table")
        _fill(getattr(cfg, section), values, section, source)
    problems = validate(cfg)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return cfg


def _fill(target: Any, values: dict[str, Any], prefix: str, source: str) -> Any:
    known = type(target).keys()
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if key not in known:
            raise ConfigError(f"{source}: {name}: unknown key")
        if name in NESTED:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {name}: must be a table")
            value = _fill(NESTED[name](), value, name, source)
        else:
            default = getattr(target, key)
            if default is not None and not _same_kind(default, value):
                raise ConfigError(
                    f"{source}: {name}: expected {type(default).__name__}, "
                    f"got {type(value).__name__}"
                )
        setattr(target, key, value)
    return target


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, type(default))


def validate(cfg: Config) -> list[str]:
    """Every problem with the values, as ``key: problem``."""
    problems: list[str] = []
    c = cfg.committee
    if not re.fullmatch(r"[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+", c.domain):
        problems.append(f"committee.domain: {c.domain!r} is not a domain name")
    for key in ("members", "officers", "board", "maintainers", "moderators", "delegates",
                "public"):
        for addr in getattr(c, key):
            if not ADDRESS_RE.match(addr):
                problems.append(f"committee.{key}: {addr!r} is not an email address")
    if not ADDRESS_RE.match(c.chair):
        problems.append(f"committee.chair: {c.chair!r} is not an email address")
    elif not cfg.is_member(c.chair):
        problems.append(f"committee.chair: {c.chair} must also be in committee.members")
    if not c.members:
        problems.append("committee.members: the committee needs at least one member")
    for member in c.aliases:
        if not cfg.is_member(member):
            problems.append(f"committee.aliases: {member} is not a member")
    problems += validate_encryption(cfg)
    if not re.fullmatch(r"[A-Za-z0-9\-]{1,20}", c.tag):
        problems.append("committee.tag: use 1-20 letters, digits or dashes")
    if c.subject not in ("codename", "original"):
        problems.append("committee.subject: must be 'codename' or 'original'")
    if cfg.intake.protocol not in ("smtp", "lmtp"):
        problems.append("intake.protocol: must be 'smtp' or 'lmtp'")
    endpoints = (("intake.listen", cfg.intake.listen), ("outbound.relay", cfg.outbound.relay))
    for key, value in endpoints:
        if value is None:
            continue
        try:
            split_hostport(value)
        except ValueError as e:
            problems.append(f"{key}: {e}")
    if cfg.outbound.connections < 1:
        problems.append("outbound.connections: must be at least 1")
    if cfg.intake.max_size < 1024:
        problems.append("intake.max_size: must be at least 1024 bytes")
    if cfg.intake.flow_backlog < 1:
        problems.append("intake.flow_backlog: must be at least 1")
    if not 0 <= cfg.intake.flow_delay <= 60:
        problems.append("intake.flow_delay: must be between 0 (off) and 60 seconds")
    if cfg.intake.mta_routes not in ("domain", "addresses"):
        problems.append("intake.mta_routes: must be 'domain' or 'addresses'")
    if cfg.intake.stage_priority not in STAGE_PRIORITIES:
        problems.append(f"intake.stage_priority: must be one of {', '.join(STAGE_PRIORITIES)}")
    if cfg.outbound.acknowledgement_sender not in ACK_SENDERS:
        problems.append(f"outbound.acknowledgement_sender: must be one of {', '.join(ACK_SENDERS)}")
    if cfg.outbound.password_env and cfg.outbound.password_file:
        problems.append("outbound: set password_env or password_file, not both")
    if cfg.intake.imap:
        problems += validate_imap(cfg.intake.imap)
    return problems + validate_security(cfg.security)


def validate_security(sec: Security) -> list[str]:
    problems = []
    if sec.dns_server:
        try:
            split_hostport(sec.dns_server)
        except ValueError as e:
            problems.append(f"security.dns_server: {e}")
    if not 0 < sec.dns_timeout <= 60:
        problems.append("security.dns_timeout: must be between 0 and 60 seconds")
    if sec.member_token_days < 1:
        problems.append("security.member_token_days: must be at least 1")
    return problems


def validate_encryption(cfg: Config) -> list[str]:
    """``[committee.encryption]``: a known policy for "default" and for members only."""
    table, known = cfg.committee.encryption, ", ".join(ENCRYPTION_POLICIES)
    return ([f'committee.encryption."{k}": not a member (use an address, or "default")'
             for k in table if k != "default" and not cfg.is_member(k)]
            + [f'committee.encryption."{k}": {p!r} is not one of {known}'
               for k, p in table.items() if p not in ENCRYPTION_POLICIES])
