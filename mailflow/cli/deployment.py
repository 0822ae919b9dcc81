"""``mailflow check``, for the deployment: what would make mail go nowhere.

- Placeholders left by ``mailflow init`` (``example.org`` and the other names
  reserved for examples and tests, RFC 2606 and 6761): mail to them reaches nobody.
- A member's address that mailflow itself would take: ``conduct@`` or ``committee@``
  (with or without a ``+token``) loops; any other address in the conduct domain never
  reaches the member when the MTA routes the whole domain to mailflow
  (``intake.mta_routes = "domain"``).
"""

from __future__ import annotations

from mailflow.config import Config
from mailflow.mail.tokens import split_address

RESERVED = ("example.org", "example.com", "example.net")
RESERVED_SUFFIXES = (".example", ".invalid", ".test", ".localhost", "localhost")
ROSTERS = ("members", "officers", "board", "maintainers", "moderators", "delegates", "public")


def is_placeholder(domain: str) -> bool:
    domain = domain.lower().rstrip(".")
    return (domain in RESERVED or any(domain.endswith("." + r) for r in RESERVED)
            or domain.endswith(RESERVED_SUFFIXES))


def addresses(cfg: Config) -> list[tuple[str, str]]:
    """(key, address) of every address in [committee]."""
    c = cfg.committee
    found = [("committee.chair", c.chair)] + [
        (f"committee.{key}", a) for key in ROSTERS for a in getattr(c, key)]
    first: dict[str, tuple[str, str]] = {}
    for key, a in found:  # the chair is a member too: named once
        first.setdefault(a.lower(), (key, a))
    return list(first.values())


def placeholders(cfg: Config) -> list[str]:
    found = []
    if is_placeholder(cfg.committee.domain):
        found.append(f"committee.domain: {cfg.committee.domain} is a placeholder (left by "
                     "mailflow init?): put the domain conduct@ and committee@ live in")
    found += [f"{key}: {a} is a placeholder address: put a real one" for key, a in
              addresses(cfg) if is_placeholder(a.rpartition("@")[2])]
    return found


def routed_back(cfg: Config) -> list[str]:
    domain = cfg.committee.domain
    found = []
    for key, a in addresses(cfg):
        if a.rpartition("@")[2].lower() != domain.lower():
            continue
        if split_address(a, domain) is not None:
            found.append(f"{key}: {a} is mailflow's own address: mail to it comes back to "
                         "mailflow, never to a person")
        elif cfg.intake.mta_routes == "domain" and key != "committee.public":
            found.append(
                f"{key}: {a} is in the conduct domain, and intake.mta_routes = \"domain\" "
                "says the MTA sends all of it to mailflow, which refuses it: route only "
                "mailflow's addresses there (docs/deploy.md) and set mta_routes = "
                "\"addresses\", or use another address")
    return found


def problems(cfg: Config) -> list[str]:
    return [f"{cfg.source}: {p}" for p in placeholders(cfg) + routed_back(cfg)]
